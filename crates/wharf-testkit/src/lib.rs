//! Test support for wharf: counting mock upstreams (HTTP, server-sent events, WebSocket echo),
//! HTTP clients that set a Host (and an HTTPS one that reports the certificate and ALPN), a bounded load generator, `assert_eventually!`,
//! and network test beds (machines as network namespaces on a bridge, with captures, netem and cuts).
#![forbid(unsafe_code)]

mod client;
mod load;
mod netns;
mod tls;
mod upstream;

pub use client::{Reply, get, get_h2, request};
pub use load::{Load, LoadReport};
pub use netns::{Bed, Capture, contains, need_tool};
pub use tls::{TlsConn, TlsReply, Trust, get_tls};
pub use upstream::{MockUpstream, SseFeed};

/// Polls a condition until it holds, failing after a bounded patience (10 s). For state that
/// changes in the background (health checks) where no event can be awaited.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() >= deadline {
                panic!("not true within 10 s: {}", format!($($msg)+));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}
