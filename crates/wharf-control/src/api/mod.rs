//! The REST API under `/api/v1`, built by [`router`]. Every route but the OpenAPI document
//! and the login needs a bearer token, and the role `authz.rs` says its kind of call needs.

mod accounts;
mod apps;
mod authz;
mod backups;
mod certs;
mod databases;
mod deploys;
mod error;
mod extract;
mod git;
pub(crate) mod hooks;
mod logs;
mod nodes;
pub(crate) mod openapi;
mod operations;
mod paging;
mod run;
mod status;
mod validate;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};

use crate::Control;
use error::ApiError;

pub(crate) fn router(control: Arc<Control>) -> Router {
    let v1 = Router::new()
        .route("/status", get(status::status))
        .route("/apps", get(apps::list).post(apps::create))
        .route(
            "/apps/{app}",
            get(apps::show).patch(apps::update).delete(apps::remove),
        )
        .route("/apps/{app}/domains", post(apps::add_domain))
        .route("/apps/{app}/domains/{host}", delete(apps::remove_domain))
        .route(
            "/apps/{app}/env",
            get(apps::env_names).post(apps::change_env),
        )
        .route("/apps/{app}/start", post(apps::start))
        .route("/apps/{app}/stop", post(apps::stop))
        .route("/apps/{app}/restart", post(apps::restart))
        .route("/apps/{app}/scale", post(apps::scale))
        .route("/apps/{app}/run", post(run::run))
        .route("/apps/{app}/logs", get(logs::logs))
        .route(
            "/apps/{app}/deploy",
            post(deploys::deploy).layer(DefaultBodyLimit::max(deploys::MAX_ARCHIVE)),
        )
        .route("/apps/{app}/releases", get(deploys::releases))
        .route("/apps/{app}/releases/{number}", get(deploys::release))
        .route(
            "/apps/{app}/releases/{number}/log",
            get(deploys::release_log),
        )
        .route("/apps/{app}/traffic", get(status::traffic))
        .route("/apps/{app}/rollback", post(deploys::rollback))
        .route(
            "/apps/{app}/webhook",
            get(hooks::show).post(hooks::enable).delete(hooks::disable),
        )
        .route("/certs", get(certs::list))
        .route("/nodes", get(nodes::list).post(nodes::add))
        .route("/nodes/{node}", delete(nodes::remove))
        .route("/tunnels", get(nodes::tunnels).post(nodes::add_tunnel))
        .route("/tunnels/{tunnel}", delete(nodes::remove_tunnel))
        .route("/databases", get(databases::list).post(databases::create))
        .route(
            "/databases/{db}",
            get(databases::show).delete(databases::delete),
        )
        .route("/databases/{db}/url", get(databases::url))
        .route("/databases/{db}/links", post(databases::link))
        .route("/backups", get(backups::list).post(backups::run))
        .route("/backups/check", get(backups::check))
        .route("/backups/repository", get(backups::repository))
        .route("/backups/restore", post(backups::restore))
        .route(
            "/backups/schedules",
            get(backups::schedules).post(backups::add_schedule),
        )
        .route(
            "/backups/schedules/{schedule}",
            delete(backups::remove_schedule),
        )
        .route("/backups/alerts", get(backups::alerts))
        .route("/operations", get(operations::list))
        .route("/operations/{id}", get(operations::show))
        .route("/logout", post(accounts::logout))
        .route(
            "/users",
            get(accounts::list_users).post(accounts::create_user),
        )
        .route("/users/{user}", delete(accounts::remove_user))
        .route("/users/{user}/password", put(accounts::set_password))
        .route(
            "/users/{user}/roles",
            put(accounts::grant).delete(accounts::revoke),
        )
        .route(
            "/tokens",
            get(accounts::list_tokens).post(accounts::create_token),
        )
        .route("/tokens/{name}", delete(accounts::revoke_token))
        .route_layer(middleware::from_fn_with_state(
            control.clone(),
            require_token,
        ))
        .route("/login", post(accounts::login))
        .route("/openapi.json", get(openapi::document));
    Router::new()
        .nest("/api/v1", v1)
        .route("/hooks/{app}", post(hooks::receive))
        .route(
            "/git/{repo}/{*rest}",
            get(git::serve)
                .post(git::serve)
                .layer(DefaultBodyLimit::max(deploys::MAX_ARCHIVE)),
        )
        .fallback(|| async {
            ApiError::not_found("no such endpoint; the API is described at /api/v1/openapi.json")
        })
        .layer(DefaultBodyLimit::max(1 << 20))
        .with_state(control)
}

/// Resolves the token to its caller (afresh: a revoked token is refused at once), checks the
/// role the call needs, and hands the caller on to the handler (operations name it).
async fn require_token(
    State(control): State<Arc<Control>>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(caller) = crate::auth::bearer(&control.store, header) else {
        return ApiError::unauthorized().into_response();
    };
    let path = req.uri().path();
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let need = authz::need(req.method(), path, req.uri().query(), &caller);
    if let Err(refused) = authz::check(&caller, &need) {
        return refused.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}
