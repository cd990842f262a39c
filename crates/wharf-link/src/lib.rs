//! Links between the wharf server and its agents (other machines).
//!
//! Transport only: it knows nothing of apps or the reconciler. The server holds a link CA
//! ([`ca::Authority`]); an agent enrols once with a one-time token ([`enrol`]) and gets its own
//! key and certificate ([`Identity`]); from then on it keeps one TLS 1.3 connection to the server,
//! both ends pinned to the CA, carrying many streams ([`mux`]). Each stream carries one exchange
//! of [`proto`] messages, framed by [`frame`].
//!
//! # Security
//! - TLS 1.3 only (rustls, ring), mutual authentication. The CA is ECDSA P-256, kept in
//!   `<dir>/ca.pem` and `<dir>/ca.key` (mode 0600, written atomically). The server presents a
//!   fresh leaf certificate for [`SERVER_NAME`] made at each start, sent with the CA in its chain.
//! - Enrolment (ALPN [`ALPN_ENROL`]): the agent makes its own P-256 key and sends only a
//!   certificate request, so the key never leaves the agent. It trusts the server only if the
//!   chain holds a CA whose SHA-256 equals the fingerprint in the join URL and the leaf verifies
//!   against that CA. The server turns the one-time token into a node name (its `check`) and
//!   issues a client certificate naming that node (CN and SAN, client-auth use, 5 years).
//! - Links (ALPN [`ALPN_LINK`]): the agent presents its certificate and trusts only its CA; the
//!   server verifies the certificate against the CA and hands the caller the node name and the
//!   certificate's fingerprint. Revocation is the caller's: its node registry pins each node's
//!   fingerprint and forgets removed nodes.
//!
//! # Streams
//! One link connection carries many yamux streams; either end opens them ([`Session`] splits
//! into an [`Opener`] and the [`Incoming`] streams). A [`Stream`]'s `shutdown` is a half-close:
//! the other end reads end of stream and can still write back.
#![forbid(unsafe_code)]

pub mod proto;

/// The port `wharf server --link` listens on by default.
pub const DEFAULT_PORT: u16 = 7443;

/// What went wrong with a link; each message names what to check or fix.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Other(String),
    /// A file or socket operation failed; `what` says which.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Making, parsing or signing a certificate failed.
    #[error("{what}: {source}")]
    Cert {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    /// Setting up TLS failed (bad key or certificate material).
    #[error("{what}: {source}")]
    Tls {
        what: String,
        #[source]
        source: rustls::Error,
    },
    /// A stored file or a frame is not what it should be.
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A file holds something unusable (names the file and what to do).
    #[error("{0}")]
    Invalid(String),
    #[error("a frame of {len} bytes is over the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("the stream ended inside a frame")]
    TruncatedFrame,
    #[error("invalid join URL `{url}`: {why} (expected wharf://HOST:PORT/CA-FINGERPRINT)")]
    JoinUrl { url: String, why: String },
    /// The server's `check` refused the token (or the request); the reason is the server's.
    #[error("the server refused the token: {0}")]
    Refused(String),
    /// The agent's pinned CA is not the server's.
    #[error(
        "the server at {server} presented a link CA with fingerprint {found}, but the join URL \
         pins {pinned}: check that the join URL is for this server (`wharf nodes add` prints it)"
    )]
    CaMismatch {
        server: String,
        pinned: String,
        found: String,
    },
    /// The other end broke the protocol (no client certificate, unknown ALPN, no answer ...).
    #[error("{0}")]
    Protocol(String),
    #[error("{0} timed out")]
    Timeout(String),
    #[error("the link is closed")]
    Closed,
    #[error("the link's multiplexer failed: {0}")]
    Mux(#[source] yamux::ConnectionError),
}

impl LinkError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LinkError {
        let what = what.into();
        move |source| LinkError::Io { what, source }
    }
    pub(crate) fn cert(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> LinkError {
        let what = what.into();
        move |source| LinkError::Cert { what, source }
    }
    pub(crate) fn tls(what: impl Into<String>) -> impl FnOnce(rustls::Error) -> LinkError {
        let what = what.into();
        move |source| LinkError::Tls { what, source }
    }
}

pub mod ca;
pub mod enrol;
pub mod frame;
pub mod mux;

pub use ca::{Authority, Identity, PeerCert};
pub use enrol::{JoinUrl, server_address};
pub use mux::{Incoming, Opener, Session, Stream};

/// ALPN of an enrolled agent's link connection.
pub const ALPN_LINK: &[u8] = b"wharf-link/1";
/// ALPN of an enrolment (no client certificate yet).
pub const ALPN_ENROL: &[u8] = b"wharf-enrol/1";
/// The name in the server's link certificate. Agents pin the server's CA, so no DNS name or
/// address of the server needs to be in it.
pub const SERVER_NAME: &str = "wharf-link";
