//! Certificates for the gateway's HTTPS listeners.
//!
//! - [`CertStore`]: the certificates served, chosen by SNI per handshake and swapped without
//!   touching listeners; also holds pending ACME challenge answers.
//! - [`pem`], [`selfsigned`], [`acme`]: the three ways a certificate arrives.
//! - [`CertManager`]: keeps the wanted certificates installed, persisted (0600) and renewed.
//! - [`server_config`]: the rustls configuration of an HTTPS listener (TLS 1.2+, ALPN h2 and
//!   http/1.1).
#![forbid(unsafe_code)]

pub mod acme;
mod files;
pub mod info;
mod manager;
pub mod pem;
pub mod selfsigned;
mod store;

use std::sync::Arc;

pub use acme::{Acme, AcmeSettings, Challenge};
pub use files::{write_cert_files, write_private};
pub use info::CertInfo;
pub use manager::{Attempt, CertManager, CertSource, CertStatus, RenewPolicy, WantedCert};
pub use store::{ACME_TLS_ALPN, CertStore};

/// Everything that can go wrong with a certificate, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    #[error("bad private key: {0}")]
    BadKey(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    #[error("ACME: {0}")]
    Acme(String),
    #[error("{0}")]
    Config(String),
}

/// The crypto provider used everywhere (ring: portable, no C toolchain beyond cc).
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// An HTTPS listener's configuration: certificates from `store` by SNI, TLS 1.2 and 1.3, ALPN
/// h2 then http/1.1 (and the ACME TLS-ALPN-01 protocol, which only validators offer).
pub fn server_config(store: Arc<CertStore>) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    // Resumption for any number of returning clients, not just the last 256 the session cache
    // holds: stateless tickets, their keys in memory only and rotated every 6 hours. (TLS 1.2
    // clients without tickets still resume by session ID from that cache.)
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
    // One ticket per connection, as Go's TLS servers send: a client resumes with it and gets a
    // fresh one each time. A second ticket (rustls' and OpenSSL's default, for parallel
    // connections) costs every new connection's client about 5% more CPU, measured with wrk.
    config.send_tls13_tickets = 1;
    Ok(config)
}
