//! Static sites over real sockets: try_files, MIME types, HEAD, conditionals, ranges,
//! precompressed siblings, custom 404 pages, and a traversal probe list that must never reach a
//! file outside the root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_gateway::Gateway;
use wharf_gateway::config::GatewayConfig;
use wharf_testkit::{Reply, request};

const SECRET: &str = "TOP-SECRET-MARKER-7f3a";

struct Site {
    _gw: Gateway,
    addr: SocketAddr,
    own_port: SocketAddr,
    dir: PathBuf,
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A root with one of everything, a secret next to it, and links pointing in and out.
fn site(name: &str) -> Site {
    let dir = std::env::temp_dir().join(format!("wharf-static-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    write(&dir.join("secret.txt"), SECRET);
    write(&dir.join("outside/secret.txt"), SECRET);
    write(&root.join("index.html"), "<h1>home</h1>");
    write(&root.join("dir/index.html"), "<h1>dir</h1>");
    write(&root.join("empty-dir/.keep"), "");
    write(&root.join("404.html"), "<h1>custom not found</h1>");
    for (file, body) in [
        ("style.css", "body{}"),
        ("app.js", "console.log('plain')"),
        ("data.json", "{}"),
        ("logo.svg", "<svg/>"),
        ("pic.png", "\u{89}PNG"),
        ("font.woff2", "wOF2"),
        ("blob.unknownext", "??"),
        ("digits.txt", "0123456789"),
        (".env", "SECRET=1"),
        (".git/config", "[core]"),
        (".well-known/security.txt", "Contact: me"),
    ] {
        write(&root.join(file), body);
    }
    write(&root.join("app.js.br"), "BROTLI-BYTES");
    write(&root.join("app.js.gz"), "GZIP-BYTES");
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    write(&root.join("big.bin"), &big);
    std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("link-to-secret")).unwrap();
    std::os::unix::fs::symlink(dir.join("outside"), root.join("outside-dir")).unwrap();
    std::os::unix::fs::symlink(root.join("digits.txt"), root.join("link-inside")).unwrap();

    let toml = format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "www"
        hosts = ["www.test"]
        root = "{root}"
        not_found = "404.html"
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "plain"
        hosts = ["plain.test"]
        root = "{root}"
        [[site]]
        name = "docs"
        hosts = ["www.test"]
        path = "/docs"
        root = "{root}/dir"
        "#,
        root = root.display()
    );
    let gw = Gateway::start(GatewayConfig::from_toml(&toml, &dir).unwrap()).unwrap();
    let addr = gw.listen_addrs()[0];
    let own_port = gw.site_addrs("www")[0];
    Site {
        _gw: gw,
        addr,
        own_port,
        dir,
    }
}

async fn send(
    addr: SocketAddr,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    request(addr, req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

/// One row of a table: a request and what the user must see.
struct Case {
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    body: Option<&'static str>,
    header: Option<(&'static str, &'static str)>,
}

const fn case(path: &'static str, status: u16) -> Case {
    Case {
        path,
        headers: &[],
        status,
        body: None,
        header: None,
    }
}

impl Case {
    const fn body(mut self, b: &'static str) -> Case {
        self.body = Some(b);
        self
    }
    const fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.header = Some((name, value));
        self
    }
    const fn with(mut self, h: &'static [(&'static str, &'static str)]) -> Case {
        self.headers = h;
        self
    }
}

async fn check(addr: SocketAddr, host: &str, cases: &[Case]) {
    for c in cases {
        let r = send(addr, Method::GET, host, c.path, c.headers).await;
        let what = format!("GET {}{} {:?}", host, c.path, c.headers);
        assert_eq!(r.status.as_u16(), c.status, "{what}: {}", r.text());
        if let Some(b) = c.body {
            assert_eq!(r.text(), b, "{what}");
        }
        if let Some((name, value)) = c.header {
            let got = r.header(name).unwrap_or("<missing>");
            assert!(
                got.contains(value),
                "{what}: header {name} is `{got}`, expected it to contain `{value}`"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_files_index_redirects_and_not_found() {
    let s = site("tryfiles");
    check(
        s.addr,
        "www.test",
        &[
            case("/", 200).body("<h1>home</h1>"),
            case("/index.html", 200).body("<h1>home</h1>"),
            case("/dir/", 200).body("<h1>dir</h1>"),
            case("/dir", 301).header("location", "/dir/"),
            case("/dir?x=1", 301).header("location", "/dir/?x=1"),
            case("/empty-dir/", 404).body("<h1>custom not found</h1>"),
            case("/nope.html", 404).body("<h1>custom not found</h1>"),
            case("/.env", 404),
            case("/.git/config", 404),
            case("/.well-known/security.txt", 200).body("Contact: me"),
            case("/link-inside", 200).body("0123456789"),
            case("/docs", 301).header("location", "/docs/"),
            case("/docs/", 200).body("<h1>dir</h1>"),
            case("/docs/index.html", 200).body("<h1>dir</h1>"),
        ],
    )
    .await;
    let r = send(s.addr, Method::GET, "plain.test", "/nope", &[]).await;
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("does not exist"),
        "default 404 page: {}",
        r.text()
    );
    // The site's own port serves it whatever the Host.
    let r = send(s.own_port, Method::GET, "anything.example", "/", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "<h1>home</h1>")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mime_types() {
    let s = site("mime");
    check(
        s.addr,
        "www.test",
        &[
            case("/", 200).header("content-type", "text/html; charset=utf-8"),
            case("/style.css", 200).header("content-type", "text/css; charset=utf-8"),
            case("/app.js", 200).header("content-type", "javascript"),
            case("/data.json", 200).header("content-type", "application/json"),
            case("/logo.svg", 200).header("content-type", "image/svg+xml"),
            case("/pic.png", 200).header("content-type", "image/png"),
            case("/font.woff2", 200).header("content-type", "font/woff2"),
            case("/blob.unknownext", 200).header("content-type", "application/octet-stream"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_conditionals_and_methods() {
    let s = site("cond");
    let full = send(s.addr, Method::GET, "www.test", "/digits.txt", &[]).await;
    let etag = full.header("etag").unwrap().to_string();
    let modified = full.header("last-modified").unwrap().to_string();
    assert_eq!(full.header("accept-ranges"), Some("bytes"));

    let head = send(s.addr, Method::HEAD, "www.test", "/digits.txt", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("10"));
    assert!(head.body.is_empty());

    for (name, value, want) in [
        ("if-none-match", etag.clone(), 304),
        ("if-none-match", format!("W/{etag}"), 304),
        ("if-none-match", "\"other\"".to_string(), 200),
        ("if-modified-since", modified.clone(), 304),
        (
            "if-modified-since",
            "Mon, 01 Jan 2001 00:00:00 GMT".to_string(),
            200,
        ),
    ] {
        let r = send(
            s.addr,
            Method::GET,
            "www.test",
            "/digits.txt",
            &[(name, &value)],
        )
        .await;
        assert_eq!(r.status.as_u16(), want, "{name}: {value}");
        if want == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some(etag.as_str()));
        }
    }
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let r = send(s.addr, method.clone(), "www.test", "/digits.txt", &[]).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges() {
    let s = site("ranges");
    check(
        s.addr,
        "www.test",
        &[
            case("/digits.txt", 206)
                .with(&[("range", "bytes=0-3")])
                .body("0123")
                .header("content-range", "bytes 0-3/10"),
            case("/digits.txt", 206)
                .with(&[("range", "bytes=-2")])
                .body("89")
                .header("content-range", "bytes 8-9/10"),
            case("/digits.txt", 206)
                .with(&[("range", "bytes=5-")])
                .body("56789"),
            case("/digits.txt", 416)
                .with(&[("range", "bytes=999999-")])
                .header("content-range", "bytes */10"),
            case("/digits.txt", 200)
                .with(&[("range", "bytes=0-1,4-5")])
                .body("0123456789"),
            case("/digits.txt", 200)
                .with(&[("range", "bytes=0-3"), ("if-range", "\"stale\"")])
                .body("0123456789"),
        ],
    )
    .await;
    let etag = send(s.addr, Method::GET, "www.test", "/digits.txt", &[])
        .await
        .header("etag")
        .unwrap()
        .to_string();
    let r = send(
        s.addr,
        Method::GET,
        "www.test",
        "/digits.txt",
        &[("range", "bytes=1-2"), ("if-range", &etag)],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (206, "12"));

    // A large file is streamed whole and byte-exact; a range inside it too.
    let expected: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let r = send(s.addr, Method::GET, "www.test", "/big.bin", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), expected.as_slice());
    let r = send(
        s.addr,
        Method::GET,
        "www.test",
        "/big.bin",
        &[("range", "bytes=500000-500009")],
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body.as_ref(), &expected[500_000..500_010]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_siblings() {
    let s = site("precompressed");
    check(
        s.addr,
        "www.test",
        &[
            case("/app.js", 200)
                .with(&[("accept-encoding", "gzip, br")])
                .body("BROTLI-BYTES")
                .header("content-encoding", "br"),
            case("/app.js", 200)
                .with(&[("accept-encoding", "gzip")])
                .body("GZIP-BYTES")
                .header("content-encoding", "gzip"),
            case("/app.js", 200)
                .with(&[("accept-encoding", "br;q=0, gzip")])
                .body("GZIP-BYTES"),
            case("/app.js", 200)
                .body("console.log('plain')")
                .header("vary", "accept-encoding"),
            case("/app.js", 200)
                .with(&[("accept-encoding", "br")])
                .header("content-type", "javascript"),
        ],
    )
    .await;
    let plain = send(s.addr, Method::GET, "www.test", "/app.js", &[]).await;
    assert!(plain.header("content-encoding").is_none());
}

/// Dot segments are removed as nginx and Caddy do, encoded or not; a `..` that would climb
/// above the root is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_inside_the_root_serve_the_file() {
    let s = site("dots");
    check(
        s.addr,
        "www.test",
        &[
            case("/dir/./index.html", 200).body("<h1>dir</h1>"),
            case("/./dir/index.html", 200).body("<h1>dir</h1>"),
            case("/dir/x/../index.html", 200).body("<h1>dir</h1>"),
            case("/dir/x/y/../../index.html", 200).body("<h1>dir</h1>"),
            case("/dir/%2e/x/%2e%2e/index.html", 200).body("<h1>dir</h1>"),
            case("/dir/.", 200).body("<h1>dir</h1>"),
            case("/dir/x/..", 200).body("<h1>dir</h1>"),
            case("/empty-dir/../style.css", 200).body("body{}"),
            case("/docs/./index.html", 200).body("<h1>dir</h1>"),
            // What is left after the dots is judged: hidden stays hidden.
            case("/dir/../.env", 404),
            case("/.git/../index.html", 200).body("<h1>home</h1>"),
            case("/dir/../../secret.txt", 400),
            case("/dir/./../../secret.txt", 400),
            case("/docs/../index.html", 400),
        ],
    )
    .await;
}

/// Debian's documentation packages link shared JavaScript outside the documentation root: such
/// links are refused unless the site says to follow them; the request path can never climb out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_out_of_the_root_are_followed_only_when_the_site_says_so() {
    let dir = std::env::temp_dir().join(format!("wharf-static-{}-links", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("doc/python");
    write(&dir.join("javascript/jquery/jquery.js"), "JQUERY");
    write(&dir.join("secret.txt"), SECRET);
    write(&root.join("library/os.html"), "<h1>os</h1>");
    std::fs::create_dir_all(root.join("_static")).unwrap();
    // One relative link as the packages ship them, one absolute.
    std::os::unix::fs::symlink(
        "../../../javascript/jquery/jquery.js",
        root.join("_static/jquery.js"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.join("javascript"), root.join("_static/js")).unwrap();
    let toml = format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "strict"
        hosts = ["strict.test"]
        root = "{root}"
        [[site]]
        name = "docs"
        hosts = ["docs.test"]
        root = "{root}"
        follow_links_outside_root = true
        "#,
        root = root.display()
    );
    let gw = Gateway::start(GatewayConfig::from_toml(&toml, &dir).unwrap()).unwrap();
    let addr = gw.listen_addrs()[0];
    for host in ["strict.test", "docs.test"] {
        check(
            addr,
            host,
            &[
                case("/library/./os.html", 200).body("<h1>os</h1>"),
                case("/../secret.txt", 400),
                case("/library/../../secret.txt", 400),
                case("/%2e%2e/%2e%2e/secret.txt", 400),
            ],
        )
        .await;
    }
    check(
        addr,
        "strict.test",
        &[
            case("/_static/jquery.js", 404),
            case("/_static/js/jquery/jquery.js", 404),
        ],
    )
    .await;
    check(
        addr,
        "docs.test",
        &[
            case("/_static/jquery.js", 200)
                .body("JQUERY")
                .header("content-type", "javascript"),
            case("/_static/js/jquery/jquery.js", 200).body("JQUERY"),
            // `..` is taken against the request path, not the link's target.
            case("/_static/js/../../secret.txt", 404),
            case("/_static/js/../../../secret.txt", 400),
        ],
    )
    .await;
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends a raw request line (some probes are not even valid URIs for client libraries) and
/// returns the status code and the whole answer.
async fn raw(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nhost: www.test\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_probes_never_reach_the_secret() {
    let s = site("traversal");
    let probes = [
        "/../secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/a/..\\..\\secret.txt",
        "/%00",
        "/index.html%00.txt",
        "/link-to-secret",
        "/outside-dir/secret.txt",
        "//etc/passwd",
        "/%252e%252e/secret.txt",
        "/....//secret.txt",
        "/dir/../../secret.txt",
        "/dir/%2e%2e/%2e%2e/secret.txt",
        "/.%2e/secret.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/docs/../../secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
    ];
    for probe in probes {
        let (status, text) = raw(s.addr, probe).await;
        assert!(
            (400..500).contains(&status) || status == 0,
            "{probe}: status {status} should be 4xx (or the connection refused)"
        );
        assert!(!text.contains(SECRET), "{probe} leaked the secret:\n{text}");
        assert!(!text.contains("root:x:0"), "{probe} leaked /etc/passwd");
    }
}

/// Small files are kept in memory; none of that may show: an edit, a replacement or a deletion
/// is seen by the very next request, and a link turned to point out of the root never serves
/// what it points at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_served_at_once() {
    let s = site("changes");
    let root = s.dir.join("root");
    let get = |path: &'static str| send(s.addr, Method::GET, "www.test", path, &[]);

    let first = get("/digits.txt").await;
    assert_eq!(first.text(), "0123456789");
    assert_eq!(get("/digits.txt").await.text(), "0123456789");

    // Same length, written in place: only the modification time tells.
    std::fs::write(root.join("digits.txt"), "9876543210").unwrap();
    let edited = get("/digits.txt").await;
    assert_eq!(edited.text(), "9876543210");
    assert_ne!(edited.header("etag"), first.header("etag"));

    // Replaced by rename, as deploy tools do.
    write(&root.join("digits.tmp"), "replaced");
    std::fs::rename(root.join("digits.tmp"), root.join("digits.txt")).unwrap();
    assert_eq!(get("/digits.txt").await.text(), "replaced");

    std::fs::remove_file(root.join("digits.txt")).unwrap();
    assert_eq!(get("/digits.txt").await.status, 404);

    // A link served once, then pointed at a file outside the root.
    write(&root.join("inside.txt"), "inside");
    std::os::unix::fs::symlink("inside.txt", root.join("swapped")).unwrap();
    assert_eq!(get("/swapped").await.text(), "inside");
    std::fs::remove_file(root.join("swapped")).unwrap();
    std::os::unix::fs::symlink(s.dir.join("secret.txt"), root.join("swapped")).unwrap();
    let after = get("/swapped").await;
    assert!(
        !after.text().contains(SECRET),
        "a swapped link leaked the secret"
    );
    assert_eq!(after.status, 404);

    // A precompressed sibling added later is picked up once the resolution is redone (≤ 1 s).
    let br = [("accept-encoding", "br")];
    let plain = send(s.addr, Method::GET, "www.test", "/style.css", &br).await;
    assert_eq!(plain.text(), "body{}");
    write(&root.join("style.css.br"), "BR-CSS");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = send(s.addr, Method::GET, "www.test", "/style.css", &br).await;
        if r.text() == "BR-CSS" {
            assert_eq!(r.header("content-encoding"), Some("br"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a new .br sibling was not served within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
