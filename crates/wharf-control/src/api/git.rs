//! `git push` over smart HTTP at `/git/<app>.git`: git's own `git http-backend` serves the
//! protocol (run as a CGI program); wharf checks the token (HTTP Basic, token as password),
//! creates the app's bare repository on first use, and deploys the pushed branch afterwards.
//! When the client speaks `side-band-64k` (every git since 1.6 does), the deploy's output is
//! streamed back on the progress band, so `git push` shows it as `remote:` lines and returns
//! once the release is live, as on Heroku or Dokku.

use std::process::Stdio;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::io::AsyncWriteExt;

use super::error::{ApiError, ApiResult};
use crate::Control;
use crate::deploy::{Output, Source};

fn ask_for_credentials() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        "use a wharf API token as the password\n",
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"wharf\""),
    );
    r
}

pub(crate) async fn serve(
    State(c): State<Arc<Control>>,
    Path((repo, rest)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let known = crate::auth::basic(&c.store, auth).or_else(|| crate::auth::bearer(&c.store, auth));
    let Some(caller) = known else {
        return Ok(ask_for_credentials());
    };
    let app = repo
        .strip_suffix(".git")
        .ok_or_else(|| ApiError::not_found(format!("push to /git/<app>.git, not /git/{repo}")))?
        .to_string();
    // A push is asked for as `info/refs?service=git-receive-pack`, then `git-receive-pack`.
    let pushing_service = rest == "git-receive-pack"
        || query
            .iter()
            .any(|(k, v)| k == "service" && v == "git-receive-pack");
    super::authz::check(&caller, &super::authz::need_git(&app, pushing_service))?;
    c.store.app(&app)?;
    let root = c.data.push_repos();
    let bare = root.join(&repo);
    if !bare.join("HEAD").exists() {
        init_bare(&bare).await?;
    }
    let query_string = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let pushing = rest == "git-receive-pack";
    let (commands, caps) = if pushing {
        pushed_refs(&headers, &body)
    } else {
        Default::default()
    };

    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{repo}/{rest}"))
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", query_string)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "wharf")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(t) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        cmd.env("CONTENT_TYPE", t);
    }
    if let Some(e) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        cmd.env("HTTP_CONTENT_ENCODING", e);
    }
    if let Some(p) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::internal(format!("cannot run git http-backend: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let feed = async move {
        let _ = stdin.write_all(&body).await;
        drop(stdin);
    };
    let (_, output) = tokio::join!(feed, child.wait_with_output());
    let output = output.map_err(ApiError::internal)?;
    if !output.stderr.is_empty() {
        tracing::debug!(stderr = %String::from_utf8_lossy(&output.stderr), "git http-backend");
    }
    let response = cgi_response(&output.stdout)?;

    let pushed_branch = commands
        .into_iter()
        .find(|(r, new)| r.starts_with("refs/heads/") && !new.chars().all(|c| c == '0'));
    if pushing
        && response.status().is_success()
        && let Some((reference, commit)) = pushed_branch
    {
        let url = format!("file://{}", bare.display());
        tracing::info!(%app, %reference, %commit, "git push: deploying");
        let source = Source::Git {
            url,
            reference: commit,
        };
        let sideband = caps.split(' ').any(|c| c == "side-band-64k");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let out = Output::new(sideband.then_some(tx));
            let _ = crate::deploy::deploy(&c, &app, source, out, &caller.user).await;
        });
        if sideband {
            return Ok(with_progress(response, rx).await);
        }
    }
    Ok(response)
}

/// The receive-pack answer with the deploy's lines on sideband 2 before its closing flush-pkt.
async fn with_progress(
    response: Response,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Response {
    use futures_util::StreamExt;
    let (mut parts, body) = response.into_parts();
    let Ok(answer) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let answer = Bytes::copy_from_slice(answer.strip_suffix(b"0000").unwrap_or(&answer));
    parts.headers.remove(header::CONTENT_LENGTH);
    let head = futures_util::stream::once(async move { Ok::<_, std::io::Error>(answer) });
    let progress = futures_util::stream::unfold(lines, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok(progress_pkt(&line)), rx))
    });
    let flush = futures_util::stream::once(async { Ok(Bytes::from_static(b"0000")) });
    Response::from_parts(parts, Body::from_stream(head.chain(progress).chain(flush)))
}

/// One line as a pkt-line on sideband 2 (progress), cut to the 64 KiB packet limit.
fn progress_pkt(line: &str) -> Bytes {
    const MAX_DATA: usize = 65515 - 2;
    let mut end = line.len().min(MAX_DATA);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let data = &line[..end];
    let len = 4 + 1 + data.len() + 1;
    let mut pkt = Vec::with_capacity(len);
    pkt.extend_from_slice(format!("{len:04x}").as_bytes());
    pkt.push(2);
    pkt.extend_from_slice(data.as_bytes());
    pkt.push(b'\n');
    Bytes::from(pkt)
}

async fn init_bare(bare: &std::path::Path) -> Result<(), ApiError> {
    std::fs::create_dir_all(bare).map_err(ApiError::internal)?;
    for args in [
        vec!["init", "--bare", "--quiet"],
        vec!["config", "http.receivepack", "true"],
    ] {
        let ok = tokio::process::Command::new("git")
            .args(&args)
            .current_dir(bare)
            .status()
            .await
            .map_err(ApiError::internal)?
            .success();
        if !ok {
            return Err(ApiError::internal(format!(
                "git {} failed in {}",
                args[0],
                bare.display()
            )));
        }
    }
    Ok(())
}

/// Splits a CGI answer into status, headers and body.
fn cgi_response(raw: &[u8]) -> Result<Response, ApiError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)))
        .ok_or_else(|| ApiError::internal("git http-backend gave no headers"))?;
    let (head, body) = (&raw[..split.0], &raw[split.0 + split.1..]);
    let mut resp = Response::new(Body::from(body.to_vec()));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            *resp.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(n), Ok(v)) = (
            header::HeaderName::try_from(name.trim()),
            HeaderValue::try_from(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    Ok(resp)
}

/// The `(ref, new commit)` pairs at the start of a receive-pack request (pkt-lines), and the
/// capabilities the client asked for (after the NUL of the first command).
fn pushed_refs(headers: &HeaderMap, body: &[u8]) -> (Vec<(String, String)>, String) {
    let gz = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let plain;
    let mut data: &[u8] = body;
    if gz {
        use std::io::Read;
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .is_err()
        {
            return Default::default();
        }
        plain = out;
        data = &plain;
    }
    let mut refs = Vec::new();
    let mut caps = String::new();
    while data.len() >= 4 {
        let Some(len) = std::str::from_utf8(&data[..4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            break;
        };
        if len == 0 || len < 4 || len > data.len() {
            break;
        }
        let line = String::from_utf8_lossy(&data[4..len]);
        let mut halves = line.split('\0');
        let command = halves.next().unwrap_or("").trim();
        if refs.is_empty()
            && let Some(asked) = halves.next()
        {
            caps = asked.trim().to_string();
        }
        let mut parts = command.split(' ');
        if let (Some(_old), Some(new), Some(reference)) = (parts.next(), parts.next(), parts.next())
        {
            refs.push((reference.to_string(), new.to_string()));
        }
        data = &data[len..];
    }
    (refs, caps)
}
