//! The web dashboard, served by `wharf server` on the API's listener: server-rendered pages
//! (maud) over the same REST API the CLI uses, so it can do nothing a token could not. Login
//! takes a user's name and password (or an API token) and opens a session (HttpOnly, SameSite=Strict cookie, 12 h); every
//! state-changing request carries the session's CSRF token. Small vanilla JS streams deploy
//! output and follows logs; every page works without it, but the terminal (xterm.js over a
//! WebSocket, `terminal.rs`).
#![forbid(unsafe_code)]

mod access;
mod charts;
mod layout;
mod pages;
mod release;
mod session;
mod settings;
mod terminal;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use session::Sessions;

pub(crate) struct Dashboard {
    /// The API's own address, e.g. `http://127.0.0.1:7070`.
    api: String,
    sessions: Sessions,
}

/// The dashboard's routes; `api` is the base URL the dashboard calls the API at.
pub fn router(api: String) -> Router {
    let state = Arc::new(Dashboard {
        api,
        sessions: Sessions::default(),
    });
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/operations", get(pages::operations))
        .route("/backups", get(pages::backups))
        .route("/apps", post(pages::create_app))
        .route("/apps/{app}", get(pages::app))
        .route("/apps/{app}/deploy", post(pages::deploy))
        .route("/apps/{app}/rollback", post(pages::rollback))
        .route("/apps/{app}/domains", post(pages::add_domain))
        .route("/apps/{app}/domains/remove", post(pages::remove_domain))
        .route("/apps/{app}/env", post(pages::set_env))
        .route("/apps/{app}/env/unset", post(pages::unset_env))
        .route("/apps/{app}/settings", post(settings::save))
        .route("/apps/{app}/delete", post(settings::delete))
        .route("/apps/{app}/releases/{n}", get(release::release))
        .route("/apps/{app}/restart", post(pages::restart))
        .route("/apps/{app}/logs/live", get(pages::live_logs))
        .route("/users", get(access::users).post(access::create_user))
        .route("/users/{user}/remove", post(access::remove_user))
        .route("/users/{user}/grant", post(access::grant))
        .route("/users/{user}/revoke", post(access::revoke))
        .route("/tokens", post(access::create_token))
        .route("/tokens/{name}/revoke", post(access::revoke_token))
        .route("/assets/app.css", get(pages::css))
        .route("/assets/app.js", get(pages::js))
        .route("/apps/{app}/terminal", get(terminal::show))
        .route("/apps/{app}/terminal/socket", get(terminal::socket))
        .route("/assets/terminal.js", get(terminal::js))
        .route("/assets/terminal.css", get(terminal::css))
        .route("/assets/vendor/{version}/{file}", get(terminal::vendor))
        .with_state(state)
}
