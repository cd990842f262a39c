//! Changes applied as changes: `Gateway::update` on one site leaves every other site's route,
//! health state, upstream connections and totals exactly as they were, with thousands of sites.

use std::time::Duration;

use http::StatusCode;
use wharf_gateway::config::{GatewayConfig, SiteConfig};
use wharf_gateway::{Gateway, SiteChanges};
use wharf_testkit::{MockUpstream, assert_eventually, get};

const STATIC_SITES: usize = 3000;

/// `a` has no health checks (their probes would count as connections to its upstream); `b`
/// is checked every 100 ms.
fn config(up_a: &MockUpstream, up_b: &MockUpstream, root: &std::path::Path) -> GatewayConfig {
    let mut toml = format!(
        "[gateway]\nlisten = [\"127.0.0.1:0\"]\n\
         [[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"{}\"]\n\
         [[site]]\nname = \"b\"\nhosts = [\"b.test\"]\nupstreams = [\"{}\"]\n\
         health = {{ path = \"/up\", interval = \"100ms\", fall = 1, rise = 1 }}\n",
        up_a.addr, up_b.addr
    );
    for i in 0..STATIC_SITES {
        toml.push_str(&format!(
            "[[site]]\nname = \"s{i}\"\nhosts = [\"s{i}.test\"]\nroot = \"{}\"\n",
            root.display()
        ));
    }
    GatewayConfig::from_toml(&toml, root).unwrap()
}

/// A static site like the others, under another name and host.
fn static_site(cfg: &GatewayConfig, name: &str, host: &str) -> SiteConfig {
    let mut site = cfg.sites.iter().find(|s| s.name == "s0").unwrap().clone();
    site.name = name.into();
    site.hosts = vec![wharf_gateway::config::HostPattern::parse(host).unwrap()];
    site
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_one_site_leaves_every_other_untouched() {
    // Each static site holds its root open.
    wharf_gateway::raise_open_file_limit().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), "static").unwrap();
    let up_a = MockUpstream::start("a").await;
    let up_b = MockUpstream::start("b").await;
    let cfg = config(&up_a, &up_b, root.path());
    let gw = Gateway::start(cfg.clone()).unwrap();
    let addr = gw.listen_addrs()[0];

    // Sites are listed as active from the first look on.
    assert!(gw.active_sites().is_empty());
    // `a` serves over a kept-alive upstream connection; `b` is found unhealthy.
    for _ in 0..3 {
        let r = get(addr, "a.test", "/").await.unwrap();
        assert_eq!(r.text(), "a");
    }
    up_b.set_healthy(false);
    assert_eventually!(
        gw.targets("b").unwrap().iter().all(|(_, ok)| !ok),
        "b found unhealthy"
    );
    // What served since the last look is reported, each once; idle sites are not.
    let active = gw.active_sites();
    assert_eq!(
        active
            .iter()
            .map(|(n, s)| (n.as_str(), s.requests))
            .collect::<Vec<_>>(),
        [("a", 3)],
        "only the site that served is reported"
    );
    assert!(gw.active_sites().is_empty(), "nothing served since");
    let a_conns = up_a.connections();
    let a_requests = gw.site_stats("a").unwrap().requests;
    assert_eq!(a_requests, 3);

    // Many changes to other sites: one added, one changed (new host), one removed.
    for round in 0..20 {
        let changes = SiteChanges {
            upsert: vec![
                static_site(&cfg, &format!("new{round}"), &format!("new{round}.test")),
                static_site(&cfg, "s1", &format!("moved{round}.test")),
            ],
            remove: vec![format!("s{}", 100 + round)],
        };
        gw.update(changes).unwrap();
        // The change is live at once...
        let r = get(addr, &format!("new{round}.test"), "/").await.unwrap();
        assert_eq!(r.text(), "static");
        let r = get(addr, &format!("moved{round}.test"), "/").await.unwrap();
        assert_eq!(r.text(), "static");
        let r = get(addr, &format!("s{}.test", 100 + round), "/")
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::NOT_FOUND, "a removed site is gone");
        // ...and `b`'s health verdict was not forgotten (a rebuilt pool starts healthy).
        assert!(
            gw.targets("b").unwrap().iter().all(|(_, ok)| !ok),
            "b's health state was reset by a change to another site"
        );
    }
    // s1's old host no longer routes to it; untouched sites still do.
    let r = get(addr, "s1.test", "/").await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for i in [0, 2, 99, 120, 2999] {
        let r = get(addr, &format!("s{i}.test"), "/").await.unwrap();
        assert_eq!(r.text(), "static", "s{i}");
    }

    // `a` still goes through the same upstream connection, and its totals carry on.
    for _ in 0..3 {
        let r = get(addr, "a.test", "/").await.unwrap();
        assert_eq!(r.text(), "a");
    }
    assert_eq!(
        up_a.connections(),
        a_conns,
        "a's upstream connection was dropped by changes to other sites"
    );
    assert_eq!(gw.site_stats("a").unwrap().requests, a_requests + 3);

    // A refused change (a static root that cannot be opened) changes nothing.
    let mut bad = static_site(&cfg, "s2", "bad.test");
    if let wharf_gateway::config::BackendConfig::Static(s) = &mut bad.backend {
        s.root = root.path().join("missing");
    }
    let err = gw
        .update(SiteChanges {
            upsert: vec![bad],
            remove: vec!["s3".into()],
        })
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let r = get(addr, "s2.test", "/").await.unwrap();
    assert_eq!(r.text(), "static");
    let r = get(addr, "s3.test", "/").await.unwrap();
    assert_eq!(r.text(), "static", "a refused change removed nothing");

    // b recovers through its own, never restarted, health checks.
    up_b.set_healthy(true);
    assert_eventually!(
        gw.targets("b").unwrap().iter().all(|(_, ok)| *ok),
        "b healthy again"
    );
    tokio::time::timeout(Duration::from_secs(5), gw.shutdown())
        .await
        .unwrap();
}
