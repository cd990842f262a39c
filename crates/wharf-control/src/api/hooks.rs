//! Push webhooks at `/hooks/{app}`: GitHub (`X-Hub-Signature-256`), Gitea (`X-Gitea-Signature`)
//! and GitLab (`X-Gitlab-Token`), checked in constant time against the app's secret. Only the
//! app's own repository is fetched (never a URL from the payload), and only pushes to its branch.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use wharf_client::dto::WebhookView;
use wharf_store::Caller;

use super::error::{ApiError, ApiResult};
use crate::Control;
use crate::deploy::{Output, Source};
use crate::oplog::OpLog;

/// A secret chosen by the user must be hard to guess: it is all that stands between anyone on
/// the internet and a deploy.
const MIN_SECRET: usize = 16;

/// The optional body of `POST /api/v1/apps/{app}/webhook`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EnableRequest {
    secret: Option<String>,
}

fn chosen_secret(s: &str) -> Result<(), ApiError> {
    if s.chars().count() < MIN_SECRET {
        return Err(ApiError::invalid(format!(
            "the webhook secret must be at least {MIN_SECRET} characters (leave it out and wharf makes one)"
        )));
    }
    if s.len() > 256 || s.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
        return Err(ApiError::invalid(
            "the webhook secret must be at most 256 characters, with no spaces or control characters",
        ));
    }
    Ok(())
}

/// `POST /api/v1/apps/{app}/webhook`: turns push webhooks on with the secret given in the body,
/// or a new random one, shown this once (the old secret stops working either way).
pub(crate) async fn enable(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<WebhookView>> {
    let req: EnableRequest = if body.iter().all(u8::is_ascii_whitespace) {
        EnableRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("webhook settings: {e}")))?
    };
    let a = c.store.app(&app)?;
    let (secret, shown) = match req.secret {
        Some(s) => {
            chosen_secret(&s)?;
            (s, None)
        }
        None => {
            let s = hex::encode(rand::random::<[u8; 32]>());
            (s.clone(), Some(s))
        }
    };
    c.store.set_webhook_secret(&app, Some(&secret))?;
    let op = OpLog::begin(&c.store, Some(&app), "hooks", &caller.user);
    op.finish(&Ok(if shown.is_some() {
        "webhooks on, with a new secret".to_string()
    } else {
        "webhooks on, with the secret given".to_string()
    }));
    Ok(Json(WebhookView {
        url: c.reconciler.hook_url(&app),
        secret: shown,
        branch: a.git_ref.unwrap_or_else(|| "main".into()),
    }))
}

/// `DELETE /api/v1/apps/{app}/webhook`: turns push webhooks off; the secret is forgotten.
pub(crate) async fn disable(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    c.store.app(&app)?;
    let was_on = c.store.webhook_secret(&app)?.is_some();
    c.store.set_webhook_secret(&app, None)?;
    let message = if was_on {
        "webhooks off: pushes are refused until `wharf hooks enable`"
    } else {
        "webhooks were already off"
    };
    OpLog::begin(&c.store, Some(&app), "hooks", &caller.user).finish(&Ok(message.to_string()));
    Ok(Json(json!({ "message": message })))
}

/// `GET /api/v1/apps/{app}/webhook`: whether webhooks are on, and where they are sent (never
/// the secret).
pub(crate) async fn show(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = c.store.app(&app)?;
    let on = c.store.webhook_secret(&app)?.is_some();
    Ok(Json(json!({
        "enabled": on,
        "url": c.reconciler.hook_url(&app),
        "branch": a.git_ref.unwrap_or_else(|| "main".into()),
    })))
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
    // A push while a deploy runs waits for it (git hosts send pushes as they come, and each
    // is answered at once); of several waiting, the newest deploys.
    let push = c.deploys.queue_push(&app);
    tokio::spawn(async move {
        let Some(claim) = c.deploys.claim_for_push(&app, push).await else {
            tracing::info!(%app, %reference, "webhook push superseded by a newer one");
            return;
        };
        let _ = crate::deploy::deploy_claimed(
            &c,
            &app,
            Source::Git { url, reference },
            Output::new(None),
            crate::oplog::HOOK,
            Some(claim),
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
