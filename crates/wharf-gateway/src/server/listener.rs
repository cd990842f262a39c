//! Listeners and connections. A listener is bound once and kept across reloads. An HTTP/1.1
//! connection (plain, or TLS without h2) starts in the gateway's own lane (`h1.rs`), which hands
//! it to hyper's auto builder for anything but proxied GET and HEAD; HTTP/2 (ALPN h2, or the h2c
//! preface) and the admin listener go to hyper at once. Connections close gracefully on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Version, header};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
// nix's option macro calls these by name.
use nix::{libc, setsockopt_impl, sockopt_impl};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, InFlight};
use super::head::{HEAD_LIMIT, HeadLimit};
use super::ticket::TicketHold;
use crate::config::Timeouts;
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
    let err = |source| GatewayError::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(err)?;
    // As std's bind does: a restarted gateway rebinds while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    // A deeper queue than std's 128 (nginx asks for 511): connections not yet accepted, and
    // those the kernel holds until their first bytes, wait here.
    socket.listen(LISTEN_BACKLOG).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    let l = std::net::TcpListener::from(socket);
    defer_accept(&l, addr);
    Ok(l)
}

/// The kernel caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 1024;

// Linux's TCP_DEFER_ACCEPT, which nix, socket2 and rustix have no ready-made call for. nix's
// option macro holds the `unsafe` setsockopt call (a u32 option, passed by reference).
sockopt_impl!(
    DeferAccept,
    SetOnly,
    libc::IPPROTO_TCP,
    libc::TCP_DEFER_ACCEPT,
    u32
);

/// Every protocol served here has the client speak first, so the kernel hands a connection
/// over with its first bytes (the request, or TLS's ClientHello) instead of waking the gateway
/// twice: once to accept, once to read. A client that connects and says nothing is handed over
/// after a second anyway (the kernel's next SYN-ACK), so the header timeout still applies to it.
/// Best effort: where the option is missing, connections are accepted as before.
fn defer_accept(l: &std::net::TcpListener, addr: SocketAddr) {
    if let Err(e) = nix::sys::socket::setsockopt(l, DeferAccept, &1) {
        tracing::debug!(%addr, error = %e, "TCP_DEFER_ACCEPT not set");
    }
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
    let timeouts = shared.table.load().timeouts;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(HEAD_LIMIT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(64 * 1024);
    let builder = Arc::new(builder);
    tokio::spawn(async move {
        let mut failures = AcceptFailures::default();
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    failures.record(local, &e);
                    // Out of file descriptors and the like: the connection waits in the
                    // kernel's queue until a descriptor is free (idle connections free theirs
                    // within the header timeout); open connections keep being served.
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let opened = tokio::time::Instant::now();
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
                let activity = Activity::new(opened);
                if conn_info.role == Role::Https {
                    // The handshake counts against the header timeout, which runs from accept.
                    let deadline = opened + timeouts.header_read;
                    let accepted = tokio::time::timeout_at(
                        deadline,
                        shared.tls.accept(TicketHold::new(stream)).into_fallible(),
                    )
                    .await;
                    match accepted {
                        // A TLS-ALPN-01 validation ends with the handshake.
                        Ok(Ok(mut tls))
                            if tls.get_ref().1.alpn_protocol()
                                != Some(wharf_tls::ACME_TLS_ALPN) =>
                        {
                            tls.get_mut().0.handshake_done();
                            let lane = tls.get_ref().1.alpn_protocol() != Some(b"h2");
                            let io = HeadLimit::new(tls, activity.clone());
                            serve_in(
                                lane, &shared, conn_info, &builder, io, activity, timeouts,
                                stop_conn,
                            )
                            .await;
                        }
                        // A failed handshake's last words (a TLS 1.3 alert is encrypted, and
                        // held like a ticket) go before the connection closes.
                        Ok(Err((_, mut io))) if io.holds() => {
                            let _ = tokio::time::timeout_at(deadline, io.shutdown()).await;
                        }
                        _ => {}
                    }
                } else {
                    let lane = conn_info.role != Role::Admin;
                    let io = HeadLimit::new(stream, activity.clone());
                    serve_in(
                        lane, &shared, conn_info, &builder, io, activity, timeouts, stop_conn,
                    )
                    .await;
                }
                shared.metrics.open_connections.dec();
            });
        }
        tracing::debug!(%local, "listener closed");
    });
    Ok(local)
}

/// Serves a connection in the HTTP/1 lane (`h1.rs`, which hands it to [`serve`] for anything
/// but proxied GET and HEAD), or with hyper from the start.
#[allow(clippy::too_many_arguments)]
async fn serve_in<I>(
    lane: bool,
    shared: &Arc<Shared>,
    conn_info: Arc<ConnInfo>,
    builder: &auto::Builder<TokioExecutor>,
    io: HeadLimit<I>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if lane {
        super::h1::serve(shared, conn_info, builder, io, activity, timeouts, stop).await;
    } else {
        serve(shared, conn_info, builder, io, activity, timeouts, stop).await;
    }
}

/// Serves one connection's requests until it ends, sits idle past its deadline (see
/// `Activity::due`) or the gateway shuts down; the last two end it gracefully.
/// Generic over the stream, so plain TCP pays nothing for TLS.
pub(super) async fn serve<I>(
    shared: &Arc<Shared>,
    conn_info: Arc<ConnInfo>,
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let svc_activity = activity.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let guard = svc_activity.begin(head_follows(&req));
        let shared = svc_shared.clone();
        let conn_info = conn_info.clone();
        async move {
            let response = super::handler::handle(shared, conn_info, req).await?;
            // Served as its own body type: no second box per answer.
            Ok::<_, super::handler::Close>(response.map(|body| InFlight {
                body,
                _guard: guard,
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle_check = tokio::time::sleep_until(activity.opened() + timeouts.header_read);
    tokio::pin!(idle_check);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
                return;
            }
            () = idle_check.as_mut() => {
                let now = tokio::time::Instant::now();
                match activity.due(timeouts.header_read, timeouts.idle) {
                    Some(due) if due <= now => break,
                    Some(due) => idle_check.as_mut().reset(due),
                    None => idle_check.as_mut().reset(now + timeouts.idle),
                }
            }
        }
    }
    // Idle: HTTP/1 closes at once, HTTP/2 says GOAWAY first. A client that does not let the
    // connection finish is dropped after another header timeout.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(timeouts.header_read, conn).await;
}

/// Whether the bytes after this request are the next request's head: HTTP/1 without a body or
/// an upgrade (a tunnel or a body would be read as a head).
fn head_follows(req: &Request<Incoming>) -> bool {
    req.version() < Version::HTTP_2
        && req.body().is_end_stream()
        && req.method() != Method::CONNECT
        && !req.headers().contains_key(header::UPGRADE)
}

const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(60);

/// Failed accepts are logged once, then at most once a minute with how many there were: at the
/// open-file limit, accept fails for every queued connection.
#[derive(Default)]
struct AcceptFailures {
    last_log: Option<std::time::Instant>,
    unlogged: u64,
}

impl AcceptFailures {
    fn record(&mut self, local: SocketAddr, e: &std::io::Error) {
        self.unlogged += 1;
        if self
            .last_log
            .is_some_and(|t| t.elapsed() < ACCEPT_LOG_EVERY)
        {
            return;
        }
        let hint = match e.raw_os_error() {
            Some(code)
                if code == rustix::io::Errno::MFILE.raw_os_error()
                    || code == rustix::io::Errno::NFILE.raw_os_error() =>
            {
                "; out of file descriptors: new connections wait until open ones close \
                 (raise LimitNOFILE / ulimit -n)"
            }
            _ => "",
        };
        tracing::warn!(%local, error = %e, failures = self.unlogged, "accept failed{hint}");
        self.last_log = Some(std::time::Instant::now());
        self.unlogged = 0;
    }
}
