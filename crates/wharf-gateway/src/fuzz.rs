//! Entry points for the fuzz targets in `fuzz/`: host normalisation and route matching, and
//! static request paths, on raw input. Not an API.

use std::sync::{Arc, OnceLock};

use crate::config::{GatewayConfig, HostPattern};
use crate::routing::{RouteTable, normalize_host};

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let dir = std::env::temp_dir();
        let toml = r#"
[[site]]
name = "exact"
hosts = ["a.example.test"]
upstreams = ["127.0.0.1:9"]
[[site]]
name = "api"
hosts = ["a.example.test"]
path = "/api"
upstreams = ["127.0.0.1:9"]
[[site]]
name = "wild"
hosts = ["*.example.test"]
upstreams = ["127.0.0.1:9"]
[[site]]
name = "deep"
hosts = ["*.b.example.test"]
upstreams = ["127.0.0.1:9"]
[[site]]
name = "any"
hosts = ["*"]
upstreams = ["127.0.0.1:9"]
"#;
        let cfg = GatewayConfig::from_toml(toml, &dir).expect("the fuzz table is valid");
        let metrics = crate::metrics::Metrics::new();
        let targets = crate::upstream::Targets::default();
        let sites = cfg
            .sites
            .iter()
            .map(|s| {
                Arc::new(
                    crate::site::Site::build(s.clone(), None, &metrics, &targets)
                        .expect("site")
                        .0,
                )
            })
            .collect();
        RouteTable::new(sites, cfg.unknown_host, cfg.timeouts)
    })
}

/// Normalises `raw_host` like the gateway does and routes it with `path`. Panics if the site
/// found does not match the host it was found for (the property the fuzzer checks).
pub fn route(raw_host: &str, path: &str) -> Option<String> {
    let host = normalize_host(raw_host)?;
    assert!(
        host.parse::<std::net::Ipv6Addr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)),
        "normalised host {host:?} has characters outside DNS names"
    );
    let site = table().lookup(&host, path)?;
    let ok = site.config.hosts.iter().any(|p| match p {
        HostPattern::Exact(h) => *h == host,
        HostPattern::Wildcard(suffix) => {
            host.ends_with(suffix.as_str()) && host.len() > suffix.len()
        }
        HostPattern::Any => true,
    });
    assert!(
        ok,
        "{host:?} routed to {} which does not claim it",
        site.config.name
    );
    Some(site.config.name.clone())
}

/// Decodes and normalises `raw` as a static site's request path; returns the path the file
/// system would be asked for. Panics if it could climb out of the root: a `.`, `..` or empty
/// segment, or a separator or NUL inside one (the property the fuzzer checks).
pub fn static_path(raw: &str) -> Option<String> {
    let safe = crate::static_files::sanitize(raw).ok()?;
    for seg in &safe.segments {
        assert!(
            !seg.is_empty() && seg != "." && seg != ".." && !seg.contains(['/', '\\', '\0']),
            "{raw:?} gave the segment {seg:?}"
        );
    }
    Some(safe.rel())
}
