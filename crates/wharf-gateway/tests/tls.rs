//! HTTPS on real sockets: certificates chosen by SNI (exact and wildcard), ALPN h2 and
//! http/1.1, HTTP→HTTPS redirects and HSTS, hot certificate swaps on a live listener, and bad
//! certificate files refused with the previous certificate serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_gateway::Gateway;
use wharf_gateway::config::GatewayConfig;
use wharf_testkit::{Trust, get, get_tls};
use wharf_tls::{CertInfo, CertManager, RenewPolicy};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("wharf-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    for site in ["a", "b"] {
        std::fs::create_dir_all(d.join(site)).unwrap();
        std::fs::write(d.join(site).join("index.html"), format!("site {site}")).unwrap();
    }
    Dir(d)
}

/// A test CA and a leaf for `hosts` signed by it, written as `<name>.pem` / `<name>.key`.
fn issue(ca: &Ca, hosts: &[&str], at: &Path, name: &str) {
    let params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::from_params(&ca.2, &ca.1);
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(at.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(at.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

type Ca = (rcgen::Certificate, rcgen::KeyPair, rcgen::CertificateParams);

fn test_ca() -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wharf test CA");
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key, params)
}

const CONFIG: &str = r#"
[gateway]
listen = ["127.0.0.1:0"]
https = ["127.0.0.1:0"]
[[site]]
name = "a"
hosts = ["a.test"]
root = "a"
tls = { cert = "a.pem", key = "a.key" }
hsts = "365d"
[[site]]
name = "b"
hosts = ["b.test", "*.b.test"]
root = "b"
tls = "self-signed"
https_redirect = false
"#;

async fn start(d: &Path) -> (Gateway, Arc<CertManager>, GatewayConfig) {
    start_toml(d, CONFIG).await
}

/// The gateway of `CONFIG`, a.test's certificate issued by a fresh test CA, with
/// `gateway_line` added to its `[gateway]` section.
async fn start_a(
    name: &str,
    gateway_line: &str,
) -> (Dir, Ca, Gateway, Arc<CertManager>, GatewayConfig) {
    let d = dir(name);
    let ca = test_ca();
    issue(&ca, &["a.test"], &d.0, "a");
    let https = "https = [\"127.0.0.1:0\"]";
    let toml = CONFIG.replace(https, &format!("{https}\n{gateway_line}"));
    let (gw, certs, config) = start_toml(&d.0, &toml).await;
    (d, ca, gw, certs, config)
}

async fn start_toml(d: &Path, toml: &str) -> (Gateway, Arc<CertManager>, GatewayConfig) {
    let config = GatewayConfig::from_toml(toml, d).unwrap();
    let gw = Gateway::start(config.clone()).unwrap();
    let certs = CertManager::new(
        gw.certs(),
        config.tls_dir.clone().unwrap(),
        None,
        RenewPolicy::default(),
    );
    assert!(certs.apply(config.wanted_certs()).is_empty());
    (gw, certs, config)
}

fn names(der: &[u8]) -> Vec<String> {
    CertInfo::parse(&der.to_vec().into()).unwrap().hosts
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_picks_h2() {
    let d = dir("sni");
    let ca = test_ca();
    issue(&ca, &["a.test"], &d.0, "a");
    let (gw, certs, _) = start(&d.0).await;
    let https = gw.https_addrs()[0];
    let roots = Trust::Roots(ca.0.pem().into_bytes());

    // The manual certificate verifies against its CA, over h2 when offered.
    let r = get_tls(https, "a.test", "/", &["h2", "http/1.1"], &roots)
        .await
        .unwrap();
    assert_eq!(r.reply.status, 200);
    assert_eq!(r.reply.text(), "site a");
    assert_eq!(r.alpn.as_deref(), Some("h2"));
    assert_eq!(names(&r.leaf), ["a.test"]);
    assert_eq!(
        r.reply.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let r = get_tls(https, "a.test", "/", &["http/1.1"], &roots)
        .await
        .unwrap();
    assert_eq!(r.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(r.reply.text(), "site a");

    // The self-signed one covers b.test and its wildcard; no HSTS asked there.
    for host in ["b.test", "x.b.test"] {
        let r = get_tls(https, host, "/", &["h2"], &Trust::Any)
            .await
            .unwrap();
        assert_eq!(r.reply.text(), "site b", "{host}");
        assert_eq!(names(&r.leaf), ["b.test", "*.b.test"], "{host}");
        assert_eq!(r.reply.header("strict-transport-security"), None);
    }
    // A client trusting only the test CA refuses b's self-signed certificate.
    assert!(
        get_tls(https, "b.test", "/", &["h2"], &roots)
            .await
            .is_err()
    );
    // No certificate for the name: the handshake fails, nothing is served.
    let err = get_tls(https, "c.test", "/", &["h2"], &Trust::Any)
        .await
        .err()
        .unwrap();
    assert!(err.contains("handshake"), "{err}");

    // The self-signed certificate and key are kept, the key readable by its owner only.
    let key = certs.path_of("b").join("key.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

#[tokio::test]
async fn plain_http_redirects_once_a_certificate_exists() {
    let d = dir("redirect");
    let ca = test_ca();
    issue(&ca, &["a.test"], &d.0, "a");
    let (gw, certs, mut config) = start(&d.0).await;
    let http = gw.listen_addrs()[0];
    let port = gw.https_addrs()[0].port();

    let r = get(http, "a.test", "/page?x=1").await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://a.test:{port}/page?x=1").as_str())
    );
    // Redirect switched off for b: plain HTTP keeps serving.
    assert_eq!(get(http, "b.test", "/").await.unwrap().text(), "site b");

    // The HTTPS listener moves: redirects name its new port, not the closed one.
    let moved = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.https = vec![moved];
    gw.reload(config.clone()).unwrap();
    let r = get(http, "a.test", "/").await.unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("https://a.test:{}/", moved.port()).as_str())
    );

    // Without a certificate (removed), a.test serves plain HTTP again instead of redirecting
    // to a handshake that would fail.
    // The site still asks for redirects; only its certificate is gone.
    let a = config.sites.iter_mut().find(|s| s.name == "a").unwrap();
    a.cert = None;
    assert!(a.https.redirect);
    certs.apply(config.wanted_certs());
    gw.reload(config).unwrap();
    let r = get(http, "a.test", "/").await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "site a"));
}

#[tokio::test]
async fn certificates_swap_live_and_bad_files_keep_the_old_one() {
    let d = dir("swap");
    let ca = test_ca();
    issue(&ca, &["a.test"], &d.0, "a");
    let (gw, certs, config) = start(&d.0).await;
    let https = gw.https_addrs()[0];
    let roots = Trust::Roots(ca.0.pem().into_bytes());
    let before = get_tls(https, "a.test", "/", &["h2"], &roots)
        .await
        .unwrap()
        .leaf;

    // A renewed certificate in the same files: the next handshake gets it, same listener.
    issue(&ca, &["a.test"], &d.0, "a");
    assert!(certs.apply(config.wanted_certs()).is_empty());
    let after = get_tls(https, "a.test", "/", &["h2"], &roots)
        .await
        .unwrap()
        .leaf;
    assert_ne!(before, after);
    assert_eq!(gw.https_addrs(), vec![https]);

    // A key that does not match the certificate: refused by name, and the file is not used.
    issue(&ca, &["a.test"], &d.0, "other");
    std::fs::copy(d.0.join("other.key"), d.0.join("a.key")).unwrap();
    let err = GatewayConfig::from_toml(CONFIG, &d.0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("site \"a\"") && err.contains("`tls`") && err.contains("does not belong"),
        "{err}"
    );
    // The manager, asked again with the bad files, keeps serving the previous certificate.
    let problems = certs.apply(config.wanted_certs());
    assert_eq!(problems.len(), 1, "{problems:?}");
    let still = get_tls(https, "a.test", "/", &["h2"], &roots)
        .await
        .unwrap()
        .leaf;
    assert_eq!(still, after);
}

#[tokio::test]
async fn tls_connections_that_send_nothing_after_the_handshake_are_closed() {
    let (_d, ca, gw, _certs, _) = start_a("idle", "header_timeout = \"3s\"").await;
    let https = gw.https_addrs()[0];
    for alpn in ["h2", "http/1.1"] {
        let mut config = client_config(&ca, rustls::DEFAULT_VERSIONS);
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
        let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("handshake");
        // The client says nothing more; the gateway must hang up (a GOAWAY first is fine).
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let mut buf = [0u8; 1024];
            loop {
                match tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{alpn}: still open 10 s after the handshake"
        );
    }
}

/// One HTTPS request over a new connection with `config` (closed after the answer, so any
/// session tickets have arrived); whether the handshake resumed an earlier session.
async fn resumed(https: std::net::SocketAddr, config: &Arc<rustls::ClientConfig>) -> bool {
    let (kind, answer) = get_a(https, config).await.expect("handshake");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    kind == Some(rustls::HandshakeKind::Resumed)
}

/// `GET /` for a.test over a new connection with `config`: how the handshake went, and the
/// whole answer. An error is a refused handshake.
async fn get_a(
    https: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<(Option<rustls::HandshakeKind>, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
    // Checked against the certificate; sent as SNI unless the config turns that off.
    let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await?;
    let kind = tls.get_ref().1.handshake_kind();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    Ok((kind, String::from_utf8_lossy(&answer).into_owned()))
}

/// A client that trusts `ca`, speaking `versions`.
fn client_config(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.0.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn a_returning_client_resumes_its_session_however_many_came_between() {
    let (_d, ca, gw, _certs, _) = start_a("resume", "").await;
    let https = gw.https_addrs()[0];
    let client = || Arc::new(client_config(&ca, rustls::DEFAULT_VERSIONS));
    let returning = client();
    assert!(
        !resumed(https, &returning).await,
        "first visit: a full handshake"
    );
    assert!(resumed(https, &returning).await, "second visit resumes");
    // More clients than a server-side session cache holds (256) come in between.
    for _ in 0..300 {
        resumed(https, &client()).await;
    }
    assert!(
        resumed(https, &returning).await,
        "the returning client still resumes: its ticket carries the session"
    );
}

/// A proxied site over HTTPS answers alike over HTTP/1.1 (the gateway's own HTTP/1 lane) and
/// HTTP/2 (hyper): the upstream is told the request came over HTTPS, and the answer carries the
/// site's HSTS.
#[tokio::test]
async fn a_proxied_site_over_https_says_so_upstream_and_carries_its_hsts() {
    let d = dir("proxied");
    let up = wharf_testkit::MockUpstream::start("up").await;
    let toml = format!(
        r#"
[gateway]
listen = ["127.0.0.1:0"]
https = ["127.0.0.1:0"]
[[site]]
name = "p"
hosts = ["p.test"]
upstreams = ["{}"]
tls = "self-signed"
hsts = "1d"
"#,
        up.addr
    );
    let (gw, _certs, _) = start_toml(&d.0, &toml).await;
    let https = gw.https_addrs()[0];
    for alpn in ["http/1.1", "h2"] {
        let r = get_tls(https, "p.test", "/headers", &[alpn], &Trust::Any)
            .await
            .unwrap();
        assert_eq!(r.alpn.as_deref(), Some(alpn));
        assert_eq!(r.reply.status, 200, "{alpn}");
        let seen = r.reply.text();
        for want in ["x-forwarded-proto: https", "x-forwarded-host: p.test"] {
            assert!(
                seen.contains(want),
                "{alpn}: upstream did not see `{want}`:\n{seen}"
            );
        }
        assert_eq!(
            r.reply.header("strict-transport-security"),
            Some("max-age=86400"),
            "{alpn}"
        );
    }
}

/// A client's session store that counts the TLS 1.3 tickets it is given and wakes a waiter for
/// each.
#[derive(Debug)]
struct Tickets {
    inner: rustls::client::ClientSessionMemoryCache,
    count: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::Notify,
}

impl Tickets {
    fn new() -> Arc<Tickets> {
        Arc::new(Tickets {
            inner: rustls::client::ClientSessionMemoryCache::new(16),
            count: Default::default(),
            arrived: Default::default(),
        })
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A client for a.test (trusting `ca`) that keeps its sessions here.
    fn client(self: &Arc<Self>, ca: &Ca) -> Arc<rustls::ClientConfig> {
        let mut config = client_config(ca, &[&rustls::version::TLS13]);
        config.resumption = rustls::client::Resumption::store(self.clone());
        Arc::new(config)
    }
}

impl rustls::client::ClientSessionStore for Tickets {
    fn set_kx_hint(&self, name: rustls::pki_types::ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &rustls::pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(name, value);
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.arrived.notify_one();
    }
    fn take_tls13_ticket(
        &self,
        name: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// A client that sends its first request with its `Finished`, as browsers and wrk do, reads the
/// session ticket in the same read as the answer: one wake-up for both, not two. The answer is
/// held upstream until the request is there, so a ticket sent on its own would be read first.
#[tokio::test]
async fn a_new_connections_ticket_comes_in_one_read_with_its_first_answer() {
    use std::io::{Read, Write};
    let d = dir("ticket-with-answer");
    let ca = test_ca();
    issue(&ca, &["a.test"], &d.0, "a");
    let up = wharf_testkit::MockUpstream::start("up").await;
    let toml = format!(
        r#"
[gateway]
listen = ["127.0.0.1:0"]
https = ["127.0.0.1:0"]
[[site]]
name = "a"
hosts = ["a.test"]
upstreams = ["{}"]
tls = {{ cert = "a.pem", key = "a.key" }}
"#,
        up.addr
    );
    let (gw, _certs, _) = start_toml(&d.0, &toml).await;
    let https = gw.https_addrs()[0];
    let tickets = Tickets::new();
    let config = tickets.client(&ca);
    let client = tokio::task::spawn_blocking(move || {
        let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
        let mut tls = rustls::ClientConnection::new(config, name).unwrap();
        let mut tcp = std::net::TcpStream::connect(https).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        while tls.is_handshaking() {
            while tls.wants_write() {
                tls.write_tls(&mut tcp).unwrap();
            }
            if tls.is_handshaking() {
                assert!(tls.read_tls(&mut tcp).unwrap() > 0, "closed mid-handshake");
                tls.process_new_packets().unwrap();
            }
        }
        // The client's Finished and its request, in one write.
        tls.writer()
            .write_all(b"GET /hold HTTP/1.1\r\nhost: a.test\r\n\r\n")
            .unwrap();
        while tls.wants_write() {
            tls.write_tls(&mut tcp).unwrap();
        }
        assert!(
            tls.read_tls(&mut tcp).unwrap() > 0,
            "closed before answering"
        );
        tls.process_new_packets().expect("the first read decrypts");
        let mut plain = [0u8; 4096];
        let n = match tls.reader().read(&mut plain) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("reading the answer: {e}"),
        };
        String::from_utf8_lossy(&plain[..n]).into_owned()
    });
    up.until_held(1).await;
    up.release_held();
    let first_read = client.await.unwrap();
    assert_eq!(
        tickets.count(),
        1,
        "one ticket, read with the answer (first read: {first_read:?})"
    );
    assert!(
        first_read.starts_with("HTTP/1.1 200") && first_read.ends_with("up held"),
        "the whole answer came with the ticket: {first_read:?}"
    );
}

/// A client that opens a connection and sends nothing (a browser's preconnect that went unused)
/// still gets its ticket, when the gateway closes the connection at the header timeout, and
/// resumes with it next time.
#[tokio::test]
async fn a_client_that_sends_nothing_gets_its_ticket_when_the_connection_closes() {
    use tokio::io::AsyncReadExt;
    let (_d, ca, gw, _certs, _) = start_a("ticket-idle", "header_timeout = \"1s\"").await;
    let https = gw.https_addrs()[0];
    let tickets = Tickets::new();
    let config = tickets.client(&ca);
    let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .expect("handshake");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut buf))
        .await
        .expect("the gateway closes a silent connection at its header timeout");
    assert_eq!(
        read.unwrap(),
        0,
        "closed with a close_notify, nothing answered"
    );
    assert_eq!(tickets.count(), 1, "the ticket came before the close");
    drop(tls);
    assert!(
        resumed(https, &config).await,
        "the next connection resumes with that ticket"
    );
}

/// A client that names no host (an `https://<ip>/` URL, `openssl s_time`) gets the certificate
/// of `default_sni`'s site; without it, the handshake is refused, as before.
#[tokio::test]
async fn a_client_without_sni_gets_the_default_sites_certificate() {
    let (_d, ca, gw, _certs, config) = start_a("default-sni", "default_sni = \"A.test.\"").await;
    assert_eq!(config.default_sni.as_deref(), Some("a.test"));
    let https = gw.https_addrs()[0];
    let mut client = client_config(&ca, &[&rustls::version::TLS13]);
    client.enable_sni = false;
    let client = Arc::new(client);
    let (_, answer) = get_a(https, &client).await.expect("handshake without SNI");
    assert!(answer.ends_with("site a"), "{answer}");

    let mut config = config;
    config.default_sni = None;
    gw.reload(config).unwrap();
    let refused = get_a(https, &client).await;
    assert!(refused.is_err(), "no default: refused, got {refused:?}");
}
