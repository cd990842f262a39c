//! Active HTTP health checks: one task per pool, probing every target on a fresh connection.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Pool;

/// One health probe: `GET path` with the site's Host on a new connection. `strict` requires a
/// 2xx/3xx answer; otherwise any answer below 500 counts (used when a site has no health path).
pub(crate) async fn probe(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
    strict: bool,
) -> Result<(), String> {
    let attempt = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(header::HOST, host)
            .header(header::USER_AGENT, "wharf-health-check")
            .header(header::CONNECTION, "close")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("bad health request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request to {addr}: {e}"))?;
        let s = resp.status();
        let ok = if strict {
            s.is_success() || s.is_redirection()
        } else {
            !s.is_server_error()
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{addr}{path} answered {s}"))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}{path} did not answer within {timeout:?}")))
}

/// Checks the pool's current targets every interval until the pool is dropped or replaced, or
/// `stop` fires.
pub(crate) fn spawn_checker(pool: &Arc<Pool>, stop: CancellationToken) {
    let Some(health) = pool.health.clone() else {
        return;
    };
    let weak: Weak<Pool> = Arc::downgrade(pool);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(health.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(pool) = weak.upgrade().filter(|p| !p.is_superseded()) else {
                return;
            };
            let targets = pool.targets();
            let host = pool.check_host.clone();
            drop(pool);
            let checks = targets.iter().map(|t| {
                let host = &host;
                let health = &health;
                async move {
                    let result = probe(t.addr, host, &health.path, health.timeout, true).await;
                    if let Err(why) = &result {
                        tracing::debug!(target_addr = %t.addr, %why, "health check failed");
                    }
                    t.record_check(result.is_ok(), health);
                }
            });
            futures_util::future::join_all(checks).await;
        }
    });
}
