//! `GET /apps/{app}/logs`: the last lines of the app's log, from its runtime (the process
//! runtime's log file, the engine's container logs), and with `follow=true` new lines as they
//! are written, until the client goes away.

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

pub(crate) async fn logs(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let placement = crate::runtimes::Placement::of(&c.store.app(&app)?);
    let runtime = c.runtimes.get(&placement).map_err(ApiError::unavailable)?;
    let lines = q.lines.unwrap_or(100).min(10_000);
    // Subscribe before reading the past lines so no line falls between the two.
    let live = q
        .follow
        .unwrap_or(false)
        .then(|| runtime.subscribe_logs(&app));
    let mut tail = runtime
        .logs(&app, lines)
        .await
        .map_err(ApiError::internal)?
        .join("\n");
    if !tail.is_empty() {
        tail.push('\n');
    }
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
