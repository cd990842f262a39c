//! The gateway's error types.

use std::net::SocketAddr;
use std::path::PathBuf;

pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("site \"{0}\" does not exist")]
    UnknownSite(String),
    #[error("site \"{0}\" serves static files; only proxy sites have targets")]
    NotAProxy(String),
    #[error("deploy to site \"{site}\" needs at least one target")]
    NoTargets { site: String },
    #[error(
        "new targets of site \"{site}\" did not become healthy within {waited:?}: {last_error}; the previous targets keep serving"
    )]
    Unhealthy {
        site: String,
        waited: std::time::Duration,
        last_error: String,
    },
    #[error("TLS: {0}")]
    Tls(#[source] wharf_tls::TlsError),
    #[error("cannot open access log {path}: {source}")]
    AccessLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A refused configuration: which file, site and key, and what to change.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub site: Option<String>,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(site) = &self.site {
            write!(f, "site \"{site}\": ")?;
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}
