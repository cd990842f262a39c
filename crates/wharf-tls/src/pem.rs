//! PEM certificate chains and private keys, parsed with rustls-pki-types and checked against
//! each other before anything uses them.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::TlsError;
use crate::info::CertInfo;

/// Parses a chain (leaf first) and its key; refuses an empty chain, an unreadable key, and a key
/// that does not belong to the leaf certificate.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Arc<CertifiedKey>, CertInfo), TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate(format!("not a PEM certificate chain: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::BadCertificate(
            "no CERTIFICATE block found in the PEM".into(),
        ));
    };
    let info = CertInfo::parse(leaf)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::BadKey(format!("not a PEM private key: {e}")))?;
    let certified =
        CertifiedKey::from_der(chain, key, &crate::provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                TlsError::BadKey("the private key does not belong to the certificate".into())
            }
            e => TlsError::BadKey(format!("unusable private key: {e}")),
        })?;
    Ok((Arc::new(certified), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_garbage_empty_and_mismatched_keys() {
        let a = crate::selfsigned::generate(&["a.test".into()]).unwrap();
        let b = crate::selfsigned::generate(&["b.test".into()]).unwrap();
        let (_, info) = certified_key(a.cert_pem.as_bytes(), a.key_pem.as_bytes()).unwrap();
        assert_eq!(info.hosts, ["a.test"]);
        let cases: [(&str, &str, &str); 4] = [
            ("not pem", &a.key_pem, "no CERTIFICATE"),
            (&a.cert_pem, "nope", "not a PEM private key"),
            (&a.cert_pem, &b.key_pem, "does not belong"),
            (&a.key_pem, &a.key_pem, "no CERTIFICATE"),
        ];
        for (cert, key, says) in cases {
            let err = certified_key(cert.as_bytes(), key.as_bytes())
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
