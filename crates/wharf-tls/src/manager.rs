//! Keeps the wanted certificates installed in the [`CertStore`]: loads manual files, generates
//! and keeps self-signed ones, and orders ACME certificates, renewing each when a third of its
//! lifetime is left, with exponential backoff after a failure. Certificates it makes live in
//! `<dir>/<name>/` (`cert.pem`, `key.pem` 0600, `status.json`), so a restart reuses them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::acme::{Acme, AcmeSettings};
use crate::files::{self, read, write_cert_files, write_private};
use crate::info::CertInfo;
use crate::store::CertStore;
use crate::{TlsError, pem, selfsigned};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    Acme,
    SelfSigned,
    Manual { cert: PathBuf, key: PathBuf },
}

impl CertSource {
    pub fn label(&self) -> &'static str {
        match self {
            CertSource::Acme => "acme",
            CertSource::SelfSigned => "self-signed",
            CertSource::Manual { .. } => "manual",
        }
    }
}

/// A certificate that should exist: its name (a site or app), host names and source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedCert {
    pub name: String,
    pub hosts: Vec<String>,
    pub source: CertSource,
}

/// One try at getting or renewing a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Unix seconds.
    pub at: i64,
    pub ok: bool,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertStatus {
    pub name: String,
    pub hosts: Vec<String>,
    pub source: &'static str,
    /// The certificate served now, if any.
    pub info: Option<CertInfo>,
    pub last_attempt: Option<Attempt>,
    /// When the next ACME order is due (Unix seconds).
    pub next_renewal: Option<i64>,
}

/// Retry spacing after failed ACME attempts: doubles from `retry_min` up to `retry_max`. A
/// rate-limit answer waits `retry_max` at once.
#[derive(Clone, Copy, Debug)]
pub struct RenewPolicy {
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for RenewPolicy {
    fn default() -> Self {
        RenewPolicy {
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
        }
    }
}

struct Managed {
    wanted: WantedCert,
    info: Option<CertInfo>,
    last: Option<Attempt>,
    failures: u32,
    retry_at: i64,
}

pub struct CertManager {
    store: Arc<CertStore>,
    dir: PathBuf,
    acme_settings: Mutex<Option<AcmeSettings>>,
    acme: tokio::sync::Mutex<Option<Acme>>,
    policy: RenewPolicy,
    certs: Mutex<BTreeMap<String, Managed>>,
    wake: Notify,
    events: broadcast::Sender<(String, Attempt)>,
}

impl CertManager {
    /// `acme` is `None` when ACME is not configured; ACME certificates then fail with a message
    /// saying so.
    pub fn new(
        store: Arc<CertStore>,
        dir: PathBuf,
        acme: Option<AcmeSettings>,
        policy: RenewPolicy,
    ) -> Arc<CertManager> {
        Arc::new(CertManager {
            store,
            dir,
            acme_settings: Mutex::new(acme),
            acme: tokio::sync::Mutex::new(None),
            policy,
            certs: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            events: broadcast::channel(64).0,
        })
    }

    /// Changes the ACME settings; the next order connects with them.
    pub fn set_acme(&self, acme: Option<AcmeSettings>) {
        let mut current = self.acme_settings.lock().unwrap_or_else(|p| p.into_inner());
        if *current != acme {
            *current = acme;
            if let Ok(mut client) = self.acme.try_lock() {
                *client = None;
            }
        }
    }

    /// Every attempt (name, outcome), for an operations log.
    pub fn subscribe(&self) -> broadcast::Receiver<(String, Attempt)> {
        self.events.subscribe()
    }

    /// Makes `wanted` the set of certificates. Manual and self-signed ones are installed before
    /// this returns; ACME ones already on disk too, and missing or due ones are ordered by the
    /// renewal task. Returns the problems found (a bad manual file keeps the previous
    /// certificate serving).
    pub fn apply(&self, wanted: Vec<WantedCert>) -> Vec<(String, TlsError)> {
        let names: std::collections::HashSet<&str> =
            wanted.iter().map(|w| w.name.as_str()).collect();
        let remove: Vec<String> = self
            .certs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|name| !names.contains(name.as_str()))
            .cloned()
            .collect();
        self.change(remove, wanted)
    }

    /// Changes only the certificates named: those in `remove` are dropped (unless also in
    /// `wanted`), those in `wanted` made the wish for their name, as [`CertManager::apply`]
    /// does. Every other certificate is left alone, so a change costs what it touches.
    pub fn change(&self, remove: Vec<String>, wanted: Vec<WantedCert>) -> Vec<(String, TlsError)> {
        let mut problems = Vec::new();
        let mut changed = false;
        let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        for name in remove {
            if wanted.iter().any(|w| w.name == name) {
                continue;
            }
            if certs.remove(&name).is_some() {
                self.store.remove(&name);
                changed = true;
            }
        }
        for w in wanted {
            if w.name.is_empty() || w.name.contains(['/', '\\']) || w.name.starts_with('.') {
                problems.push((
                    w.name.clone(),
                    TlsError::Config(format!("`{}` cannot name a certificate", w.name)),
                ));
                continue;
            }
            // Manual files are read again every time: a reload picks up replaced files.
            let manual = matches!(w.source, CertSource::Manual { .. });
            if !manual
                && certs
                    .get(&w.name)
                    .is_some_and(|m| m.wanted == w && m.info.is_some())
            {
                continue;
            }
            changed = true;
            let previous = certs.remove(&w.name);
            // The same wish still waiting for its certificate keeps its backoff: a reload must
            // not turn a failed order (or a rate limit) into an immediate new one.
            let same = previous.as_ref().filter(|p| p.wanted == w);
            let mut m = Managed {
                wanted: w.clone(),
                info: None,
                last: previous.as_ref().and_then(|p| p.last.clone()),
                failures: same.map_or(0, |p| p.failures),
                retry_at: same.map_or(0, |p| p.retry_at),
            };
            if m.last.is_none() {
                m.last = read(&self.cert_dir(&w.name).join("status.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            }
            match self.load(&w) {
                Ok(Some((info, attempt))) => {
                    m.info = Some(info);
                    if attempt.is_some() {
                        m.last = attempt;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    // Keep serving what served before, if anything.
                    m.info = previous.and_then(|p| p.info);
                    let attempt = self.attempt(&w.name, false, e.to_string());
                    m.last = Some(attempt);
                    problems.push((w.name.clone(), e));
                }
            }
            certs.insert(w.name.clone(), m);
        }
        drop(certs);
        if changed {
            self.wake.notify_one();
        }
        problems
    }

    /// Installs the certificate for `w` if one is at hand; `Ok(None)` when ACME has to order it.
    /// With the attempt it made, if it made one (a self-signed certificate generated).
    fn load(&self, w: &WantedCert) -> Result<Option<(CertInfo, Option<Attempt>)>, TlsError> {
        let dir = self.cert_dir(&w.name);
        // A replacement a crash interrupted is finished (or dropped) before the files are read.
        files::settle_cert_files(&dir)?;
        let (cert_path, key_path) = match &w.source {
            CertSource::Manual { cert, key } => (cert.clone(), key.clone()),
            _ => (dir.join("cert.pem"), dir.join("key.pem")),
        };
        let on_disk = match (read(&cert_path), read(&key_path)) {
            (Ok(c), Ok(k)) => Some(pem::certified_key(&c, &k)),
            (Err(e), _) | (_, Err(e)) if matches!(w.source, CertSource::Manual { .. }) => {
                return Err(e);
            }
            _ => None,
        };
        let usable = match on_disk {
            Some(Ok((key, info))) => {
                let covers = w.hosts.iter().all(|h| info.hosts.contains(h));
                let fresh = info.not_after > now();
                // Files another source left (self-signed, then `acme`) are not this one's.
                let ours = files::recorded_source(&dir).is_none_or(|s| s == w.source.label());
                match &w.source {
                    CertSource::Manual { .. } => Some((key, info)),
                    _ if covers && fresh && ours => Some((key, info)),
                    _ => None,
                }
            }
            Some(Err(e)) if matches!(w.source, CertSource::Manual { .. }) => return Err(e),
            _ => None,
        };
        if let Some((key, info)) = usable {
            self.store.install(&w.name, w.hosts.clone(), key);
            return Ok(Some((info, None)));
        }
        if w.source != CertSource::SelfSigned {
            return Ok(None);
        }
        let made = selfsigned::generate(&w.hosts)?;
        let (key, info) = pem::certified_key(made.cert_pem.as_bytes(), made.key_pem.as_bytes())?;
        write_cert_files(&dir, &made.cert_pem, &made.key_pem, w.source.label())?;
        self.store.install(&w.name, w.hosts.clone(), key);
        let attempt = self.attempt(&w.name, true, "self-signed certificate generated".into());
        Ok(Some((info, Some(attempt))))
    }

    pub fn statuses(&self) -> Vec<CertStatus> {
        let certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        certs
            .values()
            .map(|m| CertStatus {
                name: m.wanted.name.clone(),
                hosts: m.wanted.hosts.clone(),
                source: m.wanted.source.label(),
                info: m.info.clone(),
                last_attempt: m.last.clone(),
                next_renewal: (m.wanted.source == CertSource::Acme).then(|| {
                    let due = m.info.as_ref().map_or(0, CertInfo::renew_at);
                    due.max(m.retry_at)
                }),
            })
            .collect()
    }

    /// Runs the renewal task until `stop`.
    pub fn spawn(self: &Arc<Self>, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let wait = me.renew_due().await;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                    _ = me.wake.notified() => {}
                }
            }
        });
    }

    /// Orders every due ACME certificate; returns how long until the next one is due.
    async fn renew_due(&self) -> Duration {
        let due: Vec<WantedCert> = {
            let certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
            let t = now();
            certs
                .values()
                .filter(|m| m.wanted.source == CertSource::Acme && t >= m.retry_at)
                .filter(|m| m.info.as_ref().is_none_or(|i| t >= i.renew_at()))
                .map(|m| m.wanted.clone())
                .collect()
        };
        for w in due {
            let result = self.order(&w).await;
            let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
            let Some(m) = certs.get_mut(&w.name).filter(|m| m.wanted == w) else {
                continue; // changed or removed meanwhile; the next round sees the new wish
            };
            // Kept and served only now that it is known to be still wanted.
            let result = result.and_then(|issued| {
                write_cert_files(
                    &self.cert_dir(&w.name),
                    &issued.chain,
                    &issued.key_pem,
                    w.source.label(),
                )?;
                self.store.install(&w.name, w.hosts.clone(), issued.key);
                Ok(issued.info)
            });
            match result {
                Ok(info) => {
                    let msg = format!(
                        "certificate issued by {} for {}, valid until {}",
                        info.issuer,
                        info.hosts.join(", "),
                        info.valid_until()
                    );
                    m.info = Some(info);
                    m.failures = 0;
                    m.retry_at = 0;
                    m.last = Some(self.attempt(&w.name, true, msg));
                }
                Err(e) => {
                    m.failures += 1;
                    let text = e.to_string();
                    let backoff = if text.contains("rateLimited") {
                        self.policy.retry_max
                    } else {
                        let factor = 2u32.saturating_pow(m.failures.saturating_sub(1).min(16));
                        self.policy
                            .retry_min
                            .saturating_mul(factor)
                            .min(self.policy.retry_max)
                    };
                    m.retry_at = now() + backoff.as_secs().max(1) as i64;
                    m.last = Some(self.attempt(
                        &w.name,
                        false,
                        format!("{text} (next try in {}s)", backoff.as_secs()),
                    ));
                }
            }
        }
        let certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        let t = now();
        let next = certs
            .values()
            .filter(|m| m.wanted.source == CertSource::Acme)
            .map(|m| {
                m.info
                    .as_ref()
                    .map_or(0, CertInfo::renew_at)
                    .max(m.retry_at)
            })
            .min();
        match next {
            Some(at) => Duration::from_secs(at.saturating_sub(t).clamp(1, 3600) as u64),
            None => Duration::from_secs(3600),
        }
    }

    async fn order(&self, w: &WantedCert) -> Result<Issued, TlsError> {
        let settings = self
            .acme_settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(settings) = settings else {
            return Err(TlsError::Config(
                "ACME is not configured: set an ACME directory to order certificates".into(),
            ));
        };
        let mut acme = self.acme.lock().await;
        if acme.as_ref().is_none_or(|a| *a.settings() != settings) {
            *acme = Some(Acme::connect(settings, &self.dir).await?);
        }
        let client = acme.as_ref().expect("connected above");
        let (chain, key_pem) = client.issue(&w.hosts, &self.store).await?;
        let (key, info) = pem::certified_key(chain.as_bytes(), key_pem.as_bytes())?;
        Ok(Issued {
            key,
            info,
            chain,
            key_pem,
        })
    }

    fn attempt(&self, name: &str, ok: bool, message: String) -> Attempt {
        let a = Attempt {
            at: now(),
            ok,
            message,
        };
        if ok {
            tracing::info!(certificate = name, message = %a.message, "certificate");
        } else {
            tracing::warn!(certificate = name, message = %a.message, "certificate attempt failed");
        }
        if let Ok(json) = serde_json::to_vec(&a) {
            let _ = write_private(&self.cert_dir(name).join("status.json"), &json);
        }
        let _ = self.events.send((name.to_string(), a.clone()));
        a
    }

    fn cert_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the certificate called `name` is kept.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.cert_dir(name)
    }
}

/// A certificate just ordered, not yet kept or served.
struct Issued {
    key: Arc<rustls::sign::CertifiedKey>,
    info: CertInfo,
    chain: String,
    key_pem: String,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(tag: &str) -> (Arc<CertManager>, PathBuf) {
        let dir = std::env::temp_dir().join(format!("wharf-tls-mgr-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let m = CertManager::new(CertStore::new(), dir.clone(), None, RenewPolicy::default());
        (m, dir)
    }

    fn wanted(source: CertSource) -> Vec<WantedCert> {
        vec![WantedCert {
            name: "site".into(),
            hosts: vec!["a.example.test".into()],
            source,
        }]
    }

    #[test]
    fn a_certificate_one_source_made_is_not_passed_off_as_anothers() {
        let (m, dir) = manager("source");
        assert!(m.apply(wanted(CertSource::SelfSigned)).is_empty());
        assert!(m.statuses()[0].info.is_some());
        // Switched to ACME (not configured here): the self-signed files are not its certificate.
        assert!(m.apply(wanted(CertSource::Acme)).is_empty());
        let s = &m.statuses()[0];
        assert_eq!(s.source, "acme");
        assert!(
            s.info.is_none(),
            "served {:?} as an ACME certificate",
            s.info
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_reload_keeps_a_failed_orders_backoff() {
        let (m, dir) = manager("backoff");
        m.apply(wanted(CertSource::Acme));
        m.renew_due().await; // fails: no ACME directory configured
        let next = m.statuses()[0].next_renewal.unwrap();
        assert!(next > now(), "a failed order waits before the next try");
        m.apply(wanted(CertSource::Acme));
        assert_eq!(m.statuses()[0].next_renewal, Some(next));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
