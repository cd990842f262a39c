//! Validated gateway configuration: what the gateway runs from, whoever wrote it (a TOML file or
//! the control plane). Every value here has already been checked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// The whole gateway: listeners, defaults and sites.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// Plain-HTTP listeners for Host-routed traffic.
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners for Host-routed traffic; certificates chosen by SNI.
    pub https: Vec<SocketAddr>,
    /// Where generated and ordered certificates (and the ACME account) are kept.
    pub tls_dir: Option<PathBuf>,
    /// The host whose certificate answers a client that names no host (no SNI): an
    /// `https://<ip address>/` URL, `openssl s_time`. Without it such handshakes are refused.
    pub default_sni: Option<String>,
    /// ACME settings; needed by sites with `tls = "acme"`.
    pub acme: Option<wharf_tls::AcmeSettings>,
    /// Admin listener serving `/metrics` and `/healthz`.
    pub admin: Option<SocketAddr>,
    /// Worker threads; 0 means one per core. Read once at start.
    pub workers: usize,
    pub unknown_host: UnknownHost,
    pub access_log: AccessLogTarget,
    pub timeouts: Timeouts,
    pub sites: Vec<SiteConfig>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            https: Vec::new(),
            tls_dir: None,
            default_sni: None,
            acme: None,
            admin: None,
            workers: 0,
            unknown_host: UnknownHost::NotFound,
            access_log: AccessLogTarget::Off,
            timeouts: Timeouts::default(),
            sites: Vec::new(),
        }
    }
}

/// What happens to a request whose Host matches no site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownHost {
    /// Answer with a small 404 page.
    NotFound,
    /// Close the connection without an answer (nginx's `return 444`).
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect to an upstream.
    pub connect: Duration,
    /// From sending the request to receiving the upstream's response headers.
    pub read: Duration,
    /// How long in-flight requests may finish after their target was swapped out, or on shutdown.
    pub drain: Duration,
    /// How long a client may take to send its request headers, counted from accept for a
    /// connection's first request (slowloris guard, and the end of connections that never send).
    pub header_read: Duration,
    /// How long a connection may stay open with no request in flight (keep-alive, HTTP/2).
    pub idle: Duration,
    /// Longest pause between two reads of a request body (a stalled upload gets 408).
    pub body_read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            drain: Duration::from_secs(30),
            header_read: Duration::from_secs(15),
            idle: Duration::from_secs(60),
            body_read: Duration::from_secs(60),
        }
    }
}

/// One site: the hosts (and optional path prefix) it answers and what serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteConfig {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    /// Path prefix, always starting with `/`; `/` matches everything. Matched on segment
    /// boundaries: `/api` matches `/api` and `/api/x`, never `/apix`.
    pub path: String,
    pub backend: BackendConfig,
    /// Extra listeners that serve this site alone, whatever the Host.
    pub listen: Vec<SocketAddr>,
    pub max_body: u64,
    /// Client networks allowed in; empty allows everyone.
    pub allow: Vec<IpNet>,
    pub access_log: bool,
    /// The certificate this site asks for (see [`GatewayConfig::wanted_certs`]); the control
    /// plane manages certificates per host name itself and leaves this `None`.
    pub cert: Option<wharf_tls::CertSource>,
    pub https: HttpsPolicy,
}

/// What plain HTTP and HTTPS answers do once a certificate covers the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpsPolicy {
    /// Answer plain-HTTP requests with a 301 to HTTPS while a certificate covers the host.
    pub redirect: bool,
    /// `Strict-Transport-Security: max-age` sent on HTTPS answers; `None` sends none.
    pub hsts: Option<Duration>,
}

impl Default for HttpsPolicy {
    fn default() -> Self {
        HttpsPolicy {
            redirect: true,
            hsts: None,
        }
    }
}

impl GatewayConfig {
    /// The certificates the sites ask for: one per site with `tls`, for its named hosts
    /// (`*` is not a name a certificate can carry).
    pub fn wanted_certs(&self) -> Vec<wharf_tls::WantedCert> {
        self.sites
            .iter()
            .filter_map(|s| {
                let source = s.cert.as_ref()?;
                let hosts = s
                    .hosts
                    .iter()
                    .filter_map(|h| match h {
                        HostPattern::Exact(n) => Some(n.clone()),
                        HostPattern::Wildcard(suffix) => Some(format!("*{suffix}")),
                        HostPattern::Any => None,
                    })
                    .collect();
                Some(wharf_tls::WantedCert {
                    name: s.name.clone(),
                    hosts,
                    source: source.clone(),
                })
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// A full host name, lower-case, without port.
    Exact(String),
    /// `*.example.test`, stored as the suffix `.example.test`; matches one or more labels.
    Wildcard(String),
    /// `*`: any host no other site claims.
    Any,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BackendConfig {
    Static(StaticConfig),
    Proxy(ProxyConfig),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticConfig {
    pub root: PathBuf,
    /// Index file names tried for a directory, in order.
    pub index: Vec<String>,
    /// Page (relative to root) served with status 404 when nothing matches.
    pub not_found: Option<String>,
    /// Serve files that symbolic links inside the root lead to even when they are outside it
    /// (documentation trees that link shared assets). Off: such links answer 404. The request
    /// path itself can never climb out of the root either way.
    pub follow_links_outside_root: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProxyConfig {
    pub upstreams: Vec<SocketAddr>,
    pub balance: Balance,
    pub health: Option<HealthConfig>,
    /// Remove the site's path prefix before forwarding.
    pub strip_prefix: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a down target back.
    pub rise: u32,
    /// Consecutive failures that take a target out.
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            path: "/".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

pub(crate) const DEFAULT_MAX_BODY: u64 = 10 << 20;

impl HostPattern {
    /// Parses and validates a host pattern as written by a user. Only letters, digits, `-`, `_`
    /// and `.` may appear, so nothing written here can smuggle syntax into routing or logs.
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        let lower = raw.trim().to_ascii_lowercase();
        if lower == "*" {
            return Ok(HostPattern::Any);
        }
        let host = lower.strip_suffix('.').unwrap_or(&lower);
        let (wild, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        validate_host_name(name).map_err(|why| format!("`{raw}` is not a valid host: {why}"))?;
        Ok(if wild {
            HostPattern::Wildcard(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_string())
        })
    }
}

impl HostPattern {
    /// One exact host name, checked and normalised as [`HostPattern::parse`] does; a pattern is
    /// refused.
    pub fn parse_exact(raw: &str) -> Result<String, String> {
        match HostPattern::parse(raw)? {
            HostPattern::Exact(host) => Ok(host),
            _ => Err(format!(
                "`{raw}` is a pattern; name one host, e.g. \"example.com\""
            )),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// Why a public certificate authority would not issue for this exact host over ACME, if it
/// would not: said before the first order, rather than as a failing certificate later.
pub fn acme_host_problem(host: &str) -> Option<String> {
    if host == "localhost" || host.ends_with(".localhost") {
        return Some(format!(
            "`{host}` is local to this machine, where no certificate authority can check it; use self-signed"
        ));
    }
    if !host.contains('.') {
        return Some(format!(
            "`{host}` is a single label; a public certificate needs a full name such as blog.example.com"
        ));
    }
    if host
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(format!(
            "`{host}` is an IP address; ACME certificates here are for host names"
        ));
    }
    if host.contains('_') {
        return Some(format!(
            "`{host}` has a `_`, which certificate authorities do not accept in host names"
        ));
    }
    None
}

/// A DNS name (or IPv4 literal): dot-separated labels of `[a-z0-9_-]`, 1–63 bytes each, 253 in all.
pub(crate) fn validate_host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters");
    }
    // Bytes, not `str::split`: this runs for every request's host.
    for label in name.as_bytes().split(|&b| b == b'.') {
        if label.is_empty() {
            return Err("it has an empty label (two dots in a row?)");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !label
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-', '_' and '.' are allowed");
        }
        if label.starts_with(b"-") || label.ends_with(b"-") {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, ()>) {
        let got = HostPattern::parse(input)
            .map(|p| p.to_string())
            .map_err(|_| ());
        assert_eq!(got.as_deref().map_err(|_| ()), expected, "{input}");
    }

    #[test]
    fn host_patterns() {
        check("Blog.Example.TEST.", Ok("blog.example.test"));
        check("*.pages.test", Ok("*.pages.test"));
        check("*", Ok("*"));
        check("127.0.0.1", Ok("127.0.0.1"));
        for bad in [
            "", "a b", "a`b", "a||b", "a..b", "*.", "-a.test", "a*.test", "a.*.test", "a/b",
            "a:80", "ä.test",
        ] {
            check(bad, Err(()));
        }
    }
}
