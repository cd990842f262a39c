//! Apps and everything hanging off them: domains, env, start/stop/restart, scale. A change is
//! stored first (refused input stores nothing), then carried out by the reconciler under an
//! operation whose outcome comes back with the app.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::json;
use wharf_client::dto::{
    AddDomain, AppView, ChangeEnv, Changed, CreateApp, OperationView, Scale, Settings,
};
use wharf_store::{
    AppFilter, AppKind, AppSettings, Availability, NameCursor, Tls, validate_app_name,
    validate_env_name,
};

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use super::{paging, validate, views};
use crate::Control;
use crate::oplog::OpLog;
use wharf_store::Caller;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<u32>,
    after: Option<String>,
    before: Option<String>,
    prefix: Option<String>,
    q: Option<String>,
    kind: Option<String>,
    state: Option<String>,
}

const LIST_PARAMS: &str = "limit, after, before, prefix, q, kind and state";

/// `GET /apps`: a page of apps in name order (see `paging.rs` for the conventions). `state`
/// is computed from what runs, so it filters while scanning the store in name order, a batch
/// at a time, until the page is full; its total is not counted (it would mean a full scan).
/// A user with roles on single apps only sees those apps (filtered in the store's query).
pub(crate) async fn list(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| paging::bad_query(e, LIST_PARAMS))?;
    let limit = paging::limit(q.limit, 100)?;
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let (after, before) = (nonempty(q.after), nonempty(q.before));
    let cursor = match (&after, &before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `after` (the next page) or `before` (the previous one), not both",
            ));
        }
        (Some(a), None) => NameCursor::After(a),
        (None, Some(b)) => NameCursor::Before(b),
        (None, None) => NameCursor::Start,
    };
    let filter = AppFilter {
        prefix: nonempty(q.prefix),
        // Names are lower case: a search typed with capitals still finds them.
        contains: nonempty(q.q).map(|s| s.to_lowercase()),
        kind: nonempty(q.kind.clone())
            .map(|k| {
                k.parse::<AppKind>()
                    .map_err(|e| ApiError::bad_request(format!("`kind`: {e}")))
            })
            .transpose()?,
        visible_to: (!super::authz::global(&caller)).then(|| caller.user.clone()),
    };
    let state = nonempty(q.state);
    if let Some(s) = &state
        && !views::STATES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "`state`: `{s}` is not one of: {}",
            views::STATES.join(", ")
        )));
    }
    let running = views::running(&c).await;
    let keep = |a: &wharf_store::App| {
        state
            .as_deref()
            .is_none_or(|s| views::state_of(&c, a, &running) == s)
    };
    let batch = if state.is_some() {
        (limit + 1).max(100)
    } else {
        limit + 1
    };
    let (mut apps, more) = scan_apps(&c, &filter, cursor, limit, batch, &keep)?;
    let (has_prev, has_next) = match cursor {
        NameCursor::Before(_) => {
            apps.reverse();
            let next = match apps.last() {
                Some(l) => !scan_apps(&c, &filter, NameCursor::After(&l.name), 1, batch, &keep)?
                    .0
                    .is_empty(),
                None => false,
            };
            (more, next)
        }
        NameCursor::After(_) => {
            let prev = match apps.first() {
                Some(f) => !scan_apps(&c, &filter, NameCursor::Before(&f.name), 1, batch, &keep)?
                    .0
                    .is_empty(),
                None => false,
            };
            (prev, more)
        }
        NameCursor::Start => (false, more),
    };
    let params = |cursor: (&'static str, String)| {
        let mut p = vec![
            ("limit", Some(limit.to_string())),
            ("prefix", filter.prefix.clone()),
            ("q", filter.contains.clone()),
            ("kind", filter.kind.map(|k| k.to_string())),
            ("state", state.clone()),
        ];
        p.push((cursor.0, Some(cursor.1)));
        p
    };
    let mut links = Vec::new();
    if let (true, Some(l)) = (has_next, apps.last()) {
        links.push(paging::link(
            "/api/v1/apps",
            &params(("after", l.name.clone())),
            "next",
        ));
    }
    if let (true, Some(f)) = (has_prev, apps.first()) {
        links.push(paging::link(
            "/api/v1/apps",
            &params(("before", f.name.clone())),
            "prev",
        ));
    }
    let total = match state {
        Some(_) => None,
        None => Some(c.store.count_apps(&filter)?),
    };
    let views = views::apps_with(&c, &apps, &running);
    Ok(paging::respond(views, links, total))
}

/// Up to `limit` apps from `cursor` on that match `filter` and `keep`, read from the store
/// `batch` at a time, and whether more follow. With `batch` above `limit`, one read answers
/// both when nothing is filtered out.
fn scan_apps(
    c: &Control,
    filter: &AppFilter,
    cursor: NameCursor<'_>,
    limit: u32,
    batch: u32,
    keep: &dyn Fn(&wharf_store::App) -> bool,
) -> ApiResult<(Vec<wharf_store::App>, bool)> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let here = match (&from, cursor) {
            (None, first) => first,
            (Some(n), NameCursor::Before(_)) => NameCursor::Before(n),
            (Some(n), _) => NameCursor::After(n),
        };
        let rows = c.store.apps_page(filter, here, batch)?;
        let full = rows.len() == batch as usize;
        from = rows.last().map(|a| a.name.clone());
        for a in rows {
            if keep(&a) {
                if out.len() == limit as usize {
                    return Ok((out, true));
                }
                out.push(a);
            }
        }
        if !full {
            return Ok((out, false));
        }
    }
}

pub(crate) async fn show(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
) -> ApiResult<Json<AppView>> {
    Ok(Json(views::app(&c, &c.store.app(&app)?).await))
}

pub(crate) async fn create(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateApp>,
) -> ApiResult<(StatusCode, Json<Changed>)> {
    validate_app_name(&req.name).map_err(ApiError::invalid)?;
    let kind = validate::kind(req.kind.as_deref())?;
    if let Some(what) = super::authz::admin_only(&req.settings) {
        super::authz::check_admin_setting(&caller, what)?;
    }
    let mut settings = validate::settings(&req.settings, kind)?;
    check_runtime(&c, &settings)?;
    let domains = req
        .domains
        .iter()
        .map(|d| {
            validate::domain(d, &c.reconciler.routing().base_domain, |n| {
                app_exists(&c, n)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let default_host = c.reconciler.default_host(&req.name);
    if let Some(owner) = c.store.domain_owner(&default_host)? {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: format!("`{default_host}` is already a domain of app \"{owner}\""),
        });
    }
    check_env(
        &req.env.keys().cloned().collect::<Vec<_>>(),
        req.env.values(),
    )?;
    if settings.replicas.is_none() {
        settings.replicas = Some(1);
    }
    let volume = c.data.volume(&req.name);
    let kept = std::fs::read_dir(&volume).is_ok_and(|mut d| d.next().is_some());
    c.store
        .create_app(&req.name, kind, &settings, &domains, &req.env)?;
    if let Err(e) = prepare_folders(&c, &req.name, kind, &settings) {
        // Without its folders the app cannot work: take it back out rather than half-create it.
        c.store.delete_app(&req.name)?;
        return Err(e);
    }
    let saved = if kept {
        format!(
            "app saved; it uses the volume {} kept from an earlier app of this name \
             (`wharf apps delete {} --purge` removes it)",
            volume.display(),
            req.name
        )
    } else {
        "app saved".to_string()
    };
    let changed = carry_out(&c, &caller.user, &req.name, "create", false, &saved).await?;
    Ok((StatusCode::CREATED, Json(changed)))
}

fn app_exists(c: &Control, name: &str) -> ApiResult<bool> {
    Ok(c.store.app_exists(name)?)
}

/// A container runtime is only accepted while it is there: the app would never start.
/// A node must be known, and the link on; a Swarm app has no node.
fn check_runtime(c: &Control, settings: &wharf_store::AppSettings) -> ApiResult<()> {
    check_placement(c, settings, None)
}

fn check_placement(
    c: &Control,
    settings: &wharf_store::AppSettings,
    current: Option<&wharf_store::App>,
) -> ApiResult<()> {
    let node = match &settings.node {
        Some(n) => n.clone(),
        None => current.and_then(|a| a.node.clone()),
    };
    let kind = settings.runtime.or(current.map(|a| a.runtime));
    if node.is_some() && kind == Some(wharf_store::RuntimeKind::Swarm) {
        return Err(ApiError::invalid(
            "a Swarm app runs on the Swarm's nodes: --node is for the process and docker runtimes (`--node none` first)",
        ));
    }
    if let Some(Some(node)) = &settings.node {
        if c.runtimes.hub().is_none() {
            return Err(ApiError::invalid(
                "the server's link is off (`wharf server --link ADDR:PORT`): no node can run apps",
            ));
        }
        c.store.node(node).map_err(|_| {
            ApiError::invalid(format!(
                "there is no node \"{node}\" (add it with `wharf nodes add {node}`)"
            ))
        })?;
        if settings.runtime == Some(wharf_store::RuntimeKind::Swarm) {
            return Err(ApiError::invalid(
                "a Swarm app runs on the Swarm's nodes: --node is for the process and docker runtimes",
            ));
        }
        return Ok(());
    }
    if let Some(kind) = settings.runtime {
        c.runtimes
            .get(&crate::runtimes::Placement::here(kind))
            .map_err(ApiError::invalid)?;
    }
    Ok(())
}

pub(crate) async fn update(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<Settings>,
) -> ApiResult<Json<Changed>> {
    let kind = c.store.app(&app)?.kind;
    if let Some(what) = super::authz::admin_only(&req) {
        super::authz::check_admin_setting(&caller, what)?;
    }
    let settings = validate::settings(&req, kind)?;
    check_placement(&c, &settings, Some(&c.store.app(&app)?))?;
    c.store.update_app(&app, &settings)?;
    Ok(Json(
        carry_out(&c, &caller.user, &app, "update", false, "settings saved").await?,
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    /// Also remove the volume, logs, code, releases, backups and git caches.
    #[serde(default)]
    purge: bool,
}

/// Deletes an app: out of the store, stopped, unrouted, and its hosts' certificates and keys
/// removed (a host that comes back later gets a new key). With `purge`, everything else it has
/// on disk goes too; otherwise its volume and logs are kept for an app of the same name.
pub(crate) async fn remove(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> ApiResult<Json<OperationView>> {
    let Query(q) =
        query.map_err(|e| ApiError::invalid(format!("{}; use ?purge=true", e.body_text())))?;
    let gone = c.store.app(&app)?;
    let hosts = gone.domains;
    c.store.delete_app(&app)?;
    c.traffic.forget(&app);
    // In a task of its own: a client that goes away must not leave the app half removed.
    let task = {
        let (c, actor) = (c.clone(), caller.user);
        tokio::spawn(
            async move { remove_now(&c, &actor, &app, q.purge, gone.runtime, &hosts).await },
        )
    };
    let op = task.await.map_err(ApiError::internal)?;
    Ok(Json(views::operation(c.store.operation(op)?)))
}

/// Stops, unroutes and removes what a deleted app had; returns its operation.
async fn remove_now(
    c: &Arc<Control>,
    actor: &str,
    app: &str,
    purge: bool,
    runtime: wharf_store::RuntimeKind,
    hosts: &[String],
) -> i64 {
    let op = OpLog::begin(&c.store, Some(app), "delete", actor);
    op.ok(
        "save",
        if purge {
            "app removed from the store"
        } else {
            "app removed from the store; its volume and logs are kept"
        },
    );
    let mut result = c.reconciler.reconcile(app, false, &op).await;
    // Only once nothing runs or routes for the app any more.
    // A host another app took over meanwhile keeps its certificate files.
    let mut doomed: Vec<std::path::PathBuf> = hosts
        .iter()
        .filter(|h| matches!(c.store.domain_owner(h), Ok(None)))
        .map(|h| c.data.certs().join(crate::reconciler::cert_name(h)))
        .collect();
    if purge {
        doomed.extend([
            c.data.volume(app),
            c.data.logs(app),
            c.data.app_dir(app),
            c.data.backups(app),
            c.data.git_cache(app),
            c.data.push_repos().join(format!("{app}.git")),
        ]);
    }
    let mut removed = Vec::new();
    for dir in doomed.iter().filter(|d| d.exists()) {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => removed.push(dir.display().to_string()),
            Err(e) => {
                let msg = format!("could not remove {}: {e}", dir.display());
                op.failed("remove", &msg);
                result = Err(msg);
            }
        }
    }
    if !removed.is_empty() {
        op.ok("remove", format!("removed {}", removed.join(", ")));
    }
    if purge
        && runtime.runs_images()
        && let Ok(engine) = c.runtimes.engine()
    {
        // Only the images wharf built for it (labelled); a given `--image` is not wharf's.
        match engine.remove_images(app).await {
            Ok(()) => op.ok("remove", "removed its images"),
            Err(e) => op.failed("remove", format!("could not remove its images: {e}")),
        }
    }
    // Nothing it owned is left: its uid may go to another app. Kept otherwise, for the files.
    if purge
        && result.is_ok()
        && let Err(e) = c.store.free_app_uid(app)
    {
        tracing::warn!(%app, error = %e, "could not free the app's user id");
    }
    op.finish(&result);
    op.id
}

pub(crate) async fn add_domain(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<AddDomain>,
) -> ApiResult<Json<Changed>> {
    let current = c.store.app(&app)?;
    let host = validate::domain(&req.host, &c.reconciler.routing().base_domain, |n| {
        app_exists(&c, n)
    })?;
    // Checked before any certificate file is written: a refused request changes nothing.
    if c.store
        .domain_owner(&host)?
        .is_some_and(|owner| owner != app)
    {
        return Err(wharf_store::StoreError::Exists {
            what: "domain",
            name: host,
        }
        .into());
    }
    let tls = req
        .tls
        .as_deref()
        .map(|t| t.parse::<Tls>().map_err(ApiError::invalid))
        .transpose()?;
    let pems = (req.cert_pem.as_deref(), req.key_pem.as_deref());
    match (tls, pems) {
        (Some(Tls::Manual), (Some(cert), Some(key))) => {
            super::certs::save_manual(&c, &host, cert, key)?;
        }
        (Some(Tls::Manual), _) => {
            return Err(ApiError::invalid(
                "`tls: manual` needs `cert_pem` and `key_pem` (e.g. --cert a.pem --key a.key)",
            ));
        }
        (_, (None, None)) => {}
        _ => {
            return Err(ApiError::invalid(
                "`cert_pem` and `key_pem` go with `tls: manual` only",
            ));
        }
    }
    if tls == Some(Tls::Acme) {
        if host.starts_with("*.") {
            return Err(ApiError::invalid(
                "ACME here validates each exact host name; for a wildcard use --tls manual or self-signed",
            ));
        }
        if let Some(why) = wharf_gateway::config::acme_host_problem(&host) {
            return Err(ApiError::invalid(why));
        }
    }
    let known = current.domains.contains(&host);
    c.store.add_domain_tls(&app, &host, tls)?;
    let what = match (known, tls) {
        (true, Some(t)) => format!("{host} now uses tls {}", t.as_str()),
        (false, Some(t)) if t != Tls::None => format!("added {host} (tls {})", t.as_str()),
        _ => format!("added {host}"),
    };
    Ok(Json(
        carry_out(&c, &caller.user, &app, "domains", false, &what).await?,
    ))
}

pub(crate) async fn remove_domain(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path((app, host)): Path<(String, String)>,
) -> ApiResult<Json<Changed>> {
    // Spelled as it was added: normalised the same way (case, a trailing dot).
    let host = wharf_gateway::config::HostPattern::parse(&host)
        .map(|p| p.to_string())
        .map_err(|e| ApiError::invalid(format!("host {e}")))?;
    c.store.remove_domain(&app, &host)?;
    Ok(Json(
        carry_out(
            &c,
            &caller.user,
            &app,
            "domains",
            false,
            &format!("removed {host}"),
        )
        .await?,
    ))
}

pub(crate) async fn env_names(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(json!({ "names": c.store.app(&app)?.env_names })))
}

pub(crate) async fn change_env(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<ChangeEnv>,
) -> ApiResult<Json<Changed>> {
    let mut names: Vec<String> = req.set.keys().cloned().collect();
    names.extend(req.unset.iter().cloned());
    if names.is_empty() {
        return Err(ApiError::invalid(
            "nothing to change: give `set` and/or `unset`",
        ));
    }
    check_env(&names, req.set.values())?;
    c.store.change_env(&app, &req.set, &req.unset)?;
    // Names only: values never reach the operations log.
    let mut what = Vec::new();
    if !req.set.is_empty() {
        what.push(format!(
            "set {}",
            req.set.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if !req.unset.is_empty() {
        what.push(format!("unset {}", req.unset.join(", ")));
    }
    Ok(Json(
        carry_out(&c, &caller.user, &app, "env", false, &what.join("; ")).await?,
    ))
}

pub(crate) async fn start(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
) -> ApiResult<Json<Changed>> {
    set_availability(&c, &caller.user, &app, Availability::Enabled, "start").await
}

pub(crate) async fn stop(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
) -> ApiResult<Json<Changed>> {
    set_availability(&c, &caller.user, &app, Availability::Disabled, "stop").await
}

pub(crate) async fn restart(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
) -> ApiResult<Json<Changed>> {
    c.store.app(&app)?;
    Ok(Json(
        carry_out(&c, &caller.user, &app, "restart", true, "restart requested").await?,
    ))
}

pub(crate) async fn scale(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<Scale>,
) -> ApiResult<Json<Changed>> {
    let kind = c.store.app(&app)?.kind;
    if kind == AppKind::Static {
        return Err(ApiError::invalid("a static app has no instances to scale"));
    }
    let settings = validate::settings(
        &Settings {
            replicas: Some(req.replicas),
            ..Default::default()
        },
        kind,
    )?;
    c.store.update_app(&app, &settings)?;
    Ok(Json(
        carry_out(
            &c,
            &caller.user,
            &app,
            "scale",
            false,
            &format!("replicas set to {}", req.replicas),
        )
        .await?,
    ))
}

async fn set_availability(
    c: &Arc<Control>,
    actor: &str,
    app: &str,
    a: Availability,
    kind: &str,
) -> ApiResult<Json<Changed>> {
    c.store.update_app(
        app,
        &AppSettings {
            availability: Some(a),
            ..Default::default()
        },
    )?;
    Ok(Json(
        carry_out(
            c,
            actor,
            app,
            kind,
            false,
            &format!("availability set to {a}"),
        )
        .await?,
    ))
}

/// Runs the reconciler for a stored change and returns the app with the operation's outcome.
pub(crate) async fn carry_out(
    c: &Arc<Control>,
    actor: &str,
    app: &str,
    kind: &str,
    force: bool,
    saved: &str,
) -> ApiResult<Changed> {
    // In a task of its own: a client that goes away (Ctrl-C) must not cut a change short
    // halfway, with instances started and never recorded.
    let task = {
        let (c, actor, app, kind, saved) = (
            c.clone(),
            actor.to_string(),
            app.to_string(),
            kind.to_string(),
            saved.to_string(),
        );
        tokio::spawn(async move {
            let op = OpLog::begin(&c.store, Some(&app), &kind, &actor);
            op.ok("save", saved);
            let result = c.reconciler.reconcile(&app, force, &op).await;
            op.finish(&result);
            op.id
        })
    };
    let op = task.await.map_err(ApiError::internal)?;
    Ok(Changed {
        app: views::app(c, &c.store.app(app)?).await,
        operation: views::operation(c.store.operation(op)?),
    })
}

fn check_env<'a>(
    names: &[String],
    values: impl Iterator<Item = &'a String>,
) -> Result<(), ApiError> {
    for n in names {
        validate_env_name(n).map_err(ApiError::invalid)?;
        if matches!(n.as_str(), "PORT" | "HOST" | "WHARF_VOLUME" | "DATA_DIR") {
            return Err(ApiError::invalid(format!(
                "`{n}` is set by wharf for every instance; choose another name"
            )));
        }
    }
    for v in values {
        if v.contains('\0') || v.len() > 64 * 1024 {
            return Err(ApiError::invalid(
                "variable values must not contain NUL and must be under 64 KiB",
            ));
        }
    }
    Ok(())
}

/// Creates the app's default folders so a new app works before anything is deployed.
fn prepare_folders(
    c: &Control,
    name: &str,
    kind: AppKind,
    settings: &AppSettings,
) -> Result<(), ApiError> {
    let mkdir = |p: &std::path::Path| std::fs::create_dir_all(p).map_err(ApiError::internal);
    mkdir(&c.data.volume(name))?;
    mkdir(&c.data.logs(name))?;
    match kind {
        AppKind::Process if !matches!(settings.workdir, Some(Some(_))) => {
            mkdir(&c.data.app_dir(name))?
        }
        AppKind::Static if !matches!(settings.root, Some(Some(_))) => {
            let public = c.data.public_dir(name);
            mkdir(&public)?;
            let index = public.join("index.html");
            if !index.exists() {
                let page = format!(
                    "<!doctype html><meta charset=\"utf-8\"><title>{name}</title>\
                     <h1>{name}</h1><p>This static site has no content yet. Put files in <code>{}</code>.</p>\n",
                    public.display()
                );
                std::fs::write(&index, page).map_err(ApiError::internal)?;
            }
        }
        _ => {}
    }
    Ok(())
}
