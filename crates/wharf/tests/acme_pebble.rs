//! ACME against a real ACME server: Debian's `pebble` (with `pebble-challtestsrv` as its DNS)
//! issues a certificate for a test host through `wharf gateway`'s own HTTP-01 answers; the page
//! is then fetched over HTTPS verifying the chain against Pebble's root. Pebble's certificates
//! here live 20 s, so the renewal (due when a third is left) happens during the test, while a
//! connection opened before it keeps working.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};
use wharf_testkit::{TlsConn, get, get_tls};
use wharf_tls::CertInfo;

use support::pebble::Pebble;
use support::{TempDir, free_port};

const HOST: &str = "blog.example.test";

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
    let tmp = TempDir::new("acme");
    let dir = &tmp.0;
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(&dir.join("pebble"), http_port, https_port, 20).await;
    std::fs::copy(&pebble.directory_root, dir.join("pebble-ca.pem")).unwrap();
    let acme_dir = &pebble.directory;

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
directory = "{acme_dir}"
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

    let pebble_root = pebble.root().await;

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
