//! Enrolment: an agent trades a one-time token for its own certificate.
use crate::{Authority, Identity, LinkError, PeerCert, Session};

/// What `wharf nodes add` prints and `wharf agent --join` takes:
/// `wharf://HOST:PORT/CA-FINGERPRINT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinUrl {
    pub server: String,
    pub ca_fingerprint: String,
}

impl std::str::FromStr for JoinUrl {
    type Err = LinkError;
    fn from_str(_s: &str) -> Result<JoinUrl, LinkError> {
        unimplemented!()
    }
}

impl std::fmt::Display for JoinUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wharf://{}/{}", self.server, self.ca_fingerprint)
    }
}

/// Agent side: makes a key, connects with ALPN_ENROL verifying the server's chain against the
/// CA pinned by the URL, sends the token and a certificate request, gets its certificate.
pub async fn enrol(_url: &JoinUrl, _token: &str) -> Result<Identity, LinkError> {
    unimplemented!()
}

/// What the server decides about a token.
pub type TokenCheck<'a> = &'a (dyn Fn(&str) -> Result<String, String> + Send + Sync);

/// Server side: the outcome of one accepted connection.
pub enum Accepted {
    /// An agent enrolled: its node name and certificate fingerprint (to pin).
    Enrolled(PeerCert),
    /// An enrolled agent's link.
    Link { peer: PeerCert, session: Session },
}

/// Server side: TLS-accepts `tcp`; an enrolment is answered here (`check` turns a token into
/// the node name it was made for, or a reason to refuse, which the agent is told); a link
/// connection is verified against the CA and returned as a session. The caller checks the
/// peer against its node registry (pinning, removal).
pub async fn accept(
    _authority: &Authority,
    _config: std::sync::Arc<rustls::ServerConfig>,
    _tcp: tokio::net::TcpStream,
    _check: TokenCheck<'_>,
) -> Result<Accepted, LinkError> {
    unimplemented!()
}

/// Agent side: connects with its identity (client certificate, ALPN_LINK, TLS 1.3, server
/// pinned to the CA) and starts the session.
pub async fn connect(_identity: &Identity) -> Result<Session, LinkError> {
    unimplemented!()
}
