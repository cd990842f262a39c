//! Answers `414` to a request line too long for the head buffer. hyper only checks the request
//! target once the whole head is in its buffer, so a request line longer than the buffer would
//! get hyper's `431` instead. This wrapper looks at the bytes of an HTTP/1 request head up to its
//! first line feed; everything else (bodies, HTTP/2, tunnels) passes with one relaxed atomic
//! load per read. A head is known to start at the connection's first byte and after the answer
//! to a request without a body; after a request with a body, or for pipelined requests hyper has
//! already buffered, hyper's own answer stands.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;

/// hyper's read buffer, and so the longest request head (`max_buf_size`).
pub(crate) const HEAD_LIMIT: usize = 64 * 1024;

enum State {
    Pass,
    /// Reading a request head; bytes so far without a line feed.
    RequestLine(usize),
    /// Writing the 414 answer; bytes written so far.
    Answering(usize),
    Closed,
}

pub(crate) struct HeadLimit<I> {
    io: I,
    activity: Arc<Activity>,
    state: State,
}

impl<I> HeadLimit<I> {
    pub(crate) fn new(io: I, activity: Arc<Activity>) -> Self {
        HeadLimit {
            io,
            activity,
            state: State::Pass,
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadLimit<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.state, State::Pass) && this.activity.head_next.load(Ordering::Relaxed) {
            this.activity.head_next.store(false, Ordering::Relaxed);
            this.state = State::RequestLine(0);
        }
        loop {
            match this.state {
                State::Pass => return Pin::new(&mut this.io).poll_read(cx, buf),
                State::RequestLine(seen) => {
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                    let new = &buf.filled()[before..];
                    if new.is_empty() || new.contains(&b'\n') {
                        this.state = State::Pass;
                        return Poll::Ready(Ok(()));
                    }
                    let seen = seen + new.len();
                    if seen < HEAD_LIMIT {
                        this.state = State::RequestLine(seen);
                        return Poll::Ready(Ok(()));
                    }
                    // hyper would answer 431 on these bytes: keep them from it and answer 414.
                    buf.set_filled(before);
                    this.state = State::Answering(0);
                }
                State::Answering(done) => {
                    let answer = crate::synthetic::raw_uri_too_long();
                    if done < answer.len() {
                        let n = ready!(Pin::new(&mut this.io).poll_write(cx, &answer[done..]))?;
                        if n == 0 {
                            this.state = State::Closed;
                        } else {
                            this.state = State::Answering(done + n);
                        }
                        continue;
                    }
                    ready!(Pin::new(&mut this.io).poll_flush(cx))?;
                    let _ = ready!(Pin::new(&mut this.io).poll_shutdown(cx));
                    this.state = State::Closed;
                }
                // End of input for hyper: it drops the unfinished head without answering.
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

write_through!(HeadLimit);
