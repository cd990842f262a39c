//! Hostile input at the gateway over raw sockets: oversized and malformed requests get a clear
//! 4xx, requests an upstream could read differently (two Hosts, Content-Length with
//! Transfer-Encoding) are refused, and slow clients (slowloris, slow uploads) do not starve
//! other clients; slow headers do not outlive the header timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_gateway::Gateway;
use wharf_gateway::config::GatewayConfig;
use wharf_testkit::{MockUpstream, get};

fn start(dir: &std::path::Path, upstream: SocketAddr) -> (Gateway, SocketAddr) {
    start_with(dir, upstream, "")
}

/// `gateway`: extra keys for the `[gateway]` table.
fn start_with(dir: &std::path::Path, upstream: SocketAddr, gateway: &str) -> (Gateway, SocketAddr) {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "home").unwrap();
    let toml = format!(
        r#"
[gateway]
listen = ["127.0.0.1:0"]
header_timeout = "1s"
{gateway}
[[site]]
name = "files"
hosts = ["files.test"]
root = "www"
[[site]]
name = "app"
hosts = ["app.test"]
upstreams = ["{upstream}"]
"#
    );
    let gw = Gateway::start(GatewayConfig::from_toml(&toml, dir).unwrap()).unwrap();
    let addr = gw.listen_addrs()[0];
    (gw, addr)
}

/// Sends raw bytes; returns the status line (or what happened instead).
async fn status_line(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before reading everything; that is fine.
    let _ = s.write_all(raw).await;
    let mut buf = vec![0u8; 256];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(0)) => "closed".into(),
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        Ok(Err(e)) => format!("error {e}"),
        Err(_) => "no answer in 5 s".into(),
    }
}

#[tokio::test]
async fn oversized_malformed_and_ambiguous_requests_get_4xx() {
    let dir = std::env::temp_dir().join(format!("wharf-hostile-{}-table", std::process::id()));
    let upstream = MockUpstream::start("app").await;
    let (_gw, addr) = start(&dir, upstream.addr);
    let headers_200: Vec<u8> = (0..200)
        .flat_map(|i| format!("X-{i}: a\r\n").into_bytes())
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("sane request", b"GET / HTTP/1.1\r\nHost: files.test\r\n\r\n".to_vec(), "200"),
        ("request target over 8 KiB", [b"GET /".as_slice(), &[b'a'; 16 * 1024], b" HTTP/1.1\r\nHost: files.test\r\n\r\n"].concat(), "414"),
        ("request line over 64 KiB", [b"GET /".as_slice(), &[b'a'; 70 * 1024], b" HTTP/1.1\r\nHost: files.test\r\n\r\n"].concat(), "414"),
        ("request line of 100 KiB", [b"GET /".as_slice(), &[b'a'; 100 * 1024], b" HTTP/1.1\r\nHost: files.test\r\n\r\n"].concat(), "414"),
        ("one header over 64 KiB", [b"GET / HTTP/1.1\r\nHost: files.test\r\nX: ".as_slice(), &[b'a'; 70 * 1024], b"\r\n\r\n"].concat(), "431"),
        ("200 headers", [b"GET / HTTP/1.1\r\nHost: files.test\r\n".as_slice(), &headers_200, b"\r\n"].concat(), "431"),
        ("body over the limit", b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 99999999999\r\n\r\n".to_vec(), "413"),
        ("not HTTP", b"GARBAGE\r\n\r\n".to_vec(), "400"),
        ("HTTP/0.9", b"GET /\r\n\r\n".to_vec(), "400"),
        ("unknown version", b"GET / HTTP/9.9\r\nHost: files.test\r\n\r\n".to_vec(), "400"),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), "400"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: files.test\r\nHost: app.test\r\n\r\n".to_vec(), "400"),
        ("Host with a space", b"GET / HTTP/1.1\r\nHost: files.test evil\r\n\r\n".to_vec(), "400"),
        ("Host with a backtick", b"GET / HTTP/1.1\r\nHost: `id`.test\r\n\r\n".to_vec(), "400"),
        ("Host with a control byte", b"GET / HTTP/1.1\r\nHost: files\x01.test\r\n\r\n".to_vec(), "400"),
        ("space in a header name", b"GET / HTTP/1.1\r\nHost: files.test\r\nBad Header: x\r\n\r\n".to_vec(), "400"),
        ("folded header line", b"GET / HTTP/1.1\r\nHost: files.test\r\nX: a\r\n b\r\n\r\n".to_vec(), "400"),
        ("NUL in the path", b"GET /\x00 HTTP/1.1\r\nHost: files.test\r\n\r\n".to_vec(), "400"),
        ("two Content-Lengths", b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(), "400"),

        ("broken chunk size", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n".to_vec(), "400"),
    ];
    let mut wrong = Vec::new();
    for (what, raw, want) in &cases {
        let got = status_line(addr, raw).await;
        if !got.starts_with(&format!("HTTP/1.1 {want}")) {
            wrong.push(format!("{what}: want {want}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // None of the refused requests got an answer from the upstream.
    assert_eq!(upstream.requests(), 0);

    // Content-Length next to chunked: the body is read as chunked (RFC 9112 §6.3) and sent on
    // with framing of our own, so the upstream cannot read it another way.
    let got = status_line(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_neither_starve_others_nor_outlive_the_header_timeout() {
    let dir = std::env::temp_dir().join(format!("wharf-hostile-{}-slow", std::process::id()));
    let upstream = MockUpstream::start("app").await;
    let (_gw, addr) = start(&dir, upstream.addr);

    // 300 clients that start a request and never finish its headers.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: files.test\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    let opened = Instant::now();
    // And 100 that send their headers, then a body a few bytes at a time (slow POST).
    let mut trickling = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000\r\n\r\nabc",
        )
        .await
        .unwrap();
        trickling.push(s);
    }

    // Everyone else is served meanwhile.
    for _ in 0..20 {
        let r = get(addr, "files.test", "/").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(get(addr, "app.test", "/").await.unwrap().status, 200);
    }

    // Each slow connection is closed once the 1 s header timeout passes (bounded wait).
    for mut s in slow {
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a 408 answer before the close is fine
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a slow client was still connected after 10 s"
        );
    }
    assert!(opened.elapsed() >= Duration::from_millis(900));
    // The slow uploads never finished; others were served all along. Let them go.
    for mut s in trickling {
        let _ = s.write_all(b"def").await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads until the server closes the connection; true if it did within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // an answer (or GOAWAY) before the close is fine
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_long_request_line_on_a_kept_alive_connection_gets_414() {
    let dir = std::env::temp_dir().join(format!("wharf-hostile-{}-line", std::process::id()));
    let upstream = MockUpstream::start("app").await;
    let (_gw, addr) = start(&dir, upstream.addr);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: files.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.ends_with("home"), "one whole answer: {first}");
    // 1 MiB: on a kept-alive connection hyper's buffer may grow past 64 KiB before it gives up,
    // so the line must be longer than anything it would hold.
    let long = [
        b"GET /".as_slice(),
        &[b'a'; 1024 * 1024],
        b" HTTP/1.1\r\nHost: files.test\r\n\r\n",
    ]
    .concat();
    let _ = s.write_all(&long).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer:.80}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_are_closed() {
    let dir = std::env::temp_dir().join(format!("wharf-hostile-{}-idle", std::process::id()));
    let upstream = MockUpstream::start("app").await;
    let (_gw, addr) = start_with(&dir, upstream.addr, r#"idle_timeout = "1s""#);

    // Never a byte.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // HTTP/2 (h2c): the preface and settings, then never a stream.
    let mut h2_no_stream = TcpStream::connect(addr).await.unwrap();
    h2_no_stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    // HTTP/1.1 keep-alive after one answered request.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: files.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The same to a proxied site (the gateway's own HTTP/1 lane).
    let mut kept_proxied = TcpStream::connect(addr).await.unwrap();
    kept_proxied
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let n = kept_proxied.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // HTTP/2 after one answered request, with the connection otherwise left open.
    let h2 = h2_connection(addr).await;

    // Each is watched at the same time; all must be closed by the server.
    let limit = Duration::from_secs(10);
    let watch = |what: &'static str, mut s: TcpStream| {
        tokio::spawn(async move { (what, closed_within(&mut s, limit).await) })
    };
    let mut watched: Vec<_> = silent
        .into_iter()
        .map(|s| watch("a connection that never sent a byte", s))
        .collect();
    watched.push(watch("an HTTP/2 connection without a stream", h2_no_stream));
    watched.push(watch("an idle HTTP/1.1 keep-alive connection", kept));
    watched.push(watch(
        "an idle keep-alive connection to a proxied site",
        kept_proxied,
    ));
    let h2_closed = tokio::spawn(async move {
        (
            "an idle HTTP/2 connection",
            tokio::time::timeout(limit, h2).await.is_ok(),
        )
    });
    watched.push(h2_closed);
    let mut open = Vec::new();
    for w in watched {
        let (what, closed) = w.await.unwrap();
        if !closed && !open.contains(&what) {
            open.push(what);
        }
    }
    assert!(open.is_empty(), "still open after 10 s: {open:?}");
    // Others are served as before.
    assert_eq!(get(addr, "files.test", "/").await.unwrap().status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Makes one HTTP/2 request on a new connection and leaves the connection open; the returned
/// task ends when the server closes it.
async fn h2_connection(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get("http://files.test/")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
    // `send` is kept alive by the task's connection only: the client never closes on its own.
    tokio::spawn(async move {
        let _keep = send;
        std::future::pending::<()>().await;
    });
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_gets_408_and_the_upstream_sees_it_aborted() {
    let dir = std::env::temp_dir().join(format!("wharf-hostile-{}-stall", std::process::id()));
    // A raw upstream, to see what arrives and when the gateway lets go.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let (_gw, addr) = start_with(&dir, up_addr, r#"body_timeout = "1s""#);

    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000\r\n\r\nabc")
        .await
        .unwrap();
    let (mut up, _) = tokio::time::timeout(Duration::from_secs(5), upstream.accept())
        .await
        .expect("the request reached the upstream")
        .unwrap();
    // The upstream reads what comes until the gateway gives up on the request.
    let upstream_side = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match up.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .is_ok();
        (ended, got)
    });

    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer within 10 s to a stalled upload");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:.200}");
    let (ended, got) = upstream_side.await.unwrap();
    assert!(
        ended,
        "the upstream connection was still open 10 s after the body stalled"
    );
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("POST /upload"), "{got:.80}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_not_idleness() {
    let dir = std::env::temp_dir().join(format!("wharf-hostile-{}-sse", std::process::id()));
    let upstream = MockUpstream::start("app").await;
    let feed = upstream.sse_feed().await;
    let (_gw, addr) = start_with(&dir, upstream.addr, r#"idle_timeout = "1s""#);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    for i in 0..2 {
        feed.send(&format!("tick {i}")).await;
        let want = format!("data: tick {i}");
        tokio::time::timeout(Duration::from_secs(5), async {
            while !String::from_utf8_lossy(&seen).contains(&want) {
                let n = s.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "the stream was cut: {}",
                    String::from_utf8_lossy(&seen)
                );
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("event delivered");
        // Longer than the idle and header timeouts together: the answer is still going.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
