//! `/databases`: managed databases (create, list, show, delete), their URL (the one answer
//! carrying a password) and links to apps.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use wharf_client::dto::{Changed, CreateDatabase, DatabaseUrl, DatabaseView, LinkDatabase};
use wharf_store::Database;

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::Control;
use crate::oplog::OpLog;
use wharf_store::Caller;

async fn view(c: &Control, db: &Database) -> ApiResult<DatabaseView> {
    let params = c.databases.params(db).map_err(ApiError::internal)?;
    Ok(DatabaseView {
        name: db.name.clone(),
        engine: db.engine.clone(),
        state: c.databases.state(&db.name).await.to_string(),
        port: db.port,
        user: db.user.clone(),
        url: params.redacted_url(),
        url_var: params.engine.url_var().to_string(),
        created_at: db.created_at,
    })
}

pub(crate) async fn list(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<DatabaseView>>> {
    let mut out = Vec::new();
    for db in c.store.databases()? {
        out.push(view(&c, &db).await?);
    }
    Ok(Json(out))
}

pub(crate) async fn show(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<Json<DatabaseView>> {
    let db = c.store.database(&name)?;
    Ok(Json(view(&c, &db).await?))
}

pub(crate) async fn create(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateDatabase>,
) -> ApiResult<(StatusCode, Json<DatabaseView>)> {
    let engine =
        wharf_db::Engine::parse(&req.engine).map_err(|e| ApiError::invalid(e.to_string()))?;
    wharf_store::validate_app_name(&req.name)
        .map_err(|e| ApiError::invalid(format!("database name: {e}")))?;
    if c.store.app(&req.name).is_ok() {
        return Err(ApiError::conflict(format!(
            "an app is named \"{}\"; a database needs a name of its own",
            req.name
        )));
    }
    if c.store.database(&req.name).is_ok() {
        return Err(ApiError::conflict(format!(
            "database \"{}\" already exists",
            req.name
        )));
    }
    // In a task of its own: a client that goes away must not leave it half made.
    let task = {
        let c = c.clone();
        tokio::spawn(async move {
            let op = OpLog::begin(&c.store, Some(&req.name), "db create", &caller.user);
            let made = c.databases.create(&req.name, engine).await;
            let result = made
                .as_ref()
                .map(|db| {
                    format!(
                        "{} database {} runs on 127.0.0.1:{}",
                        db.engine, db.name, db.port
                    )
                })
                .map_err(Clone::clone);
            op.finish(&result);
            made
        })
    };
    let db = task
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::unavailable)?;
    Ok((StatusCode::CREATED, Json(view(&c, &db).await?)))
}

#[derive(serde::Deserialize)]
pub(crate) struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

pub(crate) async fn delete(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    c.store.database(&name)?;
    let op = OpLog::begin(&c.store, Some(&name), "db delete", &caller.user);
    let result = c.databases.delete(&name, q.purge).await.map(|()| {
        if q.purge {
            "database removed with its data; its backups stay".to_string()
        } else {
            format!(
                "database removed; its data stays in {}",
                c.data.volume(&name).display()
            )
        }
    });
    op.finish(&result);
    result.map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn url(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<Json<DatabaseUrl>> {
    let db = c.store.database(&name)?;
    let params = c.databases.params(&db).map_err(ApiError::internal)?;
    Ok(Json(DatabaseUrl {
        url: params.url(),
        password: params.password.clone(),
    }))
}

/// Sets the database's URL in the app's env (`DATABASE_URL`, `REDIS_URL`); the app restarts
/// on it without downtime, as on any env change.
pub(crate) async fn link(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<LinkDatabase>,
) -> ApiResult<Json<Changed>> {
    let db = c.store.database(&name)?;
    let app = c.store.app(&req.app)?;
    // The database listens on this machine's loopback: only processes here reach it.
    if app.node.is_some() || app.runtime != wharf_store::RuntimeKind::Process {
        return Err(ApiError::invalid(format!(
            "{} runs {}: it cannot reach the database on this machine's loopback; link \
             process apps of this machine only (or reach it through a tunnel)",
            req.app,
            match &app.node {
                Some(n) => format!("on node {n}"),
                None => format!("on the {} runtime", app.runtime.as_str()),
            }
        )));
    }
    let params = c.databases.params(&db).map_err(ApiError::internal)?;
    let var = params.engine.url_var().to_string();
    let set = std::collections::BTreeMap::from([(var.clone(), params.url())]);
    c.store.change_env(&req.app, &set, &[])?;
    let changed = super::apps::carry_out(
        &c,
        &caller.user,
        &req.app,
        "db link",
        false,
        &format!("set {var} to database {name}"),
    )
    .await?;
    Ok(Json(changed))
}
