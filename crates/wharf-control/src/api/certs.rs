//! Certificates: `GET /api/v1/certs` lists every domain served over HTTPS with its issuer,
//! expiry and last attempt; manual certificates uploaded with a domain are checked and kept here.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use wharf_client::dto::{CertAttempt, CertView};

use super::error::{ApiError, ApiResult};
use crate::Control;
use crate::reconciler::{cert_name, host_of_cert};

pub(crate) async fn list(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<CertView>>> {
    // One look-up per certificate: the listing costs what the certificates do, not the apps.
    let views = c
        .certs
        .statuses()
        .into_iter()
        .map(|s| {
            let host = host_of_cert(&s.name);
            Ok(CertView {
                app: c.store.domain_owner(&host)?,
                host,
                source: s.source.to_string(),
                issuer: s.info.as_ref().map(|i| i.issuer.clone()),
                not_before: s.info.as_ref().map(|i| i.not_before),
                not_after: s.info.as_ref().map(|i| i.not_after),
                last_attempt: s.last_attempt.map(|a| CertAttempt {
                    at: a.at,
                    ok: a.ok,
                    message: a.message,
                }),
                next_renewal: s.next_renewal,
            })
        })
        .collect::<ApiResult<_>>()?;
    Ok(Json(views))
}

/// Checks an uploaded chain and key (parse, key matches, names cover `host`) and keeps them
/// 0600 where the certificate manager reads them. Nothing is written when a check fails.
pub(crate) fn save_manual(c: &Control, host: &str, cert: &str, key: &str) -> ApiResult<()> {
    let (_, info) = wharf_tls::pem::certified_key(cert.as_bytes(), key.as_bytes())
        .map_err(|e| ApiError::invalid(format!("{e}")))?;
    if !info.covers(host) {
        return Err(ApiError::invalid(format!(
            "the certificate is for {}, not {host}",
            if info.hosts.is_empty() {
                "no host name".to_string()
            } else {
                info.hosts.join(", ")
            }
        )));
    }
    let dir = c.data.certs().join(cert_name(host));
    wharf_tls::write_cert_files(&dir, cert, key, "manual")
        .map_err(|e| ApiError::internal(e.to_string()))
}
