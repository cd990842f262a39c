//! The client's request body on its way upstream: a body that stops arriving for longer than
//! `body_timeout` ends in an error (then a 408), so a stalled upload does not hold an upstream
//! connection for the whole `read_timeout` (nginx's `client_body_timeout`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

pub(super) struct ClientBody {
    inner: Incoming,
    pause: Duration,
    /// Made on the first wait, so a body that is already there costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` runs for the current wait.
    armed: bool,
}

impl ClientBody {
    pub(super) fn new(inner: Incoming, pause: Duration) -> Self {
        ClientBody {
            inner,
            pause,
            timer: None,
            armed: false,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(|e| ClientBodyError::Broken(e).into())))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.pause;
                let timer = match &mut this.timer {
                    Some(t) if this.armed => t,
                    Some(t) => {
                        t.as_mut().reset(deadline);
                        t
                    }
                    None => this
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                this.armed = true;
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(ClientBodyError::Stalled(this.pause).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
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

/// An error reading the client's request body (as opposed to talking to the upstream).
#[derive(Debug)]
pub(super) enum ClientBodyError {
    /// Bad chunking, an early close: 400.
    Broken(hyper::Error),
    /// Nothing arrived for this long: 408.
    Stalled(Duration),
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::Broken(e) => write!(f, "reading the client's body: {e}"),
            ClientBodyError::Stalled(d) => {
                write!(
                    f,
                    "the client's body stopped arriving for {d:?} (body_timeout)"
                )
            }
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::Broken(e) => Some(e),
            ClientBodyError::Stalled(_) => None,
        }
    }
}
