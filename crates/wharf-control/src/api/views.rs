//! Store records and runtime state turned into the API's views.

use std::time::SystemTime;

use wharf_client::dto::{ActionView, AppView, InstanceView, OperationView, ReleaseView};
use wharf_runtime::InstanceState;
use wharf_store::{App, AppKind, Availability, Operation, Release};

use crate::Control;

pub(crate) async fn app(control: &Control, app: &App) -> AppView {
    with_instances(control, app, &running(control).await)
}

/// Views of many apps; each runtime (which reads `/proc` or asks its engine) is asked once.
pub(crate) async fn apps(control: &Control, apps: &[App]) -> Vec<AppView> {
    let running = running(control).await;
    apps_with(control, apps, &running)
}

/// Views of many apps with what runs already listed by [`running`].
pub(crate) fn apps_with(
    control: &Control,
    apps: &[App],
    running: &[wharf_runtime::InstanceStatus],
) -> Vec<AppView> {
    apps.iter()
        .map(|a| with_instances(control, a, running))
        .collect()
}

/// Every instance of every runtime, asked once for a listing.
pub(crate) async fn running(control: &Control) -> Vec<wharf_runtime::InstanceStatus> {
    control
        .runtimes
        .list()
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

fn with_instances(
    control: &Control,
    app: &App,
    running: &[wharf_runtime::InstanceStatus],
) -> AppView {
    let rec = &control.reconciler;
    let mine: Vec<&wharf_runtime::InstanceStatus> =
        running.iter().filter(|i| i.app == app.name).collect();
    let mut instances: Vec<InstanceView> = mine
        .iter()
        .map(|i| (*i).clone())
        .map(|i| InstanceView {
            name: i.instance,
            port: i.addr.map_or(0, |a| a.port()),
            addr: i.addr.map(|a| a.to_string()),
            id: i.id,
            node: i.node,
            image: i.image,
            release: i.release,
            state: i.state.as_str().to_string(),
            pid: i.pid,
            restarts: i.restarts,
            uptime_seconds: i
                .started_at
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs()),
            rss_bytes: i.rss_bytes,
            cpu_seconds: i.cpu_seconds,
            last_exit: i.last_exit,
        })
        .collect();
    instances.sort_by(|a, b| a.name.cmp(&b.name));
    let limits_note = mine.first().and_then(|i| i.limits_note.clone());
    let failure = rec.failure(&app.name);
    let state = state_with(app, failure.is_some(), &mine);
    let mut hosts = vec![rec.default_host(&app.name)];
    hosts.extend(app.domains.iter().cloned());
    AppView {
        name: app.name.clone(),
        kind: app.kind.to_string(),
        availability: app.availability.to_string(),
        url: rec.app_url(&app.name),
        hosts,
        domains: app.domains.clone(),
        tls: app
            .tls
            .iter()
            .map(|(h, t)| (h.clone(), t.as_str().to_string()))
            .collect(),
        hsts_seconds: app.hsts_seconds,
        requests_per_second: control.traffic.rate(&app.name),
        env: app.env_names.clone(),
        run: app.run.clone(),
        workdir: app
            .workdir
            .clone()
            .unwrap_or_else(|| control.data.app_dir(&app.name).display().to_string()),
        root: match app.kind {
            AppKind::Static => Some(rec.static_root(app).display().to_string()),
            AppKind::Process => None,
        },
        replicas: app.replicas,
        memory_bytes: app.memory_bytes,
        cpu: app.cpu_millis.map(|m| f64::from(m) / 1000.0),
        max_body_bytes: app.max_body,
        health_path: app.health_path.clone(),
        volume: control.data.volume(&app.name).display().to_string(),
        instances,
        state,
        failure,
        limits_note,
        sandbox: app.sandbox,
        sandbox_status: (app.kind == AppKind::Process)
            .then(|| crate::sandbox::status(app, rec.launcher(), &control.data)),
        uid: rec
            .users()
            .on()
            .then(|| control.store.known_app_uid(&app.name).ok().flatten())
            .flatten(),
        runtime: app.runtime.to_string(),
        port: app.port,
        read_only: app.read_only,
        constraints: app.constraints.clone(),
        stop_grace_seconds: app.stop_grace_ms.map(|ms| ms as f64 / 1000.0),
        node: app.node.clone(),
        users_note: rec.users().note().map(str::to_string),
        release: app.release,
        git_url: app.git_url.as_deref().map(crate::deploy::redact_git),
        git_ref: app.git_ref.clone(),
        created_at: app.created_at,
        updated_at: app.updated_at,
    }
}

/// The `state` an app's view shows, without building the view (for the `state` filter).
pub(crate) fn state_of(
    control: &Control,
    app: &App,
    running: &[wharf_runtime::InstanceStatus],
) -> String {
    let mine: Vec<&wharf_runtime::InstanceStatus> =
        running.iter().filter(|i| i.app == app.name).collect();
    state_with(app, control.reconciler.failure(&app.name).is_some(), &mine)
}

/// Every value `state` takes, for checking a filter.
pub(crate) const STATES: &[&str] = &[
    "running",
    "stopped",
    "static",
    "not-served",
    "no-command",
    "crashed",
    "failed",
];

fn state_with(app: &App, failed: bool, mine: &[&wharf_runtime::InstanceStatus]) -> String {
    if failed && mine.is_empty() {
        // The last change could not start it, and nothing of it runs.
        "failed".to_string()
    } else {
        state(app, &mine.iter().map(|i| i.state).collect::<Vec<_>>())
    }
}

fn state(app: &App, instances: &[InstanceState]) -> String {
    let s = match (app.availability, app.kind) {
        (Availability::Disabled, _) => "stopped",
        (_, AppKind::Static) if app.availability == Availability::NotServed => "not-served",
        (_, AppKind::Static) => "static",
        _ if app.run.is_none() && app.release.is_none() => "no-command",
        _ if instances.is_empty() && app.release.is_some() => "static",
        _ if instances.contains(&InstanceState::Failed) => "failed",
        _ if instances.contains(&InstanceState::Backoff) => "crashed",
        _ if instances.is_empty() => "stopped",
        (Availability::NotServed, _) => "not-served",
        _ => "running",
    };
    s.to_string()
}

pub(crate) fn release(r: Release) -> ReleaseView {
    ReleaseView {
        number: r.number,
        status: r.status.to_string(),
        source: r.source,
        commit: r.commit,
        build: r.build,
        run: r.run,
        static_dir: r.static_dir,
        image: r.image,
        backup: r.backup,
        backup_sha256: r.backup_sha256,
        message: r.message,
        created_at: r.created_at,
    }
}

pub(crate) fn operation(op: Operation) -> OperationView {
    OperationView {
        id: op.id,
        app: op.app,
        kind: op.kind,
        status: op.status.to_string(),
        message: op.message,
        started_at: op.started_at,
        finished_at: op.finished_at,
        actor: op.actor,
        actions: op
            .actions
            .into_iter()
            .map(|a| ActionView {
                name: a.name,
                status: a.status.to_string(),
                message: a.message,
                at: a.at,
            })
            .collect(),
    }
}
