//! HTTPS through `wharf server`, as a user drives it with the CLI: `wharf domains add --tls`
//! with a self-signed, a manual and an ACME certificate (Debian's pebble, TLS-ALPN-01),
//! `wharf certs`, the
//! HTTP→HTTPS redirect, HSTS, and a refused mismatched key that leaves nothing behind.

mod support;

use std::path::Path;
use std::time::Duration;

use support::pebble::Pebble;
use support::{ServerProc, TempDir, free_port};
use wharf_testkit::{Trust, get, get_tls};
use wharf_tls::CertInfo;

/// A CA and a leaf for `host` signed by it: (CA PEM, leaf PEM path, key PEM path).
fn manual_cert(dir: &Path, host: &str) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (c, k) = (
        dir.join(format!("{host}.pem")),
        dir.join(format!("{host}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (
        ca_cert.pem(),
        c.display().to_string(),
        k.display().to_string(),
    )
}

fn hosts_of(leaf: Vec<u8>) -> Vec<String> {
    CertInfo::parse(&leaf.into()).unwrap().hosts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_over_https_with_self_signed_manual_and_acme_certificates() {
    let tmp = TempDir::new("server-tls");
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(&tmp.0.join("pebble"), http_port, https_port, 3600).await;
    let server = ServerProc::start_with(
        &tmp.0.join("data"),
        http_port,
        https_port,
        &[
            ("WHARF_ACME_DIRECTORY", pebble.directory.clone()),
            (
                "WHARF_ACME_ROOT",
                pebble.directory_root.display().to_string(),
            ),
            // The gateway test covers HTTP-01; this one answers on the HTTPS listener.
            ("WHARF_ACME_CHALLENGE", "tls-alpn-01".to_string()),
            ("WHARF_DEFAULT_SNI", "Origin.example.test".to_string()),
        ],
    )
    .await;
    let (http, https) = (server.http, server.https);
    server.ok(&["apps", "create", "site", "--static"]).await;
    std::fs::write(tmp.0.join("data/apps/site/public/index.html"), "hello tls").unwrap();

    // Self-signed: an origin certificate, e.g. behind a CDN in "Full" mode.
    server
        .ok(&[
            "domains",
            "add",
            "site",
            "origin.example.test",
            "--tls",
            "self-signed",
        ])
        .await;
    let r = get_tls(
        https,
        "origin.example.test",
        "/",
        &["h2", "http/1.1"],
        &Trust::Any,
    )
    .await
    .unwrap();
    assert_eq!(r.reply.text(), "hello tls");
    assert_eq!(r.alpn.as_deref(), Some("h2"));
    assert_eq!(hosts_of(r.leaf), ["origin.example.test"]);
    // A client that names no host (an IP-address URL sends no SNI) gets --default-sni's.
    let r = get_tls(https, "127.0.0.1", "/", &["http/1.1"], &Trust::Any)
        .await
        .unwrap();
    assert_eq!(hosts_of(r.leaf), ["origin.example.test"]);
    // `domains list` says where each host's certificate comes from.
    let listed = server.ok(&["domains", "list", "site"]).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("origin.example.test") && l.ends_with("self-signed"))
            && listed
                .lines()
                .any(|l| l.starts_with("site.localhost") && l.contains("none")),
        "{listed}"
    );
    // Plain HTTP for that host now redirects; the default host (no certificate) does not.
    let r = get(http, "origin.example.test", "/a?b=c").await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://origin.example.test:{https_port}/a?b=c").as_str())
    );
    assert_eq!(
        get(http, "site.localhost", "/").await.unwrap().text(),
        "hello tls"
    );

    // Manual: a key that does not belong to the certificate is refused and nothing is stored.
    let (ca, cert, key) = manual_cert(&tmp.0, "shop.example.test");
    let (_, _, other_key) = manual_cert(&tmp.0, "other.example.test");
    let add_manual = |app: &'static str, host: &'static str, cert: String, key: String| {
        let server = &server;
        async move {
            let args = ["domains", "add", app, host, "--tls", "manual"];
            let files = ["--cert", cert.as_str(), "--key", key.as_str()];
            server.cli(&[&args[..], &files[..]].concat()).await
        }
    };
    let (ok, _, err) = add_manual("site", "shop.example.test", cert.clone(), other_key).await;
    assert!(
        !ok && err.contains("does not belong to the certificate"),
        "{err}"
    );
    let (ok, _, err) = add_manual("site", "wrong.example.test", cert.clone(), key.clone()).await;
    assert!(!ok && err.contains("not wrong.example.test"), "{err}");
    let app = server.app_json("site").await;
    assert_eq!(app["domains"], serde_json::json!(["origin.example.test"]));
    assert!(
        !tmp.0.join("data/certs/shop.example.test").exists(),
        "a refused upload left files behind"
    );
    let (ok, _, err) = add_manual("site", "shop.example.test", cert, key).await;
    assert!(ok, "{err}");
    assert!(tmp.0.join("data/certs/shop.example.test/cert.pem").exists());
    let verify = || async {
        get_tls(
            https,
            "shop.example.test",
            "/",
            &["h2"],
            &Trust::Roots(ca.clone().into_bytes()),
        )
        .await
        .expect("the uploaded chain verifies against its CA")
    };
    assert_eq!(verify().await.reply.text(), "hello tls");
    // Another app asking for the same name with its own certificate is refused, and the
    // certificate already served is not touched.
    server.ok(&["apps", "create", "other"]).await;
    std::fs::create_dir_all(tmp.0.join("theirs")).unwrap();
    let (_, their_cert, their_key) = manual_cert(&tmp.0.join("theirs"), "shop.example.test");
    let (ok, _, err) = add_manual("other", "shop.example.test", their_cert, their_key).await;
    assert!(!ok && err.contains("exists"), "{err}");

    // HSTS once asked for.
    // (Applying it reloads the certificates, so this also proves the refused upload above
    // left the served one alone.)
    server.ok(&["apps", "set", "site", "--hsts", "1d"]).await;
    let r = verify().await;
    assert_eq!(
        r.reply.header("strict-transport-security"),
        Some("max-age=86400")
    );

    // ACME: ordered from Pebble through the gateway's TLS-ALPN-01 answers, in the background.
    server
        .ok(&[
            "domains",
            "add",
            "site",
            "blog.example.test",
            "--tls",
            "acme",
        ])
        .await;
    let root = pebble.root().await;
    let mut issued = None;
    for _ in 0..300 {
        if let Ok(r) = get_tls(https, "blog.example.test", "/", &["h2"], &root).await {
            issued = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(r) = issued else {
        panic!(
            "no ACME certificate within 30 s:\n{}",
            server.ok(&["certs"]).await
        );
    };
    assert_eq!(r.reply.text(), "hello tls");

    // `wharf certs` shows each with its source, issuer and the last attempt.
    let out = server.ok(&["certs"]).await;
    for needle in [
        "origin.example.test",
        "self-signed",
        "shop.example.test",
        "manual",
        "blog.example.test",
        "acme",
        "Pebble",
    ] {
        assert!(out.contains(needle), "{needle} missing from:\n{out}");
    }
    let certs: serde_json::Value =
        serde_json::from_str(&server.ok(&["certs", "--json"]).await).unwrap();
    let blog = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["host"] == "blog.example.test")
        .unwrap();
    assert_eq!(blog["app"], "site");
    assert_eq!(blog["last_attempt"]["ok"], true);
    // Renewal is due when a third of the lifetime is left.
    let (from, until) = (
        blog["not_before"].as_i64().unwrap(),
        blog["not_after"].as_i64().unwrap(),
    );
    assert_eq!(
        blog["next_renewal"].as_i64().unwrap(),
        until - (until - from) / 3
    );
    // The attempt is in the operations log, and no key ever appears in API output.
    let ops = server.ok(&["ops", "site"]).await;
    assert!(ops.contains("certificate issued by"), "{ops}");
    // A date people read, not seconds since 1970.
    assert!(
        ops.contains("valid until 20") && ops.contains(" UTC"),
        "{ops}"
    );
    assert!(!ops.contains(&until.to_string()), "{ops}");
    assert!(
        !server
            .ok(&["certs", "--json"])
            .await
            .contains("PRIVATE KEY")
    );
    server.stop().await;
}
