//! The operations log: `GET /operations` (newest first) and `GET /operations/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use wharf_client::dto::OperationView;

use super::error::ApiResult;
use super::views;
use crate::Control;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpsQuery {
    app: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn list(
    State(c): State<Arc<Control>>,
    Query(q): Query<OpsQuery>,
) -> ApiResult<Json<Vec<OperationView>>> {
    let ops = c
        .store
        .operations(q.app.as_deref(), q.limit.unwrap_or(20).min(500))?;
    Ok(Json(ops.into_iter().map(views::operation).collect()))
}

pub(crate) async fn show(
    State(c): State<Arc<Control>>,
    Path(id): Path<i64>,
) -> ApiResult<Json<OperationView>> {
    Ok(Json(views::operation(c.store.operation(id)?)))
}
