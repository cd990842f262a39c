//! ACME against a real ACME server: Debian's `pebble` (with `pebble-challtestsrv` as its DNS)
//! issues a certificate for a test host through `wharf gateway`'s own HTTP-01 answers; the page
//! is then fetched over HTTPS verifying the chain against Pebble's root. Pebble's certificates
//! here live 20 s, so the renewal (due when a third is left) happens during the test, while a
//! connection opened before it keeps working.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};
use wharf_testkit::{TlsConn, Trust, get, get_tls};
use wharf_tls::CertInfo;

use support::{TempDir, free_port};

const HOST: &str = "blog.example.test";

fn require(tool: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is missing: install Debian's ACME test server with `apt-get install -y pebble`"
    );
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("process starts")
}

/// Waits until something accepts connections on `addr` (the server's readiness).
async fn listening(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr} after 10 s");
}

/// A CA for Pebble's own HTTPS (the directory) and a leaf for localhost / 127.0.0.1.
fn pebble_tls(dir: &Path) -> String {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("pebble.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.join("pebble.key"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("pebble-ca.pem"), ca_cert.pem()).unwrap();
    ca_cert.pem()
}

struct Gateway {
    _child: Child,
    log: Lines<BufReader<ChildStderr>>,
}

impl Gateway {
    async fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let read = async {
            while let Some(line) = self.log.next_line().await.unwrap() {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("wharf exited before logging `{needle}`");
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("no `{needle}` in the log within {within:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_issues_and_renews_through_the_gateway() {
    require("pebble");
    require("pebble-challtestsrv");
    let tmp = TempDir::new("acme");
    let dir = &tmp.0;
    let ca_pem = pebble_tls(dir);
    let (acme_port, mgmt_port, dns_port) = (free_port(), free_port(), free_port());
    let (http_port, https_port) = (free_port(), free_port());

    // DNS: every name resolves to 127.0.0.1 (and no IPv6), so Pebble validates against us.
    let _dns = spawn(Command::new("pebble-challtestsrv").args([
        "-dns01",
        &format!("127.0.0.1:{dns_port}"),
        "-http01",
        "",
        "-https01",
        "",
        "-tlsalpn01",
        "",
        "-management",
        &format!("127.0.0.1:{}", free_port()),
        "-defaultIPv4",
        "127.0.0.1",
        "-defaultIPv6",
        "",
    ]));
    let config = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{acme_port}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
        "certificate": dir.join("pebble.pem"),
        "privateKey": dir.join("pebble.key"),
        "httpPort": http_port,
        "tlsPort": https_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
        "certificateValidityPeriod": 20,
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let _pebble = spawn(
        Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0"),
    );
    listening(SocketAddr::from(([127, 0, 0, 1], acme_port))).await;
    listening(SocketAddr::from(([127, 0, 0, 1], mgmt_port))).await;

    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "hello over https").unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            r#"
[gateway]
listen = ["127.0.0.1:{http_port}"]
https = ["127.0.0.1:{https_port}"]
[acme]
directory = "https://127.0.0.1:{acme_port}/dir"
directory_root = "pebble-ca.pem"
email = "ops@example.test"
[[site]]
name = "blog"
hosts = ["{HOST}"]
root = "www"
tls = "acme"
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["gateway", "--no-watch", "--config"])
        .arg(dir.join("gateway.toml"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("wharf starts");
    let log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut gw = Gateway { _child: child, log };
    gw.wait_for("certificate issued by", Duration::from_secs(60))
        .await;

    // Pebble's root for this run comes from its management interface.
    let mgmt = SocketAddr::from(([127, 0, 0, 1], mgmt_port));
    let root = get_tls(
        mgmt,
        "localhost",
        "/roots/0",
        &["http/1.1"],
        &Trust::Roots(ca_pem.into_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(root.reply.status, 200);
    let pebble_root = Trust::Roots(root.reply.body.to_vec());

    let https = SocketAddr::from(([127, 0, 0, 1], https_port));
    let mut held = TlsConn::connect(https, HOST, &["h2", "http/1.1"], &pebble_root)
        .await
        .expect("the issued chain verifies against Pebble's root");
    assert_eq!(held.get("/").await.unwrap().text(), "hello over https");
    let first = CertInfo::parse(&held.leaf.clone().into()).unwrap();
    assert_eq!(first.hosts, [HOST]);
    assert!(first.issuer.contains("Pebble"), "{}", first.issuer);

    // Plain HTTP now redirects to HTTPS.
    let r = get(SocketAddr::from(([127, 0, 0, 1], http_port)), HOST, "/x")
        .await
        .unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://{HOST}:{https_port}/x").as_str())
    );

    // The renewal, due when a third of the 20 s is left, and served to new handshakes; the
    // connection opened before it keeps answering.
    gw.wait_for("certificate issued by", Duration::from_secs(40))
        .await;
    let fresh = get_tls(https, HOST, "/", &["h2"], &pebble_root)
        .await
        .unwrap();
    assert_eq!(fresh.reply.text(), "hello over https");
    let second = CertInfo::parse(&fresh.leaf.into()).unwrap();
    assert!(
        second.not_after > first.not_after,
        "{second:?} vs {first:?}"
    );
    assert_eq!(held.get("/").await.unwrap().text(), "hello over https");

    // Both account and key are kept private.
    for file in ["acme-account.json", "blog/key.pem"] {
        let meta = std::fs::metadata(dir.join("certs").join(file)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600,
            "{file}"
        );
    }
}
