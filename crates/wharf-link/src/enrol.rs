//! Enrolment: an agent trades a one-time token for its own certificate; and the link
//! connections that follow it, on both ends.
use std::net::Ipv6Addr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::ca::{fingerprint, provider};
use crate::frame::{read_msg, write_msg};
use crate::{
    ALPN_ENROL, ALPN_LINK, Authority, Identity, LinkError, PeerCert, SERVER_NAME, Session,
};

/// A TCP connection to the server must be made within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The TLS handshake must be done within this (either end).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An enrolment's request and answer must be through within this after the handshake.
const ENROL_TIMEOUT: Duration = Duration::from_secs(30);

/// What `wharf nodes add` prints and `wharf agent --join` takes:
/// `wharf://HOST:PORT/CA-FINGERPRINT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinUrl {
    pub server: String,
    pub ca_fingerprint: String,
}

impl std::str::FromStr for JoinUrl {
    type Err = LinkError;
    fn from_str(s: &str) -> Result<JoinUrl, LinkError> {
        let bad = |why: String| LinkError::JoinUrl {
            url: s.to_string(),
            why,
        };
        let rest = s
            .strip_prefix("wharf://")
            .ok_or_else(|| bad("it does not start with wharf://".into()))?;
        let (address, fp) = rest
            .split_once('/')
            .ok_or_else(|| bad("the CA fingerprint after the address is missing".into()))?;
        let server = server_address(address).map_err(bad)?;
        if fp.len() != 64 || !fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad(format!(
                "the CA fingerprint `{fp}` is not 64 lowercase hex digits (a SHA-256)"
            )));
        }
        Ok(JoinUrl {
            server,
            ca_fingerprint: fp.to_string(),
        })
    }
}

/// Checks the `HOST:PORT` (or `[IPv6]:PORT`) agents reach the server at, as a join URL holds
/// it (`wharf server --link-public` is checked with this too), and returns it as written.
pub fn server_address(address: &str) -> Result<String, String> {
    let (host, port) = if let Some(v6) = address.strip_prefix('[') {
        let (ip, after) = v6
            .split_once(']')
            .ok_or("the `[` before an IPv6 address has no `]`")?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{ip}` is not an IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or("the port after the address is missing")?;
        (format!("[{ip}]"), port)
    } else {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or("the port after the host is missing")?;
        if host.contains(':') {
            return Err(format!(
                "write the IPv6 address `{host}` in brackets: [{host}]"
            ));
        }
        if host.is_empty() {
            return Err("the host is missing".into());
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(format!("the host `{host}` holds `{c}`"));
        }
        (host.to_string(), port)
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("the port `{port}` is not a number from 1 to 65535"))?;
    Ok(format!("{host}:{port}"))
}

impl std::fmt::Display for JoinUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wharf://{}/{}", self.server, self.ca_fingerprint)
    }
}

/// The agent's one enrolment frame.
#[derive(Serialize, Deserialize)]
struct EnrolRequest {
    token: String,
    csr_pem: String,
}

/// The server's answer to it.
#[derive(Serialize, Deserialize)]
enum EnrolReply {
    Issued {
        node: String,
        cert_pem: String,
        ca_pem: String,
    },
    Refused {
        reason: String,
    },
}

/// Agent side: makes a key, connects with ALPN_ENROL verifying the server's chain against the
/// CA pinned by the URL, sends the token and a certificate request, gets its certificate.
pub async fn enrol(url: &JoinUrl, token: &str) -> Result<Identity, LinkError> {
    // The key never leaves the agent: the server signs a request for it.
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(LinkError::cert("making the agent's key"))?;
    let csr_pem = CertificateParams::default()
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(LinkError::cert("making the agent's certificate request"))?;

    let provider = provider();
    let verifier = Arc::new(PinnedCa {
        pinned: url.ca_fingerprint.clone(),
        provider: provider.clone(),
        found: OnceLock::new(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(LinkError::tls("TLS 1.3 with ring"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_ENROL.to_vec()];

    let tcp = connect_tcp(&url.server).await?;
    let mut tls = match handshake(config, tcp, &url.server).await {
        Ok(tls) => tls,
        Err(e) => {
            return Err(match verifier.found.get() {
                Some(found) => LinkError::CaMismatch {
                    server: url.server.clone(),
                    pinned: url.ca_fingerprint.clone(),
                    found: found.clone(),
                },
                None => e,
            });
        }
    };

    let request = EnrolRequest {
        token: token.to_string(),
        csr_pem,
    };
    let exchange = async {
        write_msg(&mut tls, &request).await?;
        read_msg::<EnrolReply>(&mut tls).await
    };
    let reply = tokio::time::timeout(ENROL_TIMEOUT, exchange)
        .await
        .map_err(|_| LinkError::Timeout(format!("enrolling with {}", url.server)))??;
    match reply {
        Some(EnrolReply::Issued {
            node,
            cert_pem,
            ca_pem,
        }) => {
            let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
                LinkError::Protocol(format!("the server sent a CA that is not PEM: {e}"))
            })?;
            if fingerprint(&ca) != url.ca_fingerprint {
                return Err(LinkError::Protocol(
                    "the server sent a CA other than the one the join URL pins".into(),
                ));
            }
            Ok(Identity {
                node,
                server: url.server.clone(),
                ca_pem,
                cert_pem,
                key_pem: key.serialize_pem(),
            })
        }
        Some(EnrolReply::Refused { reason }) => Err(LinkError::Refused(reason)),
        None => Err(LinkError::Protocol(format!(
            "the server at {} closed the enrolment without an answer",
            url.server
        ))),
    }
}

/// Trusts a server whose chain holds the CA the join URL pins, and whose leaf that CA signed
/// for [`SERVER_NAME`]. Notes the CA it saw when that is not the pinned one.
#[derive(Debug)]
struct PinnedCa {
    pinned: String,
    provider: Arc<CryptoProvider>,
    found: OnceLock<String>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| fingerprint(c) == self.pinned) else {
            let found = intermediates
                .last()
                .map(|c| fingerprint(c))
                .unwrap_or_else(|| "(none: the server sent no CA)".into());
            let _ = self.found.set(found);
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What the server decides about a token.
pub type TokenCheck<'a> = &'a (dyn Fn(&str) -> Result<String, String> + Send + Sync);

/// Server side: the outcome of one accepted connection.
#[derive(Debug)]
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
    authority: &Authority,
    config: std::sync::Arc<rustls::ServerConfig>,
    tcp: tokio::net::TcpStream,
    check: TokenCheck<'_>,
) -> Result<Accepted, LinkError> {
    let _ = tcp.set_nodelay(true);
    let peer_addr = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "an agent".into());
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp))
        .await
        .map_err(|_| LinkError::Timeout(format!("the TLS handshake with {peer_addr}")))?
        .map_err(LinkError::io(format!("the TLS handshake with {peer_addr}")))?;
    let (_, conn) = tls.get_ref();
    match conn.alpn_protocol() {
        Some(ALPN_ENROL) => {
            tokio::time::timeout(ENROL_TIMEOUT, answer_enrol(authority, tls, check))
                .await
                .map_err(|_| LinkError::Timeout(format!("the enrolment of {peer_addr}")))?
        }
        Some(ALPN_LINK) => {
            // rustls verified the chain against the CA; only its presence is left to check.
            let leaf = conn
                .peer_certificates()
                .and_then(|certs| certs.first())
                .ok_or_else(|| {
                    LinkError::Protocol(format!(
                        "{peer_addr} opened a link without a client certificate; it must enrol first"
                    ))
                })?;
            let peer = PeerCert::from_der(leaf)?;
            Ok(Accepted::Link {
                peer,
                session: Session::server(tls),
            })
        }
        _ => Err(LinkError::Protocol(format!(
            "{peer_addr} asked for neither wharf-link/1 nor wharf-enrol/1 (ALPN)"
        ))),
    }
}

async fn answer_enrol(
    authority: &Authority,
    mut tls: tokio_rustls::server::TlsStream<TcpStream>,
    check: TokenCheck<'_>,
) -> Result<Accepted, LinkError> {
    // Before the token is checked, anyone may send this: a request and its CSR fit in 64 KiB.
    let request: EnrolRequest = crate::frame::read_msg_within(&mut tls, 64 << 10)
        .await?
        .ok_or_else(|| {
            LinkError::Protocol("the agent closed the enrolment without a request".into())
        })?;
    let (reply, outcome) = match check(&request.token) {
        Ok(node) => match authority.sign_node(&node, &request.csr_pem) {
            Ok(cert_pem) => {
                let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
                    .map_err(|e| LinkError::Other(format!("the issued certificate: {e}")))?;
                let peer = PeerCert {
                    node: node.clone(),
                    fingerprint: fingerprint(&der),
                };
                let reply = EnrolReply::Issued {
                    node,
                    cert_pem,
                    ca_pem: authority.ca_pem().to_string(),
                };
                (reply, Ok(Accepted::Enrolled(peer)))
            }
            Err(e) => {
                let reason = format!("its certificate request was not signed: {e}");
                (EnrolReply::Refused { reason }, Err(e))
            }
        },
        Err(reason) => (
            EnrolReply::Refused {
                reason: reason.clone(),
            },
            Err(LinkError::Refused(reason)),
        ),
    };
    write_msg(&mut tls, &reply).await?;
    // close_notify, so the agent reads the answer to its end.
    let _ = tls.shutdown().await;
    outcome
}

/// Agent side: connects with its identity (client certificate, ALPN_LINK, TLS 1.3, server
/// pinned to the CA) and starts the session.
pub async fn connect(identity: &Identity) -> Result<Session, LinkError> {
    let invalid = |what: &str, e: rustls::pki_types::pem::Error| {
        LinkError::Invalid(format!(
            "the agent identity's {what} is not valid PEM ({e}); enrol again"
        ))
    };
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(identity.ca_pem.as_bytes())
        .map_err(|e| invalid("CA certificate", e))?;
    roots
        .add(ca)
        .map_err(LinkError::tls("the agent identity's CA certificate"))?;
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| invalid("key", e))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(LinkError::tls("TLS 1.3 with ring"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(LinkError::tls("the agent identity's certificate and key"))?;
    config.alpn_protocols = vec![ALPN_LINK.to_vec()];
    let tcp = connect_tcp(&identity.server).await?;
    let tls = handshake(config, tcp, &identity.server).await?;
    Ok(Session::client(tls))
}

async fn connect_tcp(server: &str) -> Result<TcpStream, LinkError> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server))
        .await
        .map_err(|_| LinkError::Timeout(format!("connecting to the server at {server}")))?
        .map_err(LinkError::io(format!(
            "connecting to the server at {server}"
        )))?;
    // Requests are small frames; waiting to fill packets only adds latency.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

async fn handshake(
    config: rustls::ClientConfig,
    tcp: TcpStream,
    server: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, LinkError> {
    let name = ServerName::try_from(SERVER_NAME).expect("SERVER_NAME is a valid DNS name");
    let connector = TlsConnector::from(Arc::new(config));
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| LinkError::Timeout(format!("the TLS handshake with {server}")))?
        .map_err(LinkError::io(format!("the TLS handshake with {server}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ok(url: &str, server: &str) {
        let parsed: JoinUrl = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(parsed.server, server, "{url}");
        assert_eq!(parsed.ca_fingerprint, FP, "{url}");
        assert_eq!(parsed.to_string(), url, "Display gives back the URL");
    }

    fn bad(url: &str, says: &str) {
        let err = url.parse::<JoinUrl>().unwrap_err().to_string();
        assert!(err.contains(says), "{url}: `{err}` should say `{says}`");
        assert!(
            err.contains("expected wharf://HOST:PORT/CA-FINGERPRINT"),
            "{err}"
        );
    }

    #[test]
    fn join_urls_that_parse() {
        ok(
            &format!("wharf://example.com:7443/{FP}"),
            "example.com:7443",
        );
        ok(&format!("wharf://10.0.0.1:1/{FP}"), "10.0.0.1:1");
        ok(&format!("wharf://[::1]:7443/{FP}"), "[::1]:7443");
        ok(
            &format!("wharf://[fd00::5:1]:65535/{FP}"),
            "[fd00::5:1]:65535",
        );
    }

    #[test]
    fn bad_join_urls_say_what_is_wrong() {
        bad(&format!("https://h:1/{FP}"), "does not start with wharf://");
        bad("wharf://h:1", "CA fingerprint after the address is missing");
        bad(&format!("wharf://h/{FP}"), "port after the host is missing");
        bad(&format!("wharf://:7443/{FP}"), "host is missing");
        bad(&format!("wharf://h:0/{FP}"), "port `0` is not a number");
        bad(
            &format!("wharf://h:70000/{FP}"),
            "port `70000` is not a number",
        );
        bad(&format!("wharf://h:x/{FP}"), "port `x`");
        bad(&format!("wharf://h st:1/{FP}"), "holds ` `");
        bad(&format!("wharf://::1:7443/{FP}"), "in brackets: [::1]");
        bad(&format!("wharf://[::1:7443/{FP}"), "has no `]`");
        bad(
            &format!("wharf://[nope]:1/{FP}"),
            "`nope` is not an IPv6 address",
        );
        bad(
            &format!("wharf://[::1]/{FP}"),
            "port after the address is missing",
        );
        bad("wharf://h:1/abc", "`abc` is not 64 lowercase hex digits");
        bad(
            &format!("wharf://h:1/{}", FP.to_uppercase()),
            "not 64 lowercase hex digits",
        );
        bad(&format!("wharf://h:1/{FP}/"), "not 64 lowercase hex digits");
    }
}
