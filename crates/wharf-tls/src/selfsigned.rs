//! Self-signed certificates (rcgen, ECDSA P-256), e.g. origin certificates behind a CDN in
//! "Full" mode, which accepts any certificate from the origin.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::TlsError;

pub struct Generated {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate for `hosts`, valid for 10 years from now.
pub fn generate(hosts: &[String]) -> Result<Generated, TlsError> {
    let mut params =
        CertificateParams::new(hosts.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "wharf self-signed");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(3650);
    let key = KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
