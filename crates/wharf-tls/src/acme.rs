//! ACME issuance with instant-acme: the account is created once and kept in the state folder
//! (0600); each order answers its challenges through the [`CertStore`] the gateway serves from,
//! HTTP-01 on the plain-HTTP listener or TLS-ALPN-01 on the HTTPS listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use crate::TlsError;
use crate::store::CertStore;

/// Let's Encrypt's staging directory: untrusted certificates, generous rate limits. Try a set-up
/// here first, then switch to [`LETS_ENCRYPT`].
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Challenge {
    /// Answered on the plain-HTTP listener (port 80 in production).
    #[default]
    Http01,
    /// Answered on the HTTPS listener (port 443 in production).
    TlsAlpn01,
}

impl std::str::FromStr for Challenge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http-01" => Ok(Challenge::Http01),
            "tls-alpn-01" => Ok(Challenge::TlsAlpn01),
            other => Err(format!("`{other}` is unknown; use http-01 or tls-alpn-01")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The ACME directory URL.
    pub directory: String,
    /// Contact address for expiry notices, e.g. `ops@example.com`.
    pub email: Option<String>,
    /// An extra root certificate (PEM) trusted for the directory's HTTPS, for test CAs.
    pub directory_root: Option<PathBuf>,
    pub challenge: Challenge,
    /// How long an order may take to become ready or valid.
    pub order_timeout: Duration,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            directory: LETS_ENCRYPT_STAGING.into(),
            email: None,
            directory_root: None,
            challenge: Challenge::Http01,
            order_timeout: Duration::from_secs(90),
        }
    }
}

/// What the account file holds: the credentials and the directory they belong to.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

pub struct Acme {
    account: Account,
    settings: AcmeSettings,
}

impl Acme {
    /// Loads the account kept in `state_dir` for this directory, or registers a new one.
    pub async fn connect(settings: AcmeSettings, state_dir: &Path) -> Result<Acme, TlsError> {
        let path = state_dir.join("acme-account.json");
        let builder = || match &settings.directory_root {
            Some(root) => Account::builder_with_root(root).map_err(acme_err),
            None => Account::builder().map_err(acme_err),
        };
        if let Ok(text) = std::fs::read(&path)
            && let Ok(stored) = serde_json::from_slice::<StoredAccount>(&text)
            && stored.directory == settings.directory
        {
            let account = builder()?
                .from_credentials(stored.credentials)
                .await
                .map_err(acme_err)?;
            return Ok(Acme { account, settings });
        }
        let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                settings.directory.clone(),
                None,
            )
            .await
            .map_err(acme_err)?;
        let stored = StoredAccount {
            directory: settings.directory.clone(),
            credentials,
        };
        let json = serde_json::to_vec_pretty(&stored)
            .map_err(|e| TlsError::Acme(format!("cannot encode the account: {e}")))?;
        crate::files::write_private(&path, &json)?;
        Ok(Acme { account, settings })
    }

    pub fn settings(&self) -> &AcmeSettings {
        &self.settings
    }

    /// Orders a certificate for `hosts`, answering the challenges through `store`; returns the
    /// chain and the new private key as PEM.
    pub async fn issue(
        &self,
        hosts: &[String],
        store: &CertStore,
    ) -> Result<(String, String), TlsError> {
        let identifiers: Vec<Identifier> = hosts.iter().cloned().map(Identifier::Dns).collect();
        let mut order = self
            .account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(acme_err)?;
        let mut pending = Pending::new(store);
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(acme_err)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(TlsError::Acme(format!(
                        "an authorization is {other:?}, not pending"
                    )));
                }
            }
            let kind = match self.settings.challenge {
                Challenge::Http01 => ChallengeType::Http01,
                Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            };
            let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                TlsError::Acme(format!("the ACME server offers no {kind:?} challenge"))
            })?;
            let key_auth = challenge.key_authorization();
            match self.settings.challenge {
                Challenge::Http01 => pending.http(&challenge.token, key_auth.as_str()),
                Challenge::TlsAlpn01 => {
                    let host = challenge.identifier().to_string();
                    pending.alpn(&host, alpn_certificate(&host, key_auth.digest().as_ref())?);
                }
            }
            challenge.set_ready().await.map_err(acme_err)?;
        }
        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .timeout(self.settings.order_timeout);
        let status = order.poll_ready(&policy).await.map_err(acme_err)?;
        if status != OrderStatus::Ready {
            let why = order
                .state()
                .error
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| format!("{status:?}"));
            return Err(TlsError::Acme(format!(
                "the order did not become ready: {why}"
            )));
        }
        let key_pem = order.finalize().await.map_err(acme_err)?;
        let chain_pem = order.poll_certificate(&policy).await.map_err(acme_err)?;
        drop(pending);
        Ok((chain_pem, key_pem))
    }
}

/// Challenge answers put up for one order and taken down when it ends, however it ends.
struct Pending<'a> {
    store: &'a CertStore,
    tokens: Vec<String>,
    hosts: Vec<String>,
}

impl<'a> Pending<'a> {
    fn new(store: &'a CertStore) -> Self {
        Pending {
            store,
            tokens: Vec::new(),
            hosts: Vec::new(),
        }
    }
    fn http(&mut self, token: &str, key_authorization: &str) {
        self.store
            .set_http_challenge(token, Some(key_authorization.to_string()));
        self.tokens.push(token.to_string());
    }
    fn alpn(&mut self, host: &str, key: Arc<CertifiedKey>) {
        self.store.set_alpn_challenge(host, Some(key));
        self.hosts.push(host.to_string());
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.store.set_http_challenge(t, None);
        }
        for h in &self.hosts {
            self.store.set_alpn_challenge(h, None);
        }
    }
}

/// The TLS-ALPN-01 answer (RFC 8737): a self-signed certificate for `host` carrying the SHA-256
/// of the key authorization in the critical acmeIdentifier extension.
fn alpn_certificate(host: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let mut params = CertificateParams::new(vec![host.to_string()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension this certificate exists to carry.
    let signer = crate::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signer,
    )))
}

fn acme_err(e: instant_acme::Error) -> TlsError {
    TlsError::Acme(e.to_string())
}
