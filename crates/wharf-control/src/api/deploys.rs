//! Deploys, releases and rollback. A deploy answers with newline-delimited JSON: the build's
//! output line by line as it happens, then the finished operation. The deploy itself runs to
//! the end even if the client goes away.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use wharf_client::dto::{Changed, DeployEvent, DeployRequest, ReleaseView, Rollback};

use super::error::{ApiError, ApiResult};
use super::views;
use crate::Control;
use crate::deploy::{Output, Source};
use wharf_store::Caller;

/// Largest archive upload.
pub(crate) const MAX_ARCHIVE: usize = wharf_client::dto::MAX_ARCHIVE_BYTES;

pub(crate) async fn deploy(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let current = c.store.app(&app)?;
    let gzip = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/gzip") || t.starts_with("application/x-gzip"));
    let zip = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/zip"));
    let source = if gzip {
        Source::Archive(body)
    } else if zip {
        Source::Zip(body)
    } else {
        let req: DeployRequest = if body.is_empty() {
            DeployRequest::default()
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::invalid(format!("deploy request: {e}")))?
        };
        if let Some(image) = req.image {
            if req.git.is_some() || req.reference.is_some() {
                return Err(ApiError::invalid(
                    "deploy either an image or code from git, not both",
                ));
            }
            if !current.runtime.runs_images() {
                return Err(ApiError::invalid(format!(
                    "{app} runs on the process runtime, which runs code, not images: `wharf apps set {app} --runtime docker` first"
                )));
            }
            crate::deploy::check_image(&image).map_err(ApiError::invalid)?;
            return Ok(stream(c, app, Source::Image(image), caller.user));
        }
        let given = given_git(req.git, current.git_url.as_deref());
        // The app's saved repository was set by someone allowed to; one given here must be
        // allowed to the caller.
        if given.as_deref().is_some_and(super::authz::local_git) {
            super::authz::check_admin_setting(&caller, "a git repository on the server's disk")?;
        }
        let url = given.or(current.git_url).ok_or_else(|| {
            ApiError::invalid("say what to deploy: a `git` URL, an archive, or save one with `wharf apps set APP --git URL`")
        })?;
        let reference = req
            .reference
            .or(current.git_ref)
            .unwrap_or_else(|| "main".into());
        crate::deploy::check_git(&url, &reference).map_err(ApiError::invalid)?;
        Source::Git { url, reference }
    };
    Ok(stream(c, app, source, caller.user))
}

/// The repository a deploy names, if it is not the saved one. The saved URL as shown (its
/// credentials as `***`, the dashboard's deploy form comes filled with it) stands for the
/// saved one.
fn given_git(given: Option<String>, saved: Option<&str>) -> Option<String> {
    given.filter(|g| saved.map(crate::deploy::redact_git).as_deref() != Some(g.as_str()))
}

/// Starts the deploy in the background and streams its events.
pub(crate) fn stream(c: Arc<Control>, app: String, source: Source, actor: String) -> Response {
    let (lines_tx, lines) = tokio::sync::mpsc::unbounded_channel();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (op, _) =
            crate::deploy::deploy(&c, &app, source, Output::new(Some(lines_tx)), &actor).await;
        if let Ok(view) = c.store.operation(op) {
            let _ = done_tx.send(views::operation(view));
        }
    });
    let events =
        futures_util::stream::unfold((Some(lines), Some(done)), |(lines, done)| async move {
            if let Some(mut rx) = lines
                && let Some(line) = rx.recv().await
            {
                return Some((event(&DeployEvent::Log(line)), (Some(rx), done)));
            }
            let op = done?.await.ok()?;
            Some((event(&DeployEvent::Done(op)), (None, None)))
        });
    let headers = [(http::header::CONTENT_TYPE, "application/x-ndjson")];
    (headers, Body::from_stream(events)).into_response()
}

fn event(e: &DeployEvent) -> Result<Bytes, std::io::Error> {
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleasesQuery {
    limit: Option<u32>,
    before: Option<u32>,
}

/// `GET /api/v1/apps/{app}/releases/{number}`
pub(crate) async fn release(
    State(c): State<Arc<Control>>,
    Path((app, number)): Path<(String, u32)>,
) -> ApiResult<Json<ReleaseView>> {
    c.store.app(&app)?;
    Ok(Json(views::release(c.store.release(&app, number)?)))
}

/// `GET /api/v1/apps/{app}/releases/{number}/log`: the release's whole build output, each line
/// with the time since its deploy began (text). Kept while the release is.
pub(crate) async fn release_log(
    State(c): State<Arc<Control>>,
    Path((app, number)): Path<(String, u32)>,
) -> ApiResult<Response> {
    c.store.app(&app)?;
    c.store.release(&app, number)?;
    let log = match std::fs::read(c.data.build_log(&app, number)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!(
                "release {number} of {app} has no build log (releases built before wharf kept \
                 build logs have none)"
            )));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let headers = [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    Ok((headers, log).into_response())
}

/// `GET /apps/{app}/releases`: a page of releases, newest first, keyed by number (`before` =
/// the last number of the previous page); see `paging.rs` for the conventions.
pub(crate) async fn releases(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
    query: Result<Query<ReleasesQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| super::paging::bad_query(e, "limit and before"))?;
    let limit = super::paging::limit(q.limit, 100)?;
    let mut releases = c.store.releases_page(&app, q.before, limit + 1)?;
    let more = releases.len() > limit as usize;
    releases.truncate(limit as usize);
    let mut links = Vec::new();
    if let (true, Some(last)) = (more, releases.last()) {
        let params = [
            ("limit", Some(limit.to_string())),
            ("before", Some(last.number.to_string())),
        ];
        links.push(super::paging::link(
            &format!("/api/v1/apps/{app}/releases"),
            &params,
            "next",
        ));
    }
    let total = c.store.count_releases(&app)?;
    Ok(super::paging::respond(
        releases
            .into_iter()
            .map(views::release)
            .collect::<Vec<ReleaseView>>(),
        links,
        Some(total),
    ))
}

pub(crate) async fn rollback(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Changed>> {
    c.store.app(&app)?;
    let req: Rollback = if body.is_empty() {
        Rollback::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("rollback request: {e}")))?
    };
    // In a task of its own, like a deploy: a client that goes away does not cut it short.
    let task = {
        let (c, app, actor) = (c.clone(), app.clone(), caller.user);
        tokio::spawn(async move { crate::deploy::rollback(&c, &app, req.release, &actor).await })
    };
    let (op, _) = task.await.map_err(ApiError::internal)?;
    Ok(Json(Changed {
        app: views::app(&c, &c.store.app(&app)?).await,
        operation: views::operation(c.store.operation(op)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::given_git;

    #[test]
    fn the_saved_repository_as_shown_stands_for_the_saved_one() {
        let saved = Some("https://ci:glpat-1@git.example/a.git");
        let shown = "https://***@git.example/a.git".to_string();
        assert_eq!(given_git(Some(shown), saved), None);
        let other = "https://git.example/b.git".to_string();
        assert_eq!(given_git(Some(other.clone()), saved), Some(other.clone()));
        assert_eq!(given_git(Some(other.clone()), None), Some(other));
        assert_eq!(given_git(None, saved), None);
    }
}
