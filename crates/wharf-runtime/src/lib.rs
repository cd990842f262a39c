//! Runtimes start, supervise and stop app instances. The reconciler talks only to the
//! [`Runtime`] trait; `process` (supervised child processes) is the embedded default, and
//! container runtimes implement the same trait.
#![forbid(unsafe_code)]

mod isolation;
mod launch;
mod process;

pub use isolation::{AppUser, Isolation, SandboxPolicy};
pub use launch::{HIDDEN_ENV_PREFIX, Shell, shell_command};
pub use process::{ProcessRuntime, free_port, pidfile};

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("instance \"{0}\" is already running")]
    AlreadyRunning(String),
    #[error("instance \"{0}\" does not exist")]
    UnknownInstance(String),
    #[error("cannot start instance \"{instance}\": {source}")]
    Spawn {
        instance: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Engine(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// What an instance runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A command run with `/bin/sh -c` in a folder of this machine (process runtime).
    Process { command: String, workdir: PathBuf },
    /// A container image (Docker and Swarm runtimes); `command`, when set, replaces the image's
    /// own command (run with `/bin/sh -c`).
    Image {
        image: String,
        command: Option<String>,
    },
}

/// Everything needed to run one instance of an app (or, for a runtime that
/// [replicates](Runtime::replicates) itself, all of its replicas). Its `Debug` form names the
/// env variables but never shows their values.
#[derive(Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub app: String,
    /// Unique instance name, e.g. `blog-7f3a9c`; unique across server restarts too.
    pub instance: String,
    /// The release it runs, if any (kept with the instance, e.g. as a container label).
    pub release: Option<u32>,
    /// Digest of everything that needs a restart when it changes. Runtimes whose instances
    /// outlive the server keep it with the instance, so the reconciler can adopt an instance
    /// that still matches instead of restarting it.
    pub fingerprint: String,
    pub workload: Workload,
    /// The app's own variables; the runtime adds `PORT`, `HOST`, `WHARF_VOLUME` and `DATA_DIR`
    /// and passes nothing else from its own environment except `PATH` (processes).
    pub env: BTreeMap<String, String>,
    /// The port the app listens on. `None`: the runtime chooses (a free loopback port for a
    /// process, [`DEFAULT_CONTAINER_PORT`] in a container).
    pub port: Option<u16>,
    /// Replicas, for a runtime that [replicates](Runtime::replicates) itself; 1 otherwise.
    pub replicas: u32,
    /// Persistent data directory on this machine, kept apart from releases.
    pub volume: PathBuf,
    /// Folder for this app's log files (`<data>/logs/<app>`).
    pub log_dir: PathBuf,
    pub limits: Limits,
    pub restart: RestartPolicy,
    /// SIGTERM → wait this long → SIGKILL.
    pub stop_grace: Duration,
    /// The user it runs as and its sandbox (processes).
    pub isolation: Isolation,
    /// Container options (ignored by the process runtime).
    pub container: ContainerOptions,
}

impl std::fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSpec")
            .field("app", &self.app)
            .field("instance", &self.instance)
            .field("release", &self.release)
            .field("workload", &self.workload)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("port", &self.port)
            .field("replicas", &self.replicas)
            .field("limits", &self.limits)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

/// The port apps in containers listen on unless told otherwise (`PORT` says it).
pub const DEFAULT_CONTAINER_PORT: u16 = 8000;

/// Where a container sees its app's volume (`WHARF_VOLUME` says it).
pub const CONTAINER_VOLUME: &str = "/data";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerOptions {
    /// Read-only root file system, with a writable tmpfs on `/tmp`.
    pub read_only: bool,
    /// Swarm placement constraints, e.g. `node.labels.zone==a` (other runtimes ignore them).
    pub constraints: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    /// CPU in thousandths of a core (500 = half a core).
    pub cpu_millis: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Consecutive crashes (each within `stable_after` of its start) before giving up.
    pub max_restarts: u32,
    /// A run this long resets the crash count.
    pub stable_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            max_restarts: 10,
            stable_after: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceState {
    Running,
    /// Crashed; waiting before the next restart.
    Backoff,
    /// Crashed too often; the runtime gave up.
    Failed,
    Stopped,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Running => "running",
            InstanceState::Backoff => "backoff",
            InstanceState::Failed => "failed",
            InstanceState::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Debug)]
pub struct InstanceStatus {
    pub app: String,
    pub instance: String,
    /// Where the gateway reaches it, once known.
    pub addr: Option<SocketAddr>,
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub started_at: Option<SystemTime>,
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// Why memory/CPU limits are not enforced (e.g. no writable cgroup v2), if they are not.
    pub limits_note: Option<String>,
    /// How the last run ended, e.g. "exited with status 1" or "killed by signal 9".
    pub last_exit: Option<String>,
    /// [`InstanceSpec::fingerprint`] of what it runs.
    pub fingerprint: String,
    pub release: Option<u32>,
    /// The machine it runs on (Swarm node, remote agent); `None`: this one.
    pub node: Option<String>,
    /// The container or task id, for container runtimes.
    pub id: Option<String>,
    /// The image, for container runtimes.
    pub image: Option<String>,
}

impl InstanceStatus {
    /// A status with only the identity filled in.
    pub fn new(app: &str, instance: &str, state: InstanceState) -> InstanceStatus {
        InstanceStatus {
            app: app.to_string(),
            instance: instance.to_string(),
            addr: None,
            state,
            pid: None,
            restarts: 0,
            started_at: None,
            rss_bytes: None,
            cpu_seconds: None,
            limits_note: None,
            last_exit: None,
            fingerprint: String::new(),
            release: None,
            node: None,
            id: None,
            image: None,
        }
    }
}

/// A runtime runs instances: supervised processes here, containers in a Docker engine, Swarm
/// services, or (through a link) any of these on another machine. The reconciler drives each
/// app through it, one change at a time per app; it never assumes the instances are local
/// processes: addresses, logs and usage come from the runtime.
pub trait Runtime: Send + Sync + 'static {
    /// Short name shown to users: `process`, `docker`, `swarm`.
    fn name(&self) -> &'static str;
    /// Starts an instance and resolves once it exists (not once it is healthy) with the
    /// addresses the gateway reaches it at (one per replica it runs).
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Vec<SocketAddr>>>;
    /// Stops an instance (SIGTERM, then SIGKILL after the grace period) and forgets it. Resolves
    /// once it is gone.
    fn stop<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Everything it runs, with usage (CPU, memory) where it can tell.
    fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>>;
    /// Instances a previous server started and that still run (e.g. containers after `kill -9`
    /// of the server), taken back under supervision. The reconciler keeps those that match what
    /// it wants (same fingerprint) and stops the rest. Runtimes whose instances end with the
    /// server return nothing.
    fn adopt(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Whether instances keep running when the server stops (containers do; processes are
    /// stopped with it).
    fn outlives_server(&self) -> bool {
        false
    }
    /// Whether one [`InstanceSpec`] runs all of an app's replicas (Swarm services); otherwise
    /// the reconciler starts one instance per replica.
    fn replicates(&self) -> bool {
        false
    }
    /// For runtimes that move replicas by themselves (Swarm): the instance's current healthy
    /// addresses, updated as they change. `None`: addresses are fixed from start to stop.
    fn addresses(&self, _instance: &str) -> Option<tokio::sync::watch::Receiver<Vec<SocketAddr>>> {
        None
    }
    /// The last `lines` lines of an app's log (all its instances, with time stamps), oldest
    /// first.
    fn logs<'a>(&'a self, app: &'a str, lines: usize) -> BoxFuture<'a, Result<Vec<String>>>;
    /// Live log lines of an app's instances, as they are written.
    fn subscribe_logs(&self, app: &str) -> tokio::sync::broadcast::Receiver<String>;
    /// Resolves once the instance has ended at least once since it was started (whether or not
    /// a restart follows), with how it ended, e.g. "exited with status 1". For an instance the
    /// runtime does not know, resolves at once with `None`. Lets a caller stop waiting for
    /// health as soon as a new instance cannot get there.
    fn exited<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Option<String>>;
    /// The last `lines` lines the instance wrote on stdout and stderr, oldest first, as the app
    /// wrote them (no time stamps). Everything it wrote before it ended is included.
    fn recent_output<'a>(&'a self, instance: &'a str, lines: usize) -> BoxFuture<'a, Vec<String>>;
}
