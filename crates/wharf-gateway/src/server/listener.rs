//! Listeners and connections. A listener is bound once and kept across reloads; each connection
//! is served by hyper's auto builder (HTTP/1.1, or HTTP/2 when the client opens with the h2c
//! preface) and closed gracefully on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::GatewayError;
use crate::gateway::Shared;

/// What a listener serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// Host-routed traffic for every site.
    Routed,
    /// Host-routed traffic over TLS, certificates chosen by SNI.
    Https,
    /// One site, whatever the Host (a site's own `listen` addresses).
    Site(Arc<str>),
    /// `/metrics` and `/healthz`.
    Admin,
}

pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    /// `remote`'s IP as a header value, for the forwarding headers of every request.
    pub(crate) client_ip: http::HeaderValue,
    pub(crate) scheme: &'static str,
    pub(crate) role: Role,
}

/// Binds without an async context so a reload can bind new addresses before committing.
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, GatewayError> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| GatewayError::Bind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| GatewayError::Bind { addr, source })?;
    Ok(l)
}

pub(crate) fn spawn_accept_loop(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    role: Role,
    stop: CancellationToken,
) -> Result<SocketAddr, GatewayError> {
    let local = listener.local_addr().map_err(|source| GatewayError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let listener = TcpListener::from_std(listener).map_err(|source| GatewayError::Bind {
        addr: local,
        source,
    })?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.table.load().timeouts.header_read)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(64 * 1024);
    let builder = Arc::new(builder);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(%local, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let conn_info = Arc::new(ConnInfo {
                remote,
                client_ip: crate::proxy::ip_header(remote.ip()),
                scheme: if role == Role::Https { "https" } else { "http" },
                role: role.clone(),
            });
            let shared = shared.clone();
            let builder = builder.clone();
            let stop_conn = shared.shutdown.clone();
            shared.metrics.open_connections.inc();
            let tracker = shared.tracker.clone();
            tracker.spawn(async move {
                if conn_info.role == Role::Https {
                    // The handshake gets the same deadline as request headers (slowloris guard).
                    let deadline = shared.table.load().timeouts.header_read;
                    let accepted = tokio::time::timeout(deadline, shared.tls.accept(stream)).await;
                    // A TLS-ALPN-01 validation ends with the handshake.
                    if let Ok(Ok(tls)) = accepted
                        && tls.get_ref().1.alpn_protocol() != Some(wharf_tls::ACME_TLS_ALPN)
                    {
                        serve(&shared, conn_info, &builder, tls, stop_conn).await;
                    }
                } else {
                    serve(&shared, conn_info, &builder, stream, stop_conn).await;
                }
                shared.metrics.open_connections.dec();
            });
        }
        tracing::debug!(%local, "listener closed");
    });
    Ok(local)
}

/// Serves one connection's requests until it ends or the gateway shuts down (then gracefully).
/// Generic over the stream, so plain TCP pays nothing for TLS.
async fn serve<I>(
    shared: &Arc<Shared>,
    conn_info: Arc<ConnInfo>,
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let service = service_fn(move |req| {
        let shared = svc_shared.clone();
        let conn_info = conn_info.clone();
        async move { super::handler::handle(shared, conn_info, req).await }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
