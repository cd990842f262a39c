//! The operations log: `GET /operations` (newest first) and `GET /operations/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use wharf_client::dto::OperationView;
use wharf_store::{OpFilter, OpStatus};

use super::error::{ApiError, ApiResult};
use super::{paging, views};
use crate::Control;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpsQuery {
    app: Option<String>,
    kind: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    before: Option<i64>,
}

/// `GET /operations`: a page of the log, newest first, keyed by id (`before` = the last id
/// of the previous page); see `paging.rs` for the conventions.
pub(crate) async fn list(
    State(c): State<Arc<Control>>,
    query: Result<Query<OpsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) =
        query.map_err(|e| paging::bad_query(e, "limit, before, app, kind and status"))?;
    let limit = paging::limit(q.limit, 20)?;
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let filter = OpFilter {
        app: nonempty(q.app),
        kind: nonempty(q.kind),
        status: nonempty(q.status)
            .map(|s| {
                s.parse::<OpStatus>()
                    .map_err(|e| ApiError::bad_request(format!("`status`: {e}")))
            })
            .transpose()?,
    };
    let mut ops = c.store.operations_page(&filter, q.before, limit + 1)?;
    let more = ops.len() > limit as usize;
    ops.truncate(limit as usize);
    let mut links = Vec::new();
    if let (true, Some(last)) = (more, ops.last()) {
        let params = [
            ("limit", Some(limit.to_string())),
            ("app", filter.app.clone()),
            ("kind", filter.kind.clone()),
            ("status", filter.status.map(|s| s.to_string())),
            ("before", Some(last.id.to_string())),
        ];
        links.push(paging::link("/api/v1/operations", &params, "next"));
    }
    let total = c.store.count_operations(&filter)?;
    Ok(paging::respond(
        ops.into_iter().map(views::operation).collect::<Vec<_>>(),
        links,
        Some(total),
    ))
}

pub(crate) async fn show(
    State(c): State<Arc<Control>>,
    Path(id): Path<i64>,
) -> ApiResult<Json<OperationView>> {
    Ok(Json(views::operation(c.store.operation(id)?)))
}
