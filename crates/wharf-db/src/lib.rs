//! Managed databases run from the system's binaries (Debian's `postgresql`, `mariadb-server`,
//! `redis-server`): what wharf knows about each engine, the server as one shell command for
//! the supervised process runtime, credentials and URLs, readiness, consistent dumps,
//! restores, and test restores that verify a backup.
//!
//! Modules: `engine` (engines and their binaries), `params` (one database: credentials,
//! URLs, clients, readiness), `server` (the server command), `dump` (dumps, restores,
//! counting contents), `verify` (test restores), `exec` (bounded tool runs).
#![forbid(unsafe_code)]

mod dump;
mod engine;
mod error;
mod exec;
mod params;
mod server;
mod verify;

pub use dump::RestoreReport;
pub use engine::Engine;
pub use error::{DbError, Result};
pub use params::Params;
pub use server::PASSWORD_VAR;
pub use verify::verify_dump;
