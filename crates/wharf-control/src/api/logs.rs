//! `GET /apps/{app}/logs`: the last lines of the app's log file, and with `follow=true` new
//! lines as they are written, until the client goes away.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use crate::Control;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    lines: Option<usize>,
    follow: Option<bool>,
}

/// Reading more than this from the end of the file is never needed for a tail.
const TAIL_WINDOW: u64 = 4 << 20;

pub(crate) async fn logs(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    c.store.app(&app)?;
    let lines = q.lines.unwrap_or(100).min(10_000);
    // Subscribe before reading the file so no line falls between the two.
    let live = q
        .follow
        .unwrap_or(false)
        .then(|| c.runtime.subscribe_logs(&app));
    let path = c.data.logs(&app).join("app.log");
    let tail = tokio::task::spawn_blocking(move || tail(&path, lines))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let headers = [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    let Some(live) = live else {
        return Ok((headers, tail).into_response());
    };
    Ok((headers, Body::from_stream(follow(tail, live))).into_response())
}

/// The tail, then every new line until the client disconnects (dropping the stream).
fn follow(
    tail: String,
    live: tokio::sync::broadcast::Receiver<String>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let head = futures_util::stream::once(async move { Ok(Bytes::from(tail)) });
    let rest = futures_util::stream::unfold(live, |mut rx| async move {
        match rx.recv().await {
            Ok(mut line) => {
                if !line.ends_with('\n') {
                    line.push('\n');
                }
                Some((Ok(Bytes::from(line)), rx))
            }
            // A slow reader missed lines: say so and carry on.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                Some((Ok(Bytes::from(format!("[{n} lines skipped]\n"))), rx))
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    });
    futures_util::StreamExt::chain(head, rest)
}

/// The last `n` lines of a file (empty if it does not exist yet).
fn tail(path: &std::path::Path, n: usize) -> std::io::Result<String> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(n);
    let mut out = all[skip..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}
