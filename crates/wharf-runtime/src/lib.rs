//! Runtimes start, supervise and stop app instances. The reconciler talks only to the
//! [`Runtime`] trait; `process` (supervised child processes) is the embedded default, and
//! container runtimes implement the same trait.
#![forbid(unsafe_code)]

mod isolation;
mod launch;
mod process;

pub use isolation::{AppUser, Isolation, SandboxPolicy};
pub use launch::{HIDDEN_ENV_PREFIX, Shell, shell_command};
pub use process::{ProcessRuntime, pidfile};

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
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
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Everything needed to run one instance of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    pub app: String,
    /// Unique instance name, e.g. `blog-3001`.
    pub instance: String,
    /// Run with `/bin/sh -c`.
    pub command: String,
    pub workdir: PathBuf,
    /// The app's own variables; the runtime adds `PORT`, `HOST`, `WHARF_VOLUME` and `DATA_DIR`
    /// and passes nothing else from its own environment except `PATH`.
    pub env: BTreeMap<String, String>,
    pub host: IpAddr,
    pub port: u16,
    /// Persistent data directory, kept apart from releases.
    pub volume: PathBuf,
    /// Folder for this app's log files (`<data>/logs/<app>`).
    pub log_dir: PathBuf,
    pub limits: Limits,
    pub restart: RestartPolicy,
    /// SIGTERM → wait this long → SIGKILL.
    pub stop_grace: Duration,
    /// The user it runs as and its sandbox.
    pub isolation: Isolation,
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
    pub port: u16,
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
}

/// A runtime runs instances. Implementations supervise them (restart on crash with backoff)
/// until `stop` is called.
pub trait Runtime: Send + Sync + 'static {
    /// Starts an instance and returns once its process exists (not once it is healthy).
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<()>>;
    /// Stops an instance (SIGTERM, then SIGKILL after the grace period) and forgets it. Resolves
    /// once the process is gone.
    fn stop<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<()>>;
    fn status(&self, instance: &str) -> Option<InstanceStatus>;
    fn list(&self) -> Vec<InstanceStatus>;
    /// Live log lines of an app's instances, as they are written to its log file.
    fn subscribe_logs(&self, app: &str) -> tokio::sync::broadcast::Receiver<String>;
    /// Resolves once the instance's process has ended at least once since it was started
    /// (whether or not a restart follows), with how it ended, e.g. "exited with status 1". For
    /// an instance the runtime does not know, resolves at once with `None`. Lets a caller stop
    /// waiting for health as soon as a new instance cannot get there.
    fn exited<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Option<String>>;
    /// The last `lines` lines the instance wrote on stdout and stderr, oldest first, as the app
    /// wrote them (no time stamps). Everything its process wrote before it ended is included.
    fn recent_output(&self, instance: &str, lines: usize) -> Vec<String>;
}
