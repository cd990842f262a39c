//! Links between the wharf server and its agents (other machines).
//!
//! Transport only: it knows nothing of apps or the reconciler. The server holds a link CA
//! ([`ca::Authority`]); an agent enrols once with a one-time token ([`enrol`]) and gets its own
//! key and certificate ([`Identity`]); from then on it keeps one TLS 1.3 connection to the server,
//! both ends pinned to the CA, carrying many streams ([`mux`]). Each stream carries one exchange
//! of [`proto`] messages, framed by [`frame`].
#![forbid(unsafe_code)]

pub mod proto;

/// The port `wharf server --link` listens on by default.
pub const DEFAULT_PORT: u16 = 7443;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Other(String),
}

pub mod ca;
pub mod enrol;
pub mod frame;
pub mod mux;

pub use ca::{Authority, Identity, PeerCert};
pub use enrol::JoinUrl;
pub use mux::{Incoming, Opener, Session, Stream};

/// ALPN of an enrolled agent's link connection.
pub const ALPN_LINK: &[u8] = b"wharf-link/1";
/// ALPN of an enrolment (no client certificate yet).
pub const ALPN_ENROL: &[u8] = b"wharf-enrol/1";
/// The name in the server's link certificate. Agents pin the server's CA, so no DNS name or
/// address of the server needs to be in it.
pub const SERVER_NAME: &str = "wharf-link";
