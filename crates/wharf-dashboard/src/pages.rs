//! One handler per page or form. Reads go through the API client with the session's token;
//! changes check the CSRF token first, then redirect back with the operation's message.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::{Markup, html};
use wharf_client::dto::{
    AddDomain, AppView, ChangeEnv, Changed, CreateApp, DeployEvent, DeployRequest, OperationView,
    Settings,
};
use wharf_client::{AppsQuery, Client, ClientError, OpsQuery};

use crate::layout::{Flash, ago, bytes, csrf_field, page};
use crate::session::{COOKIE_NAME, LIFETIME, Session, same};
use crate::{Dashboard, charts};

pub(crate) type Fields = HashMap<String, String>;
pub(crate) type State_ = State<Arc<Dashboard>>;

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// The session, or a redirect to the login page. (The `Err` is the answer itself; its size does
/// not matter on this path.)
#[allow(clippy::result_large_err)]
pub(crate) fn session(d: &Dashboard, headers: &HeaderMap) -> Result<(Session, Client), Response> {
    let s = d.sessions.get(headers).ok_or_else(to_login)?;
    with_client(d, s)
}

/// The API client acting with the session's token.
#[allow(clippy::result_large_err)]
fn with_client(d: &Dashboard, s: Session) -> Result<(Session, Client), Response> {
    let client =
        Client::new(&d.api, Some(s.token.clone())).map_err(|e| error_page(&e.to_string()))?;
    Ok((s, client))
}

/// A change must echo the session's CSRF token, in the form or the `x-csrf-token` header.
#[allow(clippy::result_large_err)]
pub(crate) fn changing(
    d: &Dashboard,
    headers: &HeaderMap,
    form: &Fields,
) -> Result<(Session, Client), Response> {
    let Some(s) = d.sessions.get(headers) else {
        return Err((
            StatusCode::FORBIDDEN,
            error_markup("You are not logged in (or your session expired): log in again."),
        )
            .into_response());
    };
    if !form.get("csrf").is_some_and(|t| same(t, &s.csrf)) {
        return Err((
            StatusCode::FORBIDDEN,
            error_markup("This form did not come from this dashboard page, or it is stale: reload the page and try again."),
        )
            .into_response());
    }
    with_client(d, s)
}

fn error_markup(message: &str) -> Markup {
    page(
        "Refused",
        None,
        Flash::Err(message),
        html! { p { a href="/" { "Back to the dashboard" } } },
    )
}

pub(crate) fn error_page(message: &str) -> Response {
    (StatusCode::BAD_GATEWAY, error_markup(message)).into_response()
}

/// Back to `to` with the outcome as a message.
pub(crate) fn back(to: &str, outcome: Result<String, String>) -> Response {
    let (key, msg) = match outcome {
        Ok(m) => ("msg", m),
        Err(e) => ("err", e),
    };
    let q: String = url_encode(&msg);
    Redirect::to(&format!("{to}?{key}={q}")).into_response()
}

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub(crate) fn outcome(op: &OperationView) -> Result<String, String> {
    if op.status == "failed" {
        Err(op.message.clone())
    } else {
        Ok(op.message.clone())
    }
}

fn flash(q: &Fields) -> Flash<'_> {
    match (q.get("msg"), q.get("err")) {
        (_, Some(e)) => Flash::Err(e),
        (Some(m), _) => Flash::Ok(m),
        _ => Flash::None,
    }
}

pub(crate) fn state_badge(state: &str) -> Markup {
    html! { span class={"state " (state)} { (state) } }
}

/// States that mean something is wrong: shown in red, with their reason next to them.
pub(crate) fn is_bad(state: &str) -> bool {
    matches!(
        state,
        "failed" | "crashed" | "backoff" | "crit" | "error" | "unreachable"
    )
}

/// A state badge, and for a bad state the reason in red text beside it (first line only; the
/// whole reason is the tooltip).
pub(crate) fn state_with_reason(state: &str, reason: Option<&str>) -> Markup {
    let reason = reason
        .map(str::trim)
        .filter(|r| !r.is_empty() && is_bad(state));
    html! {
        (state_badge(state))
        @if let Some(r) = reason {
            " " span.bad.reason title=(r) { (r.lines().next().unwrap_or(r)) }
        }
    }
}

/// A time as a short "… ago", with the exact UTC time as its tooltip and `datetime`.
pub(crate) fn when(now: i64, t: i64) -> Markup {
    html! { time datetime=(iso(t)) title=(iso(t)) { (ago(now, t)) } }
}

/// `2026-11-26T20:57:21Z`, from Unix seconds (the CLI's dates come from jiff too).
pub(crate) fn iso(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| "–".to_string(), |ts| ts.to_string())
}

/// A duration such as `4.2 s`, `3 min 5 s` or `2 h 10 min`.
pub(crate) fn took(secs: i64) -> String {
    match secs.max(0) {
        s @ 0..=59 => format!("{s} s"),
        s @ 60..=3599 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

// ---- login ----

pub(crate) async fn login_form(State(d): State_, headers: HeaderMap) -> Response {
    if d.sessions.get(&headers).is_some() {
        return Redirect::to("/").into_response();
    }
    login_page(None).into_response()
}

fn login_page(error: Option<&str>) -> Markup {
    let flash = error.map_or(Flash::None, Flash::Err);
    page(
        "Log in",
        None,
        flash,
        html! {
            section.card.login {
                h1 { "Log in to wharf" }
                // One form: a user name and password, or else an API token.
                form.stack method="post" action="/login" {
                    label for="user" { "User" }
                    input id="user" name="user" autocomplete="username" autofocus;
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password";
                    label for="token" { "or an API token" }
                    input id="token" name="token" type="password" autocomplete="off";
                    p.muted { "The first token is in " code { "wharf-data/admin.token" } "." }
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

pub(crate) async fn login(State(d): State_, headers: HeaderMap, Form(f): Form<Fields>) -> Response {
    // A page elsewhere must not log the browser in (as its author, whose account would then
    // receive what the user types): browsers name the page a form came from.
    if headers.contains_key(header::ORIGIN) && !crate::terminal::same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "a login from another site is refused",
        )
            .into_response();
    }
    let refused = |msg: &str| (StatusCode::UNAUTHORIZED, login_page(Some(msg))).into_response();
    let user = f.get("user").map(|u| u.trim()).unwrap_or_default();
    let (token, from_password) = if !user.is_empty() {
        // A password login: the API makes a session token of the user's.
        let password = f.get("password").map(String::as_str).unwrap_or_default();
        let made = match Client::new(&d.api, None) {
            Ok(c) => c.login(user, password).await,
            Err(e) => Err(e),
        };
        match made {
            Ok(t) => (t.token, true),
            Err(e) if e.is_unauthorized() => return refused("Wrong user name or password."),
            Err(e) => return refused(&e.to_string()),
        }
    } else {
        let token = f
            .get("token")
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        if token.is_empty() {
            return refused("Give your user name and password, or paste an API token.");
        }
        let checked = match Client::new(&d.api, Some(token.clone())) {
            Ok(c) => c.status_summary().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            if e.is_unauthorized() {
                return refused("That token is not valid.");
            }
            return refused(&e.to_string());
        }
        (token, false)
    };
    let id = d.sessions.create(token, from_password);
    let cookie = format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if behind_https(&headers) {
            "; Secure"
        } else {
            ""
        }
    );
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

pub(crate) async fn logout(
    State(d): State_,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (s, client) = match changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if s.from_password {
        // The session token is of no use to anyone after this: revoke it (if that fails, it
        // still ends by itself).
        let _ = client.logout().await;
    }
    d.sessions.remove(&headers);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("wharf_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

// ---- overview ----

/// Apps per page of the overview.
const APPS_PER_PAGE: u32 = 50;
/// Operations per page of the operations list.
const OPS_PER_PAGE: u32 = 100;

/// The query string of a dashboard page: `params` with empty values left out.
fn page_query(params: &[(&str, Option<&str>)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", url_encode(v)))
        })
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// "Previous" and "Next" links, each shown only when there is such a page.
fn pager(prev: Option<String>, next: Option<String>) -> Markup {
    html! {
        @if prev.is_some() || next.is_some() {
            nav.pager aria-label="Pages" {
                @if let Some(p) = prev { a rel="prev" href=(p) { "← Previous" } }
                @if let Some(n) = next { a rel="next" href=(n) { "Next →" } }
            }
        }
    }
}

/// The apps, a page at a time (`after` / `before` a name), with a search on the name (`q`):
/// the page asks the API for these apps only, so it stays quick with thousands of them.
pub(crate) async fn overview(
    State(d): State_,
    headers: HeaderMap,
    Query(q): Query<Fields>,
) -> Response {
    let (s, client) = match session(&d, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let get = |k: &str| {
        q.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let search = get("q");
    let query = AppsQuery {
        limit: Some(APPS_PER_PAGE),
        q: search.clone(),
        after: get("after"),
        before: get("before"),
        ..Default::default()
    };
    let (status, list) = tokio::join!(client.status_summary(), client.apps_page(&query));
    let (status, list) = match (status, list) {
        (Ok(st), Ok(p)) => (st, p),
        (Err(e), _) | (_, Err(e)) => return error_page(&e.to_string()),
    };
    let link = |cursor: &str, app: Option<&AppView>| {
        app.map(|a| page_query(&[("q", search.as_deref()), (cursor, Some(&a.name))]))
            .map(|q| format!("/{q}"))
    };
    let prev = list
        .prev
        .is_some()
        .then(|| link("before", list.items.first()))
        .flatten();
    let next = list
        .next
        .is_some()
        .then(|| link("after", list.items.last()))
        .flatten();
    let apps = &list.items;
    let body = html! {
        h1 { "Apps" }
        section.card {
            form.search method="get" action="/" role="search" {
                input type="search" name="q" value=[search.as_deref()] placeholder="Search apps by name" aria-label="Search apps by name";
                button.secondary type="submit" { "Search" }
                @if search.is_some() { a href="/" { "Clear" } }
            }
            @if status.app_count == 0 {
                p.muted { "No apps yet. Create the first one below." }
            } @else if apps.is_empty() {
                p.muted {
                    @if let Some(q) = &search { "No app name contains “" (q) "”." } @else { "No apps on this page." }
                }
            } @else {
                p.muted {
                    @match (&search, list.total) {
                        (Some(q), Some(n)) => { (n) " of " (status.app_count) " apps match “" (q) "”" }
                        _ => { (status.app_count) " apps" }
                    }
                }
                div.scroll { table {
                    thead { tr { th { "App" } th { "State" } th { "Address" } th.opt { "Release" } th { "Req/s" } th.opt { "CPU time" } th.opt { "Memory" } } }
                    tbody {
                        @for a in apps {
                            tr {
                                td { a href={"/apps/" (a.name)} { (a.name) } br; span.muted { (a.kind) } }
                                td { (state_with_reason(&a.state, a.failure.as_deref().or_else(|| instance_reason(a)))) }
                                td.msg { a href=(a.url) { (a.url) } @if a.hosts.len() > 1 { br; span.muted { "+" (a.hosts.len() - 1) " more" } } }
                                td.opt { @if let Some(r) = a.release { "#" (r) } @else { span.muted { "–" } } }
                                td { (a.requests_per_second.map_or_else(|| "–".to_string(), |r| format!("{r:.1}"))) }
                                td.opt { (cpu(a)) }
                                td.opt { (bytes(rss(a))) }
                            }
                        }
                    }
                } }
            }
            (pager(prev, next))
        }
        section.card {
            h2 { "Create an app" }
            form.row method="post" action="/apps" {
                (csrf_field(&s.csrf))
                label { "Name" input name="name" required pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="63" placeholder="blog"; }
                label { "Kind" select name="kind" { option value="process" { "process" } option value="static" { "static" } } }
                label { "Git repository (optional)" input name="git_url" placeholder="https://… or file:///…"; }
                label { "Run command (optional)" input name="run" placeholder="node server.js"; }
                button type="submit" { "Create" }
            }
        }
        p.muted { "wharf " (status.version) " · gateway " (status.gateway) " · up " (status.uptime_seconds) " s · server memory " (bytes(status.rss_bytes)) }
    };
    page("Apps", Some(&s.csrf), flash(&q), body).into_response()
}

/// Why an instance is failing, when one is: its last exit.
fn instance_reason(a: &AppView) -> Option<&str> {
    a.instances
        .iter()
        .find(|i| is_bad(&i.state))
        .and_then(|i| i.last_exit.as_deref())
}

pub(crate) fn cpu(a: &AppView) -> String {
    let total: f64 = a.instances.iter().filter_map(|i| i.cpu_seconds).sum();
    if a.instances.is_empty() {
        "–".into()
    } else {
        format!("{total:.1} s")
    }
}

pub(crate) fn rss(a: &AppView) -> Option<u64> {
    let v: Vec<u64> = a.instances.iter().filter_map(|i| i.rss_bytes).collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

pub(crate) async fn create_app(
    State(d): State_,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, client) = match changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = f.get("name").cloned().unwrap_or_default();
    let git = f
        .get("git_url")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let req = CreateApp {
        name: name.clone(),
        kind: f.get("kind").cloned(),
        settings: Settings {
            git_url: git,
            run: f
                .get("run")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            ..Default::default()
        },
        domains: Vec::new(),
        env: Default::default(),
    };
    match client.create_app(&req).await {
        Ok(c) => back(&format!("/apps/{}", c.app.name), outcome(&c.operation)),
        Err(e) => back("/", Err(e.to_string())),
    }
}

// ---- one app ----

pub(crate) async fn app(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    let (s, client) = match session(&d, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let a = match client.app(&name).await {
        Ok(a) => a,
        Err(e) => return back("/", Err(e.to_string())),
    };
    let (releases, ops, logs, traffic) = tokio::join!(
        client.releases(&name),
        client.operations(Some(&name), 10),
        client.logs(&name, 100),
        client.traffic(&name)
    );
    let points = traffic.map(|t| t.points).unwrap_or_default();
    let releases = releases.unwrap_or_default();
    let ops = ops.unwrap_or_default();
    let logs = logs.unwrap_or_default();
    let t = now();
    let csrf = s.csrf.as_str();
    let base = format!("/apps/{}", a.name);
    // A static app, or a process app whose release is a static site and that has no command.
    let is_static = a.kind == "static" || a.state == "static";
    let live_run = a
        .release
        .and_then(|n| releases.iter().find(|r| r.number == n))
        .and_then(|r| r.run.clone());
    let body = html! {
        h1 { (a.name) " " (state_badge(&a.state)) }
        @if let Some(why) = &a.failure {
            pre.failure role="alert" { (why) }
        } @else if let Some(why) = instance_reason(&a) {
            pre.failure role="alert" { "An instance is " (a.instances.iter().find(|i| is_bad(&i.state)).map_or("failing", |i| i.state.as_str())) ": " (why) }
        }
        div.grid {
            section.card {
                h2 { "Overview" }
                dl.kv {
                    dt { "Address" } dd { a href=(a.url) { (a.url) } }
                    dt { "Kind" } dd { @if is_static { span.state.static { "static site" } } @else { (a.kind) } }
                    @if let Some(root) = &a.root { dt { "Serves" } dd { code { (root) } } }
                    @if a.runtime != "process" {
                        dt { "Runtime" } dd { (a.runtime) " (port " (a.port.unwrap_or(8000)) @if a.read_only { ", read-only root" } ")" }
                    }
                    @if let Some(node) = &a.node { dt { "Node" } dd { (node) } }
                    dt { "Release" } dd { @if let Some(r) = a.release { "#" (r) } @else { "none deployed" } }
                    @if !is_static {
                        dt { "Instances" } dd { (a.instances.len()) " of " (a.replicas) }
                        dt { "CPU time" } dd { (cpu(&a)) }
                        dt { "Memory" } dd { (bytes(rss(&a))) @if let Some(m) = a.memory_bytes { " of " (bytes(Some(m))) } }
                    }
                    @if let Some(note) = &a.limits_note { dt { "Limits" } dd.muted { (note) } }
                    @if a.runtime == "process" && a.node.is_none() {
                        @if let Some(sandbox) = &a.sandbox_status { dt { "Sandbox" } dd { (sandbox) } }
                        @if let Some(uid) = a.uid { dt { "User" } dd { "uid " (uid) " (the app's own)" } }
                        @else if let Some(why) = &a.users_note { dt { "User" } dd.muted { "per-app users: off (" (why) ")" } }
                    }
                }
                @if is_static {
                    p.muted { "A static site: the gateway serves its files; there are no instances to restart." }
                } @else {
                    div.actions {
                        form.inline method="post" action={(base) "/restart"} {
                            (csrf_field(csrf)) button.secondary type="submit" { "Restart" }
                        }
                        a.button.secondary href={(base) "/terminal"} { "Terminal" }
                    }
                }
            }
            section.card {
                h2 { "Deploy" }
                form.stack method="post" action={(base) "/deploy"} data-deploy data-releases={(base) "/releases/"} {
                    (csrf_field(csrf))
                    label for="git" { "Git repository" }
                    input id="git" name="git" value=(a.git_url.clone().unwrap_or_default()) placeholder="https://… or file:///…";
                    label for="ref" { "Branch, tag or commit" }
                    input id="ref" name="ref" value=(a.git_ref.clone().unwrap_or_default()) placeholder="main";
                    @if a.runtime != "process" {
                        label for="image" { "Or an image" }
                        input id="image" name="image" placeholder="name:tag (instead of git)";
                    }
                    button type="submit" { "Deploy" }
                }
                p id="deploy-status" role="status" {}
                pre.log id="deploy-log" hidden aria-live="polite" {}
                p.deploy-links id="deploy-links" hidden {}
            }
        }
        @if !is_static {
            section.card {
                h2 { "Instances" }
                (instances_table(&a))
            }
        }
        section.card {
            h2 { "Traffic" }
            div.grid {
                (charts::line("Requests", "req/s", &points.iter().map(|p| (p.at, Some(p.requests_per_second))).collect::<Vec<_>>(), t))
                (charts::line("Mean latency", "ms", &points.iter().map(|p| (p.at, p.mean_latency_ms)).collect::<Vec<_>>(), t))
                (charts::line("Errors (5xx)", "/s", &points.iter().map(|p| (p.at, Some(p.errors_per_second))).collect::<Vec<_>>(), t))
            }
        }
        section.card {
            h2 { "Releases" }
            @if releases.is_empty() { p.muted { "Nothing deployed yet." } } @else {
                div.scroll { table {
                    thead { tr { th { "Release" } th { "Status" } th.opt { "Commit" } th { "Source" } th.opt { "When" } th {} } }
                    tbody { @for r in &releases {
                        tr {
                            td { a href={(base) "/releases/" (r.number)} aria-label={"Release " (r.number)} { "#" (r.number) } }
                            td { (state_badge(&r.status)) @if !r.message.is_empty() { br; span class=(if is_bad(&r.status) { "bad" } else { "muted" }) { (r.message) } } }
                            td.opt { code { (r.commit.as_deref().map_or("–", |c| &c[..c.len().min(7)])) } }
                            td { (r.source) }
                            td.opt { (when(t, r.created_at)) }
                            td { @if r.status == "ready" {
                                form.inline method="post" action={(base) "/rollback"} {
                                    (csrf_field(csrf))
                                    input type="hidden" name="release" value=(r.number);
                                    button.secondary type="submit" aria-label={"Roll back to release " (r.number)} { "Roll back to #" (r.number) }
                                }
                            } }
                        }
                    } }
                } }
            }
        }
        section.card {
            h2 { "Logs" }
            pre.log id="app-logs" data-live={(base) "/logs/live"} aria-live="off" { (logs) }
        }
        div.grid {
            section.card {
                h2 { "Domains" }
                ul { @for h in &a.hosts {
                    li { (h)
                        @if let Some(tls) = a.tls.get(h) { " " span.state { "tls " (tls) } }
                        @if a.domains.contains(h) {
                            " "
                            form.inline method="post" action={(base) "/domains/remove"} {
                                (csrf_field(csrf)) input type="hidden" name="host" value=(h);
                                button.danger type="submit" aria-label={"Remove " (h)} { "Remove" }
                            }
                        }
                    }
                } }
                form.row method="post" action={(base) "/domains"} {
                    (csrf_field(csrf))
                    label { "Host name" input name="host" required placeholder="blog.example.com"; }
                    label { "HTTPS" select name="tls" { option value="none" { "none" } option value="acme" { "ACME" } option value="self-signed" { "self-signed" } } }
                    button type="submit" { "Add" }
                }
            }
            section.card {
                h2 { "Environment" }
                p.muted { "Values are write-only: only names are shown." }
                ul { @for n in &a.env {
                    li { code { (n) } " "
                        form.inline method="post" action={(base) "/env/unset"} {
                            (csrf_field(csrf)) input type="hidden" name="name" value=(n);
                            button.danger type="submit" aria-label={"Unset " (n)} { "Unset" }
                        }
                    }
                } }
                form.row method="post" action={(base) "/env"} {
                    (csrf_field(csrf))
                    label { "Name" input name="name" required placeholder="DATABASE_URL"; }
                    label { "Value" input name="value" type="password" autocomplete="off"; }
                    button type="submit" { "Set" }
                }
            }
        }
        (crate::settings::settings_card(&a, csrf, live_run.as_deref()))
        section.card {
            h2 { "Operations" }
            (ops_table(&ops, t))
        }
        (crate::settings::delete_card(&a, csrf))
    };
    page(&a.name, Some(csrf), flash(&q), body).into_response()
}

fn ops_table(ops: &[OperationView], t: i64) -> Markup {
    html! {
        @if ops.is_empty() { p.muted { "Nothing yet." } } @else {
            div.scroll { table {
                thead { tr { th { "When" } th.opt { "Took" } th { "App" } th { "What" } th.opt { "By" } th { "Result" } } }
                tbody { @for o in ops {
                    tr {
                        td { (when(t, o.started_at)) }
                        td.opt { @match o.finished_at { Some(f) => (took(f - o.started_at)), None => span.muted { "running" } } }
                        td { @match &o.app { Some(app) => a href={"/apps/" (app)} { (app) }, None => "–" } }
                        td { (o.kind) }
                        td.opt { @if o.actor.is_empty() { span.muted { "–" } } @else { (o.actor) } }
                        td.msg { (state_badge(if o.status == "running" { "running-op" } else { &o.status })) " " span class=(if o.status == "failed" { "bad" } else { "" }) { (o.message) } }
                    }
                } }
            } }
        }
    }
}

/// Each instance of a process app: its state (with why, when it failed), CPU, memory, restarts
/// and last exit.
fn instances_table(a: &AppView) -> Markup {
    html! {
        @if a.instances.is_empty() {
            p.muted { @if a.replicas == 0 { "Scaled to zero: nothing runs." } @else { "Nothing runs." } }
        } @else {
            div.scroll { table.instances {
                thead { tr {
                    th { "Instance" } th { "State" } th { "CPU" } th { "Memory" } th { "Restarts" }
                    th { "Last exit" } th.opt { @if a.runtime == "process" { "PID" } @else { "Container" } } th.opt { "Address" } th.opt { "Up" }
                } }
                tbody { @for i in &a.instances {
                    tr {
                        td { (i.name) }
                        td { (state_with_reason(&i.state, i.last_exit.as_deref())) }
                        td { (i.cpu_seconds.map_or("–".to_string(), |c| format!("{c:.1} s"))) }
                        td { (bytes(i.rss_bytes)) @if let Some(m) = a.memory_bytes { span.muted { " / " (bytes(Some(m))) } } }
                        td { (i.restarts) }
                        td { @if let Some(e) = &i.last_exit { span class=(if is_bad(&i.state) { "bad" } else { "muted" }) { (e) } } @else { span.muted { "–" } } }
                        td.opt { @if let Some(id) = &i.id { (id.chars().take(12).collect::<String>()) } @else if let Some(pid) = i.pid { (pid) } @else { "–" } }
                        td.opt { (i.addr.clone().unwrap_or_else(|| "–".into())) @if let Some(node) = &i.node { " on " (node) } }
                        td.opt { (i.uptime_seconds.map_or("–".to_string(), |u| took(u as i64))) }
                    }
                } }
            } }
        }
    }
}

/// The operations log, newest first, a page at a time (`before` an id).
pub(crate) async fn operations(
    State(d): State_,
    headers: HeaderMap,
    Query(q): Query<Fields>,
) -> Response {
    let (s, client) = match session(&d, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let before = match q
        .get("before")
        .filter(|b| !b.is_empty())
        .map(|b| b.parse::<i64>())
    {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(_)) => return back("/operations", Err("`before` is an operation number".into())),
    };
    let query = OpsQuery {
        limit: Some(OPS_PER_PAGE),
        before,
        ..Default::default()
    };
    let page = match client.operations_page(&query).await {
        Ok(p) => p,
        Err(e) => return error_page(&e.to_string()),
    };
    let next = page
        .next
        .is_some()
        .then(|| {
            page.items
                .last()
                .map(|o| format!("/operations?before={}", o.id))
        })
        .flatten();
    // Back to the newest: keyset pages are walked from the top.
    let first = before.is_some().then(|| "/operations".to_string());
    page_response(
        "Operations",
        &s.csrf,
        flash(&q),
        html! {
            h1 { "Operations" }
            section.card {
                (ops_table(&page.items, now()))
                @if first.is_some() || next.is_some() {
                    nav.pager aria-label="Pages" {
                        @if let Some(f) = first { a href=(f) { "↑ Newest" } }
                        @if let Some(n) = next { a rel="next" href=(n) { "Older →" } }
                    }
                }
            }
        },
    )
}

fn page_response(title: &str, csrf: &str, flash: Flash<'_>, body: Markup) -> Response {
    page(title, Some(csrf), flash, body).into_response()
}

/// Backups: each schedule's freshness (crit in red, with why), the databases, the latest
/// backups, and alerts that could not be sent.
pub(crate) async fn backups(State(d): State_, headers: HeaderMap) -> Response {
    let (s, client) = match session(&d, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (check, list, dbs) = match tokio::try_join!(
        client.backups_check(),
        client.backups(None, false),
        client.databases()
    ) {
        Ok(v) => v,
        Err(e) => return error_page(&e.to_string()),
    };
    let t = now();
    let size =
        |b: Option<u64>| b.map_or("–".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6));
    page(
        "Backups",
        Some(&s.csrf),
        Flash::None,
        html! {
            h1 { "Backups " (state_badge(&check.level)) }
            section.card {
                h2 { "Schedules" }
                @if check.schedules.is_empty() {
                    p.muted { "No schedule yet: " code { "wharf backups schedule add APP_OR_DB" } }
                } @else {
                    div.scroll { table {
                        thead { tr { th { "Schedule" } th { "Target" } th { "Freshness" } th { "Newest verified" } th.opt { "Next run" } } }
                        tbody { @for f in &check.schedules {
                            tr {
                                td { (f.schedule) }
                                td { (f.target) }
                                td { (state_badge(&f.level)) @if let Some(e) = &f.last_error { " " span.bad { (e) } } }
                                td { (f.newest_verified.map_or("never".to_string(), |v| ago(t, v))) }
                                td.opt { (f.next_run.map_or("–".to_string(), |n| format!("in {} min", (n - t).max(0) / 60))) }
                            }
                        } }
                    } }
                }
                @for a in &check.unsent_alerts {
                    p.flash.err role="alert" { "Alert not sent: " (a.subject) }
                }
            }
            section.card {
                h2 { "Databases" }
                @if dbs.is_empty() {
                    p.muted { "None: " code { "wharf db create NAME --engine postgres" } }
                } @else {
                    div.scroll { table {
                        thead { tr { th { "Name" } th { "Engine" } th { "State" } th.opt { "Port" } } }
                        tbody { @for db in &dbs {
                            tr { td { (db.name) } td { (db.engine) } td { (state_badge(&db.state)) } td.opt { (db.port) } }
                        } }
                    } }
                }
            }
            section.card {
                h2 { "Latest backups" }
                @if list.is_empty() { p.muted { "Nothing yet." } } @else {
                    div.scroll { table {
                        thead { tr { th { "Taken" } th { "Target" } th { "State" } th.opt { "Size" } th.opt { "Added" } th { "Note" } } }
                        tbody { @for b in list.iter().take(50) {
                            tr {
                                td { (when(t, b.started_at)) }
                                td { (b.target) }
                                td { (state_with_reason(&b.state, b.error.as_deref())) }
                                td.opt { (size(b.total_bytes)) }
                                td.opt { (size(b.added_bytes)) }
                                td { (b.error.as_deref().unwrap_or(&b.note)) }
                            }
                        } }
                    } }
                }
            }
        },
    )
    .into_response()
}

/// Streams the build output as plain text, ending with `✓ message` or `✗ message`.
pub(crate) async fn deploy(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let (_, client) = match changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let pick = |k: &str| {
        f.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    // An image replaces the code: the git fields come prefilled with the app's own.
    let image = pick("image");
    let req = DeployRequest {
        git: pick("git").filter(|_| image.is_none()),
        reference: pick("ref").filter(|_| image.is_none()),
        image,
    };
    let events = match client.deploy(&name, &req, None).await {
        Ok(e) => e,
        Err(e) => return text(format!("✗ {e}\n")),
    };
    let lines = events.map(|ev| {
        Ok::<_, Infallible>(match ev {
            Ok(DeployEvent::Log(line)) => format!("{line}\n"),
            Ok(DeployEvent::Done(op)) => match outcome(&op) {
                Ok(m) => format!("✓ {m}\n"),
                Err(m) => format!("✗ {m}\n"),
            },
            Err(e) => format!("✗ {e}\n"),
        })
    });
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn text(s: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], s).into_response()
}

/// Carries out one change of app `name` (after the CSRF check) and goes back to its page with the
/// operation's message.
pub(crate) async fn change_app<F, Fut>(
    d: &Dashboard,
    headers: &HeaderMap,
    name: &str,
    f: &Fields,
    call: F,
) -> Response
where
    F: FnOnce(Client, String) -> Fut,
    Fut: std::future::Future<Output = Result<Changed, ClientError>>,
{
    let (_, client) = match changing(d, headers, f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let to = format!("/apps/{name}");
    match call(client, name.to_string()).await {
        Ok(c) => back(&to, outcome(&c.operation)),
        Err(e) => back(&to, Err(e.to_string())),
    }
}

fn field(f: &Fields, key: &str) -> String {
    f.get(key).cloned().unwrap_or_default()
}

pub(crate) async fn rollback(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let release = f.get("release").and_then(|r| r.parse().ok());
    change_app(&d, &headers, &name, &f, |c, name| async move {
        c.rollback(&name, release).await
    })
    .await
}

pub(crate) async fn add_domain(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let body = AddDomain {
        host: field(&f, "host"),
        // "none" is passed on: for a domain the app has, it turns HTTPS off.
        tls: f.get("tls").cloned(),
        cert_pem: None,
        key_pem: None,
    };
    change_app(&d, &headers, &name, &f, |c, name| async move {
        c.add_domain_with(&name, &body).await
    })
    .await
}

pub(crate) async fn remove_domain(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let host = field(&f, "host");
    change_app(&d, &headers, &name, &f, |c, name| async move {
        c.remove_domain(&name, &host).await
    })
    .await
}

pub(crate) async fn set_env(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let mut req = ChangeEnv {
        set: Default::default(),
        unset: Vec::new(),
    };
    req.set.insert(field(&f, "name"), field(&f, "value"));
    change_app(&d, &headers, &name, &f, |c, name| async move {
        c.change_env(&name, &req).await
    })
    .await
}

pub(crate) async fn unset_env(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let req = ChangeEnv {
        set: Default::default(),
        unset: vec![field(&f, "name")],
    };
    change_app(&d, &headers, &name, &f, |c, name| async move {
        c.change_env(&name, &req).await
    })
    .await
}

pub(crate) async fn restart(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    change_app(&d, &headers, &name, &f, |c, name| async move {
        c.action(&name, "restart").await
    })
    .await
}

/// New log lines as server-sent events (the page already shows the tail).
pub(crate) async fn live_logs(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let (_, client) = match session(&d, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let stream = match client.follow_logs(&name, 0).await {
        Ok(s) => s,
        Err(e) => return error_page(&e.to_string()),
    };
    // Whole lines only: a line the API sent in two chunks is still one event.
    let events = stream.filter_map(|line| async move {
        let line = String::from_utf8_lossy(&line.ok()?).trim_end().to_string();
        (!line.is_empty()).then(|| Ok::<_, Infallible>(Event::default().data(line)))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

pub(crate) async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/app.css"),
    )
}

pub(crate) async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/app.js"),
    )
}

/// Reached through wharf's gateway over HTTPS (it sets `X-Forwarded-Proto`).
fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_and_durations_as_people_say_them() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso(1_795_728_032), "2026-11-26T21:20:32Z");
        assert_eq!(took(4), "4 s");
        assert_eq!(took(185), "3 min 5 s");
        assert_eq!(took(7_800), "2 h 10 min");
        assert_eq!(took(-3), "0 s");
    }

    #[test]
    fn bad_states_show_their_reason_and_others_do_not() {
        let failed = state_with_reason("failed", Some("exited with 1\nmore")).into_string();
        assert!(failed.contains("class=\"state failed\""), "{failed}");
        assert!(failed.contains("exited with 1</span>"), "{failed}");
        let running = state_with_reason("running", Some("old exit")).into_string();
        assert!(!running.contains("old exit"), "{running}");
    }
}
