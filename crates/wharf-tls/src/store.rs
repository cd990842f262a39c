//! The certificates the gateway serves, chosen by SNI. Readers (every TLS handshake) load an
//! immutable index through `ArcSwap`; writers (installs, renewals, removals) build a new index and
//! swap it in, so a renewal never touches a listener or a live connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// ALPN protocol of the ACME TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// One installed certificate and the host names it is served for.
#[derive(Clone, Debug)]
struct Entry {
    hosts: Vec<String>,
    key: Arc<CertifiedKey>,
}

#[derive(Debug, Default)]
struct Index {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// TLS-ALPN-01 challenge certificates by host name.
    alpn_challenges: HashMap<String, Arc<CertifiedKey>>,
    /// HTTP-01 key authorizations by token.
    http_challenges: HashMap<String, String>,
    /// Whose certificate a client that names no host gets.
    default_host: Option<String>,
}

/// Certificates by name (an app, a site), indexed by host for the handshake.
#[derive(Debug, Default)]
pub struct CertStore {
    index: ArcSwap<Index>,
    /// The source of truth the index is built from; writers hold the lock, readers never do.
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    certs: HashMap<String, Entry>,
    alpn_challenges: HashMap<String, Arc<CertifiedKey>>,
    http_challenges: HashMap<String, String>,
    default_host: Option<String>,
}

impl CertStore {
    pub fn new() -> Arc<CertStore> {
        Arc::new(CertStore::default())
    }

    /// Installs (or replaces) the certificate called `name`, served for `hosts` (exact names or
    /// `*.suffix`). Connections already open keep the certificate they started with.
    pub fn install(&self, name: &str, hosts: Vec<String>, key: Arc<CertifiedKey>) {
        self.change(|e| {
            e.certs.insert(name.to_string(), Entry { hosts, key });
        });
    }

    pub fn remove(&self, name: &str) {
        self.change(|e| {
            e.certs.remove(name);
        });
    }

    /// Names of the installed certificates.
    pub fn names(&self) -> Vec<String> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = e.certs.keys().cloned().collect();
        names.sort();
        names
    }

    /// True when some certificate covers `host` (exactly or by wildcard). `host` must be
    /// lower-case without a trailing dot, as the gateway normalises it; this is on the request
    /// path of plain HTTP, so it allocates nothing.
    pub fn covers(&self, host: &str) -> bool {
        let index = self.index.load();
        if index.exact.is_empty() && index.wildcard.is_empty() {
            return false;
        }
        lookup(&index, host).is_some()
    }

    /// The host (lower-case, no trailing dot) whose certificate answers a client that sends no
    /// server name; `None` refuses such handshakes.
    pub fn set_default_host(&self, host: Option<String>) {
        let host = host.map(|h| h.trim_end_matches('.').to_ascii_lowercase());
        self.change(|e| e.default_host = host);
    }

    pub(crate) fn set_alpn_challenge(&self, host: &str, key: Option<Arc<CertifiedKey>>) {
        self.change(|e| match key {
            Some(k) => {
                e.alpn_challenges.insert(host.to_string(), k);
            }
            None => {
                e.alpn_challenges.remove(host);
            }
        });
    }

    pub(crate) fn set_http_challenge(&self, token: &str, key_authorization: Option<String>) {
        self.change(|e| match key_authorization {
            Some(k) => {
                e.http_challenges.insert(token.to_string(), k);
            }
            None => {
                e.http_challenges.remove(token);
            }
        });
    }

    /// The answer to `GET /.well-known/acme-challenge/{token}`, while an HTTP-01 challenge for
    /// it is pending.
    pub fn http_challenge(&self, token: &str) -> Option<String> {
        self.index.load().http_challenges.get(token).cloned()
    }

    fn change(&self, f: impl FnOnce(&mut Entries)) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut e);
        let mut index = Index {
            alpn_challenges: e.alpn_challenges.clone(),
            http_challenges: e.http_challenges.clone(),
            default_host: e.default_host.clone(),
            ..Index::default()
        };
        // Sorted by name so that two certificates claiming one host resolve the same way always.
        let mut names: Vec<&String> = e.certs.keys().collect();
        names.sort();
        for name in names {
            let entry = &e.certs[name];
            for host in &entry.hosts {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix('*') {
                    Some(suffix) => index.wildcard.entry(suffix.to_string()),
                    None => index.exact.entry(host),
                }
                .or_insert_with(|| entry.key.clone());
            }
        }
        self.index.store(Arc::new(index));
    }
}

/// Exact name first, then a wildcard for its parent: `*.b.c` covers `a.b.c` but not `x.a.b.c`,
/// as TLS clients check. `host` must already be lower-case without a trailing dot.
fn lookup(index: &Index, host: &str) -> Option<Arc<CertifiedKey>> {
    if let Some(k) = index.exact.get(host) {
        return Some(k.clone());
    }
    let parent = &host[host.find('.')?..];
    index.wildcard.get(parent).cloned()
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = self.index.load();
        let acme = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        let Some(name) = hello.server_name() else {
            // An IP-address URL or an old client: the configured default, if any. A validator
            // always names the host it validates.
            return lookup(&index, index.default_host.as_deref().filter(|_| !acme)?);
        };
        if acme {
            return index.alpn_challenges.get(name).cloned();
        }
        // rustls hands the SNI over lower-cased, and SNI carries no trailing dot.
        lookup(&index, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str) -> Arc<CertifiedKey> {
        let c = crate::selfsigned::generate(&[host.to_string()]).unwrap();
        crate::pem::certified_key(c.cert_pem.as_bytes(), c.key_pem.as_bytes())
            .unwrap()
            .0
    }

    #[test]
    fn exact_then_the_parent_wildcard() {
        let store = CertStore::new();
        let (a, wild, deep) = (key("a.test"), key("*.test"), key("*.b.test"));
        store.install("a", vec!["a.test".into()], a.clone());
        store.install("wild", vec!["*.test".into()], wild.clone());
        store.install("deep", vec!["*.b.test".into()], deep.clone());
        let idx = store.index.load();
        let cases = [
            ("a.test", Some(&a)),
            ("x.test", Some(&wild)),
            ("x.b.test", Some(&deep)),
            // One label only, as clients check: `*.b.test` is not valid for `y.x.b.test`.
            ("y.x.b.test", None),
            ("test", None),
            ("other.example", None),
        ];
        for (host, want) in cases {
            let got = lookup(&idx, host);
            assert_eq!(
                got.map(|k| k.cert[0].clone()),
                want.map(|k| k.cert[0].clone()),
                "{host}"
            );
        }
        store.remove("wild");
        assert!(!store.covers("x.test"));
        assert!(store.covers("a.test"));
    }
}
