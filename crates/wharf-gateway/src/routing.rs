//! The immutable route table: (host, path) → site. Swapped in atomically; lookups never lock.
//! Its maps are persistent (structurally shared), so a change to a few sites builds a new table
//! in time proportional to the change, not to the number of sites, while every table stays a
//! complete, immutable value that requests hold for as long as they run.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::config::{HostPattern, Timeouts, UnknownHost};
use crate::site::Site;

/// Sites for one host pattern, longest path prefix first. Usually one: cloned whole on change.
#[derive(Clone, Default)]
struct Routes(Arc<[Arc<Site>]>);

impl Routes {
    fn with(&self, site: Arc<Site>) -> Routes {
        let mut v: Vec<Arc<Site>> = self.0.iter().cloned().collect();
        v.push(site);
        v.sort_by_key(|s| std::cmp::Reverse(s.config.path.len()));
        Routes(v.into())
    }

    /// Without the site named `name`; `None` when nothing is left.
    fn without(&self, name: &str) -> Option<Routes> {
        let v: Vec<Arc<Site>> = self
            .0
            .iter()
            .filter(|s| s.config.name != name)
            .cloned()
            .collect();
        (!v.is_empty()).then(|| Routes(v.into()))
    }

    fn matching(&self, path: &str) -> Option<&Arc<Site>> {
        self.0.iter().find(|s| prefix_matches(&s.config.path, path))
    }
}

/// `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`; `/` matches everything.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

type Map<V> = imbl::HashMap<String, V>;

#[derive(Clone)]
pub(crate) struct RouteTable {
    by_name: Map<Arc<Site>>,
    exact: Map<Routes>,
    /// Keyed by suffix including the leading dot (`.example.test`).
    wildcard: Map<Routes>,
    any: Routes,
    pub(crate) unknown_host: UnknownHost,
    pub(crate) timeouts: Timeouts,
}

impl RouteTable {
    pub(crate) fn new(
        sites: Vec<Arc<Site>>,
        unknown_host: UnknownHost,
        timeouts: Timeouts,
    ) -> RouteTable {
        let empty = RouteTable {
            by_name: Map::new(),
            exact: Map::new(),
            wildcard: Map::new(),
            any: Routes::default(),
            unknown_host,
            timeouts,
        };
        empty.with_changes(sites, &[])
    }

    /// A new table: this one with the sites named in `remove` taken out and `upsert` put in
    /// (replacing any site of the same name). Costs what it changes; `self` is untouched.
    pub(crate) fn with_changes(&self, upsert: Vec<Arc<Site>>, remove: &[String]) -> RouteTable {
        let mut t = self.clone();
        for name in remove
            .iter()
            .map(String::as_str)
            .chain(upsert.iter().map(|s| s.config.name.as_str()))
        {
            if let Some(old) = t.by_name.remove(name) {
                t.unroute(&old);
            }
        }
        for site in upsert {
            t.by_name.insert(site.config.name.clone(), site.clone());
            for host in &site.config.hosts {
                match host {
                    HostPattern::Exact(h) => insert(&mut t.exact, h, site.clone()),
                    HostPattern::Wildcard(s) => insert(&mut t.wildcard, s, site.clone()),
                    HostPattern::Any => t.any = t.any.with(site.clone()),
                }
            }
        }
        t
    }

    fn unroute(&mut self, site: &Site) {
        let name = site.config.name.as_str();
        for host in &site.config.hosts {
            match host {
                HostPattern::Exact(h) => remove(&mut self.exact, h, name),
                HostPattern::Wildcard(s) => remove(&mut self.wildcard, s, name),
                HostPattern::Any => self.any = self.any.without(name).unwrap_or_default(),
            }
        }
    }

    pub(crate) fn sites(&self) -> impl Iterator<Item = &Arc<Site>> {
        self.by_name.values()
    }

    pub(crate) fn site(&self, name: &str) -> Option<&Arc<Site>> {
        self.by_name.get(name)
    }

    /// Exact host first, then the most specific wildcard, then `*`. `host` is already lower-case
    /// and without port. Within a host, the longest matching path prefix wins.
    pub(crate) fn lookup(&self, host: &str, path: &str) -> Option<&Arc<Site>> {
        if let Some(site) = self.exact.get(host).and_then(|r| r.matching(path)) {
            return Some(site);
        }
        if !self.wildcard.is_empty() {
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                let suffix = &rest[dot..];
                if let Some(site) = self.wildcard.get(suffix).and_then(|r| r.matching(path)) {
                    return Some(site);
                }
                rest = &rest[dot + 1..];
            }
        }
        self.any.matching(path)
    }
}

fn insert(map: &mut Map<Routes>, key: &str, site: Arc<Site>) {
    let routes = map.get(key).cloned().unwrap_or_default().with(site);
    map.insert(key.to_string(), routes);
}

fn remove(map: &mut Map<Routes>, key: &str, name: &str) {
    let Some(routes) = map.get(key) else {
        return;
    };
    match routes.without(name) {
        Some(rest) => {
            map.insert(key.to_string(), rest);
        }
        None => {
            map.remove(key);
        }
    }
}

/// Normalises a request's host (from the URI authority or the Host header): lower-case, port and
/// trailing dot removed. `None` if it holds anything a host name cannot.
pub(crate) fn normalize_host(raw: &str) -> Option<String> {
    let mut host = String::new();
    normalize_host_into(raw, &mut host).then_some(host)
}

/// [`normalize_host`] into a buffer the caller keeps (the HTTP/1 lane: no allocation per
/// request). False if the host is not valid; `out` then holds no valid host and is not to be
/// used.
pub(crate) fn normalize_host_into(raw: &str, out: &mut String) -> bool {
    out.clear();
    let host = if let Some(v6) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets off; after `]` only `:port` may follow.
        let Some((addr, rest)) = v6.split_once(']') else {
            return false;
        };
        let port_ok = rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        let Some(ip) = addr.parse::<std::net::Ipv6Addr>().ok().filter(|_| port_ok) else {
            return false;
        };
        let _ = write!(out, "{ip}");
        return true;
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return false,
            None => raw,
        }
    };
    out.push_str(host.strip_suffix('.').unwrap_or(host));
    out.make_ascii_lowercase();
    crate::config::validate_host_name(out).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

    fn site(name: &str, hosts: &[&str], path: &str) -> SiteConfig {
        SiteConfig {
            name: name.into(),
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            path: path.into(),
            backend: BackendConfig::Proxy(ProxyConfig {
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                balance: Balance::RoundRobin,
                health: None,
                strip_prefix: false,
            }),
            listen: vec![],
            max_body: 1,
            allow: vec![],
            access_log: false,
            cert: None,
            https: Default::default(),
        }
    }

    #[test]
    fn lookups() {
        let sites = [
            site("app", &["app.test"], "/"),
            site("api", &["app.test"], "/api"),
            site("wild", &["*.app.test"], "/"),
            site("deep", &["*.x.app.test"], "/"),
            site("fallback", &["*"], "/"),
        ];
        let built = sites
            .iter()
            .map(|c| Arc::new(Site::for_test(c.clone())))
            .collect();
        let table = RouteTable::new(built, UnknownHost::NotFound, Timeouts::default());
        let check = |host: &str, path: &str, want: &str| {
            let got = table.lookup(host, path).map(|s| s.config.name.as_str());
            assert_eq!(got, Some(want), "{host}{path}");
        };
        check("app.test", "/", "app");
        check("app.test", "/apix", "app");
        check("app.test", "/api", "api");
        check("app.test", "/api/v1", "api");
        check("a.app.test", "/", "wild");
        check("a.b.app.test", "/api", "wild");
        check("y.x.app.test", "/", "deep");
        check("x.app.test", "/", "wild");
        check("other.test", "/", "fallback");
    }

    #[test]
    fn host_normalisation() {
        let cases = [
            ("App.Test:8080", Some("app.test")),
            ("app.test.", Some("app.test")),
            ("[::1]:80", Some("::1")),
            ("[::1]", Some("::1")),
            ("[::8]800", None),
            ("[::1]:8a", None),
            ("127.0.0.1:80", Some("127.0.0.1")),
            ("a b", None),
            ("a.test:x", None),
            ("a`b", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw).as_deref(), want, "{raw}");
        }
    }
}
