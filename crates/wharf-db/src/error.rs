//! The one error type of this crate. Messages say what failed and end with the tool's stderr
//! tail; a password never appears in them (tails are redacted where they are captured).

use std::path::PathBuf;
use std::time::Duration;

pub type Result<T, E = DbError> = std::result::Result<T, E>;

#[derive(thiserror::Error, Debug)]
pub enum DbError {
    #[error("unknown database engine `{0}`: use postgres, mysql (mariadb) or redis")]
    UnknownEngine(String),
    #[error("`{program}` is missing for {engine}: install it with `apt-get install -y {package}`")]
    NotInstalled {
        engine: &'static str,
        program: String,
        package: &'static str,
    },
    #[error("invalid {what} `{value}`: {rule}")]
    Invalid {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        what: String,
        status: String,
        stderr: String,
    },
    #[error("{what} did not finish in the time allowed (stopped)")]
    Timeout { what: String },
    #[error("the {engine} server on port {port} did not answer within {within:?}: {last}")]
    NotReady {
        engine: &'static str,
        port: u16,
        within: Duration,
        last: String,
    },
    #[error("the {engine} server exited ({status}) before it was ready: {log}")]
    ServerExited {
        engine: &'static str,
        status: String,
        log: String,
    },
    #[error("`{}` is not a usable {engine} dump: {reason}", path.display())]
    BadDump {
        engine: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Redis loads a dump only at start: stop the server, call `Params::restore_offline`, start it.
    #[error("restoring redis needs the server stopped: stop it, restore offline, start it again")]
    NeedsStop,
    #[error("{what} `{}`: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
