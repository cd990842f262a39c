//! A TLS 1.3 session ticket leaves with the connection's first answer, not in a segment of its
//! own.
//!
//! rustls writes the ticket the moment the client's `Finished` is read, usually with the
//! client's first request already in hand. Sent alone, the ticket costs the gateway a write and
//! the client a wake-up and a read of its own, on every new connection; the client's core is
//! what limits new connections per second (docs/benchmarks.md). Held here, it goes out in the
//! same write as the first answer (HTTP/2: the server's first SETTINGS), even when the client's
//! request arrives a moment after its `Finished`, as OpenSSL clients send them. A connection that
//! closes without an answer sends it before its close_notify.
//!
//! During the handshake a write is held only when nothing else can be in it: a TLS 1.3
//! encrypted record (content type 23) right after reading from the client, every earlier write
//! whole. The server's flights start with a handshake record (22): ServerHello, or in TLS 1.2
//! the last flight's NewSessionTicket or ChangeCipherSpec (20); alerts are 21. TLS 1.2 never
//! writes type 23 before the handshake ends, and 0-RTT data is not enabled.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// TLS record content type `application_data`: every encrypted TLS 1.3 record.
const APPLICATION_DATA: u8 = 23;

pub(crate) struct TicketHold<I> {
    io: I,
    /// `Some` until the listener says the handshake is over.
    handshake: Option<Handshake>,
    held: Vec<u8>,
}

#[derive(Default)]
struct Handshake {
    /// Bytes came from the client since the gateway last wrote.
    read_since_write: bool,
    /// A write took only part of what it was given: later writes may start mid-record.
    partial: bool,
}

impl<I> TicketHold<I> {
    pub(crate) fn new(io: I) -> Self {
        TicketHold {
            io,
            handshake: Some(Handshake::default()),
            held: Vec::new(),
        }
    }

    /// The handshake is over: from now on, held bytes go out with the next write.
    pub(crate) fn handshake_done(&mut self) {
        self.handshake = None;
    }

    /// Something is held (after a failed handshake: its alert, which a shutdown sends).
    pub(crate) fn holds(&self) -> bool {
        !self.held.is_empty()
    }
}

impl<I: AsyncWrite + Unpin> TicketHold<I> {
    /// Writes what is held, all of it or until the socket is full.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.held.is_empty() {
            return Poll::Ready(Ok(()));
        }
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        self.held = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for TicketHold<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Some(h) = &mut this.handshake
            && buf.filled().len() > before
        {
            h.read_since_write = true;
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for TicketHold<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(h) = &mut this.handshake {
            let first = bufs.iter().find(|b| !b.is_empty()).map(|b| b[0]);
            if first == Some(APPLICATION_DATA) && h.read_since_write && !h.partial {
                let mut n = 0;
                for b in bufs {
                    this.held.extend_from_slice(b);
                    n += b.len();
                }
                return Poll::Ready(Ok(n));
            }
            let offered: usize = bufs.iter().map(|b| b.len()).sum();
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
            h.read_since_write = false;
            h.partial |= n < offered;
            return Poll::Ready(Ok(n));
        }
        while !this.held.is_empty() {
            let held = this.held.len();
            let n = {
                let mut all = Vec::with_capacity(bufs.len() + 1);
                all.push(IoSlice::new(&this.held));
                all.extend(bufs.iter().map(|b| IoSlice::new(b)));
                ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &all))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n < held {
                this.held.drain(..n);
                continue;
            }
            this.held = Vec::new();
            if n > held {
                return Poll::Ready(Ok(n - held));
            }
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.handshake.is_none() {
            ready!(this.poll_release(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A socket that hands out scripted reads (`None`: nothing yet) and records each write.
    #[derive(Default)]
    struct Wire {
        reads: VecDeque<Option<Vec<u8>>>,
        writes: Vec<Vec<u8>>,
        /// Takes at most this much per write.
        cap: Option<usize>,
    }

    impl AsyncRead for Wire {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.reads.pop_front() {
                Some(Some(bytes)) => {
                    buf.put_slice(&bytes);
                    Poll::Ready(Ok(()))
                }
                _ => Poll::Pending,
            }
        }
    }

    impl AsyncWrite for Wire {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.cap.map_or(buf.len(), |c| c.min(buf.len()));
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.poll_write(cx, &all)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    const HELLO: &[u8] = b"\x16client hello";
    const FLIGHT: &[u8] = b"\x16server hello, then encrypted";
    const FINISHED: &[u8] = b"\x17client finished";
    const TICKET: &[u8] = b"\x17ticket";
    const ANSWER: &[u8] = b"\x17answer";

    /// A TLS 1.3 handshake up to the ticket's write, over `wire`.
    async fn handshake(wire: Wire) -> TicketHold<Wire> {
        let mut s = TicketHold::new(wire);
        s.io.reads
            .extend([Some(HELLO.to_vec()), Some(FINISHED.to_vec())]);
        let mut buf = [0u8; 64];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        s.write_all(FLIGHT).await.unwrap();
        assert!(s.read(&mut buf).await.unwrap() > 0);
        s.write_all(TICKET).await.unwrap();
        s.flush().await.unwrap();
        s.handshake_done();
        s
    }

    #[tokio::test]
    async fn the_ticket_goes_out_in_the_first_answers_write() {
        let mut s = handshake(Wire::default()).await;
        assert_eq!(s.io.writes, [FLIGHT], "the ticket waits");
        s.write_all(ANSWER).await.unwrap();
        assert_eq!(s.io.writes, [FLIGHT, &[TICKET, ANSWER].concat()]);
        s.write_all(ANSWER).await.unwrap();
        assert_eq!(s.io.writes.last().unwrap(), ANSWER, "held once only");
    }

    #[tokio::test]
    async fn reads_that_find_nothing_leave_the_ticket_held() {
        // Hyper reads again after a request head, to notice a client leaving.
        let mut s = handshake(Wire::default()).await;
        let mut buf = [0u8; 64];
        let mut read_buf = ReadBuf::new(&mut buf);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(
            Pin::new(&mut s)
                .poll_read(&mut cx, &mut read_buf)
                .is_pending()
        );
        s.io.reads.push_back(Some(b"\x17request".to_vec()));
        assert!(s.read(&mut buf).await.unwrap() > 0);
        assert_eq!(s.io.writes, [FLIGHT]);
        s.write_all(ANSWER).await.unwrap();
        assert_eq!(s.io.writes, [FLIGHT, &[TICKET, ANSWER].concat()]);
    }

    #[tokio::test]
    async fn closing_sends_the_ticket_before_anything_else() {
        let mut s = handshake(Wire::default()).await;
        s.shutdown().await.unwrap();
        assert_eq!(s.io.writes, [FLIGHT, TICKET]);
    }

    #[tokio::test]
    async fn a_socket_that_took_part_of_a_write_holds_nothing() {
        // The flight goes in pieces, so a later write may start inside a record.
        let wire = Wire {
            cap: Some(8),
            ..Wire::default()
        };
        let mut s = handshake(wire).await;
        s.io.cap = None;
        assert_eq!(s.io.writes.concat(), [FLIGHT, TICKET].concat());
        s.write_all(ANSWER).await.unwrap();
        assert_eq!(s.io.writes.last().unwrap(), ANSWER);
    }

    #[tokio::test]
    async fn only_encrypted_records_written_after_a_read_are_held() {
        let mut s = TicketHold::new(Wire::default());
        s.io.reads
            .extend([Some(HELLO.to_vec()), Some(FINISHED.to_vec())]);
        let mut buf = [0u8; 64];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        // TLS 1.2's last flight (NewSessionTicket, ChangeCipherSpec, Finished) after a read.
        s.write_all(b"\x16new session ticket").await.unwrap();
        // The rest of a long flight, written right after its first part: not after a read.
        s.write_all(b"\x17more of the flight").await.unwrap();
        assert_eq!(s.io.writes.len(), 2, "nothing held");
    }
}
