//! The gateway as a reverse proxy, over real sockets with in-process upstreams: routing,
//! forwarding headers, limits and errors, WebSocket, SSE, h2c, health, reload and deploy.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_gateway::config::GatewayConfig;
use wharf_gateway::{DeployOptions, Gateway, GatewayError};
use wharf_testkit::{Load, MockUpstream, assert_eventually, get, get_h2, request};

fn config(toml: &str) -> GatewayConfig {
    GatewayConfig::from_toml(toml, Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("test config is valid")
}

fn start(toml: &str) -> (Gateway, SocketAddr) {
    let gw = Gateway::start(config(toml)).expect("gateway starts");
    let addr = gw.listen_addrs()[0];
    (gw, addr)
}

async fn body_of(addr: SocketAddr, host: &str, path: &str) -> String {
    get(addr, host, path)
        .await
        .expect("request answered")
        .text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_exact_wildcard_prefix_and_catch_all() {
    let [app, api, wild, any] = [
        MockUpstream::start("app").await,
        MockUpstream::start("api").await,
        MockUpstream::start("wild").await,
        MockUpstream::start("any").await,
    ];
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        [[site]]
        name = "api"
        hosts = ["app.test"]
        path = "/api"
        upstreams = ["{}"]
        [[site]]
        name = "wild"
        hosts = ["*.pages.test"]
        upstreams = ["{}"]
        [[site]]
        name = "any"
        hosts = ["*"]
        path = "/catch"
        upstreams = ["{}"]
        "#,
        app.addr, api.addr, wild.addr, any.addr
    ));
    let cases = [
        ("app.test", "/", Some("app")),
        ("APP.test:8080", "/x", Some("app")),
        ("app.test", "/api", Some("api")),
        ("app.test", "/api/users?x=1", Some("api")),
        ("app.test", "/apix", Some("app")),
        ("a.pages.test", "/", Some("wild")),
        ("a.b.pages.test", "/", Some("wild")),
        ("pages.test", "/", None),
        ("unknown.test", "/catch/me", Some("any")),
        ("unknown.test", "/", None),
    ];
    for (host, path, want) in cases {
        let reply = get(addr, host, path).await.unwrap();
        match want {
            Some(name) => {
                assert_eq!(reply.status, StatusCode::OK, "{host}{path}");
                assert_eq!(reply.text(), name, "{host}{path}");
            }
            None => {
                assert_eq!(reply.status, StatusCode::NOT_FOUND, "{host}{path}");
                assert!(
                    reply.text().contains("No site is configured"),
                    "{host}{path}"
                );
            }
        }
    }
    let bad = get(addr, "bad host", "/").await.unwrap();
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_can_close_the_connection() {
    let (_gw, addr) = start(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        unknown_host = "close"
    "#,
    );
    let err = get(addr, "nobody.test", "/").await.unwrap_err();
    assert!(
        err.contains("request"),
        "expected a closed connection, got {err}"
    );
}

/// What the upstream must have seen of a request from 127.0.0.1 to app.test that carried
/// `X-Forwarded-For: 203.0.113.9` and `X-Custom: kept`; `host` is its Host line as sent.
fn assert_forwarded(seen: &str, host: &str) {
    for want in [
        host,
        "x-forwarded-for: 203.0.113.9, 127.0.0.1",
        "x-real-ip: 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: app.test",
        "x-custom: kept",
    ] {
        assert!(
            seen.contains(want),
            "upstream did not see `{want}` in:\n{seen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_client_headers_and_strips_hop_by_hop() {
    let up = MockUpstream::start("up").await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    let req = Request::get("/headers")
        .header("host", "app.test")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let seen = request(addr, req).await.unwrap().text();
    assert_forwarded(&seen, "host: app.test");
    for gone in ["x-private", "keep-alive:"] {
        assert!(
            !seen.contains(gone),
            "upstream saw hop-by-hop `{gone}` in:\n{seen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_gives_413_and_small_bodies_pass() {
    let up = MockUpstream::start("up").await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        max_body = "1KB"
        "#,
        up.addr
    ));
    let post = |n: usize| {
        Request::post("/body")
            .header("host", "app.test")
            .body(Full::new(Bytes::from(vec![b'x'; n])))
            .unwrap()
    };
    let ok = request(addr, post(1000)).await.unwrap();
    assert_eq!((ok.status, ok.text().as_str()), (StatusCode::OK, "1000"));
    let big = request(addr, post(5000)).await.unwrap();
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked: no length announced, so the limit cuts the stream.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let chunk = "x".repeat(800);
    let raw = format!(
        "POST /body HTTP/1.1\r\nhost: app.test\r\ntransfer-encoding: chunked\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = vec![0; 64];
    let n = s.read(&mut buf).await.unwrap();
    let line = String::from_utf8_lossy(&buf[..n]);
    assert!(line.starts_with("HTTP/1.1 413"), "got {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_gives_502_and_slow_one_504() {
    let slow = MockUpstream::start("slow").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        read_timeout = "300ms"
        [[site]]
        name = "dead"
        hosts = ["dead.test"]
        upstreams = ["{dead}"]
        [[site]]
        name = "slow"
        hosts = ["slow.test"]
        upstreams = ["{}"]
        "#,
        slow.addr
    ));
    let r = get(addr, "dead.test", "/").await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.text().contains("did not answer properly"));
    // A lone target is never written off (as in nginx): it is tried again, so the site comes
    // back the moment the app does (a supervised restart), not after an ejection period.
    let r = get(addr, "dead.test", "/").await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let back = MockUpstream::start_on("back", dead).await;
    assert_eq!(body_of(addr, "dead.test", "/").await, "back");
    drop(back);
    let r = get(addr, "slow.test", "/hold").await.unwrap();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    slow.release_held();
}

/// An upstream may take longer than the header timeout to answer: only the read timeout cuts
/// it. The connection stays usable after such an answer, and is closed once idle past the
/// header timeout, not held until the slow request's read deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_outlives_the_header_timeout_but_not_the_read_timeout() {
    let up = MockUpstream::start("slow").await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        header_timeout = "200ms"
        read_timeout = "10s"
        [[site]]
        name = "slow"
        hosts = ["slow.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /hold HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        .await
        .unwrap();
    up.until_held(1).await;
    // Time passing is what is tested: the header deadline goes by while the upstream thinks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    up.release_held();
    s.write_all(b"GET /next HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        .await
        .unwrap();
    // Well before the slow request's 10 s read deadline.
    let answers = tokio::time::timeout(Duration::from_secs(3), read_answers(&mut s))
        .await
        .expect("an idle connection is closed after the header timeout");
    let bodies: Vec<_> = answers.iter().map(|(c, _, b)| (*c, b.as_str())).collect();
    assert_eq!(bodies, [(200, "slow held"), (200, "slow")]);
}

/// A header deadline that goes by while the upstream thinks does not end the wait: the answer
/// is a 504 at the read timeout, not earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_gets_its_whole_read_timeout() {
    let up = MockUpstream::start("silent").await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        header_timeout = "200ms"
        read_timeout = "700ms"
        [[site]]
        name = "silent"
        hosts = ["silent.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    let asked = std::time::Instant::now();
    let r = get(addr, "silent.test", "/hold").await.unwrap();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    // A lower bound only: the deadline cannot pass early, however loaded the machine.
    assert!(
        asked.elapsed() >= Duration::from_millis(700),
        "504 after {:?}, before the read timeout",
        asked.elapsed()
    );
    up.release_held();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_refuses_other_addresses() {
    let up = MockUpstream::start("up").await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "open"
        hosts = ["open.test"]
        upstreams = ["{0}"]
        allow = ["127.0.0.0/8"]
        [[site]]
        name = "closed"
        hosts = ["closed.test"]
        upstreams = ["{0}"]
        allow = ["10.0.0.0/8"]
        "#,
        up.addr
    ));
    assert_eq!(
        get(addr, "open.test", "/").await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(
        get(addr, "closed.test", "/").await.unwrap().status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(up.requests(), 1, "a refused request must not reach the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_gateway() {
    let up = MockUpstream::start("ws").await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "ws"
        hosts = ["ws.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://ws.test/ws", stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for msg in ["hello", "world", &"x".repeat(100_000)] {
        ws.send(msg.into()).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), msg);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_arrive_one_by_one() {
    let up = MockUpstream::start("sse").await;
    let feed = up.sse_feed().await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "sse"
        hosts = ["sse.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let client = tokio::spawn(conn);
    let req = Request::get("/sse")
        .header("host", "sse.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // Each event must reach the client before the next is even produced: nothing buffers.
    for i in 0..3 {
        feed.send(&format!("tick {i}")).await;
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("event delivered without waiting for more")
            .unwrap()
            .unwrap();
        let data = frame.into_data().unwrap();
        assert_eq!(data, format!("data: tick {i}\n\n"));
    }
    // A client that leaves a quiet stream frees the upstream connection at once, not at the
    // next event.
    drop((body, tx));
    client.abort();
    tokio::time::timeout(Duration::from_secs(5), feed.closed())
        .await
        .expect("the gateway closes the upstream's stream when the client goes away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served() {
    let up = MockUpstream::start("h2").await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "h2"
        hosts = ["h2.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    let r = get_h2(addr, "h2.test", "/").await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "h2"));
    let seen = get_h2(addr, "h2.test", "/headers").await.unwrap().text();
    assert!(
        seen.contains("host: h2.test"),
        "h2 authority becomes the upstream Host:\n{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_and_health_ejection_and_recovery() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let (gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}", "{}"]
        health = {{ path = "/up", interval = "50ms", timeout = "500ms", rise = 2, fall = 2 }}
        "#,
        a.addr, b.addr
    ));
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(body_of(addr, "app.test", "/").await);
    }
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 2, "{seen:?}");

    a.set_healthy(false);
    assert_eventually!(
        gw.targets("app").unwrap()[0] == (a.addr, false),
        "a is taken out"
    );
    for _ in 0..6 {
        assert_eq!(body_of(addr, "app.test", "/").await, "b");
    }
    a.set_healthy(true);
    assert_eventually!(gw.targets("app").unwrap()[0] == (a.addr, true), "a is back");
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(body_of(addr, "app.test", "/").await);
    }
    assert!(seen.contains(&"a".to_string()), "a serves again: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_is_ejected_without_failed_requests() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let (gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}", "{}"]
        "#,
        a.addr, b.addr
    ));
    let a_addr = a.addr;
    a.stop();
    // Requests without a body are retried on the other target: users see no error.
    for _ in 0..6 {
        let r = get(addr, "app.test", "/").await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "b"));
    }
    assert_eq!(gw.targets("app").unwrap()[0], (a_addr, false));
    assert!(
        gw.metrics_text()
            .contains("wharf_upstream_errors_total{site=\"app\"} 1")
    );
}

const LOAD_CLIENTS: usize = 8;
const LOAD_BUDGET: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_nothing() {
    let up = MockUpstream::start("v1").await;
    let other = MockUpstream::start("other").await;
    let base = format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    );
    let (gw, addr) = start(&base);
    let load = Load::start(addr, "app.test", "/", LOAD_CLIENTS, LOAD_BUDGET);
    load.until_sent(200).await;
    for i in 0..10 {
        let with_new_site = format!(
            "{base}\n[[site]]\nname = \"new{i}\"\nhosts = [\"new{i}.test\"]\nupstreams = [\"{}\"]\n",
            other.addr
        );
        gw.reload(config(&with_new_site)).unwrap();
        assert_eq!(body_of(addr, &format!("new{i}.test"), "/").await, "other");
        // An invalid config is refused and changes nothing.
        let broken = config(&base);
        let mut broken_sites = broken.clone();
        broken_sites.listen = vec!["203.0.113.1:1".parse().unwrap()];
        assert!(matches!(
            gw.reload(broken_sites),
            Err(GatewayError::Bind { .. })
        ));
    }
    let report = load.finish().await;
    assert_eq!(
        report.failed, 0,
        "failures during reloads: {:?}",
        report.failures
    );
    assert!(report.ok > 200, "load ran: {report:?}");
    assert_eq!(
        gw.listen_addrs(),
        vec![addr],
        "listeners are never re-bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_under_load_swaps_with_zero_failures_and_drains() {
    let v1 = MockUpstream::start("v1").await;
    let v2 = MockUpstream::start("v2").await;
    let (gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        health = {{ path = "/up", interval = "100ms" }}
        "#,
        v1.addr
    ));
    // One slow request is in flight on v1 when the deploy happens.
    let held = tokio::spawn(async move { body_of(addr, "app.test", "/hold").await });
    v1.until_held(1).await;

    let load = Load::start(addr, "app.test", "/", LOAD_CLIENTS, LOAD_BUDGET);
    load.until_sent(200).await;
    let deploy = {
        let gw = gw.clone();
        let to = v2.addr;
        tokio::spawn(async move { gw.deploy("app", vec![to], DeployOptions::default()).await })
    };
    // New requests go to v2 while the deploy still waits for v1's in-flight request.
    assert_eventually!(v2.requests() > 50, "v2 takes traffic");
    assert!(!deploy.is_finished(), "deploy returns only after draining");
    v1.release_held();
    let report = deploy.await.unwrap().unwrap();
    assert_eq!(report.removed, vec![v1.addr]);
    assert!(report.drained);
    assert_eq!(
        held.await.unwrap(),
        "v1 held",
        "the in-flight request finished on v1"
    );

    let load = load.finish().await;
    assert_eq!(
        load.failed, 0,
        "failures during deploy: {:?}",
        load.failures
    );
    let before = v1.requests();
    for _ in 0..5 {
        assert_eq!(body_of(addr, "app.test", "/").await, "v2");
    }
    assert_eq!(v1.requests(), before, "v1 gets nothing after the swap");
}

/// What the control plane does for each deploy: swap in the new instance, and once the deploy
/// has drained the old one, reload the configuration with the new upstream list (a new pool
/// generation) and stop the old instance. A slow request is always in flight, started on the
/// new instance while the previous deploy was still draining, so it is counted on the pool of
/// the generation before the reload: the next deploy must still wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_deploys_and_reloads_never_cut_a_request_in_flight() {
    const DEPLOYS: usize = 10;
    let site = |up: SocketAddr| {
        format!(
            r#"
            [gateway]
            listen = ["127.0.0.1:0"]
            [[site]]
            name = "app"
            hosts = ["app.test"]
            upstreams = ["{up}"]
            health = {{ path = "/up", interval = "100ms" }}
            "#
        )
    };
    let mut current = MockUpstream::start("v0").await;
    let (gw, addr) = start(&site(current.addr));
    let hold = |name: String| {
        tokio::spawn(async move {
            let reply = get(addr, "app.test", "/hold").await;
            (name, reply.map(|r| (r.status, r.text())))
        })
    };
    let mut held = vec![hold("v0".into())];
    current.until_held(1).await;
    let load = Load::start(addr, "app.test", "/", 4, LOAD_BUDGET);
    load.until_sent(100).await;

    for i in 1..=DEPLOYS {
        let next = MockUpstream::start(&format!("v{i}")).await;
        let deploy = {
            let (gw, to) = (gw.clone(), next.addr);
            tokio::spawn(async move { gw.deploy("app", vec![to], DeployOptions::default()).await })
        };
        assert_eventually!(
            gw.targets("app") == Some(vec![(next.addr, true)]),
            "deploy {i} swapped"
        );
        // A slow request on the new instance, counted on the pool the next reload replaces.
        held.push(hold(format!("v{i}")));
        next.until_held(1).await;
        assert_eq!(body_of(addr, "app.test", "/").await, format!("v{i}"));
        assert!(
            !deploy.is_finished(),
            "deploy {i} returned while a request was in flight on v{}",
            i - 1
        );
        current.release_held();
        let report = deploy.await.unwrap().unwrap();
        assert_eq!(report.removed, vec![current.addr]);
        assert!(report.drained, "deploy {i} drained");
        gw.reload(config(&site(next.addr))).unwrap();
        // The control plane stops the old instance once the deploy returned.
        std::mem::replace(&mut current, next).stop();
    }
    current.release_held();
    for h in held {
        let (name, reply) = h.await.unwrap();
        assert_eq!(
            reply.expect("slow request answered"),
            (StatusCode::OK, format!("{name} held")),
            "the slow request on {name}"
        );
    }
    let load = load.finish().await;
    assert_eq!(
        load.failed, 0,
        "failures during deploys: {:?}",
        load.failures
    );
}

/// A site a reload took away still has requests in flight on the old route table: `drain`
/// waits for them, so the control plane can stop the instance without cutting them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_requests_of_a_site_a_reload_removed() {
    let up = MockUpstream::start("up").await;
    let with_site = format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    );
    let (gw, addr) = start(&with_site);
    let held = tokio::spawn(async move { body_of(addr, "app.test", "/hold").await });
    up.until_held(1).await;
    gw.reload(config("[gateway]\nlisten = [\"127.0.0.1:0\"]\n"))
        .unwrap();
    assert_eq!(
        get(addr, "app.test", "/").await.unwrap().status,
        StatusCode::NOT_FOUND,
        "the site is gone"
    );
    let mut drain = {
        let gw = gw.clone();
        let target = up.addr;
        tokio::spawn(async move { gw.drain("app", &[target]).await })
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut drain)
            .await
            .is_err(),
        "drain returned while a request was in flight"
    );
    up.release_held();
    assert!(drain.await.unwrap(), "drained within the timeout");
    assert_eq!(held.await.unwrap(), "up held");
    assert!(gw.drain("app", &[up.addr]).await, "nothing left: at once");
}

/// Targets outlive a deploy while a request holds them, and the control plane reuses ports: a
/// deploy back to an address whose earlier instance failed its checks serves the new instance
/// at once, since the deploy has just checked it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_to_a_reused_address_trusts_its_own_checks() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let (gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        health = {{ path = "/up", interval = "1s", rise = 3, fall = 1 }}
        "#,
        a.addr
    ));
    // A request that outlives everything below keeps a's target alive.
    let held = tokio::spawn(async move { body_of(addr, "app.test", "/hold").await });
    a.until_held(1).await;
    a.set_healthy(false);
    assert_eventually!(
        gw.targets("app") == Some(vec![(a.addr, false)]),
        "a failed its check"
    );
    let quick = DeployOptions {
        health_timeout: Duration::from_secs(10),
        drain_timeout: Some(Duration::from_millis(100)),
    };
    let report = gw.deploy("app", vec![b.addr], quick.clone()).await.unwrap();
    assert!(!report.drained, "the held request outlived the drain");

    // A new instance on a's address.
    a.set_healthy(true);
    gw.deploy("app", vec![a.addr], quick).await.unwrap();
    assert_eq!(gw.targets("app"), Some(vec![(a.addr, true)]));
    assert_eq!(body_of(addr, "app.test", "/").await, "a");
    a.release_held();
    assert_eq!(held.await.unwrap(), "a held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_of_unhealthy_targets_keeps_the_old_ones() {
    let v1 = MockUpstream::start("v1").await;
    let bad = MockUpstream::start("bad").await;
    bad.set_healthy(false);
    let (gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        health = {{ path = "/up", interval = "50ms" }}
        "#,
        v1.addr
    ));
    let opts = DeployOptions {
        health_timeout: Duration::from_millis(400),
        drain_timeout: None,
    };
    let err = gw.deploy("app", vec![bad.addr], opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("did not become healthy") && msg.contains("previous targets keep serving"),
        "{msg}"
    );
    assert_eq!(body_of(addr, "app.test", "/").await, "v1");
    let unknown = gw
        .deploy("nope", vec![bad.addr], DeployOptions::default())
        .await
        .unwrap_err();
    assert_eq!(unknown.to_string(), "site \"nope\" does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_metrics_and_health() {
    let up = MockUpstream::start("up").await;
    let (gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        admin = "127.0.0.1:0"
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    for _ in 0..3 {
        get(addr, "app.test", "/").await.unwrap();
    }
    get(addr, "nobody.test", "/").await.unwrap();
    let admin = gw.admin_addr().unwrap();
    assert_eq!(body_of(admin, "localhost", "/healthz").await, "ok\n");
    let metrics = body_of(admin, "localhost", "/metrics").await;
    for want in [
        "wharf_requests_total{site=\"app\",class=\"2xx\"} 3",
        "wharf_request_duration_seconds_count{site=\"app\"} 3",
        "wharf_unknown_host_requests_total 1",
        "wharf_open_connections",
    ] {
        assert!(metrics.contains(want), "missing `{want}` in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let up = MockUpstream::start("up").await;
    let (gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    // A kept-alive connection with nothing in flight.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let held = tokio::spawn(async move { get(addr, "app.test", "/hold").await });
    up.until_held(1).await;
    let stopping = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.shutdown().await })
    };
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "an idle connection is closed as the gateway stops"
    );
    up.release_held();
    let r = held.await.unwrap().unwrap();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "up held"));
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "the answer in flight tells the client the connection ends"
    );
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown waits for the request in flight, not for idle connections")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_forwards_the_rest_of_the_path() {
    let up = MockUpstream::start("up").await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "api"
        hosts = ["app.test"]
        path = "/api"
        strip_prefix = true
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    let seen = body_of(addr, "app.test", "/api/headers?x=1").await;
    assert!(
        seen.contains("host: app.test"),
        "/api/headers reached the app as /headers:\n{seen}"
    );
    assert_eq!(
        body_of(addr, "app.test", "/api").await,
        "up",
        "/api reaches the app as /"
    );
}

/// An upstream written by hand that counts its connections. With `close_on_second` it answers
/// one request per connection and closes the connection, unanswered, when a second request
/// arrives on it: what a server whose keep-alive timeout expires just then does.
async fn counting_upstream(
    close_on_second: bool,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut answered = 0;
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if close_on_second && answered == 1 {
                            return;
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if sock.write_all(reply).await.is_err() {
                            return;
                        }
                        answered += 1;
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_a_closed_one_fails_no_request() {
    use std::sync::atomic::Ordering;
    let (keep, keep_conns) = counting_upstream(false).await;
    let (closing, closing_conns) = counting_upstream(true).await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "keep"
        hosts = ["keep.test"]
        upstreams = ["{keep}"]
        [[site]]
        name = "closing"
        hosts = ["closing.test"]
        upstreams = ["{closing}"]
        "#
    ));
    for _ in 0..20 {
        assert_eq!(body_of(addr, "keep.test", "/").await, "ok");
    }
    assert_eq!(
        keep_conns.load(Ordering::SeqCst),
        1,
        "20 requests one after another share one upstream connection"
    );
    for i in 0..50 {
        let r = get(addr, "closing.test", "/").await.expect("answered");
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
    }
    assert!(closing_conns.load(Ordering::SeqCst) >= 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_deploy_keeps_what_the_deploy_switched_to() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let site = |interval: &str| {
        format!(
            r#"
            [gateway]
            listen = ["127.0.0.1:0"]
            [[site]]
            name = "app"
            hosts = ["app.test"]
            upstreams = ["{}"]
            health = {{ path = "/up", interval = "{interval}", rise = 1, fall = 1 }}
            "#,
            a.addr
        )
    };
    let (gw, addr) = start(&site("1s"));
    let gw = std::sync::Arc::new(gw);
    assert_eq!(body_of(addr, "app.test", "/").await, "a");

    // The deploy waits for b to pass its check; meanwhile a reload rebuilds the site's pool.
    b.set_healthy(false);
    let deploy = {
        let (gw, to) = (gw.clone(), b.addr);
        let opts = DeployOptions {
            health_timeout: Duration::from_secs(20),
            drain_timeout: Some(Duration::from_secs(5)),
        };
        tokio::spawn(async move { gw.deploy("app", vec![to], opts).await })
    };
    assert_eventually!(b.requests() > 0, "the deploy checks b");
    gw.reload(config(&site("2s"))).unwrap();
    b.set_healthy(true);
    deploy.await.unwrap().unwrap();

    // The deploy switched the site to b, whichever pool the reload left it.
    assert_eq!(gw.targets("app"), Some(vec![(b.addr, true)]));
    let reply = get(addr, "app.test", "/").await.unwrap();
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "b".into()));
}

/// Bytes an upstream sends after its answer to a HEAD request, shaped like an answer.
const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";

/// An upstream that answers each request with the bytes its path names, then keeps the
/// connection or closes it as the script says; counts connections. `/head-then-stray` sends
/// [`STRAY`] a moment after its answer and then notifies.
async fn scripted_upstream() -> (
    SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<tokio::sync::Notify>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    fn script(path: &str) -> (&'static [u8], bool) {
        match path {
            "/chunked" => (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
                false,
            ),
            "/early-hints" => (
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                false,
            ),
            "/http10" => (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", true),
            "/head" => (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false),
            "/two-lengths" => (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                true,
            ),
            "/garbage" => (b"NOT HTTP AT ALL\r\n\r\n", true),
            "/no-reason" => (b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", false),
            "/hop-trailer" => (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nConnection: close\r\nx-t: 1\r\n\r\n",
                false,
            ),
            "/head-then-stray" => (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false),
            "/hex-prefix" => (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n0123456789abcdef\r\n0\r\n\r\n",
                true,
            ),
            "/short" => (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true),
            "/identity-and-length" => (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
                true,
            ),
            _ => (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    let strayed = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = strayed.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let notify = notify.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                        let (reply, close) = script(&path);
                        if sock.write_all(reply).await.is_err() || close {
                            return;
                        }
                        if path == "/head-then-stray" {
                            // A separate segment, after the gateway took the answer as whole.
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            let _ = sock.write_all(STRAY).await;
                            notify.notify_one();
                        }
                    }
                }
            });
        }
    });
    (addr, conns, strayed)
}

async fn head_request(addr: SocketAddr, host: &str, path: &str) -> wharf_testkit::Reply {
    let req = Request::head(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(addr, req).await.expect("answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_an_upstream_frames_its_answer_reaches_the_client() {
    use std::sync::atomic::Ordering;
    let (up, conns, strayed) = scripted_upstream().await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "s"
        hosts = ["s.test"]
        upstreams = ["{up}"]
        "#
    ));
    for _ in 0..3 {
        let r = get(addr, "s.test", "/chunked").await.expect("answered");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.text(),
            "hello world",
            "chunks joined, extension and trailer dropped"
        );
        assert!(
            r.header("x-hop").is_none(),
            "a header Connection names is hop-by-hop"
        );
        let r = get(addr, "s.test", "/early-hints").await.expect("answered");
        assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "chunked and informational answers leave the connection reusable"
    );

    let r = get(addr, "s.test", "/identity-and-length")
        .await
        .expect("answered");
    assert!(
        r.text().ends_with("forged"),
        "Transfer-Encoding overrides Content-Length: the body runs to the close, and no second \
         answer comes out of it: {:?}",
        r.text()
    );

    let r = get(addr, "s.test", "/no-reason").await.expect("answered");
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "ok"),
        "a status line without a reason"
    );
    let r = get_h2(addr, "s.test", "/hop-trailer")
        .await
        .expect("answered over h2c");
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "ok"),
        "a connection-specific trailer does not break an HTTP/2 stream"
    );

    let r = get(addr, "s.test", "/http10").await.expect("answered");
    assert_eq!(
        r.text(),
        "until the end",
        "an HTTP/1.0 body runs until the close"
    );
    let head = head_request(addr, "s.test", "/head").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header("content-length"),
        Some("100"),
        "HEAD keeps the length, no body follows"
    );
    assert!(head.body.is_empty());

    for bad in ["/two-lengths", "/garbage"] {
        let r = get(addr, "s.test", bad).await.expect("answered");
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{bad}: {}", r.text());
    }
    for cut in ["/short", "/hex-prefix"] {
        assert!(
            get(addr, "s.test", cut).await.is_err(),
            "{cut}: a body cut short or misframed is not passed off as complete"
        );
    }

    // Bytes an upstream sends past its answer never become the next client's answer.
    let head = head_request(addr, "s.test", "/head-then-stray").await;
    assert_eq!(head.status, StatusCode::OK);
    strayed.notified().await;
    for _ in 0..3 {
        let r = get(addr, "s.test", "/chunked").await.expect("answered");
        assert_eq!(r.text(), "hello world", "never the stray bytes");
    }
    let r = get(addr, "s.test", "/chunked").await.expect("answered");
    assert_eq!(
        r.text(),
        "hello world",
        "the gateway still serves after broken answers"
    );
}

/// Reads HTTP/1.1 answers off `stream` until it closes: (status, head, body) each.
async fn read_answers(stream: &mut TcpStream) -> Vec<(u16, String, String)> {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the gateway closes the connection after the answer to `Connection: close`")
        .expect("read");
    let mut answers = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut slots);
        let httparse::Status::Complete(len) = resp.parse(rest).expect("a valid answer") else {
            panic!("an answer cut short: {}", String::from_utf8_lossy(rest));
        };
        let length: usize = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .expect("answers here have a length");
        let head = String::from_utf8_lossy(&rest[..len]).to_lowercase();
        let body = String::from_utf8_lossy(&rest[len..len + length]).into_owned();
        answers.push((resp.code.unwrap(), head, body));
        rest = &rest[len + length..];
    }
    answers
}

/// Pipelined requests on one connection are answered in order, whichever server reads them:
/// GETs go the gateway's own HTTP/1 lane, a request with a body takes the connection to hyper,
/// and both pass the same headers on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_across_both_servers() {
    let up = MockUpstream::start("up").await;
    let (_gw, addr) = start(&format!(
        r#"
        [gateway]
        listen = ["127.0.0.1:0"]
        [[site]]
        name = "app"
        hosts = ["app.test"]
        upstreams = ["{}"]
        "#,
        up.addr
    ));
    let headers = "Host: App.Test\r\nX-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 6.6.6.6\r\n\
                   Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Custom: kept\r\n";
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let pipelined = format!(
        "GET /headers HTTP/1.1\r\n{headers}\r\n\
         GET /first HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n\
         POST /body HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello\
         GET /headers HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    );
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    let answers = read_answers(&mut stream).await;
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    assert_eq!(answers[1].2, "up");
    assert_eq!(answers[2].2, "5", "the body reached the upstream");
    for seen in [&answers[0].2, &answers[3].2] {
        assert_forwarded(seen, "host: App.Test");
        for gone in ["keep-alive", "proxy-connection", "6.6.6.6"] {
            assert!(!seen.contains(gone), "upstream saw `{gone}` in:\n{seen}");
        }
    }
    for (i, a) in answers.iter().enumerate() {
        assert!(a.1.contains("\r\ndate: "), "answer {i} has a Date: {}", a.1);
        assert_eq!(
            a.1.contains("connection: close"),
            i == 3,
            "only the last answer closes: {}",
            a.1
        );
    }
}
