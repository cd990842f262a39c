//! Many streams over one connection (yamux); either end opens streams.
//!
//! yamux's connection is a poll API that one task must drive: [`Session`] spawns that task. It
//! owns the connection, opens streams when an [`Opener`] asks, hands the streams the other end
//! opens to [`Incoming`], and ends when either end closes or the connection fails, which
//! [`Opener::closed`] reports. Dropping every `Opener` and the `Incoming` closes the connection.
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};

use crate::LinkError;

/// At most this many streams open at once on one connection, those both ends opened counted
/// together: one more ends the whole connection. Each end keeps to its share (the server's
/// carried connections, [`AGENT_TUNNEL_STREAMS`]), leaving room for requests.
pub const MAX_STREAMS: usize = 1024;
/// Tunnel connections an agent carries to the server at once; more are refused one by one,
/// never at the cost of the link.
pub const AGENT_TUNNEL_STREAMS: usize = MAX_STREAMS / 8;
/// How long a local close may take to tell the other end before the socket is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

type OpenReply = oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>;

fn config() -> yamux::Config {
    let mut config = yamux::Config::default();
    // Tunnels carry bulk data: each stream's window starts at 256 KiB and grows with its
    // bandwidth-delay product. yamux requires the connection's total to cover 256 KiB for
    // every stream, so 1024 streams make 256 MiB the smallest total it accepts; it bounds
    // what a peer can make this end buffer.
    config.set_max_num_streams(MAX_STREAMS);
    config.set_max_connection_receive_window(Some(MAX_STREAMS * 256 * 1024));
    // A frame and its header fill one TLS record (16 KiB of plaintext) instead of spilling
    // 12 bytes into a second.
    config.set_split_send_size(16 * 1024 - 12);
    config
}

/// A stream of a session: tokio `AsyncRead + AsyncWrite + Unpin + Send + 'static`; shutting down
/// its write side tells the other end "end of stream" while it can still be read (a yamux
/// half-close). Dropping it without a shutdown resets it: the other end's reads end too.
/// Once the session is gone, reads end (end of stream) and writes fail.
pub struct Stream {
    inner: Compat<yamux::Stream>,
    gone: CancellationToken,
    // Made at the first read that waits: a local close does not wake yamux's readers.
    gone_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Stream")
            .field(&self.inner.get_ref().id())
            .finish()
    }
}

impl Stream {
    fn new(inner: yamux::Stream, gone: CancellationToken) -> Stream {
        Stream {
            inner: inner.compat(),
            gone,
            gone_wait: None,
        }
    }

    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.gone.is_cancelled() {
            return Poll::Ready(());
        }
        let gone = &self.gone;
        self.gone_wait
            .get_or_insert_with(|| Box::pin(gone.clone().cancelled_owned()))
            .as_mut()
            .poll(cx)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            // Nothing more will come once the session is gone: end of stream.
            Poll::Pending if self.poll_gone(cx).is_ready() => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One multiplexed connection, driven by a task of its own.
#[derive(Debug)]
pub struct Session {
    opener: Opener,
    incoming: Incoming,
}

impl Session {
    /// The agent's end (it dialled). Needs a tokio runtime: it spawns the driving task.
    pub fn client<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: T) -> Session {
        Session::start(io, yamux::Mode::Client)
    }
    /// The server's end. Needs a tokio runtime: it spawns the driving task.
    pub fn server<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: T) -> Session {
        Session::start(io, yamux::Mode::Server)
    }

    fn start<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        io: T,
        mode: yamux::Mode,
    ) -> Session {
        // yamux writes each frame's 12-byte header and its body in two writes: unbuffered, over
        // TLS that is two records and two sends per frame. Buffered, one (yamux flushes after
        // each round of frames).
        let io = tokio::io::BufWriter::with_capacity(64 * 1024, io);
        let conn = yamux::Connection::new(io.compat(), config(), mode);
        let (open_tx, open_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let close = CancellationToken::new();
        let gone = CancellationToken::new();
        tokio::spawn(drive(conn, open_rx, in_tx, close.clone(), gone.clone()));
        let guard = Arc::new(close.clone().drop_guard());
        Session {
            opener: Opener {
                open: open_tx,
                close,
                gone: gone.clone(),
                _guard: guard.clone(),
            },
            incoming: Incoming {
                streams: in_rx,
                gone,
                _guard: guard,
            },
        }
    }

    pub fn split(self) -> (Opener, Incoming) {
        (self.opener, self.incoming)
    }
}

/// The task that owns the connection: it alone polls it, as yamux requires.
async fn drive<T: AsyncRead + AsyncWrite + Unpin>(
    mut conn: yamux::Connection<Compat<T>>,
    mut opens: mpsc::Receiver<OpenReply>,
    inbound: mpsc::UnboundedSender<yamux::Stream>,
    close: CancellationToken,
    gone: CancellationToken,
) {
    let mut waiting: Option<OpenReply> = None;
    let mut openers_gone = false;
    let ended = tokio::select! {
        () = close.cancelled() => None,
        end = poll_fn(|cx| step(&mut conn, cx, &mut opens, &mut openers_gone, &mut waiting, &inbound)) => Some(end),
    };
    match ended {
        None => {
            drop(waiting);
            // Sends yamux's GoAway and closes the socket, so the other end knows at once.
            match tokio::time::timeout(CLOSE_GRACE, poll_fn(|cx| conn.poll_close(cx))).await {
                Ok(Ok(())) => tracing::debug!("link closed"),
                Ok(Err(e)) => tracing::debug!(error = %e, "link closed with an error"),
                Err(_) => tracing::debug!("link close timed out; dropping the connection"),
            }
        }
        Some(Ok(())) => tracing::debug!("link closed by the other end"),
        Some(Err(e)) => tracing::debug!(error = %e, "link failed"),
    }
    gone.cancel();
}

/// Does all the work that is ready: answers open requests, forwards inbound streams and, by
/// polling for inbound streams, moves every stream's data. Ready once the connection is gone.
fn step<T: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut yamux::Connection<Compat<T>>,
    cx: &mut Context<'_>,
    opens: &mut mpsc::Receiver<OpenReply>,
    openers_gone: &mut bool,
    waiting: &mut Option<OpenReply>,
    inbound: &mpsc::UnboundedSender<yamux::Stream>,
) -> Poll<Result<(), yamux::ConnectionError>> {
    loop {
        let mut progressed = false;
        if waiting.is_none() && !*openers_gone {
            match opens.poll_recv(cx) {
                Poll::Ready(Some(reply)) => *waiting = Some(reply),
                Poll::Ready(None) => *openers_gone = true,
                Poll::Pending => {}
            }
        }
        if let Some(reply) = waiting.take() {
            if reply.is_closed() {
                // The caller stopped waiting.
                progressed = true;
            } else {
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(result) => {
                        // A caller that gave up meanwhile drops the stream, which resets it.
                        let _ = reply.send(result);
                        progressed = true;
                    }
                    Poll::Pending => *waiting = Some(reply),
                }
            }
        }
        match conn.poll_next_inbound(cx) {
            Poll::Ready(Some(Ok(stream))) => {
                // Without an `Incoming` the stream is dropped, which resets it.
                let _ = inbound.send(stream);
                progressed = true;
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => {}
        }
        if !progressed {
            return Poll::Pending;
        }
    }
}

/// Opens streams; cheap to clone.
#[derive(Clone, Debug)]
pub struct Opener {
    open: mpsc::Sender<OpenReply>,
    close: CancellationToken,
    gone: CancellationToken,
    /// The last handle dropped closes the connection.
    _guard: Arc<DropGuard>,
}

impl Opener {
    /// Opens a stream; the other end gets it from its [`Incoming`] once the first bytes arrive
    /// (yamux announces a stream with its first frame, so write the request first).
    pub async fn open(&self) -> Result<Stream, LinkError> {
        if self.is_closed() {
            return Err(LinkError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        self.open.send(reply).await.map_err(|_| LinkError::Closed)?;
        match answer.await {
            Ok(Ok(stream)) => Ok(Stream::new(stream, self.gone.clone())),
            Ok(Err(yamux::ConnectionError::Closed)) | Err(_) => Err(LinkError::Closed),
            Ok(Err(e)) => Err(LinkError::Mux(e)),
        }
    }
    /// Closes the whole connection (both ends see their streams end).
    pub fn close(&self) {
        self.close.cancel();
    }
    /// True once [`Opener::close`] was called or the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.close.is_cancelled() || self.gone.is_cancelled()
    }
    /// Resolves once the connection is gone (closed by either end, or failed).
    pub async fn closed(&self) {
        self.gone.cancelled().await;
    }
}

/// Streams the other end opens.
#[derive(Debug)]
pub struct Incoming {
    streams: mpsc::UnboundedReceiver<yamux::Stream>,
    gone: CancellationToken,
    _guard: Arc<DropGuard>,
}

impl Incoming {
    /// `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<Stream> {
        let stream = self.streams.recv().await?;
        Some(Stream::new(stream, self.gone.clone()))
    }
}

/// Copies both ways between a link stream and a connection until both ends are done, in 64 KiB
/// pieces: tokio's default 8 KiB makes eight times the frames, TLS records and wake-ups for
/// bulk transfers (tunnels, large responses).
pub async fn splice<A, B>(a: &mut A, b: &mut B) -> std::io::Result<(u64, u64)>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
{
    const PIECE: usize = 64 * 1024;
    tokio::io::copy_bidirectional_with_sizes(a, b, PIECE, PIECE).await
}
