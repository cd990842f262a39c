//! The agent's errors: those that stop it (data folder, enrolment) and those a request gets
//! back as `Reply::Error` (their message is for the server's operator).

use std::path::PathBuf;

use wharf_link::LinkError;
use wharf_runtime::RuntimeError;

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "this agent already joined as node `{node}`; to join again, remove {} first",
        file.display()
    )]
    AlreadyJoined { node: String, file: PathBuf },
    #[error(
        "this agent has not joined a server ({} is missing): run it once with --join URL \
         --token TOKEN, as `wharf nodes add NAME` printed on the server",
        file.display()
    )]
    NotJoined { file: PathBuf },
    #[error("cannot read the agent's identity in {}: {source}", dir.display())]
    Identity {
        dir: PathBuf,
        #[source]
        source: LinkError,
    },
    /// The join token was spent on an identity that could not be kept.
    #[error(
        "joined the server as node `{node}`, but cannot keep its identity in {}: {source}; \
         the join token is used up: fix that, then on the server `wharf nodes remove {node}` \
         and `wharf nodes add {node}` for a new one",
        dir.display()
    )]
    IdentityNotKept {
        node: String,
        dir: PathBuf,
        #[source]
        source: Box<LinkError>,
    },
    #[error("cannot join the server at {server}: {source}")]
    Enrol {
        server: String,
        #[source]
        source: LinkError,
    },
    #[error("{0}")]
    BadName(String),
    #[error("this agent has no `{runtime}` runtime{}", why.as_deref().map(|w| format!(" ({w})")).unwrap_or_default())]
    NoRuntime {
        runtime: String,
        why: Option<String>,
    },
    #[error("release {release} of {app} is not on this agent: send it first")]
    NoRelease { app: String, release: u32 },
    #[error("a process instance of {app} needs a release to run in")]
    NoReleaseGiven { app: String },
    #[error("release {release} of {app}: the tar entry `{entry}` would land outside its folder")]
    Escapes {
        app: String,
        release: u32,
        entry: String,
    },
    #[error("release {release} of {app}: cannot unpack: {source}")]
    Unpack {
        app: String,
        release: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("image {image}: {source}")]
    Image {
        image: String,
        #[source]
        source: wharf_docker::DockerError,
    },
    #[error("the image archive the server sent does not hold {image} (it held: {loaded})")]
    ImageMissing { image: String, loaded: String },
    #[error("cannot listen on {addr} for tunnel {tunnel}: {source}")]
    Listen {
        tunnel: String,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        AgentError::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
