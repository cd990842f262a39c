//! The standalone gateway's TOML file: serde types mirroring the file, turned into a validated
//! [`GatewayConfig`]. Errors name the file, the site and the key.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::model::*;
use super::units::{parse_duration, parse_size};
use crate::error::ConfigError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    gateway: GatewaySection,
    #[serde(default, rename = "site")]
    sites: Vec<SiteSection>,
    acme: Option<AcmeSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcmeSection {
    directory: String,
    email: Option<String>,
    challenge: Option<String>,
    directory_root: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TlsSection {
    /// "acme" or "self-signed".
    Named(String),
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GatewaySection {
    listen: Option<Vec<String>>,
    https: Option<Vec<String>>,
    tls_dir: Option<PathBuf>,
    default_sni: Option<String>,
    admin: Option<String>,
    workers: Option<usize>,
    unknown_host: Option<String>,
    access_log: Option<String>,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    drain_timeout: Option<String>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    body_timeout: Option<String>,
    max_body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteSection {
    name: String,
    hosts: Vec<String>,
    path: Option<String>,
    root: Option<PathBuf>,
    index: Option<Vec<String>>,
    not_found: Option<String>,
    follow_links_outside_root: Option<bool>,
    upstreams: Option<Vec<String>>,
    balance: Option<String>,
    health: Option<HealthSection>,
    strip_prefix: Option<bool>,
    listen: Option<Vec<String>>,
    max_body: Option<String>,
    allow: Option<Vec<String>>,
    access_log: Option<bool>,
    tls: Option<TlsSection>,
    https_redirect: Option<bool>,
    hsts: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthSection {
    path: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
}

impl GatewayConfig {
    /// Reads and validates a gateway TOML file. Relative `root` paths are taken from the file's folder.
    pub fn from_file(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            site: None,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|mut e| {
            e.file = Some(path.to_path_buf());
            e
        })
    }

    /// Parses and validates TOML text; `base` is the folder relative paths start from.
    pub fn from_toml(text: &str, base: &Path) -> Result<GatewayConfig, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: None,
            site: None,
            key: String::new(),
            message: e.to_string().trim_end().to_string(),
        })?;
        convert(file, base)
    }
}

fn err(site: Option<&str>, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: None,
        site: site.map(str::to_string),
        key: key.to_string(),
        message: message.into(),
    }
}

fn addr(site: Option<&str>, key: &str, raw: &str) -> Result<SocketAddr, ConfigError> {
    raw.parse().map_err(|_| {
        err(
            site,
            key,
            format!("`{raw}` is not an address; write IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""),
        )
    })
}

fn convert(file: FileConfig, base: &Path) -> Result<GatewayConfig, ConfigError> {
    let g = file.gateway;
    let mut cfg = GatewayConfig::default();
    if let Some(listen) = g.listen {
        cfg.listen = listen
            .iter()
            .map(|l| addr(None, "gateway.listen", l))
            .collect::<Result<_, _>>()?;
    }
    if let Some(https) = g.https {
        cfg.https = https
            .iter()
            .map(|l| addr(None, "gateway.https", l))
            .collect::<Result<_, _>>()?;
    }
    cfg.tls_dir = Some(base.join(g.tls_dir.unwrap_or_else(|| "certs".into())));
    if let Some(a) = file.acme {
        let challenge = a
            .challenge
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|m| err(None, "acme.challenge", m))?
            .unwrap_or_default();
        if !a.directory.starts_with("https://") {
            return Err(err(
                None,
                "acme.directory",
                "an ACME directory is an https:// URL, e.g. Let's Encrypt staging's",
            ));
        }
        cfg.acme = Some(wharf_tls::AcmeSettings {
            directory: a.directory,
            email: a.email,
            directory_root: a.directory_root.map(|r| base.join(r)),
            challenge,
            ..Default::default()
        });
    }
    cfg.admin = g
        .admin
        .map(|a| addr(None, "gateway.admin", &a))
        .transpose()?;
    cfg.workers = g.workers.unwrap_or(0);
    cfg.unknown_host = match g.unknown_host.as_deref() {
        None | Some("404") => UnknownHost::NotFound,
        Some("close") => UnknownHost::Close,
        Some(other) => {
            return Err(err(
                None,
                "gateway.unknown_host",
                format!("`{other}` is not allowed; use \"404\" or \"close\""),
            ));
        }
    };
    cfg.access_log = match g.access_log.as_deref() {
        None | Some("off") => AccessLogTarget::Off,
        Some("stdout") => AccessLogTarget::Stdout,
        Some(path) => AccessLogTarget::File(base.join(path)),
    };
    let dur = |v: Option<String>, key: &str, default| -> Result<_, ConfigError> {
        v.map(|s| parse_duration(&s).map_err(|m| err(None, key, m)))
            .transpose()
            .map(|d| d.unwrap_or(default))
    };
    // Zero would fail every request (or close every connection) at once; only draining may
    // be skipped.
    let positive = |v: Option<String>, key: &str, default| -> Result<_, ConfigError> {
        let d = dur(v, key, default)?;
        if d.is_zero() {
            return Err(err(None, key, "must be more than 0 (e.g. \"30s\")"));
        }
        Ok(d)
    };
    let t = Timeouts::default();
    cfg.timeouts = Timeouts {
        connect: positive(g.connect_timeout, "gateway.connect_timeout", t.connect)?,
        read: positive(g.read_timeout, "gateway.read_timeout", t.read)?,
        drain: dur(g.drain_timeout, "gateway.drain_timeout", t.drain)?,
        header_read: positive(g.header_timeout, "gateway.header_timeout", t.header_read)?,
        idle: positive(g.idle_timeout, "gateway.idle_timeout", t.idle)?,
        body_read: positive(g.body_timeout, "gateway.body_timeout", t.body_read)?,
    };
    let default_body = g
        .max_body
        .map(|s| parse_size(&s).map_err(|m| err(None, "gateway.max_body", m)))
        .transpose()?
        .unwrap_or(DEFAULT_MAX_BODY);

    for site in file.sites {
        cfg.sites.push(convert_site(site, base, default_body)?);
    }
    for s in &cfg.sites {
        if s.cert.is_some() && cfg.https.is_empty() {
            return Err(err(
                Some(&s.name),
                "tls",
                "add an HTTPS listener first: `https = [\"0.0.0.0:443\"]` under [gateway]",
            ));
        }
        if s.cert == Some(wharf_tls::CertSource::Acme) {
            if cfg.acme.is_none() {
                return Err(err(
                    Some(&s.name),
                    "tls",
                    "\"acme\" needs an [acme] section with a `directory`",
                ));
            }
            if s.hosts.iter().any(|h| !matches!(h, HostPattern::Exact(_))) {
                return Err(err(
                    Some(&s.name),
                    "tls",
                    "ACME here validates each exact host name; wildcards and `*` need another certificate source",
                ));
            }
            for h in &s.hosts {
                if let HostPattern::Exact(host) = h
                    && let Some(why) = super::model::acme_host_problem(host)
                {
                    return Err(err(Some(&s.name), "tls", &why));
                }
            }
        }
    }
    if let Some(raw) = g.default_sni {
        cfg.default_sni = Some(default_sni(&raw, &cfg.sites)?);
    }
    check_conflicts(&cfg)?;
    Ok(cfg)
}

/// `gateway.default_sni`: an exact host name that a site with `tls` serves.
fn default_sni(raw: &str, sites: &[SiteConfig]) -> Result<String, ConfigError> {
    let key = "gateway.default_sni";
    let host = HostPattern::parse_exact(raw).map_err(|m| err(None, key, m))?;
    let served = sites.iter().filter(|s| s.cert.is_some()).any(|s| {
        s.hosts.iter().any(|p| match p {
            HostPattern::Exact(h) => *h == host,
            // A wildcard certificate covers one label.
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            HostPattern::Any => false,
        })
    });
    if !served {
        return Err(err(
            None,
            key,
            format!("`{host}` is not a host of any site with `tls`; name one of theirs"),
        ));
    }
    Ok(host)
}

fn convert_site(s: SiteSection, base: &Path, default_body: u64) -> Result<SiteConfig, ConfigError> {
    let name = s.name.clone();
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(err(
            Some(&name),
            "name",
            "a site name is 1–63 characters of a-z, 0-9, '-' and '_'",
        ));
    }
    let site = Some(name.as_str());
    if s.hosts.is_empty() {
        return Err(err(
            site,
            "hosts",
            "list at least one host, e.g. [\"blog.example.test\"]",
        ));
    }
    let hosts = s
        .hosts
        .iter()
        .map(|h| HostPattern::parse(h).map_err(|m| err(site, "hosts", m)))
        .collect::<Result<Vec<_>, _>>()?;

    let path = match s.path {
        None => "/".to_string(),
        Some(p) => normalize_prefix(&p).map_err(|m| err(site, "path", m))?,
    };

    let backend = match (s.root, s.upstreams) {
        (Some(_), Some(_)) => {
            return Err(err(
                site,
                "root",
                "set either `root` (static) or `upstreams` (proxy), not both",
            ));
        }
        (None, None) => {
            return Err(err(
                site,
                "root",
                "set `root` (a folder to serve) or `upstreams` (addresses to proxy to)",
            ));
        }
        (Some(root), None) => {
            for (key, set) in [
                ("balance", s.balance.is_some()),
                ("health", s.health.is_some()),
                ("strip_prefix", s.strip_prefix.is_some()),
            ] {
                if set {
                    return Err(err(
                        site,
                        key,
                        "only proxy sites (with `upstreams`) take this key",
                    ));
                }
            }
            let root = base.join(root);
            if !root.is_dir() {
                return Err(err(
                    site,
                    "root",
                    format!("`{}` is not a folder", root.display()),
                ));
            }
            let index = s.index.unwrap_or_else(|| vec!["index.html".into()]);
            for i in &index {
                if i.is_empty() || i.contains(['/', '\\', '\0']) || i.starts_with('.') {
                    return Err(err(
                        site,
                        "index",
                        format!("`{i}` must be a plain file name"),
                    ));
                }
            }
            let not_found = s.not_found.map(|p| p.trim_start_matches('/').to_string());
            if let Some(nf) = &not_found
                && nf.split('/').any(|seg| seg == ".." || seg.is_empty())
            {
                return Err(err(site, "not_found", "must be a path inside `root`"));
            }
            BackendConfig::Static(StaticConfig {
                root,
                index,
                not_found,
                follow_links_outside_root: s.follow_links_outside_root.unwrap_or(false),
            })
        }
        (None, Some(ups)) => {
            for (key, set) in [
                ("index", s.index.is_some()),
                ("not_found", s.not_found.is_some()),
                (
                    "follow_links_outside_root",
                    s.follow_links_outside_root.is_some(),
                ),
            ] {
                if set {
                    return Err(err(
                        site,
                        key,
                        "only static sites (with `root`) take this key",
                    ));
                }
            }
            if ups.is_empty() {
                return Err(err(site, "upstreams", "list at least one \"host:port\""));
            }
            let upstreams = ups
                .iter()
                .map(|u| resolve_upstream(u).map_err(|m| err(site, "upstreams", m)))
                .collect::<Result<Vec<_>, _>>()?;
            let balance = match s.balance.as_deref() {
                None | Some("round-robin") => Balance::RoundRobin,
                Some("least-conn") => Balance::LeastConn,
                Some(other) => {
                    return Err(err(
                        site,
                        "balance",
                        format!("`{other}` is unknown; use \"round-robin\" or \"least-conn\""),
                    ));
                }
            };
            let health = s.health.map(|h| convert_health(h, site)).transpose()?;
            BackendConfig::Proxy(ProxyConfig {
                upstreams,
                balance,
                health,
                strip_prefix: s.strip_prefix.unwrap_or(false),
            })
        }
    };

    let listen = s
        .listen
        .unwrap_or_default()
        .iter()
        .map(|l| addr(site, "listen", l))
        .collect::<Result<_, _>>()?;
    let max_body = s
        .max_body
        .map(|b| parse_size(&b).map_err(|m| err(site, "max_body", m)))
        .transpose()?
        .unwrap_or(default_body);
    let allow = s
        .allow
        .unwrap_or_default()
        .iter()
        .map(|a| parse_net(a).map_err(|m| err(site, "allow", m)))
        .collect::<Result<_, _>>()?;

    let (cert, https) = match s.tls {
        None => {
            for (key, set) in [
                ("https_redirect", s.https_redirect.is_some()),
                ("hsts", s.hsts.is_some()),
            ] {
                if set {
                    return Err(err(site, key, "only sites with `tls` take this key"));
                }
            }
            (None, HttpsPolicy::default())
        }
        Some(t) => {
            let source = match t {
                TlsSection::Named(n) if n == "acme" => wharf_tls::CertSource::Acme,
                TlsSection::Named(n) if n == "self-signed" => wharf_tls::CertSource::SelfSigned,
                TlsSection::Named(other) => {
                    return Err(err(
                        site,
                        "tls",
                        format!(
                            "`{other}` is unknown; use \"acme\", \"self-signed\" or {{ cert = \"a.pem\", key = \"a.key\" }}"
                        ),
                    ));
                }
                TlsSection::Files { cert, key } => {
                    let (cert, key) = (base.join(cert), base.join(key));
                    let read = |p: &Path| {
                        std::fs::read(p).map_err(|e| {
                            err(site, "tls", format!("cannot read `{}`: {e}", p.display()))
                        })
                    };
                    wharf_tls::pem::certified_key(&read(&cert)?, &read(&key)?)
                        .map_err(|e| err(site, "tls", e.to_string()))?;
                    wharf_tls::CertSource::Manual { cert, key }
                }
            };
            let hsts = s
                .hsts
                .map(|h| parse_duration(&h).map_err(|m| err(site, "hsts", m)))
                .transpose()?;
            (
                Some(source),
                HttpsPolicy {
                    redirect: s.https_redirect.unwrap_or(true),
                    hsts,
                },
            )
        }
    };

    Ok(SiteConfig {
        name,
        hosts,
        path,
        backend,
        listen,
        max_body,
        allow,
        access_log: s.access_log.unwrap_or(true),
        cert,
        https,
    })
}

fn convert_health(h: HealthSection, site: Option<&str>) -> Result<HealthConfig, ConfigError> {
    let d = HealthConfig::default();
    let path = h.path.unwrap_or(d.path);
    if !path.starts_with('/') || path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(err(
            site,
            "health.path",
            format!("`{path}` must be a path starting with '/'"),
        ));
    }
    let dur = |v: Option<String>, key: &str, default| -> Result<_, ConfigError> {
        let d = v
            .map(|s| parse_duration(&s).map_err(|m| err(site, key, m)))
            .transpose()?
            .unwrap_or(default);
        if d.is_zero() {
            return Err(err(site, key, "must be greater than zero"));
        }
        Ok(d)
    };
    let rise = h.rise.unwrap_or(d.rise);
    let fall = h.fall.unwrap_or(d.fall);
    if rise == 0 || fall == 0 {
        return Err(err(site, "health", "`rise` and `fall` must be at least 1"));
    }
    Ok(HealthConfig {
        path,
        interval: dur(h.interval, "health.interval", d.interval)?,
        timeout: dur(h.timeout, "health.timeout", d.timeout)?,
        rise,
        fall,
    })
}

/// `host:port` with a literal IP, or a name resolved once at load time.
fn resolve_upstream(raw: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = raw.parse() {
        return Ok(a);
    }
    let bad = || format!("`{raw}` is not \"host:port\", e.g. \"127.0.0.1:3000\"");
    let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    super::model::validate_host_name(&host.to_ascii_lowercase()).map_err(|_| bad())?;
    raw.to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{raw}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{raw}` resolves to no address"))
}

fn parse_net(raw: &str) -> Result<ipnet::IpNet, String> {
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{raw}` is not an IP or network, e.g. \"10.0.0.0/8\" or \"::1\""))
}

fn normalize_prefix(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("`{raw}` must start with '/'"));
    }
    if raw.split('/').any(|seg| {
        seg == ".."
            || seg == "."
            || seg.contains(|c: char| {
                c.is_whitespace() || c.is_control() || c == '%' || c == '?' || c == '#'
            })
    }) {
        return Err(format!("`{raw}` must be a plain path such as \"/api\""));
    }
    let trimmed = raw.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    })
}

/// Cross-site checks: one owner per (host, path) and per listen address.
fn check_conflicts(cfg: &GatewayConfig) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    let mut routes: HashMap<(HostPattern, &str), &str> = HashMap::new();
    let shared: HashSet<SocketAddr> = cfg.listen.iter().copied().collect();
    let mut own_ports: HashMap<SocketAddr, &str> = HashMap::new();
    for site in &cfg.sites {
        let name = Some(site.name.as_str());
        if !names.insert(&site.name) {
            return Err(err(name, "name", "another site has the same name"));
        }
        for host in &site.hosts {
            if let Some(other) = routes.insert((host.clone(), &site.path), &site.name) {
                return Err(err(
                    name,
                    "hosts",
                    format!(
                        "`{host}` with path `{}` is already served by site \"{other}\"",
                        site.path
                    ),
                ));
            }
        }
        // Port 0 (any free port, used by tests) cannot clash.
        for l in site.listen.iter().filter(|l| l.port() != 0) {
            if shared.contains(l) || Some(*l) == cfg.admin {
                return Err(err(
                    name,
                    "listen",
                    format!("{l} is already a gateway listener"),
                ));
            }
            if let Some(other) = own_ports.insert(*l, &site.name) {
                return Err(err(
                    name,
                    "listen",
                    format!("{l} is already the own port of site \"{other}\""),
                ));
            }
        }
    }
    if let Some(a) = cfg.admin.filter(|a| a.port() != 0)
        && shared.contains(&a)
    {
        return Err(err(
            None,
            "gateway.admin",
            format!("{a} is also in gateway.listen"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<GatewayConfig, String> {
        GatewayConfig::from_toml(text, Path::new(env!("CARGO_MANIFEST_DIR")))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn example_config_loads() {
        let cfg = load(
            r#"
            [gateway]
            listen = ["127.0.0.1:8080"]
            admin = "127.0.0.1:9901"
            [[site]]
            name = "pages"
            hosts = ["pages.example.test", "*.pages.example.test"]
            root = "src"
            listen = ["127.0.0.1:7777"]
            [[site]]
            name = "api"
            hosts = ["api.example.test"]
            path = "/v1/"
            upstreams = ["127.0.0.1:3000", "localhost:3001"]
            health = { path = "/up", interval = "1s" }
            max_body = "1MB"
            allow = ["127.0.0.1", "10.0.0.0/8"]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.sites.len(), 2);
        assert_eq!(cfg.sites[1].path, "/v1");
        assert_eq!(cfg.sites[1].max_body, 1 << 20);
        let BackendConfig::Proxy(p) = &cfg.sites[1].backend else {
            panic!()
        };
        assert_eq!(p.health.as_ref().unwrap().interval.as_secs(), 1);
    }

    #[test]
    fn errors_name_site_and_key() {
        let cases = [
            (
                "[[site]]\nname='a'\nhosts=['a b']\nroot='src'",
                "site \"a\": `hosts`",
            ),
            (
                "[[site]]\nname='a'\nhosts=['a.test']\nupstreams=['nope']",
                "site \"a\": `upstreams`",
            ),
            ("[[site]]\nname='a'\nhosts=['a.test']", "site \"a\": `root`"),
            (
                "[[site]]\nname='a'\nhosts=['a.test']\nroot='/does/not/exist'",
                "is not a folder",
            ),
            (
                "[[site]]\nname='a'\nhosts=['a.test']\nroot='src'\nbogus=1",
                "unknown field `bogus`",
            ),
            ("[gateway]\nlisten=['8080']", "`gateway.listen`"),
            (
                "[[site]]\nname='a'\nhosts=['x.test']\nroot='src'\n[[site]]\nname='b'\nhosts=['x.test']\nroot='src'",
                "already served by site \"a\"",
            ),
            (
                "[[site]]\nname='a'\nhosts=['x.test']\nupstreams=['127.0.0.1:1']\nhealth={interval='0s'}",
                "`health.interval`",
            ),
            ("[[site]]\nname='A'\nhosts=['x.test']\nroot='src'", "`name`"),
            (
                "[gateway]\ndefault_sni='x.test'\n[[site]]\nname='a'\nhosts=['x.test']\nroot='src'",
                "`gateway.default_sni`: `x.test` is not a host of any site with `tls`",
            ),
            (
                "[gateway]\ndefault_sni='*.x.test'",
                "`gateway.default_sni`: `*.x.test` is a pattern; name one host",
            ),
            (
                "[[site]]\nname='a'\nhosts=['x.test']\nupstreams=['127.0.0.1:1']\nfollow_links_outside_root=true",
                "site \"a\": `follow_links_outside_root`: only static sites",
            ),
        ];
        // Names no certificate authority issues for are refused before the first order.
        let acme = |host: &str| {
            format!(
                "[gateway]\nhttps=['127.0.0.1:8443']\n[acme]\ndirectory='https://ca.test/dir'\n\
                 [[site]]\nname='a'\nhosts=['{host}']\nroot='src'\ntls='acme'"
            )
        };
        let cases = cases.into_iter().map(|(t, w)| (t.to_string(), w)).chain([
            (acme("app.localhost"), "`app.localhost` is local"),
            (acme("intranet"), "`intranet` is a single label"),
            (acme("192.0.2.7"), "`192.0.2.7` is an IP address"),
            (acme("my_app.example.com"), "has a `_`"),
            (
                "[gateway]\nread_timeout='0s'".to_string(),
                "`gateway.read_timeout`: must be more than 0",
            ),
        ]);
        for (text, want) in cases {
            let got = load(&text).unwrap_err();
            assert!(
                got.contains(want),
                "for {text:?}\n got: {got}\nwant: {want}"
            );
        }
    }
}
