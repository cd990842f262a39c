//! Supervision: start a child in its own process group with a clean environment, restart it
//! with exponential backoff when it dies, give up after too many quick crashes, and stop it with
//! SIGTERM then SIGKILL.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::cgroup::Cgroup;
use super::logs::AppLog;
use super::pidfile;
use super::stats::groups_usage;
use crate::{
    BoxFuture, InstanceSpec, InstanceState, InstanceStatus, Result, Runtime, RuntimeError, Workload,
};

/// Runs app instances as supervised child processes.
#[derive(Default)]
pub struct ProcessRuntime {
    instances: Mutex<HashMap<String, Arc<Instance>>>,
    logs: Mutex<HashMap<String, Arc<AppLog>>>,
    /// Where each running instance's pid is recorded, so a later start can stop what a killed
    /// server left behind.
    pids: Option<PathBuf>,
    /// The sandbox launcher (the wharf binary), for instances with a sandbox policy.
    launcher: Option<Arc<PathBuf>>,
    /// `<data>/logs`: where an app's log is found when none of its instances ran since start.
    log_root: Option<PathBuf>,
}

struct Instance {
    spec: InstanceSpec,
    /// What it runs, from the spec's [`Workload::Process`].
    command: String,
    workdir: PathBuf,
    /// Where it listens: loopback and the port chosen at start.
    addr: SocketAddr,
    status: Mutex<Live>,
    stop: CancellationToken,
    /// Becomes true once the supervisor has finished (process gone, no restart coming).
    done: watch::Receiver<bool>,
    /// How the process last ended; `None` until it first ends (not counting a stop).
    exited: watch::Sender<Option<String>>,
    /// The last lines the app wrote, for error messages when it dies before it is healthy.
    output: Mutex<VecDeque<String>>,
}

/// Lines of output kept per instance for [`Runtime::recent_output`].
const KEEP_OUTPUT: usize = 100;
/// Longer lines are cut there.
const KEEP_LINE_BYTES: usize = 1000;

impl Instance {
    fn remember(&self, line: &str) {
        let mut out = self.output.lock().unwrap_or_else(|p| p.into_inner());
        if out.len() == KEEP_OUTPUT {
            out.pop_front();
        }
        let mut line = line.trim_end_matches(['\n', '\r']);
        if line.len() > KEEP_LINE_BYTES {
            // Bounded memory and error messages, whatever an app prints.
            let mut end = KEEP_LINE_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line = &line[..end];
        }
        out.push_back(line.to_string());
    }
}

#[derive(Clone, Default)]
struct Live {
    state: Option<InstanceState>,
    pid: Option<u32>,
    restarts: u32,
    started_at: Option<SystemTime>,
    limits_note: Option<String>,
    last_exit: Option<String>,
}

impl ProcessRuntime {
    pub fn new() -> ProcessRuntime {
        ProcessRuntime::default()
    }

    /// A runtime that records instance pids in `dir` (see [`ProcessRuntime::reap_orphans`]).
    pub fn with_pid_dir(dir: PathBuf) -> std::io::Result<ProcessRuntime> {
        // Owner only: apps that run as other users have no business there.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)?;
        Ok(ProcessRuntime {
            pids: Some(dir),
            ..Default::default()
        })
    }

    /// Reads the logs of apps that have not run since start from `<root>/<app>/app.log`.
    pub fn with_log_root(mut self, root: PathBuf) -> ProcessRuntime {
        self.log_root = Some(root);
        self
    }

    /// Starts sandboxed instances through `launcher` (`LAUNCHER sandbox-exec ... -- /bin/sh -c
    /// CMD`, see [`crate::shell_command`]).
    pub fn with_launcher(mut self, launcher: PathBuf) -> ProcessRuntime {
        self.launcher = Some(Arc::new(launcher));
        self
    }

    /// Kills the process groups of instances a previous run recorded and did not stop (the
    /// server was killed). Returns how many were still running.
    pub fn reap_orphans(&self) -> usize {
        let Some(dir) = &self.pids else { return 0 };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut reaped = 0;
        for entry in entries.flatten() {
            if pidfile::reap(&entry.path()) {
                reaped += 1;
            }
        }
        reaped
    }

    fn app_log(&self, spec: &InstanceSpec) -> Arc<AppLog> {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let log = logs
            .entry(spec.app.clone())
            .or_insert_with(|| Arc::new(AppLog::new(None)))
            .clone();
        log.set_dir(&spec.log_dir);
        log
    }

    /// Stops every instance (the server is shutting down).
    pub async fn shutdown(&self) {
        let names: Vec<String> = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for name in names {
            let _ = self.stop_instance(&name).await;
        }
    }

    async fn start_instance(&self, spec: InstanceSpec) -> Result<Vec<SocketAddr>> {
        let name = spec.instance.clone();
        let Workload::Process { command, workdir } = spec.workload.clone() else {
            return Err(RuntimeError::Engine(format!(
                "the process runtime cannot run {name}: it runs commands, not images"
            )));
        };
        let port = match spec.port {
            Some(p) => p,
            None => free_port().map_err(|source| RuntimeError::Io {
                context: "no free port".into(),
                source,
            })?,
        };
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let (done_tx, done_rx) = watch::channel(false);
        let instance = Arc::new(Instance {
            spec: spec.clone(),
            command,
            workdir,
            addr,
            status: Mutex::new(Live::default()),
            stop: CancellationToken::new(),
            done: done_rx,
            exited: watch::channel(None).0,
            output: Mutex::new(VecDeque::new()),
        });
        {
            let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
            if map.contains_key(&name) {
                return Err(RuntimeError::AlreadyRunning(name));
            }
            map.insert(name.clone(), instance.clone());
        }
        if let Err(source) = std::fs::create_dir_all(&spec.volume) {
            // Nothing started: the name is free again (left, it showed as running for ever).
            self.instances
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
            return Err(RuntimeError::Io {
                context: format!("cannot create the volume {}", spec.volume.display()),
                source,
            });
        }
        let log = self.app_log(&spec);
        let (first_tx, first_rx) = oneshot::channel();
        let pid_file = self.pids.as_ref().map(|d| d.join(format!("{name}.pid")));
        tokio::spawn(supervise(
            instance,
            log,
            pid_file,
            self.launcher.clone(),
            first_tx,
            done_tx,
        ));
        match first_rx.await {
            Ok(Ok(())) => Ok(vec![addr]),
            Ok(Err(source)) => {
                self.instances
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
                Err(RuntimeError::Spawn {
                    instance: name,
                    source,
                })
            }
            Err(_) => Ok(vec![addr]),
        }
    }

    async fn stop_instance(&self, name: &str) -> Result<()> {
        let instance = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| RuntimeError::UnknownInstance(name.to_string()))?;
        instance.stop.cancel();
        let mut done = instance.done.clone();
        let _ = done.wait_for(|d| *d).await;
        Ok(())
    }
}

impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Vec<SocketAddr>>> {
        Box::pin(self.start_instance(spec))
    }

    fn stop<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.stop_instance(instance))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>> {
        let list = self.list_now();
        Box::pin(async move { Ok(list) })
    }

    fn logs<'a>(&'a self, app: &'a str, lines: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        let dir = self
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .and_then(|l| l.dir());
        Box::pin(async move {
            let Some(dir) = dir.or_else(|| self.log_root.as_ref().map(|r| r.join(app))) else {
                return Ok(Vec::new());
            };
            let path = dir.join("app.log");
            tokio::task::spawn_blocking(move || super::logs::tail(&path, lines))
                .await
                .map_err(|e| RuntimeError::Engine(format!("cannot read the log: {e}")))?
                .map_err(|source| RuntimeError::Io {
                    context: "cannot read the app's log".into(),
                    source,
                })
        })
    }

    fn subscribe_logs(&self, app: &str) -> broadcast::Receiver<String> {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        // Before any instance ran, follow a channel the first instance will use.
        logs.entry(app.to_string())
            .or_insert_with(|| Arc::new(AppLog::new(None)))
            .live
            .subscribe()
    }

    fn exited<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Option<String>> {
        let found = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .map(|i| i.exited.subscribe());
        Box::pin(async move {
            let mut rx = found?;
            let how: Option<String> = rx.wait_for(Option::is_some).await.ok()?.clone();
            how
        })
    }

    fn recent_output<'a>(&'a self, instance: &'a str, lines: usize) -> BoxFuture<'a, Vec<String>> {
        let map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let out = map.get(instance).map_or_else(Vec::new, |i| {
            let out = i.output.lock().unwrap_or_else(|p| p.into_inner());
            out.iter()
                .skip(out.len().saturating_sub(lines))
                .cloned()
                .collect()
        });
        Box::pin(async move { out })
    }
}

impl ProcessRuntime {
    /// One instance's status now (with usage), if it runs.
    pub fn status(&self, instance: &str) -> Option<InstanceStatus> {
        self.list_now().into_iter().find(|s| s.instance == instance)
    }

    /// Every instance with its usage, read from `/proc` now.
    fn list_now(&self) -> Vec<InstanceStatus> {
        let map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let pgids: Vec<u32> = map
            .values()
            .filter_map(|i| i.status.lock().unwrap_or_else(|p| p.into_inner()).pid)
            .collect();
        let mut usage = groups_usage(&pgids);
        map.values()
            .map(|i| {
                let mut s = status_without_usage(i);
                if let Some(u) = s.pid.and_then(|p| usage.remove(&p)) {
                    s.rss_bytes = Some(u.rss_bytes);
                    s.cpu_seconds = Some(u.cpu_seconds);
                }
                s
            })
            .collect()
    }
}

fn status_without_usage(i: &Instance) -> InstanceStatus {
    let live = i.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    InstanceStatus {
        addr: Some(i.addr),
        pid: live.pid,
        restarts: live.restarts,
        started_at: live.started_at,
        limits_note: live.limits_note,
        last_exit: live.last_exit,
        fingerprint: i.spec.fingerprint.clone(),
        release: i.spec.release,
        ..InstanceStatus::new(
            &i.spec.app,
            &i.spec.instance,
            live.state.unwrap_or(InstanceState::Running),
        )
    }
}

fn command(inst: &Instance, launcher: Option<&std::path::Path>) -> std::io::Result<Command> {
    let spec = &inst.spec;
    let shell = crate::shell_command(
        launcher,
        spec.isolation.sandbox.as_ref(),
        spec.isolation.user,
        &inst.command,
    )?;
    let mut cmd = Command::new(&shell.program);
    cmd.args(&shell.args)
        .current_dir(&inst.workdir)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .envs(spec.env.iter().map(|(k, v)| (shell.env_name(k), v)))
        .env("PORT", inst.addr.port().to_string())
        .env("HOST", inst.addr.ip().to_string())
        .env("WHARF_VOLUME", &spec.volume)
        .env("DATA_DIR", &spec.volume)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(user) = shell.spawn_as {
        // std sets the group, drops supplementary groups, then the user, in the child before
        // exec.
        cmd.uid(user.uid).gid(user.gid);
    }
    if spec.isolation.user.is_some() && !spec.env.contains_key("HOME") {
        // The app user has no passwd entry, so `HOME` comes from here: its volume.
        cmd.env("HOME", &spec.volume);
    }
    Ok(cmd)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".to_string(),
    }
}

/// Copies a stream of the child into the app's log and the instance's recent output, until
/// the stream ends.
fn pump(
    reader: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<AppLog>,
    inst: Arc<Instance>,
    stream: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            inst.remember(&line);
            log.line(&inst.spec.instance, stream, &line);
        }
    })
}

async fn supervise(
    inst: Arc<Instance>,
    log: Arc<AppLog>,
    pid_file: Option<PathBuf>,
    launcher: Option<Arc<PathBuf>>,
    first: oneshot::Sender<std::io::Result<()>>,
    done: watch::Sender<bool>,
) {
    let spec = &inst.spec;
    let name = spec.instance.clone();
    let set = |f: &dyn Fn(&mut Live)| f(&mut inst.status.lock().unwrap_or_else(|p| p.into_inner()));
    let wants_limits = spec.limits.memory_bytes.is_some() || spec.limits.cpu_millis.is_some();
    let cgroup = if wants_limits {
        match Cgroup::create(&name, &spec.limits) {
            Ok(cg) => Some(cg),
            Err(note) => {
                set(&|l| l.limits_note = Some(note.clone()));
                None
            }
        }
    } else {
        None
    };
    let mut first = Some(first);
    let mut crashes = 0u32;
    let mut backoff = spec.restart.backoff_initial;
    loop {
        let spawned =
            command(&inst, launcher.as_deref().map(|p| p.as_path())).and_then(|mut c| c.spawn());
        let mut child: Child = match spawned {
            Ok(c) => c,
            Err(e) => {
                log.line(&name, "wharf", &format!("cannot start: {e}"));
                let msg = format!("could not start: {e}");
                set(&|l| {
                    l.state = Some(InstanceState::Failed);
                    l.last_exit = Some(msg.clone());
                });
                inst.exited.send_replace(Some(msg));
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                }
                break;
            }
        };
        let pid = child.id();
        if let (Some(file), Some(p)) = (&pid_file, pid) {
            let _ = pidfile::record(file, p);
        }
        if let (Some(cg), Some(pid)) = (&cgroup, pid)
            && let Err(note) = cg.add(pid)
        {
            set(&|l| l.limits_note = Some(note.clone()));
        }
        set(&|l| {
            l.state = Some(InstanceState::Running);
            l.pid = pid;
            l.started_at = Some(SystemTime::now());
        });
        let pumps: Vec<_> = [
            child
                .stdout
                .take()
                .map(|o| pump(o, log.clone(), inst.clone(), "out")),
            child
                .stderr
                .take()
                .map(|e| pump(e, log.clone(), inst.clone(), "err")),
        ]
        .into_iter()
        .flatten()
        .collect();
        log.line(
            &name,
            "wharf",
            &format!("started (pid {}) on {}", pid.unwrap_or(0), inst.addr),
        );
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        let started = Instant::now();

        let exit = tokio::select! {
            status = child.wait() => status,
            _ = inst.stop.cancelled() => {
                terminate(&mut child, pid, spec.stop_grace).await;
                log.line(&name, "wharf", "stopped");
                set(&|l| { l.state = Some(InstanceState::Stopped); l.pid = None; });
                break;
            }
        };
        let how = exit
            .map(describe)
            .unwrap_or_else(|e| format!("lost track of the process: {e}"));
        // Anything the shell left behind in the group goes with it.
        if let Some(pid) = pid.and_then(|p| Pid::from_raw(p as i32)) {
            let _ = kill_process_group(pid, Signal::KILL);
        }
        // The group is gone, so the pipes end: read what the process wrote last before telling
        // anyone it ended (bounded, in case something outside the group holds a pipe open).
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            for p in pumps {
                let _ = p.await;
            }
        })
        .await;
        inst.exited.send_replace(Some(how.clone()));
        if started.elapsed() >= spec.restart.stable_after {
            crashes = 0;
            backoff = spec.restart.backoff_initial;
        }
        crashes += 1;
        if crashes > spec.restart.max_restarts {
            log.line(
                &name,
                "wharf",
                &format!("{how}; crashed {crashes} times in a row, giving up"),
            );
            set(&|l| {
                l.state = Some(InstanceState::Failed);
                l.pid = None;
                l.last_exit = Some(how.clone());
            });
            break;
        }
        log.line(
            &name,
            "wharf",
            &format!("{how}; restarting in {}ms", backoff.as_millis()),
        );
        set(&|l| {
            l.state = Some(InstanceState::Backoff);
            l.pid = None;
            l.last_exit = Some(how.clone());
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = inst.stop.cancelled() => {
                set(&|l| l.state = Some(InstanceState::Stopped));
                break;
            }
        }
        backoff = (backoff * 2).min(spec.restart.backoff_max);
        set(&|l| l.restarts += 1);
    }
    if let Some(cg) = cgroup {
        cg.remove();
    }
    if let Some(file) = pid_file {
        let _ = std::fs::remove_file(file);
    }
    let _ = done.send(true);
}

/// SIGTERM to the group, then SIGKILL once the grace period is over.
async fn terminate(child: &mut Child, pid: Option<u32>, grace: Duration) {
    let group = pid.and_then(|p| Pid::from_raw(p as i32));
    if let Some(g) = group {
        let _ = kill_process_group(g, Signal::TERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        if let Some(g) = group {
            let _ = kill_process_group(g, Signal::KILL);
        }
        let _ = child.kill().await;
    } else if let Some(g) = group {
        // The leader is gone; make sure nothing it started lingers.
        let _ = kill_process_group(g, Signal::KILL);
    }
}

/// A port the OS considers free now. The instance binds it moments later; a clash shows up as
/// a failed health check and the old instances keep serving.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
