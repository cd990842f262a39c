//! HTTP/2 abuse over raw frames (h2c prior knowledge): rapid reset, CONTINUATION and PING floods
//! are bounded: the abusive connection is cut or kept in check, and other clients keep being
//! served while it happens.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_gateway::Gateway;
use wharf_gateway::config::GatewayConfig;
use wharf_testkit::{MockUpstream, get};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: GET, http, / (static table), and `:authority` as a literal.
fn get_headers(host: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, host.len() as u8];
    block.extend_from_slice(host.as_bytes());
    block
}

async fn start() -> (Gateway, SocketAddr, MockUpstream) {
    let up = MockUpstream::start("app").await;
    let toml = format!(
        "[gateway]\nlisten = [\"127.0.0.1:0\"]\n[[site]]\nname = \"app\"\nhosts = [\"app.test\"]\nupstreams = [\"{}\"]\n",
        up.addr
    );
    let gw = Gateway::start(GatewayConfig::from_toml(&toml, std::path::Path::new(".")).unwrap())
        .unwrap();
    let addr = gw.listen_addrs()[0];
    (gw, addr, up)
}

async fn open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    s
}

/// Reads until the server closes the connection or sends GOAWAY; true if it did within `limit`.
async fn cut_off(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if goaway_in(&seen) {
                        return true;
                    }
                }
            }
        }
    })
    .await
    .unwrap_or(false)
}

fn goaway_in(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == 0x7 {
            return true;
        }
        at += 9 + len;
    }
    false
}

async fn others_are_served(addr: SocketAddr) {
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_secs(5), get(addr, "app.test", "/"))
            .await
            .expect("another client waited more than 5 s")
            .unwrap();
        assert_eq!(r.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_bounded() {
    let (_gw, addr, up) = start().await;
    let mut s = open(addr).await;
    let headers = get_headers("app.test");
    let mut burst = Vec::new();
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(0x1, 0x5, id, &headers)); // END_STREAM | END_HEADERS
        burst.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    let _ = s.write_all(&burst).await;
    others_are_served(addr).await;
    // Either the connection was told to go away, or most of the cancelled requests never
    // reached the upstream.
    let cut = cut_off(&mut s, Duration::from_secs(5)).await;
    assert!(
        cut || up.requests() < 5_000,
        "5,000 reset streams all reached the upstream and the connection lived on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    let (_gw, addr, _up) = start().await;
    let mut s = open(addr).await;
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end the block.
    let _ = s
        .write_all(&frame(0x1, 0x1, 1, &get_headers("app.test")))
        .await;
    let filler = {
        // Literal header without indexing, new name: `x-a` = 16 KiB of 'a'.
        let mut b = vec![0x00, 0x03, b'x', b'-', b'a', 0x7f];
        let mut n = 16 * 1024 - 127;
        while n >= 128 {
            b.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        b.push(n as u8);
        b.extend(std::iter::repeat_n(b'a', 16 * 1024));
        b
    };
    let mut sent = 0usize;
    let mut closed = false;
    while sent < 20 * 1024 * 1024 {
        if s.write_all(&frame(0x9, 0, 1, &filler)).await.is_err() {
            closed = true;
            break;
        }
        sent += filler.len();
    }
    others_are_served(addr).await;
    assert!(
        closed || cut_off(&mut s, Duration::from_secs(5)).await,
        "20 MiB of CONTINUATION frames were taken without the connection being cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_does_not_stall_others() {
    let (_gw, addr, _up) = start().await;
    let mut s = open(addr).await;
    let mut pings = Vec::new();
    for i in 0..100_000u64 {
        pings.extend(frame(0x6, 0, 0, &i.to_be_bytes()));
    }
    // Never read the PONGs: the server must not buffer them without bound or stall others.
    let writer = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(10), s.write_all(&pings)).await;
        s
    });
    others_are_served(addr).await;
    let _ = writer.await;
}

/// The frames above are real requests: one of them alone gets an answer, not a GOAWAY.
#[tokio::test]
async fn one_raw_frame_request_is_answered() {
    let (_gw, addr, up) = start().await;
    let mut s = open(addr).await;
    s.write_all(&frame(0x1, 0x5, 1, &get_headers("app.test")))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            seen.extend_from_slice(&buf[..n]);
            assert!(!goaway_in(&seen), "GOAWAY instead of an answer");
            // A HEADERS frame (type 1) on stream 1 is the response.
            let mut at = 0;
            while at + 9 <= seen.len() {
                let len = (usize::from(seen[at]) << 16)
                    | (usize::from(seen[at + 1]) << 8)
                    | usize::from(seen[at + 2]);
                if seen[at + 3] == 0x1 && seen[at + 5..at + 9] == [0, 0, 0, 1] {
                    return;
                }
                at += 9 + len;
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no response within 5 s");
    assert_eq!(up.requests(), 1);
}
