//! A one-shot HTTPS client that says what the server presented: the certificate chain and the
//! ALPN protocol, with either real verification against given roots or none (to inspect
//! self-signed certificates).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use crate::client::{Reply, collect};

/// How the client checks the server.
pub enum Trust {
    /// Verify the chain and the name against these PEM roots.
    Roots(Vec<u8>),
    /// Accept any certificate (the test inspects it instead).
    Any,
}

/// What a TLS request saw.
pub struct TlsReply {
    pub reply: Reply,
    /// `h2` or `http/1.1`.
    pub alpn: Option<String>,
    /// The leaf certificate the server presented (DER).
    pub leaf: Vec<u8>,
}

/// `GET path` over TLS with SNI and Host `host`, offering ALPN `alpn` (e.g. `["h2", "http/1.1"]`).
pub async fn get_tls(
    addr: SocketAddr,
    host: &str,
    path: &str,
    alpn: &[&str],
    trust: &Trust,
) -> Result<TlsReply, String> {
    let mut conn = TlsConn::connect(addr, host, alpn, trust).await?;
    let reply = conn.get(path).await?;
    Ok(TlsReply {
        reply,
        alpn: conn.alpn,
        leaf: conn.leaf,
    })
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One TLS connection kept open for several requests.
pub struct TlsConn {
    host: String,
    sender: Sender,
    /// `h2` or `http/1.1`.
    pub alpn: Option<String>,
    /// The leaf certificate the server presented (DER).
    pub leaf: Vec<u8>,
}

impl TlsConn {
    pub async fn connect(
        addr: SocketAddr,
        host: &str,
        alpn: &[&str],
        trust: &Trust,
    ) -> Result<TlsConn, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = match trust {
            Trust::Roots(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    roots
                        .add(cert.map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Any => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, conn) = tls.get_ref();
        let negotiated = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let io = TokioIo::new(tls);
        let sender = if negotiated.as_deref() == Some("h2") {
            let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            Sender::H2(tx)
        } else {
            let (tx, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            Sender::H1(tx)
        };
        Ok(TlsConn {
            host: host.to_string(),
            sender,
            alpn: negotiated,
            leaf,
        })
    }

    /// `GET path` on this connection.
    pub async fn get(&mut self, path: &str) -> Result<Reply, String> {
        let resp = match &mut self.sender {
            Sender::H2(tx) => {
                let req = Request::get(format!("https://{}{path}", self.host))
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                tx.send_request(req).await
            }
            Sender::H1(tx) => {
                let req = Request::get(path)
                    .header("host", &self.host)
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                tx.ready().await.map_err(|e| format!("connection: {e}"))?;
                tx.send_request(req).await
            }
        }
        .map_err(|e| format!("request: {e}"))?;
        collect(resp).await
    }
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
