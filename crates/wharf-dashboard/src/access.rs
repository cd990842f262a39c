//! The Users page: anyone's own API tokens (list, make one, shown once, revoke), and for those
//! who may see them the users with their roles; admins add and remove users and grant and
//! take roles. Every change goes through the API with the session's token, so the API's
//! refusal (403, naming the role needed) is what the page shows.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use maud::{Markup, html};
use wharf_client::Client;
use wharf_client::dto::{CreateToken, CreateUser, NewToken, RoleGrant, UserView};

use crate::layout::{Flash, ago, csrf_field, page};
use crate::session::Session;
use crate::{Dashboard, pages};

type Fields = HashMap<String, String>;
type State_ = State<Arc<Dashboard>>;

fn field(f: &Fields, key: &str) -> Option<String> {
    f.get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// "3m ago", or "in 2h" for what is to come.
fn date(secs: i64) -> String {
    let now = pages::now();
    if secs > now {
        format!("in {}", ago(secs, now).trim_end_matches(" ago"))
    } else {
        ago(now, secs)
    }
}

fn roles(u: &UserView) -> String {
    if u.roles.is_empty() {
        return "none".into();
    }
    u.roles
        .iter()
        .map(|g| match &g.app {
            Some(a) => format!("{} on {a}", g.role),
            None => g.role.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /users`
pub(crate) async fn users(
    State(d): State_,
    headers: HeaderMap,
    Query(q): Query<Fields>,
) -> Response {
    let (s, c) = match pages::session(&d, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let flash = match (q.get("msg"), q.get("err")) {
        (_, Some(e)) => Flash::Err(e),
        (Some(m), _) => Flash::Ok(m),
        _ => Flash::None,
    };
    render(&c, &s, flash, None).await
}

async fn render(c: &Client, s: &Session, flash: Flash<'_>, made: Option<&NewToken>) -> Response {
    let (tokens, users) = tokio::join!(c.tokens(None), c.users());
    let tokens = match tokens {
        Ok(t) => t,
        Err(e) => return pages::error_page(&e.to_string()),
    };
    let me = tokens.first().map(|t| t.user.clone());
    // Users are listed to those with a role everywhere; admins get the forms.
    let users = users.ok();
    let admin = users.as_ref().is_some_and(|us| {
        us.iter().any(|u| {
            Some(&u.name) == me.as_ref()
                && u.roles.iter().any(|g| g.role == "admin" && g.app.is_none())
        })
    });
    let csrf = s.csrf.as_str();
    let body = html! {
        h1 { "Users and tokens" }
        @if let Some(t) = made {
            section.card {
                h2 { "New token " (t.name) }
                p { "Copy it now: it is shown this once only." }
                pre.token { (t.token) }
            }
        }
        section.card {
            h2 { "Your tokens" @if let Some(me) = &me { " (" (me) ")" } }
            table {
                thead { tr { th { "Name" } th { "Kind" } th { "Created" } th { "Last used" } th { "Expires" } th {} } }
                tbody {
                    @for t in &tokens {
                        tr {
                            td { (t.name) }
                            td { (t.kind) }
                            td { (date(t.created_at)) }
                            td { (t.last_used_at.map_or("never".to_string(), date)) }
                            td { (t.expires_at.map_or("never".to_string(), date)) }
                            td {
                                form.inline method="post" action={"/tokens/" (t.name) "/revoke"} {
                                    (csrf_field(csrf))
                                    button.danger type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action="/tokens" {
                (csrf_field(csrf))
                label for="token-name" { "New token's name" }
                input id="token-name" name="name" required placeholder="ci";
                label for="token-days" { "Expires after (days, empty: never)" }
                input id="token-days" name="expires_days" type="number" min="1";
                @if s.from_password {
                    label for="token-password" { "Your password (again: a token outlasts this session)" }
                    input id="token-password" name="password" type="password" required autocomplete="current-password";
                }
                button type="submit" { "Make a token" }
            }
        }
        @if let Some(users) = &users {
            section.card {
                h2 { "Users" }
                table {
                    thead { tr { th { "Name" } th { "Roles" } th { "Password" } @if admin { th {} } } }
                    tbody {
                        @for u in users {
                            tr {
                                td { (u.name) }
                                td { (roles(u)) }
                                td { @if u.has_password { "yes" } @else { "no (tokens only)" } }
                                @if admin {
                                    td {
                                        form.inline method="post" action={"/users/" (u.name) "/grant"} {
                                            (csrf_field(csrf))
                                            (role_select())
                                            input name="app" placeholder="app (empty: everywhere)" aria-label="app";
                                            button type="submit" { "Grant" }
                                        }
                                        " "
                                        form.inline method="post" action={"/users/" (u.name) "/revoke"} {
                                            (csrf_field(csrf))
                                            input name="app" placeholder="app (empty: everywhere)" aria-label="app";
                                            button type="submit" { "Take role" }
                                        }
                                        " "
                                        form.inline method="post" action={"/users/" (u.name) "/remove"} {
                                            (csrf_field(csrf))
                                            button.danger type="submit" { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if admin {
                    form.stack method="post" action="/users" {
                        (csrf_field(csrf))
                        h3 { "Add a user" }
                        label for="new-name" { "Name" }
                        input id="new-name" name="name" required;
                        label for="new-password" { "Password (empty: tokens only)" }
                        input id="new-password" name="password" type="password" autocomplete="new-password";
                        label for="new-role" { "Role" }
                        (role_select())
                        label for="new-app" { "On app (empty: everywhere)" }
                        input id="new-app" name="app";
                        button type="submit" { "Add" }
                    }
                }
            }
        }
    };
    // A token shown once must not stay behind in the browser's cache.
    let mut resp = page("Users", Some(csrf), flash, body).into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

fn role_select() -> Markup {
    html! {
        select name="role" aria-label="role" {
            option value="viewer" { "viewer" }
            option value="deployer" { "deployer" }
            option value="admin" { "admin" }
        }
    }
}

/// `POST /tokens`: the new token is shown on the page answered, never put in a URL.
pub(crate) async fn create_token(
    State(d): State_,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (s, c) = match pages::changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let expires_days = match field(&f, "expires_days").map(|d| d.parse::<u32>()) {
        Some(Err(_)) => {
            return pages::back("/users", Err("Expires: give a number of days.".into()));
        }
        Some(Ok(d)) => Some(d),
        None => None,
    };
    let req = CreateToken {
        name: field(&f, "name").unwrap_or_default(),
        user: None,
        expires_days,
        password: s
            .from_password
            .then(|| field(&f, "password").unwrap_or_default()),
    };
    match c.create_token(&req).await {
        Ok(made) => render(&c, &s, Flash::Ok("Token made."), Some(&made)).await,
        Err(e) => pages::back("/users", Err(e.to_string())),
    }
}

/// `POST /tokens/{name}/revoke`
pub(crate) async fn revoke_token(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let (_, c) = match pages::changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.revoke_token(&name, None).await {
        Ok(()) => pages::back("/users", Ok(format!("Token {name} revoked."))),
        Err(e) => pages::back("/users", Err(e.to_string())),
    }
}

/// `POST /users`
pub(crate) async fn create_user(
    State(d): State_,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, c) = match pages::changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req = CreateUser {
        name: field(&f, "name").unwrap_or_default(),
        password: f.get("password").filter(|p| !p.is_empty()).cloned(),
        role: field(&f, "role"),
        app: field(&f, "app"),
    };
    match c.create_user(&req).await {
        Ok(u) => pages::back(
            "/users",
            Ok(format!("User {} added: {}.", u.name, roles(&u))),
        ),
        Err(e) => pages::back("/users", Err(e.to_string())),
    }
}

/// `POST /users/{user}/remove`
pub(crate) async fn remove_user(
    State(d): State_,
    headers: HeaderMap,
    Path(user): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let (_, c) = match pages::changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.remove_user(&user).await {
        Ok(()) => pages::back(
            "/users",
            Ok(format!("User {user} removed with their tokens.")),
        ),
        Err(e) => pages::back("/users", Err(e.to_string())),
    }
}

/// `POST /users/{user}/grant`
pub(crate) async fn grant(
    State(d): State_,
    headers: HeaderMap,
    Path(user): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let (_, c) = match pages::changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let g = RoleGrant {
        role: field(&f, "role").unwrap_or_default(),
        app: field(&f, "app"),
    };
    match c.grant(&user, &g).await {
        Ok(u) => pages::back("/users", Ok(format!("{}: {}.", u.name, roles(&u)))),
        Err(e) => pages::back("/users", Err(e.to_string())),
    }
}

/// `POST /users/{user}/revoke`
pub(crate) async fn revoke(
    State(d): State_,
    headers: HeaderMap,
    Path(user): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let (_, c) = match pages::changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.revoke_role(&user, field(&f, "app").as_deref()).await {
        Ok(u) => pages::back("/users", Ok(format!("{}: {}.", u.name, roles(&u)))),
        Err(e) => pages::back("/users", Err(e.to_string())),
    }
}
