//! The deploy pipeline, each step an action of the operation:
//! release N (`building`) → fetch → detect and build (in `releases/<n>`, where the release will
//! run, so paths a build writes into its output stay valid) → pre-deploy backup (current
//! release's code + volume) → activate through the reconciler (start new, health check, swap,
//! drain, stop old) → prune old releases. Any failure leaves the previous release serving and
//! removes the failed release's folder; only `ready` releases are ever served.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use wharf_store::{App, AppSettings, BuildResult, ReleaseStatus, Store};

use super::{Output, backup, manifest, source};
use crate::Control;
use crate::oplog::OpLog;

pub(crate) enum Source {
    Git {
        url: String,
        reference: String,
    },
    Archive(Bytes),
    Zip(Bytes),
    /// An image deployed as it is (container runtimes).
    Image(String),
}

/// Apps with a deploy or rollback under way: a second one is refused, never interleaved;
/// a webhook's push waits its turn instead (the newest push per app, see [`Deploys::queue_push`]).
#[derive(Default)]
pub(crate) struct Deploys {
    running: Mutex<HashSet<String>>,
    /// Woken each time an app's deploy ends.
    freed: tokio::sync::Notify,
    /// Per app, the number of the newest push a webhook queued.
    pushes: Mutex<HashMap<String, u64>>,
}

pub(crate) struct Claim<'a> {
    deploys: &'a Deploys,
    app: String,
}

impl Deploys {
    pub(crate) fn claim(&self, app: &str) -> Option<Claim<'_>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(app.to_string()).then(|| Claim {
            deploys: self,
            app: app.to_string(),
        })
    }

    /// Waits until no deploy of `app` runs and claims it, unless a newer push was queued for
    /// the app meanwhile (`None`: that one deploys instead; it names a later commit).
    pub(crate) async fn claim_for_push(&self, app: &str, push: u64) -> Option<Claim<'_>> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so an end between the two is not missed.
            freed.as_mut().enable();
            if self.newest_push(app) != Some(push) {
                return None;
            }
            if let Some(claim) = self.claim(app) {
                return Some(claim);
            }
            freed.await;
        }
    }

    /// Numbers a webhook's push to `app`; the newest number is the one to deploy.
    pub(crate) fn queue_push(&self, app: &str) -> u64 {
        let mut pushes = self.pushes.lock().unwrap_or_else(|p| p.into_inner());
        let n = pushes.entry(app.to_string()).or_default();
        *n += 1;
        *n
    }

    fn newest_push(&self, app: &str) -> Option<u64> {
        let pushes = self.pushes.lock().unwrap_or_else(|p| p.into_inner());
        pushes.get(app).copied()
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.deploys
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.app);
        self.deploys.freed.notify_waiters();
    }
}

/// The config a release ran with, restored by a rollback.
#[derive(Serialize, Deserialize, Default)]
struct Snapshot {
    env: BTreeMap<String, String>,
    run: Option<String>,
    replicas: u32,
    memory_bytes: Option<u64>,
    cpu_millis: Option<u32>,
    max_body: Option<u64>,
    health_path: Option<String>,
    // What runs it and how (absent from snapshots taken before containers: left as they are).
    #[serde(default)]
    runtime: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    read_only: Option<bool>,
    #[serde(default)]
    constraints: Option<Vec<String>>,
    #[serde(default)]
    stop_grace_ms: Option<u64>,
}

fn snapshot(c: &Control, app: &App) -> Result<String, String> {
    let env = c.store.env(&app.name).map_err(|e| e.to_string())?;
    let s = Snapshot {
        env,
        run: app.run.clone(),
        replicas: app.replicas,
        memory_bytes: app.memory_bytes,
        cpu_millis: app.cpu_millis,
        max_body: app.max_body,
        health_path: app.health_path.clone(),
        runtime: Some(app.runtime.to_string()),
        port: app.port,
        read_only: Some(app.read_only),
        constraints: Some(app.constraints.clone()),
        stop_grace_ms: app.stop_grace_ms,
    };
    serde_json::to_string(&s).map_err(|e| e.to_string())
}

/// Sets an app's env and settings to a snapshot's; returns the env names it holds.
pub(crate) fn restore_config(
    store: &Store,
    app: &str,
    config: &str,
) -> Result<Vec<String>, String> {
    let snap: Snapshot = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let current = store.app(app).map_err(|e| e.to_string())?;
    let unset: Vec<String> = current
        .env_names
        .iter()
        .filter(|n| !snap.env.contains_key(*n))
        .cloned()
        .collect();
    store
        .change_env(app, &snap.env, &unset)
        .map_err(|e| e.to_string())?;
    let settings = AppSettings {
        run: Some(snap.run.clone()),
        replicas: Some(snap.replicas),
        memory_bytes: Some(snap.memory_bytes),
        cpu_millis: Some(snap.cpu_millis),
        max_body: Some(snap.max_body),
        health_path: Some(snap.health_path.clone()),
        runtime: snap.runtime.as_deref().and_then(|r| r.parse().ok()),
        // Taken with the runtime: a snapshot from before containers has none of these.
        port: snap.runtime.as_ref().map(|_| snap.port),
        read_only: snap.read_only,
        constraints: snap.constraints.clone(),
        stop_grace_ms: snap.runtime.as_ref().map(|_| snap.stop_grace_ms),
        ..Default::default()
    };
    store
        .update_app(app, &settings)
        .map_err(|e| e.to_string())?;
    Ok(snap.env.into_keys().collect())
}

/// Runs one deploy for `actor` (who asked); returns the operation id and its outcome.
pub(crate) async fn deploy(
    c: &Arc<Control>,
    app: &str,
    source: Source,
    out: Output,
    actor: &str,
) -> (i64, Result<String, String>) {
    deploy_claimed(c, app, source, out, actor, c.deploys.claim(app)).await
}

/// [`deploy`] with the app's claim already sought (`None`: another deploy runs).
pub(crate) async fn deploy_claimed(
    c: &Arc<Control>,
    app: &str,
    source: Source,
    mut out: Output,
    actor: &str,
    claim: Option<Claim<'_>>,
) -> (i64, Result<String, String>) {
    let op = OpLog::begin(&c.store, Some(app), "deploy", actor);
    let result = match claim {
        None => {
            let msg =
                format!("a deploy of {app} is already running; try again when it has finished");
            op.failed("queue", &msg);
            Err(msg)
        }
        Some(_claim) => {
            if let Ok(env) = c.store.env(app) {
                out.mask(env.into_values());
            }
            if let Source::Git { url, .. } = &source
                && let Some(r) = crate::deploy::git_credentials(url)
            {
                // What git itself may print of the address.
                out.mask([url[r].to_string()]);
            }
            let result = run(c, app, source, &out, &op).await;
            if result.is_err()
                && let Ok(a) = c.store.app(app)
            {
                // What a failed release built (an image) goes now, not after the next success.
                prune_images(c, &a).await;
            }
            result
        }
    };
    match &result {
        Ok(m) => out.line(m),
        Err(e) => out.line(&format!("deploy failed: {e}")),
    }
    out.close();
    op.finish(&result);
    (op.id, result)
}

async fn run(
    c: &Arc<Control>,
    app: &str,
    source: Source,
    out: &Output,
    op: &OpLog,
) -> Result<String, String> {
    let current = c.store.app(app).map_err(|e| e.to_string())?;
    let description = match &source {
        Source::Git { url, reference } => {
            format!("git {} {reference}", crate::deploy::redact_git(url))
        }
        Source::Archive(_) => "archive (tar.gz)".to_string(),
        Source::Zip(_) => "archive (zip)".to_string(),
        Source::Image(image) => format!("image {image}"),
    };
    let n = c
        .store
        .begin_release(app, &description)
        .map_err(|e| e.to_string())?;
    op.ok("release", format!("release {n} from {description}"));
    // Kept with the release, so a failed build's error can be read again later.
    out.keep_in(&c.data.build_log(app, n));
    out.line(&format!("release {n} of {app} from {description}"));
    // Built where it will run: a virtualenv or any other build output that records its own
    // path keeps working. The release is `building` meanwhile, and nothing serves a folder
    // whose release is not ready (a failed build removes it, start-up removes leftovers).
    let dir = c.data.release(app, n);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(c.data.releases(app))
        .map_err(|e| format!("cannot create the releases folder: {e}"))?;
    let fail = |step: &str, msg: String| {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = c.store.finish_release(
            app,
            n,
            ReleaseStatus::Failed,
            &BuildResult {
                message: msg.clone(),
                ..Default::default()
            },
        );
        op.failed(step, &msg);
        let live = match current.release {
            Some(r) => format!("; release {r} keeps serving"),
            None => String::new(),
        };
        Err(format!("{msg}{live}"))
    };

    // 1. The code.
    let zip = matches!(source, Source::Zip(_));
    let commit = match source {
        Source::Image(image) => {
            // No code: the release folder stays empty, the image is the artifact.
            if let Err(e) = std::fs::create_dir_all(&dir) {
                return fail("fetch", format!("cannot create the release folder: {e}"));
            }
            let built = given_image(c, &current, image, out).await;
            return image_live(c, app, n, &current, built, out, op, &fail).await;
        }
        Source::Git { url, reference } => {
            match source::fetch_git(&c.data.git_cache(app), &url, &reference, &dir, out).await {
                Ok(sha) => Some(sha),
                Err(e) => return fail("fetch", e),
            }
        }
        Source::Archive(bytes) | Source::Zip(bytes) => {
            let dest = dir.clone();
            let unpack = move || {
                if zip {
                    source::unpack_zip(&bytes, &dest)
                } else {
                    source::unpack_targz(&bytes, &dest)
                }
            };
            match tokio::task::spawn_blocking(unpack).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => return fail("fetch", e),
                Err(e) => return fail("fetch", format!("unpacking failed: {e}")),
            }
        }
    };
    op.ok(
        "fetch",
        match &commit {
            Some(sha) => format!("commit {}", &sha[..sha.len().min(12)]),
            None => "archive unpacked".into(),
        },
    );

    // The release is the app's (its user builds it, and runs in it): code that writes beside
    // itself (caches, `__pycache__`) keeps working, and no other app can read it.
    let user = match c.reconciler.app_user(app) {
        Ok(u) => u,
        Err(e) => return fail("fetch", e),
    };

    // 2. Build: by the engine from a Dockerfile for container runtimes, else by detection.
    if current.runtime.runs_images() {
        let built = build_image(c, &current, n, &dir, commit.clone(), out).await;
        return image_live(c, app, n, &current, built, out, op, &fail).await;
    }
    let plan = match manifest::detect(&dir) {
        Ok(p) => p,
        Err(e) => return fail("build", e),
    };
    out.line(&format!("detected a {} app", plan.kind));
    if let (Some(_), Some(why)) = (&plan.build, c.reconciler.users().refusal()) {
        return fail("build", why);
    }
    if let Some(cmd) = &plan.build {
        out.line(&format!("$ {cmd}"));
        let mut env = plan.env.clone();
        env.extend(c.store.env(app).unwrap_or_default());
        let cache = c.data.build_cache(app);
        let pid_file = c.data.build_pid(app);
        let sandbox =
            crate::sandbox::build_policy(c.reconciler.launcher(), &c.data, &current, &dir);
        let setup = Setup {
            cache: &cache,
            pid_file: &pid_file,
            launcher: c.reconciler.launcher(),
            sandbox: sandbox.as_ref(),
            user,
        };
        let ran = match (
            std::fs::create_dir_all(&cache),
            std::fs::create_dir_all(c.data.build_pids()),
            crate::sandbox::prepare(sandbox.as_ref(), c.data.tmp(app), &mut env),
        ) {
            (Ok(()), Ok(()), Ok(())) => build(cmd, &dir, setup, env, plan.timeout, out).await,
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                Err(format!("cannot prepare the build: {e}"))
            }
        };
        if let Err(e) = ran {
            return fail("build", e);
        }
    }
    if plan.run.is_none()
        && let Some(static_dir) = &plan.static_dir
        && !dir.join(static_dir).is_dir()
    {
        return fail(
            "build",
            format!("the static folder `{static_dir}` does not exist after the build"),
        );
    }
    let built = BuildResult {
        commit: commit.clone(),
        build: plan.kind.to_string(),
        run: plan.run.clone(),
        static_dir: plan.static_dir.clone(),
        health_path: plan.health.clone(),
        message: String::new(),
        env_defaults: if plan.env.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&plan.env).map_err(|e| e.to_string())?
        },
        image: None,
    };
    c.store
        .finish_release(app, n, ReleaseStatus::Ready, &built)
        .map_err(|e| format!("cannot record release {n}: {e}"))?;
    op.ok(
        "build",
        match (&plan.run, &plan.static_dir) {
            (Some(run), _) => format!("{} app, runs `{run}`", plan.kind),
            (None, Some(d)) => format!("static site from `{d}`"),
            _ => plan.kind.to_string(),
        },
    );
    go_live(c, app, n, &current, commit, plan.exclude, out, op, &fail).await
}

/// Records a release whose artifact is an image (built or given) and takes it live.
#[allow(clippy::too_many_arguments)]
async fn image_live(
    c: &Arc<Control>,
    app: &str,
    n: u32,
    current: &App,
    built: Result<BuildResult, String>,
    out: &Output,
    op: &OpLog,
    fail: &(dyn Fn(&str, String) -> Result<String, String> + Sync),
) -> Result<String, String> {
    let built = match built {
        Ok(b) => b,
        Err(e) => return fail("build", e),
    };
    if let Err(e) = c.store.finish_release(app, n, ReleaseStatus::Ready, &built) {
        return fail("build", format!("cannot record release {n}: {e}"));
    }
    op.ok(
        "build",
        format!("image {}", built.image.as_deref().unwrap_or("")),
    );
    go_live(c, app, n, current, built.commit, Vec::new(), out, op, fail).await
}

/// Steps 3 to 5, whatever built the release: back up, switch, prune.
#[allow(clippy::too_many_arguments)]
async fn go_live(
    c: &Arc<Control>,
    app: &str,
    n: u32,
    current: &App,
    commit: Option<String>,
    exclude: Vec<String>,
    out: &Output,
    op: &OpLog,
    fail: &(dyn Fn(&str, String) -> Result<String, String> + Sync),
) -> Result<String, String> {
    // 3. Back up what runs now, before anything changes. A release that cannot get this far
    // is failed (its folder removed): left `ready`, a rollback could pick code that never ran.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let archive = c
        .data
        .backups(app)
        .join(format!("before-{n}-{stamp}.tar.gz"));
    let previous_dir = current.release.map(|r| c.data.release(app, r));
    let volume = c.data.volume(app);
    let archive_for_task = archive.clone();
    let written = tokio::task::spawn_blocking(move || {
        backup::write(
            &archive_for_task,
            &volume,
            previous_dir.as_deref(),
            &exclude,
        )
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match written {
        Ok(sum) => {
            let path = archive.display().to_string();
            let _ = c.store.set_release_backup(app, n, &path, &sum);
            op.ok("backup", format!("{path} (sha256 {})", &sum[..12]));
            out.line(&format!("backup: {path}"));
        }
        Err(e) => {
            return fail(
                "backup",
                format!("the pre-deploy backup failed, nothing was changed: {e}"),
            );
        }
    }

    // 4. Go live through the zero-downtime switch.
    // The settings as they are now, not as the build began: a change made during a long build
    // is what this release runs with, and what a rollback to it restores.
    let settings = c.store.app(app).map_err(|e| e.to_string());
    let activated = settings.and_then(|now| snapshot(c, &now)).and_then(|snap| {
        c.store
            .activate_release(app, n, &snap)
            .map_err(|e| e.to_string())
    });
    let previous = match activated {
        Ok(p) => p,
        Err(e) => return fail("switch", format!("cannot record the switch: {e}")),
    };
    out.line("starting the new release");
    if let Err(e) = c.reconciler.reconcile(app, true, op).await {
        let _ = c.store.revert_release(app, n, previous, &e);
        // Failed: nothing will run it again (its build log stays).
        let _ = std::fs::remove_dir_all(c.data.release(app, n));
        // The old instances kept serving; this only restores the routes' view of them.
        let _ = c.reconciler.restore(app, op).await;
        return Err(match previous {
            Some(p) => format!("release {n} did not go live ({e}); release {p} keeps serving"),
            None => format!("release {n} did not go live: {e}"),
        });
    }

    // Left open, the switch would be undone at the next start although this release serves.
    if let Err(e) = c.store.finish_switch(app) {
        tracing::error!(%app, error = %e, "could not record the end of a release switch");
    }

    // 5. Keep the last releases (and their images).
    prune(c, app, previous).await;
    let short = commit
        .as_deref()
        .map(|s| format!(" ({})", &s[..s.len().min(7)]))
        .unwrap_or_default();
    Ok(format!(
        "release {n}{short} of {app} is live at {}",
        c.reconciler.app_url(app)
    ))
}

/// Where a build keeps its state, and how it is started: through the sandbox launcher when
/// the app is sandboxed.
#[derive(Clone, Copy)]
struct Setup<'a> {
    cache: &'a Path,
    pid_file: &'a Path,
    launcher: Option<&'a Path>,
    sandbox: Option<&'a wharf_runtime::SandboxPolicy>,
    /// The app's own user, when per-app users are on.
    user: Option<wharf_runtime::AppUser>,
}

/// Runs the build command in the release folder, streaming its output, within the timeout.
/// `HOME` is the app's build cache (`cache`), so download caches outlive the release and serve
/// the next build; the app's tool folders come first on `PATH`. The process group is recorded
/// in `pid_file` while it runs, so a server killed meanwhile stops it when it starts again.
/// With a `user`, the build runs as the app's user and group.
async fn build(
    cmd: &str,
    dir: &Path,
    setup: Setup<'_>,
    mut env: BTreeMap<String, String>,
    timeout: Duration,
    out: &Output,
) -> Result<(), String> {
    let Setup {
        cache,
        pid_file,
        launcher,
        sandbox,
        user,
    } = setup;
    super::add_tool_paths(dir, &mut env);
    let shell = wharf_runtime::shell_command(launcher, sandbox, user, cmd)
        .map_err(|e| format!("cannot run the build: {e}"))?;
    if sandbox.is_some() {
        out.line("(sandboxed: writes only to the release folder, the build cache and its tmp)");
    }
    let mut command = Command::new(&shell.program);
    command
        .args(&shell.args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", cache)
        .envs(env.iter().map(|(k, v)| (shell.env_name(k), v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(u) = shell.spawn_as {
        command.uid(u.uid).gid(u.gid);
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot run the build: {e}"))?;
    let recorded = child
        .id()
        .map(|pid| wharf_runtime::pidfile::record(pid_file, pid));
    if let Some(Err(e)) = recorded {
        tracing::warn!(error = %e, file = %pid_file.display(), "cannot record the build's pid");
    }
    let result = watch(child, timeout, out).await;
    let _ = std::fs::remove_file(pid_file);
    result
}

/// Streams a running build's output and waits for it within `timeout`.
async fn watch(
    mut child: tokio::process::Child,
    timeout: Duration,
    out: &Output,
) -> Result<(), String> {
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let out = out.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                out.line(&line);
            }
        })
    })
    .collect();
    // The build leads its own process group; taken before `wait`, which forgets the pid.
    let group = child.id().and_then(rustix_pid);
    let kill_group = || {
        if let Some(pid) = group {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    };
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => s.map_err(|e| format!("the build could not be watched: {e}"))?,
        Err(_) => {
            kill_group();
            let _ = child.kill().await;
            return Err(format!(
                "the build took longer than {timeout:?} and was stopped \
                 (`build_timeout` in wharf.toml gives it longer)"
            ));
        }
    };
    // What the build left running in the background ends with it: it would hold the output
    // open (the deploy would wait for it forever) and outlive its pid file.
    kill_group();
    // A process that left the group (setsid) can still hold the output open: what it has
    // written within a second is kept, then the deploy goes on without it.
    for mut p in pumps {
        if tokio::time::timeout(Duration::from_secs(1), &mut p)
            .await
            .is_err()
        {
            p.abort();
        }
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("the build failed ({})", describe(status)))
    }
}

fn rustix_pid(p: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(p as i32)
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}

/// Deletes releases (and their backups) beyond the app's `keep_releases`. Only releases that
/// can run count: failed ones stay while among the newest `keep_releases` (for their logs) and
/// never crowd out a good one. The active release and the one that served before it
/// (`previous`, what a rollback returns to) always stay.
async fn prune(c: &Control, app: &str, previous: Option<u32>) {
    let Ok(a) = c.store.app(app) else { return };
    let Ok(releases) = c.store.releases(app) else {
        return;
    };
    let keep = a.keep_releases.max(1) as usize;
    let mut good = 0;
    for (i, r) in releases.iter().enumerate() {
        let kept = if r.status == ReleaseStatus::Failed {
            i < keep
        } else {
            good += 1;
            good <= keep
        };
        if kept || Some(r.number) == a.release || Some(r.number) == previous {
            continue;
        }
        let _ = std::fs::remove_dir_all(c.data.release(app, r.number));
        let _ = std::fs::remove_file(c.data.build_log(app, r.number));
        if let Some(b) = &r.backup {
            let _ = std::fs::remove_file(b);
        }
        let _ = c.store.delete_release(app, r.number);
    }
    prune_images(c, &a).await;
}

/// Removes the app's images but those of its releases that can run.
async fn prune_images(c: &Control, a: &App) {
    let app = a.name.as_str();
    if a.runtime.runs_images()
        && let Ok(engine) = c.runtimes.engine()
    {
        // Only images wharf built for this app (labelled); those of kept releases that can run
        // stay (a failed release's image would never run again).
        let keep: Vec<u32> = c
            .store
            .releases(app)
            .map(|rs| {
                rs.iter()
                    .filter(|r| r.status != ReleaseStatus::Failed)
                    .map(|r| r.number)
                    .collect()
            })
            .unwrap_or_default();
        match engine.prune_images(app, &keep).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(%app, removed = %removed.join(", "), "old images removed")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%app, error = %e, "cannot prune old images"),
        }
    }
}

/// A release built by the engine from the code's Dockerfile, tagged `wharf/<app>:<n>`; for
/// Swarm, pushed to the registry every node pulls from.
async fn build_image(
    c: &Control,
    app: &App,
    n: u32,
    dir: &Path,
    commit: Option<String>,
    out: &Output,
) -> Result<BuildResult, String> {
    let plan = manifest::image_plan(dir)?;
    let engine = c.runtimes.engine()?;
    out.line(&format!(
        "building the image from {} with the Docker engine",
        plan.dockerfile
    ));
    let req = wharf_docker::image::BuildRequest {
        app: app.name.clone(),
        release: n,
        context: dir.to_path_buf(),
        dockerfile: plan.dockerfile.clone(),
    };
    let line = |l: &str| out.line(l);
    let image = match tokio::time::timeout(plan.timeout, engine.build_image(&req, &line)).await {
        Ok(Ok(image)) => image,
        Ok(Err(e)) => return Err(format!("the image build failed: {e}")),
        Err(_) => {
            return Err(format!(
                "the image build took longer than {}s (`build_timeout` in wharf.toml)",
                plan.timeout.as_secs()
            ));
        }
    };
    let image = publish(c, app, image, out).await?;
    Ok(BuildResult {
        commit,
        build: "dockerfile".into(),
        run: plan.run,
        static_dir: None,
        health_path: plan.health,
        message: String::new(),
        env_defaults: if plan.env.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&plan.env).map_err(|e| e.to_string())?
        },
        image: Some(image),
    })
}

/// An image given with `wharf deploy --image`, checked to be there (a container runtime
/// cannot start what the engine does not have).
async fn given_image(
    c: &Control,
    app: &App,
    image: String,
    out: &Output,
) -> Result<BuildResult, String> {
    let engine = c.runtimes.engine()?;
    // Swarm nodes pull it themselves; the engine here need not have it.
    if app.runtime != wharf_store::RuntimeKind::Swarm
        && !engine.has_image(&image).await.map_err(|e| e.to_string())?
    {
        return Err(format!(
            "the Docker engine has no image `{image}`: pull, load or build it there first"
        ));
    }
    out.line(&format!("deploying the image {image}"));
    Ok(BuildResult {
        build: "image".into(),
        image: Some(image),
        ..Default::default()
    })
}

/// For Swarm, pushes a built image to the registry (`wharf server --registry`), so every node
/// can pull it; returns the reference the service uses.
async fn publish(c: &Control, app: &App, image: String, out: &Output) -> Result<String, String> {
    if app.runtime != wharf_store::RuntimeKind::Swarm {
        return Ok(image);
    }
    let engine = c.runtimes.engine()?;
    if engine.registry().is_none() {
        return Err(
            "Swarm nodes pull images from a registry: start wharf server with --registry HOST[:PORT]"
                .into(),
        );
    }
    out.line("pushing the image to the registry");
    let line = |l: &str| out.line(l);
    engine
        .push_image(&image, &line)
        .await
        .map_err(|e| format!("the image push failed: {e}"))
}

/// Re-activates a kept release with the config it ran with, through the same switch.
pub(crate) async fn rollback(
    c: &Arc<Control>,
    app: &str,
    target: Option<u32>,
    actor: &str,
) -> (i64, Result<String, String>) {
    let op = OpLog::begin(&c.store, Some(app), "rollback", actor);
    let result = match c.deploys.claim(app) {
        None => Err(format!(
            "a deploy of {app} is running; roll back when it has finished"
        )),
        Some(_claim) => roll_back(c, app, target, &op).await,
    };
    if let Err(e) = &result {
        op.failed("rollback", e);
    }
    op.finish(&result);
    (op.id, result)
}

async fn roll_back(
    c: &Arc<Control>,
    app: &str,
    target: Option<u32>,
    op: &OpLog,
) -> Result<String, String> {
    let current = c.store.app(app).map_err(|e| e.to_string())?;
    let releases = c.store.releases(app).map_err(|e| e.to_string())?;
    let release = match target {
        Some(n) => releases
            .into_iter()
            .find(|r| r.number == n)
            .ok_or(format!("{app} has no release {n}"))?,
        None => releases
            .into_iter()
            .find(|r| r.status == ReleaseStatus::Ready && Some(r.number) < current.release)
            .ok_or(format!("{app} has no earlier release to roll back to"))?,
    };
    if Some(release.number) == current.release {
        return Err(format!("release {} is already live", release.number));
    }
    if release.status != ReleaseStatus::Ready {
        return Err(format!(
            "release {} is {} and cannot go live",
            release.number, release.status
        ));
    }
    if !c.data.release(app, release.number).is_dir() {
        return Err(format!(
            "release {}'s folder ({}) is gone, so it cannot go live; deploy it again instead",
            release.number,
            c.data.release(app, release.number).display()
        ));
    }
    // Restore the config the release ran with (a release that never ran keeps today's). The
    // config in force now is saved first, so a server killed from here on puts it back.
    let now_config = snapshot(c, &current)?;
    c.store
        .begin_switch(app, &now_config)
        .map_err(|e| e.to_string())?;
    let ran_before = release.config != "{}";
    let switched = (|| {
        if ran_before {
            let names = restore_config(&c.store, app, &release.config)?;
            op.ok(
                "config",
                format!(
                    "restored the config of release {} (env: {})",
                    release.number,
                    names.join(", ")
                ),
            );
        }
        let config = if ran_before {
            &release.config
        } else {
            &now_config
        };
        c.store
            .activate_release(app, release.number, config)
            .map_err(|e| e.to_string())
    })();
    let previous = match switched {
        Ok(previous) => previous,
        Err(e) => {
            let _ = restore_config(&c.store, app, &now_config);
            // Left open, the switch would be undone at the next start although this release serves.
            if let Err(e) = c.store.finish_switch(app) {
                tracing::error!(%app, error = %e, "could not record the end of a release switch");
            }
            return Err(e);
        }
    };
    if let Err(e) = c.reconciler.reconcile(app, true, op).await {
        // Env first, then the release: until the switch is undone, a restart redoes both.
        let _ = restore_config(&c.store, app, &now_config);
        let _ = c
            .store
            .undo_switch(app, release.number, previous, ReleaseStatus::Ready, None);
        let _ = c.reconciler.restore(app, op).await;
        return Err(format!("release {} did not go live: {e}", release.number));
    }
    // Left open, the switch would be undone at the next start although this release serves.
    if let Err(e) = c.store.finish_switch(app) {
        tracing::error!(%app, error = %e, "could not record the end of a release switch");
    }
    Ok(format!(
        "rolled back to release {} of {app}, live at {}",
        release.number,
        c.reconciler.app_url(app)
    ))
}
