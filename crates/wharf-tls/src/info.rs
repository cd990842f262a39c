//! What `wharf certs` shows about a certificate, read from its DER with x509-parser.

use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;

use crate::TlsError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// DNS names from the subject alternative names.
    pub hosts: Vec<String>,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl CertInfo {
    pub fn parse(der: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| TlsError::BadCertificate(format!("unreadable certificate: {e}")))?;
        let mut hosts = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(n) = name {
                    hosts.push(n.to_string());
                }
            }
        }
        Ok(CertInfo {
            hosts,
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Whether `host` (lower-case) is one of the certificate's names, a wildcard covering one
    /// label as TLS clients check.
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|n| {
            n == host
                || n.strip_prefix('*')
                    .zip(host.find('.'))
                    .is_some_and(|(suffix, dot)| &host[dot..] == suffix)
        })
    }

    /// The end of validity for people: `2026-11-22 14:00 UTC`.
    pub fn valid_until(&self) -> String {
        utc(self.not_after)
    }

    /// When to renew: once a third of the lifetime is left.
    pub fn renew_at(&self) -> i64 {
        self.not_after - (self.not_after - self.not_before) / 3
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC` (the raw number if out of range).
pub(crate) fn utc(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_for_people() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_795_675_765), "2026-11-26 06:49 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn names_and_one_label_wildcards() {
        let info = CertInfo {
            hosts: vec!["a.test".into(), "*.b.test".into()],
            issuer: String::new(),
            not_before: 0,
            not_after: 0,
        };
        for (host, want) in [
            ("a.test", true),
            ("x.b.test", true),
            ("b.test", false),
            ("y.x.b.test", false),
            ("xa.test", false),
            ("x.bb.test", false),
        ] {
            assert_eq!(info.covers(host), want, "{host}");
        }
    }
}
