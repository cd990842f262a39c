//! The server's link CA, the server's link certificate, and an agent's identity.
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::{ALPN_ENROL, ALPN_LINK, LinkError, SERVER_NAME};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const IDENTITY: &str = "identity.json";
/// How long a node's certificate is valid. Revocation does not wait for it: the server's node
/// registry pins each node's certificate and forgets removed nodes.
const NODE_CERT_DAYS: i64 = 5 * 365;
/// The server makes a fresh leaf at each start; this only has to outlast one run.
const SERVER_CERT_DAYS: i64 = 10 * 365;
const CA_DAYS: i64 = 100 * 365;
/// Clocks of the server and agents may differ a little.
const BACKDATE: Duration = Duration::days(1);

/// The server's link certificate authority (`<data>/link/ca.pem`, `ca.key`).
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    fingerprint: String,
}

impl std::fmt::Debug for Authority {
    // The CA key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Loads the CA from `dir`, or creates it there (ECDSA P-256; key file mode 0600).
    pub fn load_or_create(dir: &Path) -> Result<Authority, LinkError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = fs::read_to_string(&cert_path)
                    .map_err(LinkError::io(format!("reading {}", cert_path.display())))?;
                let key_pem = fs::read_to_string(&key_path)
                    .map_err(LinkError::io(format!("reading {}", key_path.display())))?;
                let key = KeyPair::from_pem(&key_pem).map_err(LinkError::cert(format!(
                    "{} is not a key",
                    key_path.display()
                )))?;
                Authority::from_pem(cert_pem, key, &cert_path)
            }
            (false, false) => Authority::create(dir),
            (true, false) | (false, true) => {
                let (there, missing) = if cert_path.exists() {
                    (&cert_path, &key_path)
                } else {
                    (&key_path, &cert_path)
                };
                Err(LinkError::Invalid(format!(
                    "{} exists but {} is missing: restore it from a backup, or remove {} to \
                     start a new link CA (every agent then has to enrol again)",
                    there.display(),
                    missing.display(),
                    there.display()
                )))
            }
        }
    }

    fn create(dir: &Path) -> Result<Authority, LinkError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(LinkError::io(format!("creating {}", dir.display())))?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(LinkError::cert("making the link CA's key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name("wharf link CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, CA_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(LinkError::cert("making the link CA's certificate"))?;
        // The key first: a certificate without its key would be a CA nobody can use.
        write_atomic(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&dir.join(CA_CERT), cert.pem().as_bytes(), 0o644)?;
        Authority::from_pem(cert.pem(), key, &dir.join(CA_CERT))
    }

    fn from_pem(ca_pem: String, key: KeyPair, path: &Path) -> Result<Authority, LinkError> {
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
            LinkError::Invalid(format!("{} is not a PEM certificate: {e}", path.display()))
        })?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, key).map_err(LinkError::cert(format!(
            "{} is not a CA certificate",
            path.display()
        )))?;
        Ok(Authority {
            issuer,
            fingerprint: fingerprint(&ca_der),
            ca_der,
            ca_pem,
        })
    }

    /// Hex SHA-256 of the CA certificate (DER): what a join URL pins.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The CA certificate (PEM), as agents get it at enrolment.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// TLS 1.3 only; ALPN [`crate::ALPN_LINK`] and [`crate::ALPN_ENROL`]; a fresh server
    /// certificate for [`crate::SERVER_NAME`] signed by the CA, sent with the CA in its chain;
    /// client certificates optional (enrolment has none) but, when given, verified against the CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, LinkError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(LinkError::cert("making the server's link key"))?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()])
            .map_err(LinkError::cert("making the server's link certificate"))?;
        params.distinguished_name = common_name(SERVER_NAME);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, SERVER_CERT_DAYS);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(LinkError::cert("signing the server's link certificate"))?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| LinkError::Other(format!("verifying agents' certificates: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(LinkError::tls("TLS 1.3 with ring"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(LinkError::tls("the server's link certificate"))?;
        config.alpn_protocols = vec![ALPN_LINK.to_vec(), ALPN_ENROL.to_vec()];
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, LinkError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(LinkError::tls("the link CA as a trust anchor"))?;
        Ok(roots)
    }

    /// Signs an agent's certificate request: the certificate names `node`. Returns its PEM.
    pub fn sign_node(&self, node: &str, csr_pem: &str) -> Result<String, LinkError> {
        check_node_name(node)?;
        // Verifies the request's signature: the agent holds the key it asks a certificate for.
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(LinkError::cert("the agent's certificate request"))?;
        // Nothing the agent asked for is kept but its public key: the server names the node.
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(node);
        params.subject_alt_names = vec![SanType::DnsName(
            node.try_into()
                .map_err(LinkError::cert(format!("node name `{node}`")))?,
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, NODE_CERT_DAYS);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(LinkError::cert(format!(
                "signing the certificate of node {node}"
            )))?;
        Ok(cert.pem())
    }
}

fn check_node_name(node: &str) -> Result<(), LinkError> {
    // A CN holds at most 64 characters; printable ASCII keeps it a valid SAN too.
    if node.is_empty() || node.len() > 64 || !node.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(LinkError::Invalid(format!(
            "node name `{node}` is not 1 to 64 printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(days);
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lowercase hex SHA-256 of `der`.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Writes `path` whole or not at all: a temporary file beside it (created with `mode`, so a
/// secret is never readable by others, not even briefly), synced, then renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LinkError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let what = format!("writing {}", path.display());
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(LinkError::io(what.clone()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(LinkError::io(what.clone()))?;
    drop(file);
    fs::rename(&tmp, path).map_err(LinkError::io(what))?;
    if let Some(dir) = path.parent().and_then(|d| fs::File::open(d).ok()) {
        // Makes the rename itself durable; a failure here loses nothing already written.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The verified client certificate of a link connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// The node name the certificate was issued to.
    pub node: String,
    /// Hex SHA-256 of the certificate (DER): the server pins it per node.
    pub fingerprint: String,
}

impl PeerCert {
    /// Reads the node name (CN, else the first DNS SAN) of a certificate the CA issued.
    pub(crate) fn from_der(der: &[u8]) -> Result<PeerCert, LinkError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
            LinkError::Protocol(format!("the agent's certificate does not parse: {e}"))
        })?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let san = || {
            cert.subject_alternative_name()
                .ok()
                .flatten()
                .and_then(|san| {
                    san.value.general_names.iter().find_map(|name| match name {
                        x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                        _ => None,
                    })
                })
        };
        let node = cn.or_else(san).filter(|n| !n.is_empty()).ok_or_else(|| {
            LinkError::Protocol("the agent's certificate names no node".to_string())
        })?;
        Ok(PeerCert {
            node,
            fingerprint: fingerprint(der),
        })
    }
}

/// An agent's identity after enrolment, kept in its data folder.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub node: String,
    /// The server's link address, `host:port`.
    pub server: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node", &self.node)
            .field("server", &self.server)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads `<dir>/identity.json`, if the agent enrolled.
    pub fn load(dir: &Path) -> Result<Option<Identity>, LinkError> {
        let path = dir.join(IDENTITY);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LinkError::io(format!("reading {}", path.display()))(e)),
        };
        let identity: Identity = serde_json::from_str(&text).map_err(|source| LinkError::Json {
            what: format!("{} is not an agent identity", path.display()),
            source,
        })?;
        identity.check().map_err(|why| {
            LinkError::Invalid(format!(
                "{}: {why}; enrol the agent again with a new join token",
                path.display()
            ))
        })?;
        Ok(Some(identity))
    }

    fn check(&self) -> Result<(), String> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|e| format!("the CA certificate is not PEM: {e}"))?;
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| format!("the certificate is not PEM: {e}"))?;
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| format!("the key is not PEM: {e}"))?;
        Ok(())
    }

    /// Writes `<dir>/identity.json` (mode 0600) atomically.
    pub fn save(&self, dir: &Path) -> Result<(), LinkError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(LinkError::io(format!("creating {}", dir.display())))?;
        let json = serde_json::to_vec_pretty(self).map_err(|source| LinkError::Json {
            what: "encoding the agent identity".into(),
            source,
        })?;
        write_atomic(&dir.join(IDENTITY), &json, 0o600)
    }

    /// Hex SHA-256 of its certificate (DER); empty if `cert_pem` holds no certificate.
    pub fn fingerprint(&self) -> String {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map(|der| fingerprint(&der))
            .unwrap_or_default()
    }
}
