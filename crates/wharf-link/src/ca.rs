//! The server's link CA, the server's link certificate, and an agent's identity.
use std::path::Path;
use std::sync::Arc;

use crate::LinkError;

/// The server's link certificate authority (`<data>/link/ca.pem`, `ca.key`).
pub struct Authority {}

impl Authority {
    /// Loads the CA from `dir`, or creates it there (ECDSA P-256; key file mode 0600).
    pub fn load_or_create(_dir: &Path) -> Result<Authority, LinkError> {
        unimplemented!()
    }
    /// Hex SHA-256 of the CA certificate (DER): what a join URL pins.
    pub fn fingerprint(&self) -> String {
        unimplemented!()
    }
    /// TLS 1.3 only; ALPN [`crate::ALPN_LINK`] and [`crate::ALPN_ENROL`]; a fresh server
    /// certificate for [`crate::SERVER_NAME`] signed by the CA, sent with the CA in its chain;
    /// client certificates optional (enrolment has none) but, when given, verified against the CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, LinkError> {
        unimplemented!()
    }
    /// Signs an agent's certificate request: the certificate names `node`. Returns its PEM.
    pub fn sign_node(&self, _node: &str, _csr_pem: &str) -> Result<String, LinkError> {
        unimplemented!()
    }
}

/// The verified client certificate of a link connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// The node name the certificate was issued to.
    pub node: String,
    /// Hex SHA-256 of the certificate (DER): the server pins it per node.
    pub fingerprint: String,
}

/// An agent's identity after enrolment, kept in its data folder.
#[derive(Clone)]
pub struct Identity {
    pub node: String,
    /// The server's link address, `host:port`.
    pub server: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Identity {
    /// Loads `<dir>/identity.json`, if the agent enrolled.
    pub fn load(_dir: &Path) -> Result<Option<Identity>, LinkError> {
        unimplemented!()
    }
    /// Writes `<dir>/identity.json` (mode 0600) atomically.
    pub fn save(&self, _dir: &Path) -> Result<(), LinkError> {
        unimplemented!()
    }
    /// Hex SHA-256 of its certificate (DER).
    pub fn fingerprint(&self) -> String {
        unimplemented!()
    }
}
