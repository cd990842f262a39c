//! Keep-alive HTTP/1.1 connections to one target, kept on the target itself.
//!
//! Each target holds a stack of idle connections (the most recently used on top, so a quiet
//! period lets the older ones age out); those idle past the timeout are closed by the gateway's
//! sweep every 15 s, and all of them once a deploy retired and drained the target. A connection
//! goes back on the stack only once its response body has been read to the end; one dropped
//! half-way is closed, as HTTP/1 requires.
//! Keeping connections per target (not in a client-wide map keyed by address) makes a checkout
//! a short lock and a pop, and a deploy that retires a target closes its connections with it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Target, TargetGuard};
use crate::body::{Body, BoxError};

/// An idle connection is closed by the sweep once this many sweeps (15 s apart) saw it idle:
/// after 45 to 60 s unused, under nginx's 75 s keep-alive. Counting sweeps keeps the clock out
/// of every checkout and return.
const IDLE_SWEEPS: u32 = 4;
/// Idle connections kept per target; more are closed when they finish.
const MAX_IDLE: usize = 1024;

pub(crate) type Sender = http1::SendRequest<Body>;

/// A connection that can wait on a target's stack.
pub(crate) trait Idle {
    /// Closed by the upstream, or otherwise not to be used again.
    fn is_closed(&self) -> bool;
}

impl Idle for Sender {
    fn is_closed(&self) -> bool {
        http1::SendRequest::is_closed(self)
    }
}

impl Idle for super::h1::Conn {
    fn is_closed(&self) -> bool {
        !self.still_open()
    }
}

/// The idle connections of one target, oldest at the front, each with the sweep count (of
/// its gateway, `sweeps`) when it came back.
pub(crate) struct IdleConns<T> {
    idle: Mutex<VecDeque<(T, u32)>>,
    sweeps: Arc<AtomicU32>,
}

impl<T> IdleConns<T> {
    pub(crate) fn new(sweeps: Arc<AtomicU32>) -> Self {
        IdleConns {
            idle: Mutex::new(VecDeque::new()),
            sweeps,
        }
    }
}

impl<T: Idle> IdleConns<T> {
    /// The most recently used connection still open.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((conn, _)) = idle.pop_back() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// Closes the connections idle past the timeout (the gateway's periodic sweep, so a target
    /// that gets no more traffic does not keep them open).
    /// Those the upstream closed meanwhile go too, so they do not hold descriptors until then.
    pub(crate) fn close_expired(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.sweeps.load(Ordering::Relaxed);
        idle.retain(|(conn, since)| now.wrapping_sub(*since) < IDLE_SWEEPS && !conn.is_closed());
    }

    /// Closes every idle connection (a retired target's, once drained).
    pub(crate) fn close_all(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub(crate) fn push(&self, conn: T) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push_back((conn, self.sweeps.load(Ordering::Relaxed)));
        }
    }
}

/// Why a request got no response.
pub(crate) enum SendError {
    /// No connection could be made: the target is down (eject it; try another).
    Connect(io::Error),
    /// The connection broke during the exchange, or the request body failed.
    Request(hyper::Error),
}

/// Sends `req` (origin-form URI, Host set) over an idle connection to `target`, or a new one.
///
/// A pooled connection the target closed meanwhile hands the request back unsent, and the next
/// one is tried. The target may also close it while the request is on its way (its keep-alive
/// timeout expiring, as Node's 5 s does): then an idempotent request without a body is sent
/// again, as browsers and Go's client do, so that race never shows as a 502.
pub(crate) async fn send(
    target: &Target,
    connect_timeout: Duration,
    mut req: Request<Body>,
) -> Result<(Response<Incoming>, Sender), SendError> {
    while let Some(mut sender) = target.conns.pop() {
        if sender.ready().await.is_err() {
            continue;
        }
        let again = resendable(&req).then(|| copy_head(&req));
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => match again {
                    Some(copy) if e.error().is_incomplete_message() => req = copy,
                    _ => return Err(SendError::Request(e.into_error())),
                },
            },
        }
    }
    let mut sender = connect(target.addr, connect_timeout)
        .await
        .map_err(SendError::Connect)?;
    match sender.send_request(req).await {
        Ok(resp) => Ok((resp, sender)),
        Err(e) => Err(SendError::Request(e)),
    }
}

fn resendable(req: &Request<Body>) -> bool {
    req.method().is_idempotent() && req.body().is_end_stream()
}

fn copy_head(req: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(crate::body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// A new TCP connection to an upstream, within `timeout`, Nagle off (heads go out at once).
pub(crate) async fn dial(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Sender> {
    let stream = dial(addr, timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// A response body that returns its connection to the target once read to the end, and counts
/// the request in flight on the target until then.
pub(crate) struct Returning {
    inner: Incoming,
    sender: Option<Sender>,
    guard: TargetGuard,
    done: bool,
}

impl Returning {
    pub(crate) fn new(inner: Incoming, sender: Sender, guard: TargetGuard) -> Returning {
        Returning {
            inner,
            sender: Some(sender),
            guard,
            done: false,
        }
    }
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            None => {
                this.done = true;
                Poll::Ready(None)
            }
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(Err(e)) => {
                this.sender = None;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take()
            && (self.done || self.inner.is_end_stream())
            // A retired target's instance is about to stop: keep nothing open to it.
            && !self.guard.0.is_retired()
        {
            self.guard.0.conns.push(sender);
        }
    }
}

/// Keeps what an upgraded exchange needs alive for as long as the tunnel runs.
pub(crate) struct Upgraded {
    pub(crate) _sender: Sender,
    pub(crate) _guard: TargetGuard,
}
