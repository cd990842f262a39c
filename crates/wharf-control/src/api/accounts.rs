//! Users, their roles and tokens: `POST /login` and `/logout`, `/users`, `/tokens`. Who may
//! call each is decided in `authz.rs`; here only "someone else's tokens" is checked, since it
//! depends on the body. Token values appear in one answer only, the one that made them;
//! passwords never leave the request that carried them.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use http::StatusCode;
use wharf_client::dto::{
    CreateToken, CreateUser, LoginRequest, NewToken, RoleGrant, SetPassword, TokenView, UserView,
};
use wharf_store::{Caller, Role, User};

use super::authz;
use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::Control;
use crate::auth;

/// How long a password login's token works.
const SESSION_SECS: i64 = 12 * 3600;
/// Names the operations log uses for what no user did: no user may take them.
const RESERVED: [&str; 2] = [crate::oplog::HOOK, crate::oplog::SYSTEM];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A user or token name: 1 to 63 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit.
fn check_name(what: &str, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} `{name}`: use 1 to 63 of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit"
        )))
    }
}

fn check_password(password: &str) -> ApiResult<()> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(ApiError::invalid(
            "a password needs at least 8 characters (and at most 1024 bytes)",
        ));
    }
    Ok(())
}

fn user_view(u: User) -> UserView {
    UserView {
        name: u.name,
        has_password: u.has_password,
        created_at: u.created_at,
        roles: u
            .grants
            .into_iter()
            .map(|g| RoleGrant {
                role: g.role.to_string(),
                app: g.app,
            })
            .collect(),
    }
}

/// A new random token of `user` stored by its hash; the value is returned once.
fn make_token(
    c: &Control,
    user: &str,
    name: &str,
    kind: &str,
    expires_at: Option<i64>,
) -> ApiResult<NewToken> {
    let token = auth::new_token();
    c.store
        .add_token(user, name, kind, &auth::hash(&token), expires_at)?;
    Ok(NewToken {
        name: name.to_string(),
        user: user.to_string(),
        token,
        expires_at,
    })
}

/// `POST /login`: a fresh session token for a user's name and password (12 hours).
pub(crate) async fn login(
    State(c): State<Arc<Control>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<(StatusCode, Json<NewToken>), axum::response::Response> {
    use axum::response::IntoResponse;
    let wait = auth::LOGINS.wait(&req.user);
    if wait > 0 {
        tracing::info!(user = %req.user, wait, "login refused: too many failed ones");
        let refused = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_logins",
            message: format!("too many failed logins for this user name: try again in {wait} s"),
        };
        let mut resp = refused.into_response();
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(wait),
        );
        return Err(resp);
    }
    let stored = c
        .store
        .password_hash(&req.user)
        .map_err(|e| ApiError::from(e).into_response())?;
    if !auth::verify_password(stored, req.password).await {
        auth::LOGINS.failed(&req.user);
        tracing::info!(user = %req.user, "login refused");
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "wrong user name or password".into(),
        }
        .into_response());
    }
    auth::LOGINS.succeeded(&req.user);
    let name = format!("session-{}", &auth::new_token()[6..14]);
    let made = make_token(&c, &req.user, &name, "session", Some(now() + SESSION_SECS))
        .map_err(IntoResponse::into_response)?;
    tracing::info!(user = %req.user, token = %name, "logged in");
    Ok((StatusCode::CREATED, Json(made)))
}

/// A password login's session token proves less than the password: what outlasts the session
/// (a new token, a new password) asks for the password again.
async fn confirm_password(
    c: &Control,
    caller: &Caller,
    given: Option<String>,
    field: &str,
) -> Result<(), ApiError> {
    let Some(given) = given else {
        return Err(ApiError::forbidden(format!(
            "signed in with a password session: give your password again in {field}"
        )));
    };
    let stored = c.store.password_hash(&caller.user)?;
    if auth::verify_password(stored, given).await {
        Ok(())
    } else {
        Err(ApiError::forbidden("that is not your password"))
    }
}

/// `POST /logout`: revokes the token the request came with.
pub(crate) async fn logout(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<StatusCode> {
    c.store.remove_token(&caller.user, &caller.token)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_users(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(c.store.users()?.into_iter().map(user_view).collect()))
}

/// Checks a role grant's shape: a known role, admin only everywhere, an app that exists.
fn parse_grant(c: &Control, role: &str, app: Option<&str>) -> ApiResult<Role> {
    let role: Role = role.parse().map_err(ApiError::invalid)?;
    if let Some(app) = app {
        if role == Role::Admin {
            return Err(ApiError::invalid(
                "admin is a role everywhere, not on one app; give deployer on the app instead",
            ));
        }
        c.store.app(app)?;
    }
    Ok(role)
}

pub(crate) async fn create_user(
    State(c): State<Arc<Control>>,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    check_name("user name", &req.name)?;
    if RESERVED.contains(&req.name.as_str()) {
        return Err(ApiError::invalid(format!(
            "`{}` names the server's own work in the operations log; choose another name",
            req.name
        )));
    }
    let role = match &req.role {
        Some(r) => Some(parse_grant(&c, r, req.app.as_deref())?),
        None if req.app.is_some() => {
            return Err(ApiError::invalid("give a `role` for the app"));
        }
        None => None,
    };
    let hash = match req.password {
        Some(p) => {
            check_password(&p)?;
            Some(auth::hash_password(p).await.map_err(ApiError::internal)?)
        }
        None => None,
    };
    c.store.add_user_with_grant(
        &req.name,
        hash.as_deref(),
        role.map(|r| (r, req.app.as_deref())),
    )?;
    Ok((
        StatusCode::CREATED,
        Json(user_view(c.store.user(&req.name)?)),
    ))
}

pub(crate) async fn remove_user(
    State(c): State<Arc<Control>>,
    Path(user): Path<String>,
) -> ApiResult<StatusCode> {
    c.store.remove_user(&user)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /users/{user}/password`: one's own, or anyone's for an admin.
pub(crate) async fn set_password(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    ApiJson(req): ApiJson<SetPassword>,
) -> ApiResult<StatusCode> {
    if caller.session && user == caller.user {
        confirm_password(&c, &caller, req.current, "`current`").await?;
    }
    let hash = match req.password {
        Some(p) => {
            check_password(&p)?;
            Some(auth::hash_password(p).await.map_err(ApiError::internal)?)
        }
        None => None,
    };
    c.store.set_password(&user, hash.as_deref())?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /users/{user}/roles`: gives a role everywhere or on one app (replacing the one held
/// there).
pub(crate) async fn grant(
    State(c): State<Arc<Control>>,
    Path(user): Path<String>,
    ApiJson(req): ApiJson<RoleGrant>,
) -> ApiResult<Json<UserView>> {
    let role = parse_grant(&c, &req.role, req.app.as_deref())?;
    c.store.grant(&user, role, req.app.as_deref())?;
    Ok(Json(user_view(c.store.user(&user)?)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppQuery {
    app: Option<String>,
}

/// `DELETE /users/{user}/roles?app=APP`: takes the role everywhere (no `app`) or on the app.
pub(crate) async fn revoke(
    State(c): State<Arc<Control>>,
    Path(user): Path<String>,
    Query(q): Query<AppQuery>,
) -> ApiResult<Json<UserView>> {
    c.store.revoke_grant(&user, q.app.as_deref())?;
    Ok(Json(user_view(c.store.user(&user)?)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserQuery {
    user: Option<String>,
}

/// The user whose tokens a request is about: the caller, or another user for an admin.
fn whose(caller: &Caller, user: Option<String>) -> ApiResult<String> {
    match user {
        Some(u) if u != caller.user => {
            authz::check(caller, &authz::Need::Role(Role::Admin, None))?;
            Ok(u)
        }
        _ => Ok(caller.user.clone()),
    }
}

/// `GET /tokens`: the caller's tokens (`?user=U`: U's, for admins; `?user=*`: everyone's).
pub(crate) async fn list_tokens(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<UserQuery>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let user = whose(&caller, q.user)?;
    let all = user == "*";
    let tokens = c.store.tokens((!all).then_some(user.as_str()))?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| TokenView {
                name: t.name,
                user: t.user,
                kind: t.kind,
                created_at: t.created_at,
                last_used_at: t.last_used_at,
                expires_at: t.expires_at,
            })
            .collect(),
    ))
}

/// `POST /tokens`: a new token of the caller's (or, for admins, of any user).
pub(crate) async fn create_token(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    check_name("token name", &req.name)?;
    let user = whose(&caller, req.user)?;
    if caller.session {
        confirm_password(&c, &caller, req.password, "`password`").await?;
    }
    let asked = match req.expires_days {
        Some(0) => return Err(ApiError::invalid("`expires_days` must be at least 1")),
        Some(d) => Some(now() + i64::from(d.min(3650)) * 86400),
        None => None,
    };
    // A token never outlasts the one that made it: an expiring token cannot make a lasting one.
    let expires_at = match (asked, caller.expires_at) {
        (Some(a), Some(limit)) => Some(a.min(limit)),
        (None, limit) => limit,
        (asked, None) => asked,
    };
    let made = make_token(&c, &user, &req.name, "api", expires_at)?;
    tracing::info!(user = %user, token = %req.name, by = %caller.user, "token created");
    Ok((StatusCode::CREATED, Json(made)))
}

/// `DELETE /tokens/{name}`: revokes one of the caller's tokens (`?user=U`: U's, for admins).
/// It stops working at once.
pub(crate) async fn revoke_token(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<UserQuery>,
) -> ApiResult<StatusCode> {
    let user = whose(&caller, q.user)?;
    c.store.remove_token(&user, &name)?;
    tracing::info!(user = %user, token = %name, by = %caller.user, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
