//! Push webhooks at `/hooks/{app}`: GitHub (`X-Hub-Signature-256`), Gitea (`X-Gitea-Signature`)
//! and GitLab (`X-Gitlab-Token`), checked in constant time against the app's secret. Only the
//! app's own repository is fetched (never a URL from the payload), and only pushes to its branch.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use wharf_client::dto::WebhookView;

use super::error::{ApiError, ApiResult};
use crate::Control;
use crate::deploy::{Output, Source};

/// `POST /api/v1/apps/{app}/webhook`: a new secret (the old one stops working).
pub(crate) async fn rotate(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<WebhookView>> {
    let a = c.store.app(&app)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    c.store.set_webhook_secret(&app, Some(&secret))?;
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:7070");
    Ok(Json(WebhookView {
        url: format!("http://{host}/hooks/{app}"),
        secret,
        branch: a.git_ref.unwrap_or_else(|| "main".into()),
    }))
}

fn unauthorized(why: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "bad_signature",
        message: why.to_string(),
    }
}

/// Equal without revealing where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hmac_ok(secret: &str, body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Which provider sent it, and whether its signature holds.
pub(crate) fn verify(
    headers: &HeaderMap,
    secret: &str,
    body: &[u8],
) -> Result<&'static str, ApiError> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(sig) = h("x-hub-signature-256") {
        let hex_sig = sig
            .strip_prefix("sha256=")
            .ok_or_else(|| unauthorized("X-Hub-Signature-256 must start with sha256="))?;
        return hmac_ok(secret, body, hex_sig)
            .then_some("github")
            .ok_or_else(|| unauthorized("the GitHub signature does not match"));
    }
    if let Some(sig) = h("x-gitea-signature") {
        return hmac_ok(secret, body, sig)
            .then_some("gitea")
            .ok_or_else(|| unauthorized("the Gitea signature does not match"));
    }
    if let Some(token) = h("x-gitlab-token") {
        return same(token.as_bytes(), secret.as_bytes())
            .then_some("gitlab")
            .ok_or_else(|| unauthorized("the GitLab token does not match"));
    }
    Err(unauthorized(
        "no signature: send X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token",
    ))
}

/// What a signed webhook asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    Pong,
    /// Not a push to the app's branch; says what it was.
    Ignored(String),
    /// The pushed commit when the payload names one, else the branch head.
    Deploy {
        reference: String,
    },
}

/// Reads the event header and the payload (already authenticated); `Err` for a push payload
/// that is not JSON.
pub(crate) fn interpret(headers: &HeaderMap, body: &[u8], branch: &str) -> Result<Push, String> {
    let event = ["x-github-event", "x-gitea-event", "x-gitlab-event"]
        .iter()
        .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
        .unwrap_or("push");
    if event == "ping" {
        return Ok(Push::Pong);
    }
    if !(event == "push" || event == "Push Hook") {
        return Ok(Push::Ignored(format!("{event} events are ignored")));
    }
    let payload: Value = serde_json::from_slice(body).map_err(|e| format!("push payload: {e}"))?;
    let pushed = payload["ref"].as_str().unwrap_or("");
    if pushed != format!("refs/heads/{branch}") {
        return Ok(Push::Ignored(format!("push to `{pushed}` ignored")));
    }
    let commit = ["after", "checkout_sha"]
        .iter()
        .find_map(|k| payload[*k].as_str())
        .unwrap_or("");
    let named = commit.len() >= 7
        && commit.chars().all(|c| c.is_ascii_hexdigit())
        && !commit.chars().all(|c| c == '0');
    Ok(Push::Deploy {
        reference: if named {
            commit.to_string()
        } else {
            branch.to_string()
        },
    })
}

/// `POST /hooks/{app}`: answers pings, ignores other branches, deploys pushes to the app's branch
/// in the background (202).
pub(crate) async fn receive(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // Unknown apps and apps without a secret look the same as a bad signature.
    let secret = c.store.webhook_secret(&app).ok().flatten().ok_or_else(|| {
        unauthorized("webhooks are not enabled for this app (wharf hooks enable APP)")
    })?;
    let provider = verify(&headers, &secret, &body)?;
    let a = c.store.app(&app)?;
    let branch = a.git_ref.clone().unwrap_or_else(|| "main".into());
    let reference = match interpret(&headers, &body, &branch).map_err(ApiError::invalid)? {
        Push::Pong => return Ok((StatusCode::OK, Json(json!({ "message": "pong" })))),
        Push::Ignored(why) => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "message": format!("{why}: {app} deploys {branch}") })),
            ));
        }
        Push::Deploy { reference } => reference,
    };
    let url = a.git_url.clone().ok_or_else(|| {
        ApiError::invalid(format!(
            "{app} has no repository to fetch: wharf apps set {app} --git URL"
        ))
    })?;
    tracing::info!(%app, provider, %reference, "webhook push: deploying");
    tokio::spawn(async move {
        let _ = crate::deploy::deploy(
            &c,
            &app,
            Source::Git { url, reference },
            Output::new(None),
            crate::oplog::HOOK,
        )
        .await;
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message": format!("deploying {branch} ({provider} push)") })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_per_provider() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign("s3cret", body);
        let bad = sign("other", body);
        let check = |pairs: &[(&'static str, String)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            verify(&h, "s3cret", body).map_err(|e| e.message)
        };
        assert_eq!(
            check(&[("x-hub-signature-256", format!("sha256={good}"))]),
            Ok("github")
        );
        assert!(check(&[("x-hub-signature-256", format!("sha256={bad}"))]).is_err());
        assert!(check(&[("x-hub-signature-256", good.clone())]).is_err());
        assert_eq!(check(&[("x-gitea-signature", good.clone())]), Ok("gitea"));
        assert!(check(&[("x-gitea-signature", bad)]).is_err());
        assert_eq!(check(&[("x-gitlab-token", "s3cret".into())]), Ok("gitlab"));
        assert!(check(&[("x-gitlab-token", "s3cre".into())]).is_err());
        assert!(check(&[]).unwrap_err().contains("no signature"));
    }
}
