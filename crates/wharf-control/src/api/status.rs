//! `GET /status`: the server and every app at a glance.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use wharf_client::dto::StatusView;

use super::error::ApiResult;
use super::views;
use crate::Control;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusQuery {
    /// `false` leaves the app list out (`app_count` stays): the server at a glance costs the
    /// same with ten apps or ten thousand.
    apps: Option<bool>,
}

pub(crate) async fn status(
    State(c): State<Arc<Control>>,
    axum::Extension(caller): axum::Extension<wharf_store::Caller>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> ApiResult<Json<StatusView>> {
    let Query(q) = query.map_err(|e| super::paging::bad_query(e, "apps=true|false"))?;
    // A user with roles on single apps learns of those alone: not how many others there
    // are, nor where the server keeps its data.
    let global = super::authz::global(&caller);
    let visible = wharf_store::AppFilter {
        visible_to: (!global).then(|| caller.user.clone()),
        ..Default::default()
    };
    let apps = if q.apps.unwrap_or(true) {
        views::apps(&c, &c.store.apps()?).await
    } else {
        Vec::new()
    };
    Ok(Json(StatusView {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: c.started.elapsed().as_secs(),
        gateway: c
            .reconciler
            .gateway_addrs()
            .iter()
            .map(|a| format!("http://{a}"))
            .collect::<Vec<_>>()
            .join(", "),
        base_domain: c.reconciler.routing().base_domain.clone(),
        data_dir: if global {
            c.data.root().display().to_string()
        } else {
            String::new()
        },
        rss_bytes: own_rss(),
        app_count: c.store.count_apps(&visible)?,
        apps,
    }))
}

fn own_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `GET /api/v1/apps/{app}/traffic`
pub(crate) async fn traffic(
    State(c): State<Arc<Control>>,
    axum::extract::Path(app): axum::extract::Path<String>,
) -> ApiResult<Json<wharf_client::dto::TrafficView>> {
    c.store.app(&app)?;
    Ok(Json(wharf_client::dto::TrafficView {
        interval_seconds: crate::traffic::INTERVAL.as_secs(),
        points: c.traffic.points(&app),
    }))
}
