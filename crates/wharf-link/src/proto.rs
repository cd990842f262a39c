//! The messages the server and an agent exchange. Every exchange has a stream of its own: the
//! opener writes one request ([`ToAgent`] from the server, [`ToServer`] from an agent), the other
//! end answers with [`Reply`] frames. Streams that carry bytes afterwards (a release's tar, a
//! proxied connection, a tunnel) switch to raw bytes once the first `Reply::Done` is written;
//! the two that carry bytes from the server (`PutRelease`, `PutImage`) send them right after
//! the request and are answered once the server ended its side.
use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A request from the server to an agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToAgent {
    /// Heartbeat: the agent answers each `Ping` frame with `Reply::Pong` on the same stream, which
    /// stays open for the link's life.
    Ping,
    /// Does the agent hold this release's folder? `Reply::Has`.
    HasRelease { app: String, release: u32 },
    /// The release's folder follows as a tar stream, up to the server's end of stream; the agent
    /// unpacks it into a fresh folder, renames it into place and answers `Reply::Done`.
    /// `sealed`: the archive is followed by [`RELEASE_SEAL`] and its length in bytes (u64, little
    /// endian), and a stream without them is refused: a link cut short reads like an end of
    /// stream, and a cut archive would otherwise be kept as the release. (Absent from older
    /// servers' requests, which an agent still takes as they are.)
    PutRelease {
        app: String,
        release: u32,
        #[serde(default)]
        sealed: bool,
    },
    /// Does the agent's Docker engine hold this image (`wharf/<app>:<release>`)? `Reply::Has`;
    /// `Has(false)`, not an error, when the agent has no Docker runtime.
    HasImage { image: String },
    /// The image follows as a `docker save` tar stream, up to the server's end of stream (its
    /// write side shut down); the agent loads it into its engine and answers `Reply::Done`, or
    /// `Reply::Error` (no Docker runtime, a refused archive, or an archive without `image`).
    /// No time limit: an image may be large, but the transfer ends with the link.
    PutImage { image: String },
    /// Start instances with the agent's runtime; `Reply::Started` with their addresses on the
    /// agent's machine.
    Start(Spec),
    /// Stop an instance; `Reply::Done`.
    Stop { runtime: String, instance: String },
    /// Every instance of every runtime the agent runs; `Reply::Instances`.
    List,
    /// The last `lines` lines of an app's output; `Reply::Lines`.
    Logs {
        runtime: String,
        app: String,
        lines: usize,
    },
    /// An app's output as it comes: one `Reply::Line` per line until either end closes.
    FollowLogs { runtime: String, app: String },
    /// How the instance ended, if it did; `Reply::Exit`.
    Exited { runtime: String, instance: String },
    /// The instance's last lines of output (for a failed start's message); `Reply::Lines`.
    RecentOutput {
        runtime: String,
        instance: String,
        lines: usize,
    },
    /// Connect to a TCP address on the agent's machine; after `Reply::Done` the stream carries
    /// the connection's bytes both ways (`Reply::Error` if the connection is refused).
    Connect { addr: SocketAddr },
    /// Bind a tunnel's listening end on the agent's machine; every connection it accepts comes
    /// to the server as a stream opening with [`ToServer::Tunnel`]. `Reply::Done` once bound.
    Listen { tunnel: String, addr: SocketAddr },
    /// Close a tunnel's listening end; `Reply::Done`.
    Unlisten { tunnel: String },
}

/// Ends a sealed release archive (see [`ToAgent::PutRelease`]), before its length.
pub const RELEASE_SEAL: &[u8; 8] = b"WHARFEND";

/// A request from an agent to the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToServer {
    /// First stream of every connection: who the agent is (its node name comes from its
    /// certificate, not from here). `Reply::Done`.
    Hello(Hello),
    /// A connection accepted by a tunnel's listening end on the agent; the server answers
    /// `Reply::Done` once it reached the tunnel's other end, then the stream carries its bytes.
    Tunnel { tunnel: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The agent's wharf version.
    pub version: String,
    /// The runtimes it can run instances with (`process`, `docker`).
    pub runtimes: Vec<String>,
}

/// An answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    Done,
    Pong,
    Has(bool),
    Started(Vec<SocketAddr>),
    Instances(Vec<Instance>),
    Lines(Vec<String>),
    Line(String),
    Exit(Option<String>),
    /// The request failed; the message says why, for the operator.
    Error(String),
}

/// What an instance runs, as the agent's runtime is asked to run it. Paths are the agent's
/// own: a process runs in the folder of `release` that [`ToAgent::PutRelease`] sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Workload {
    Process {
        command: String,
    },
    Image {
        image: String,
        command: Option<String>,
    },
}

/// One instance (or, for a runtime that replicates, all replicas) to start on an agent.
#[derive(Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The agent's runtime to use: `process` or `docker`.
    pub runtime: String,
    pub app: String,
    pub instance: String,
    pub release: Option<u32>,
    pub fingerprint: String,
    pub workload: Workload,
    pub env: BTreeMap<String, String>,
    pub port: Option<u16>,
    pub replicas: u32,
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u32>,
    pub stop_grace_ms: u64,
    pub read_only: bool,
    /// The app's own user id on the server (`None`: it has none). An agent that runs as root
    /// runs the app's processes as this user, so apps on a node cannot read each other's
    /// volumes nor the agent's key.
    #[serde(default)]
    pub user: Option<u32>,
    /// Whether the app's processes run in the sandbox (on unless the app opted out).
    #[serde(default)]
    pub sandbox: bool,
    /// Where the release's folder is on the server. What a build wrote into it (a virtualenv's
    /// scripts and `pyvenv.cfg`, `PATH` and `VIRTUAL_ENV` in `env`) names this path, so the
    /// agent makes it lead to its copy (a symbolic link) where nothing else is there.
    #[serde(default)]
    pub server_path: Option<String>,
}

impl std::fmt::Debug for Spec {
    // Env values are secrets: names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("runtime", &self.runtime)
            .field("app", &self.app)
            .field("instance", &self.instance)
            .field("release", &self.release)
            .field("workload", &self.workload)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// An instance as the agent reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Instance {
    pub runtime: String,
    pub app: String,
    pub instance: String,
    /// Its address on the agent's machine.
    pub addr: Option<SocketAddr>,
    /// `running`, `backoff`, `failed` or `stopped`.
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// Seconds since the Unix epoch.
    pub started_at: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub last_exit: Option<String>,
    pub fingerprint: String,
    pub release: Option<u32>,
    pub id: Option<String>,
    pub image: Option<String>,
}
