//! `GET /nodes`: the Swarm's nodes and the tasks of wharf's apps on each.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use wharf_client::dto::{NodeView, TaskView};

use super::error::{ApiError, ApiResult};
use crate::Control;

pub(crate) async fn list(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<NodeView>>> {
    let swarm = c.runtimes.swarm().map_err(ApiError::unavailable)?;
    let nodes = swarm
        .nodes()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|n| NodeView {
                id: n.id,
                hostname: n.hostname,
                addr: n.addr,
                state: n.state,
                availability: n.availability,
                manager: n.manager,
                tasks: n
                    .tasks
                    .into_iter()
                    .map(|t| TaskView {
                        app: t.app,
                        id: t.id,
                        state: t.state,
                        addr: t.addr.map(|a| a.to_string()),
                    })
                    .collect(),
            })
            .collect(),
    ))
}
