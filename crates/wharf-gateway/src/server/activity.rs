//! What a client connection is doing, so it can be closed when it does nothing: hyper's own
//! header timer starts only once a protocol was picked (a client that never sends a byte, or an
//! HTTP/2 client that never opens a stream, would otherwise hold its descriptor for ever), and
//! hyper has no idle timeout for HTTP/2 at all. Counting requests costs a few atomics and a clock
//! read per request (the answer's body type holds the count, without another box), nothing per
//! byte.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::body::{Body, BoxError};

pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicU32,
    started: AtomicBool,
    /// Milliseconds from `opened` to the end of the last request.
    idle_since_ms: AtomicU64,
    /// Set when the next bytes read start a new HTTP/1 request head (see `head.rs`).
    pub(super) head_next: AtomicBool,
}

impl Activity {
    /// `opened` is when the connection was accepted: the header timeout runs from there.
    pub(crate) fn new(opened: Instant) -> Arc<Activity> {
        Arc::new(Activity {
            opened,
            in_flight: AtomicU32::new(0),
            started: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            head_next: AtomicBool::new(true),
        })
    }

    pub(crate) fn opened(&self) -> Instant {
        self.opened
    }

    /// A request's head was read. `head_follows`: once it is answered, the next bytes on the
    /// connection are the next request's head (HTTP/1 without a body or an upgrade).
    pub(crate) fn begin(self: &Arc<Self>, head_follows: bool) -> RequestGuard {
        self.started.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard {
            activity: self.clone(),
            head_follows,
        }
    }

    /// Requests were served before hyper took the connection over (`h1.rs`): its idle time
    /// runs from now, not its header time from accept.
    pub(crate) fn served_until_now(&self) {
        self.idle_from_now();
        self.started.store(true, Ordering::Relaxed);
    }

    fn idle_from_now(&self) {
        let ms = self.opened.elapsed().as_millis();
        self.idle_since_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// When the connection is due to be closed for doing nothing, or `None` while a request
    /// is in flight. Before its first request a connection has `header` from accept; after,
    /// `idle` from the end of its last request.
    pub(crate) fn due(&self, header: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.started.load(Ordering::Relaxed) {
            return Some(self.opened + header);
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        Some(self.opened + since + idle)
    }
}

/// Counts a request in flight until its answer's body has been sent (or the request is dropped),
/// so a long streamed answer (server-sent events) is never taken for idleness.
pub(crate) struct RequestGuard {
    activity: Arc<Activity>,
    head_follows: bool,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.activity;
        a.idle_from_now();
        if self.head_follows {
            a.head_next.store(true, Ordering::Relaxed);
        }
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body holding its request's [`RequestGuard`].
pub(crate) struct InFlight {
    pub(crate) body: Body,
    pub(crate) _guard: RequestGuard,
}

impl http_body::Body for InFlight {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
