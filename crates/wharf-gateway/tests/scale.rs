//! Scale: a thousand WebSockets held open through the gateway at once, each still answering.

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::net::TcpStream;
use wharf_gateway::Gateway;
use wharf_gateway::config::GatewayConfig;
use wharf_testkit::MockUpstream;

const SOCKETS: usize = 1000;

/// Each socket costs four descriptors in this process (client, gateway in and out, upstream).
fn require_descriptors() {
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -n"])
        .output()
        .unwrap();
    let limit: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(usize::MAX);
    assert!(
        limit >= SOCKETS * 4 + 256,
        "this test holds {SOCKETS} WebSockets and needs {} file descriptors; the limit is {limit}: raise it with `ulimit -n 8192`",
        SOCKETS * 4 + 256
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_websockets_held_at_once() {
    require_descriptors();
    let up = MockUpstream::start("ws").await;
    let toml = format!(
        "[gateway]\nlisten = [\"127.0.0.1:0\"]\n[[site]]\nname = \"ws\"\nhosts = [\"ws.test\"]\nupstreams = [\"{}\"]\n",
        up.addr
    );
    let gw = Gateway::start(GatewayConfig::from_toml(&toml, std::path::Path::new(".")).unwrap())
        .unwrap();
    let addr = gw.listen_addrs()[0];

    let mut sockets = Vec::with_capacity(SOCKETS);
    for i in 0..SOCKETS {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (ws, resp) = tokio_tungstenite::client_async("ws://ws.test/ws", stream)
            .await
            .unwrap_or_else(|e| panic!("WebSocket {i} did not open: {e}"));
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        sockets.push(ws);
    }
    // All open at once; each one still echoes.
    for (i, ws) in sockets.iter_mut().enumerate() {
        let msg = format!("socket {i}");
        ws.send(msg.clone().into()).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), msg);
    }
    for mut ws in sockets {
        ws.close(None).await.unwrap();
    }
}
