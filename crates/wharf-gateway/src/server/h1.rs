//! The gateway's own HTTP/1.1 lane for what most traffic is: GET and HEAD without a body,
//! proxied to an upstream, over plain HTTP or TLS (HTTP/2 goes to hyper). The request head is read with httparse and
//! the upstream's head written straight from the client's bytes; the answer is written in one
//! piece with its body when the body is already in. All of it runs in the connection's task: no
//! dispatcher, no request `HeaderMap`, no timer per request.
//!
//! Anything else (a body, an upgrade, `Expect`, HTTP/1.0, the h2c preface, a head over 8 KiB, a
//! static site, and whatever `handler.rs` would refuse, redirect or answer itself) hands the
//! connection to hyper with the bytes already read, and hyper serves it from that request on.
//! So every rule about hostile input keeps its one place; this lane only has to know what it may
//! take, and takes nothing it is unsure of.

use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::SystemTime;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};
use http_body::Body as _;
use http_body_util::Either;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::activity::Activity;
use super::handler::{ACME_CHALLENGE_PREFIX, MAX_URI, account, allowed, wants_log};
use super::head::HeadLimit;
use super::listener::{ConnInfo, Role};
use super::rewind::Rewind;
use crate::config::Timeouts;
use crate::gateway::Shared;
use crate::proxy::{Due, Fetched, Forwarded};
use crate::routing::{normalize_host_into, prefix_matches};
use crate::site::{Backend, Site};

/// A head not complete within this many bytes goes to hyper, which allows up to `HEAD_LIMIT`.
const LANE_HEAD: usize = 8 * 1024;
/// Most request headers taken, as hyper.
const MAX_HEADERS: usize = 100;
/// Free space kept in the read buffer before a read.
const READ_SPACE: usize = 4 * 1024;
/// Body bytes gathered behind the head before a write.
const WRITE_BATCH: usize = 64 * 1024;

/// A request this lane takes, ready to go upstream.
struct Plan {
    head_len: usize,
    head_request: bool,
    /// The client asked to close after this answer.
    close: bool,
    site: Arc<Site>,
    read_timeout: std::time::Duration,
    /// Method and path for the access log, when the site has one.
    logged: Option<(&'static str, String)>,
}

/// What ended a wait for more of a head.
enum Woke {
    Stopping,
    Read(io::Result<usize>),
    Timer,
}

enum Step {
    Take(Plan),
    Partial,
    HandOver,
}

/// The connection's buffers, kept for their capacity.
struct Buffers {
    read: BytesMut,
    request: Taken,
    /// The client's answer being written.
    out: Vec<u8>,
}

/// What the lane keeps of a request it takes.
struct Taken {
    /// The upstream's request line and header fields.
    line: Vec<u8>,
    fields: Vec<u8>,
    /// The host, normalised.
    host: String,
}

/// Serves an HTTP/1 connection until it ends, is idle past its deadline, the gateway stops,
/// or a request needs hyper (which then serves the rest of it).
///
/// Deadlines are hyper's: the first head must be whole within the header timeout from accept,
/// and each next one within the header timeout (or the idle timeout, if shorter) from the end
/// of the answer before it.
pub(super) async fn serve<I>(
    shared: &Arc<Shared>,
    conn: Arc<ConnInfo>,
    builder: &auto::Builder<TokioExecutor>,
    mut io: HeadLimit<I>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut b = Buffers {
        read: BytesMut::with_capacity(2 * READ_SPACE),
        request: Taken {
            line: Vec::with_capacity(256),
            fields: Vec::with_capacity(1024),
            host: String::with_capacity(64),
        },
        out: Vec::with_capacity(4 * 1024),
    };
    // The token wakes this task once when the gateway stops; from then on the `stopping` flag
    // is what is checked (the token's own check takes a lock, once per wait). `stop` is the
    // gateway's own shutdown token, which `Gateway::shutdown` cancels right after the flag.
    let cancelled = stop.clone().cancelled_owned();
    tokio::pin!(cancelled);
    if std::future::poll_fn(|cx| Poll::Ready(cancelled.as_mut().poll(cx)))
        .await
        .is_ready()
    {
        return;
    }
    let stopping = std::future::poll_fn(|_| {
        if shared.stopping.load(Ordering::Relaxed) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    tokio::pin!(stopping);
    let mut deadline = activity.opened() + timeouts.header_read;
    let between = timeouts.header_read.min(timeouts.idle);
    // One timer for the connection, moved only when it fires: after the first request the
    // deadline only moves later, so a timer that fires early is set again and a request costs
    // no timer work.
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    let mut served = false;
    loop {
        let plan = loop {
            if !b.read.is_empty() {
                match read_request(&b.read, shared, &conn, &mut b.request) {
                    Step::Take(plan) => break plan,
                    Step::HandOver => {
                        if served {
                            activity.served_until_now();
                        }
                        let io = Rewind::new(b.read.freeze(), io);
                        super::listener::serve(shared, conn, builder, io, activity, timeouts, stop)
                            .await;
                        return;
                    }
                    Step::Partial => {}
                }
            }
            if b.read.capacity() - b.read.len() < READ_SPACE {
                b.read.reserve(2 * READ_SPACE);
            }
            let woke = tokio::select! {
                biased;
                () = &mut stopping => Woke::Stopping,
                read = io.read_buf(&mut b.read) => Woke::Read(read),
                () = &mut timer => Woke::Timer,
            };
            match woke {
                Woke::Timer if deadline > Instant::now() => timer.as_mut().reset(deadline),
                // Closed as hyper closes (TLS says close_notify).
                Woke::Stopping | Woke::Timer => return close(&mut io, timeouts).await,
                Woke::Read(Ok(0) | Err(_)) => return,
                Woke::Read(Ok(_)) => {}
            }
        };
        // A head read as the gateway began to stop is not taken (hyper does the same).
        if shared.stopping.load(Ordering::Relaxed) {
            return close(&mut io, timeouts).await;
        }
        let start = Instant::now();
        let head_request = plan.head_request;
        let Backend::Proxy(pool) = &plan.site.backend else {
            unreachable!("the lane takes proxied sites only")
        };
        let write = |out: &mut Vec<u8>| {
            out.extend_from_slice(&b.request.line);
            out.extend_from_slice(&b.request.fields);
        };
        let mut client = ClientReads {
            read: &mut b.read,
            limit: plan.head_len + LANE_HEAD,
        };
        // While the upstream thinks, a client that goes away ends the exchange (long polls).
        let answer = {
            // The upstream's answer is due by the connection's own timer.
            let due = Due {
                at: start + plan.read_timeout,
                timer: timer.as_mut(),
                timeout: plan.read_timeout,
            };
            let exchange =
                crate::proxy::bodiless(&shared.client, &plan.site, pool, head_request, &write, due);
            // Pinned here and lent: the exchange's future is large, and moving it costs a copy.
            tokio::pin!(exchange);
            client.unless_gone(&mut io, exchange.as_mut()).await
        };
        let Some(answer) = answer else {
            return;
        };
        let closing = plan.close || shared.stopping.load(Ordering::Relaxed);
        let (status, upstream) = match &answer {
            Ok(f) => (f.head.status, Some(f.upstream)),
            Err(own) => (own.response.status(), own.upstream),
        };
        let logged = plan.logged.as_ref().map(|(m, p)| (*m, p.as_str()));
        account(
            shared,
            &plan.site,
            &conn,
            &b.request.host,
            logged,
            status.as_u16(),
            start.elapsed(),
            upstream,
        );
        // HTTPS answers of sites that ask for it carry the site's HSTS, the upstream's replaced.
        let hsts = plan.site.hsts.as_ref().filter(|_| conn.scheme == "https");
        let extra = Extra {
            head_request,
            close: closing,
            hsts,
        };
        let written = respond(&mut io, &mut b.out, client, answer, extra).await;
        if written.is_err() {
            return;
        }
        if closing {
            return close(&mut io, timeouts).await;
        }
        served = true;
        deadline = Instant::now() + between;
        // Only the first deadline (from accept) can be later than this one.
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        // Moves the start only: no reference count, and `reserve` reuses the space.
        b.read.advance(plan.head_len);
        if b.read.is_empty() {
            // The next bytes start a head: `HeadLimit` watches its request line again.
            activity.head_next.store(true, Ordering::Relaxed);
        }
    }
}

/// Ends a connection the lane closes (idle, stopping, or asked to): TLS sends its close_notify,
/// TCP its FIN, bounded by the header timeout so a client that reads nothing cannot hold it.
async fn close<I: AsyncWrite + Unpin>(io: &mut I, timeouts: Timeouts) {
    let _ = tokio::time::timeout(timeouts.header_read, io.shutdown()).await;
}

/// Reads a request head off the front of `buf` and decides whether this lane takes it; if so,
/// writes the upstream's request line and header fields, and the host, into `taken`.
fn read_request(buf: &[u8], shared: &Shared, conn: &ConnInfo, taken: &mut Taken) -> Step {
    let Taken { line, fields, host } = taken;
    // Left uninitialised: filling 100 empty slots per request costs more than the parse.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < LANE_HEAD => return Step::Partial,
        _ => return Step::HandOver,
    };
    let (method, head_request) = match req.method {
        Some("GET") => ("GET", false),
        Some("HEAD") => ("HEAD", true),
        _ => return Step::HandOver,
    };
    let target = req.path.unwrap_or_default();
    if req.version != Some(1)
        || target.len() > MAX_URI
        || !target.starts_with('/')
        || !target.bytes().all(plain_target_byte)
    {
        return Step::HandOver;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if path.starts_with(ACME_CHALLENGE_PREFIX) {
        return Step::HandOver;
    }

    fields.clear();
    let mut raw_host = None;
    let mut hosts = 0;
    let mut close = false;
    let mut forwarded_for = None;
    for h in req.headers.iter() {
        let name = h.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("host") {
            hosts += 1;
            raw_host = Some(h.value);
        } else if is("connection") {
            // `keep-alive` and `close` only: any other token names headers to drop, or asks
            // for an upgrade.
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                    return Step::HandOver;
                }
            }
            continue;
        } else if is("content-length")
            || is("transfer-encoding")
            || is("upgrade")
            || is("expect")
            || is("te")
        {
            return Step::HandOver;
        } else if crate::proxy::is_hop_by_hop(name.as_bytes())
            || is("x-real-ip")
            || is("x-forwarded-proto")
            || is("x-forwarded-host")
        {
            // Hop-by-hop, or set by the gateway below.
            continue;
        } else if is("x-forwarded-for") {
            forwarded_for.get_or_insert(h.value);
            continue;
        }
        let at = fields.len();
        fields.extend_from_slice(name.as_bytes());
        fields[at..].make_ascii_lowercase();
        fields.extend_from_slice(b": ");
        fields.extend_from_slice(h.value);
        fields.extend_from_slice(b"\r\n");
    }
    let valid = raw_host
        .filter(|_| hosts == 1)
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(|raw| normalize_host_into(raw, host));
    if !valid {
        return Step::HandOver;
    }
    let host = host.as_str();

    let table = shared.table.load();
    let site = match &conn.role {
        Role::Site(name) => table
            .site(name)
            .filter(|s| prefix_matches(&s.config.path, path)),
        _ => table.lookup(host, path),
    };
    let Some(site) = site else {
        return Step::HandOver;
    };
    let https_port = shared.https_port.load(Ordering::Relaxed);
    let redirect = conn.scheme == "http"
        && https_port != 0
        && site.config.https.redirect
        && shared.certs.covers(host);
    if redirect || !allowed(&site.config.allow, conn) || !matches!(site.backend, Backend::Proxy(_))
    {
        return Step::HandOver;
    }

    line.clear();
    line.extend_from_slice(method.as_bytes());
    line.push(b' ');
    match crate::proxy::stripped_target(site, path, query) {
        Some(stripped) => line.extend_from_slice(stripped.as_bytes()),
        None => line.extend_from_slice(target.as_bytes()),
    }
    line.extend_from_slice(b" HTTP/1.1\r\n");
    // The forwarding headers, as `proxy::add_forwarding` sets them.
    let client = conn.client_ip.as_bytes();
    fields.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = forwarded_for.filter(|v| {
        v.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) && !v.trim_ascii().is_empty()
    }) {
        fields.extend_from_slice(prev);
        fields.extend_from_slice(b", ");
    }
    fields.extend_from_slice(client);
    fields.extend_from_slice(b"\r\nx-real-ip: ");
    fields.extend_from_slice(client);
    fields.extend_from_slice(b"\r\nx-forwarded-proto: ");
    fields.extend_from_slice(conn.scheme.as_bytes());
    fields.extend_from_slice(b"\r\nx-forwarded-host: ");
    fields.extend_from_slice(host.as_bytes());
    fields.extend_from_slice(b"\r\n\r\n");

    let logged = wants_log(shared, site).then(|| (method, path.to_owned()));
    Step::Take(Plan {
        head_len,
        head_request,
        close,
        site: site.clone(),
        read_timeout: table.timeouts.read,
        logged,
    })
}

/// Bytes of a request target this lane passes on as they are: RFC 3986's path and query
/// characters, which every parser agrees on. Anything else goes to hyper's stricter reading.
fn plain_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'%'
        )
}

/// The client's side of the connection while its answer is on the way: what it sends meanwhile
/// (a pipelined request) is kept in `read`, up to `limit` bytes.
struct ClientReads<'a> {
    read: &'a mut BytesMut,
    limit: usize,
}

impl ClientReads<'_> {
    /// Runs `work` unless the client goes away first (`None`), as hyper's server notices a
    /// client that leaves: the work (an upstream exchange, a body) is dropped with its upstream
    /// connection.
    async fn unless_gone<I, F>(&mut self, io: &mut I, work: F) -> Option<F::Output>
    where
        I: AsyncRead + Unpin,
        F: Future,
    {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                out = &mut work => return Some(out),
                got = io.read_buf(self.read), if self.read.len() < self.limit => {
                    if !matches!(got, Ok(n) if n > 0) {
                        return None;
                    }
                }
            }
        }
    }
}

/// What an answer's head gets besides the answer's own fields.
struct Extra<'a> {
    head_request: bool,
    /// `connection: close`, and the connection ends after the answer.
    close: bool,
    hsts: Option<&'a HeaderValue>,
}

/// Writes an answer as HTTP/1.1: the upstream's head from its own bytes, or the gateway's own
/// answer. The head and as much of the body as is already in go out in one write. A body of
/// unknown length is sent chunked; trailers are not sent (the client did not ask for them:
/// requests with `TE` go to hyper). While the body is quiet, a client that goes away ends the
/// answer, and so frees the upstream connection, as hyper's server does.
async fn respond<I>(
    io: &mut I,
    out: &mut Vec<u8>,
    mut client: ClientReads<'_>,
    answer: Result<Fetched, Forwarded>,
    extra: Extra<'_>,
) -> io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let Extra {
        head_request,
        close,
        hsts,
    } = extra;
    out.clear();
    let replaced = hsts.map(|_| &header::STRICT_TRANSPORT_SECURITY);
    let (status, (has_length, has_date), mut body) = match answer {
        Ok(fetched) => (
            fetched.head.status,
            fetched.head.write(out, replaced),
            Either::Left(fetched.body),
        ),
        Err(own) => {
            let (parts, body) = own.response.into_parts();
            let written = write_own_head(out, &parts, replaced);
            (parts.status, written, Either::Right(body))
        }
    };
    if let Some(v) = hsts {
        out.extend_from_slice(b"strict-transport-security: ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let lengthless = status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let bodiless = head_request || lengthless;
    // An upstream's answer to HEAD has its length in its head if anywhere; the gateway's own
    // answers tell theirs, to HEAD as well, as hyper does.
    let exact = match &body {
        Either::Left(_) if head_request => None,
        body => body.size_hint().exact(),
    };
    let mut chunked = false;
    if !has_length && !lengthless {
        match exact {
            Some(n) => {
                let _ = write!(out, "content-length: {n}\r\n");
            }
            None if !bodiless => {
                chunked = true;
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
            None => {}
        }
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless {
        io.write_all(out).await?;
        return io.flush().await;
    }
    loop {
        // What the body has ready goes behind the head; wait for more only once that is out.
        let ready = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)));
        let frame = match ready.await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Flushed, not only written: TLS keeps what the socket did not take yet.
                io.write_all(out).await?;
                io.flush().await?;
                out.clear();
                // `poll_frame` directly: `BodyExt::frame` here fails the spawned task's `Send` check.
                let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
                // Boxed: only a body that makes the answer wait pays for this future, and the
                // answer's own future stays small enough to be cheap to start.
                match Box::pin(client.unless_gone(io, frame)).await {
                    Some(frame) => frame,
                    None => return Err(io::ErrorKind::ConnectionAborted.into()),
                }
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if chunked {
            let _ = write!(out, "{:x}\r\n", data.len());
        }
        if out.len() + data.len() <= WRITE_BATCH {
            out.extend_from_slice(&data);
        } else {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    io.write_all(out).await?;
    io.flush().await
}

/// The status line and fields of an answer the gateway made itself; says whether a
/// Content-Length and a Date were among them.
fn write_own_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    replaced: Option<&HeaderName>,
) -> (bool, bool) {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if Some(name) == replaced {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    (
        parts.headers.contains_key(header::CONTENT_LENGTH),
        parts.headers.contains_key(header::DATE),
    )
}
