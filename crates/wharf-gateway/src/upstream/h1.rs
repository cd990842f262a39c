//! Plain HTTP/1.1 exchanges with an upstream, driven inside the request's own task.
//!
//! Most proxied requests are idempotent and carry no body (GET, HEAD). For those the gateway
//! writes the request head itself and reads the answer straight off the socket as the client's
//! response body is polled: no connection task, no dispatch channel and no body channel per
//! exchange, and the buffers stay with the connection. Everything else (request bodies,
//! upgrades) goes through hyper's client (`conn.rs`).
//!
//! Framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; chunked when
//! Transfer-Encoding ends in chunked (Content-Length then ignored); else Content-Length; else
//! until the upstream closes. A connection goes back to its target only when its answer was
//! read to the very end with nothing left over and both sides keep it alive.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Target, TargetGuard};
use crate::body::BoxError;

/// Longest response head read (status line and headers), as hyper's client allowed.
const MAX_HEAD: usize = 400 * 1024;
/// Most response headers accepted, as hyper's client.
const MAX_HEADERS: usize = 100;
/// Longest header name `http` takes.
const MAX_NAME: usize = (1 << 16) - 1;
/// Longest chunk-size line (hex size and any extensions) and trailer section.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64 * 1024;
/// How much the read buffer grows by when it runs out.
const READ_CHUNK: usize = 16 * 1024;

/// One keep-alive connection to a target and its buffers.
pub(crate) struct Conn {
    stream: TcpStream,
    /// Bytes read and not handed on yet.
    buf: BytesMut,
    /// The request head being written (kept for its capacity).
    out: Vec<u8>,
}

/// An answer's status line and header fields, kept as read: the gateway's own HTTP/1 lane
/// writes them on from these bytes, and hyper's side gets a `HeaderMap` (`response`).
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    version: Version,
    /// The head as read; the spans below point into it.
    raw: Bytes,
    /// The fields passed on (name, value): hop-by-hop ones, and the Content-Length of a chunked
    /// answer, left out.
    fields: Vec<(Span, Span)>,
    /// A reason phrase other than the status code's usual one, passed on as given.
    reason: Option<Span>,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    /// Writes the status line and fields as HTTP/1.1, names in lower case as hyper writes them,
    /// leaving out `replaced` (a field the gateway sets itself); says whether a Content-Length
    /// and a Date were among them.
    pub(crate) fn write(&self, out: &mut Vec<u8>, replaced: Option<&HeaderName>) -> (bool, bool) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        match self.reason {
            Some(r) => out.extend_from_slice(&self.raw[r.range()]),
            None => {
                let reason = self.status.canonical_reason().unwrap_or("");
                out.extend_from_slice(reason.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        // A length the framing was read by is written once, as read; 204 and 304 get none.
        let no_length = matches!(self.framing, Framing::Length(_))
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED;
        let (mut length, mut date) = (false, false);
        for (name, value) in &self.fields {
            let name = &self.raw[name.range()];
            if replaced.is_some_and(|r| name.eq_ignore_ascii_case(r.as_str().as_bytes())) {
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                if no_length {
                    continue;
                }
                length = true;
            }
            date |= name.eq_ignore_ascii_case(b"date");
            let at = out.len();
            out.extend_from_slice(name);
            out[at..].make_ascii_lowercase();
            out.extend_from_slice(b": ");
            out.extend_from_slice(&self.raw[value.range()]);
            out.extend_from_slice(b"\r\n");
        }
        if let Framing::Length(n) = self.framing {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
            length = true;
        }
        (length, date)
    }

    fn header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        for (name, value) in &self.fields {
            // Both were checked when the head was read.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&self.raw[name.range()]),
                HeaderValue::from_maybe_shared(self.raw.slice(value.range())),
            ) {
                headers.append(name, value);
            }
        }
        headers
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

pub(crate) enum ExchangeError {
    /// No connection could be made: the target is down.
    Connect(io::Error),
    /// The exchange failed or the answer was not valid HTTP/1.
    Upstream(io::Error),
}

/// Why a round trip failed: `NothingBack` (the connection closed before any byte of an answer)
/// on a reused connection means the upstream closed it while idle, so the request goes again.
enum RoundTrip {
    NothingBack(io::Error),
    Failed(io::Error),
}

impl RoundTrip {
    fn into_io(self) -> io::Error {
        match self {
            RoundTrip::NothingBack(e) | RoundTrip::Failed(e) => e,
        }
    }
}

/// Sends a bodiless idempotent request over an idle connection to `target`, or a new one, and
/// reads the answer's head. The request's headers must already be the upstream's (hop-by-hop
/// removed, Host and forwarding headers set).
///
/// A reused connection that gives nothing back (the upstream closed it as the request went
/// out: the keep-alive race) costs the request one more try, on a new connection; never more,
/// so a request that makes its upstream drop the connection is not replayed again and again.
///
/// `write_head` puts the request head on the wire buffer (it may be called twice); `head` says
/// whether the request is a HEAD, whose answer has no body whatever its headers say.
pub(crate) async fn exchange(
    target: &Target,
    connect_timeout: Duration,
    head: bool,
    write_head: &(dyn Fn(&mut Vec<u8>) + Sync),
) -> Result<(Head, Conn), ExchangeError> {
    // `pop` checks the connection is still open (`Conn::still_open`).
    if let Some(mut conn) = target.raw.pop() {
        match conn.round_trip(head, write_head).await {
            Ok(head) => return Ok((head, conn)),
            Err(RoundTrip::NothingBack(_)) => {}
            Err(RoundTrip::Failed(e)) => return Err(ExchangeError::Upstream(e)),
        }
    }
    let mut conn = Conn::connect(target.addr, connect_timeout)
        .await
        .map_err(ExchangeError::Connect)?;
    match conn.round_trip(head, write_head).await {
        Ok(head) => Ok((head, conn)),
        Err(e) => Err(ExchangeError::Upstream(e.into_io())),
    }
}

impl Conn {
    async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = super::conn::dial(addr, timeout).await?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
        })
    }

    /// Whether an idle connection is still usable: not closed by the upstream, and nothing
    /// unasked-for waiting on it (a 408 some servers send before closing, or bytes an upstream
    /// sent past the end of its answer, which must never be read as the next answer). Costs no
    /// system call unless the socket became readable since its last read (tokio keeps that
    /// state, and a read that drained the socket cleared it).
    pub(crate) fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    async fn round_trip(
        &mut self,
        head_request: bool,
        write_head: &(dyn Fn(&mut Vec<u8>) + Sync),
    ) -> Result<Head, RoundTrip> {
        self.out.clear();
        write_head(&mut self.out);
        self.stream
            .write_all(&self.out)
            .await
            .map_err(RoundTrip::NothingBack)?;
        let mut got_any = !self.buf.is_empty();
        loop {
            if !self.buf.is_empty()
                && let Some(head) = self.parse_head(head_request).map_err(RoundTrip::Failed)?
            {
                return Ok(head);
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(RoundTrip::Failed(invalid(
                    "the upstream's response head is over 400 KiB",
                )));
            }
            self.buf.reserve(READ_CHUNK);
            let read = tokio::io::AsyncReadExt::read_buf(&mut self.stream, &mut self.buf).await;
            match read {
                Ok(0) if !got_any => {
                    return Err(RoundTrip::NothingBack(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(0) => {
                    return Err(RoundTrip::Failed(invalid(
                        "the upstream closed the connection in the middle of its response head",
                    )));
                }
                Ok(_) => got_any = true,
                Err(e) if !got_any => return Err(RoundTrip::NothingBack(e)),
                Err(e) => return Err(RoundTrip::Failed(e)),
            }
        }
    }

    /// Parses a complete head off the buffer; informational answers (1xx but 101) are skipped,
    /// as hyper's client does.
    fn parse_head(&mut self, head_request: bool) -> io::Result<Option<Head>> {
        loop {
            // Left uninitialised: filling 100 empty slots per answer costs more than the parse.
            let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut resp, &self.buf, &mut slots);
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(invalid(format!("invalid response from the upstream: {e}"))),
            };
            let code = resp.code.unwrap_or(0);
            let version = if resp.version == Some(0) {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            };
            // Where each name and value sits in the head, and what framing and keep-alive
            // need from them, in one pass.
            let mut fields = Vec::with_capacity(resp.headers.len());
            let mut seen = Seen::default();
            for h in resp.headers.iter() {
                let name = Span::of(&self.buf, h.name.as_bytes())
                    .filter(|_| h.name.len() <= MAX_NAME)
                    .ok_or_else(|| invalid("invalid header name from the upstream"))?;
                seen.note(h.name.as_bytes(), h.value);
                if crate::proxy::is_hop_by_hop(h.name.as_bytes()) {
                    continue;
                }
                // An empty value may not point into the buffer at all.
                fields.push((name, Span::of(&self.buf, h.value).unwrap_or(Span::EMPTY)));
            }
            // A missing reason is a static empty string, not a part of the buffer.
            let reason = resp
                .reason
                .filter(|r| !r.is_empty())
                .and_then(|r| Span::of(&self.buf, r.as_bytes()));
            let raw = self.buf.split_to(len).freeze();
            if (100..200).contains(&code) && code != 101 {
                continue;
            }
            let status = StatusCode::from_u16(code)
                .map_err(|_| invalid(format!("invalid status {code} from the upstream")))?;
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(invalid("the upstream switched protocols unasked"));
            }
            let (framing, reusable) = framing(head_request, version, status, &seen)?;
            let reason = reason
                .filter(|r| status.canonical_reason().map(str::as_bytes) != Some(&raw[r.range()]));
            let keep_alive = reusable && keeps_alive(version, &seen);
            let named = seen.names_fields;
            fields.retain(|(name, _)| {
                let name = &raw[name.range()];
                // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3): the body is
                // passed on decoded, and the client side frames it anew.
                let overridden =
                    seen.transfer_encoding && name.eq_ignore_ascii_case(b"content-length");
                let named_by_connection = named && connection_names(&raw, name);
                !(overridden || named_by_connection)
            });
            return Ok(Some(Head {
                status,
                version,
                raw,
                fields,
                reason,
                framing,
                keep_alive,
            }));
        }
    }
}

/// A part of the read buffer, by offset and length.
#[derive(Clone, Copy)]
struct Span(usize, usize);

impl Span {
    const EMPTY: Span = Span(0, 0);

    /// Where `part` sits in `buf`, if it is a part of it.
    fn of(buf: &[u8], part: &[u8]) -> Option<Span> {
        let offset = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
        (offset + part.len() <= buf.len()).then_some(Span(offset, part.len()))
    }

    fn range(self) -> std::ops::Range<usize> {
        self.0..self.0 + self.1
    }
}

/// A request head from hyper's types, as the gateway writes it to an upstream.
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    method: &Method,
    path: &PathAndQuery,
    headers: &HeaderMap,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What the framing and keep-alive decisions need from an answer's fields.
#[derive(Default)]
struct Seen {
    /// Transfer-Encoding was sent; whether its last coding is chunked.
    transfer_encoding: bool,
    chunked: bool,
    /// Content-Length was sent: its value, if all its values agree and are numbers.
    length_sent: bool,
    length: Option<u64>,
    bad_length: bool,
    close: bool,
    keep_alive: bool,
    /// `Connection` names other fields, to be dropped with it.
    names_fields: bool,
}

impl Seen {
    fn note(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            if let Some(last) = tokens(value).last() {
                self.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            self.length_sent = true;
            for part in value.split(|&b| b == b',') {
                let part = part.trim_ascii();
                // Digits only: `u64::from_str` would also take a sign.
                let n = Some(part)
                    .filter(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
                    .and_then(|p| std::str::from_utf8(p).ok()?.parse::<u64>().ok());
                match n {
                    Some(n) if self.length.is_none_or(|l| l == n) => self.length = Some(n),
                    _ => self.bad_length = true,
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else {
                    self.names_fields = true;
                }
            }
        }
    }
}

/// The non-empty, trimmed items of a comma-separated field value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether a `Connection` field of the head `raw` names the field `name`.
fn connection_names(raw: &[u8], name: &[u8]) -> bool {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    if resp.parse(raw).is_err() {
        return false;
    }
    resp.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(h.value))
        .any(|t| t.eq_ignore_ascii_case(name))
}

/// How the body is delimited, and whether that framing lets the connection be reused.
fn framing(
    head_request: bool,
    version: Version,
    status: StatusCode,
    seen: &Seen,
) -> io::Result<(Framing, bool)> {
    // (1xx answers never get here: `parse_head` skips them, and refuses 101.)
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Empty, true));
    }
    if seen.transfer_encoding {
        // With Content-Length as well, or in HTTP/1.0, the framing is suspect (RFC 9112 §6.1):
        // read the message, never reuse the connection.
        let clean = !seen.length_sent && version != Version::HTTP_10;
        return Ok(if seen.chunked {
            (Framing::Chunked, clean)
        } else {
            (Framing::UntilClose, false)
        });
    }
    if seen.bad_length {
        return Err(bad_length());
    }
    Ok(match seen.length {
        Some(0) => (Framing::Empty, true),
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

fn bad_length() -> io::Error {
    invalid("invalid Content-Length from the upstream")
}

fn keeps_alive(version: Version, seen: &Seen) -> bool {
    if version == Version::HTTP_10 {
        seen.keep_alive
    } else {
        !seen.close
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The body of an exchange's answer, read off the connection as the client takes it. The
/// target stays counted busy until the body is done or dropped.
pub(crate) fn body(head: &Head, conn: Conn, guard: TargetGuard) -> RawBody {
    let state = match head.framing {
        Framing::Empty => State::Done,
        Framing::Length(n) => State::Length(n),
        Framing::Chunked => State::Chunked(NEXT_CHUNK),
        Framing::UntilClose => State::UntilClose,
    };
    let mut body = RawBody {
        conn: Some(conn),
        state,
        keep_alive: head.keep_alive,
        guard,
        trailers: Vec::new(),
    };
    if body.state == State::Done {
        body.finish();
    }
    body
}

/// An answer as hyper's server takes it.
pub(crate) fn response(head: &Head, body: RawBody) -> Response<RawBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.header_map();
    if let Some(reason) = head.reason
        && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(&head.raw[reason.range()])
    {
        resp.extensions_mut().insert(reason);
    }
    resp
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading the chunk-size line: its value, hex digits seen, whether the digits ended (the
    /// rest of the line is extensions), whether its CR was seen, bytes of the line seen.
    Size {
        value: u64,
        digits: u32,
        past: bool,
        cr: bool,
        line: usize,
    },
    /// Within chunk data, this much left.
    Data(u64),
    /// The CRLF after chunk data (`true` once the CR was seen).
    DataEnd(bool),
    /// The trailer section after the last chunk (kept in `RawBody::trailers`): bytes of the
    /// current line.
    Trailers { line: usize },
}

const NEXT_CHUNK: Chunk = Chunk::Size {
    value: 0,
    digits: 0,
    past: false,
    cr: false,
    line: 0,
};

pub(crate) struct RawBody {
    conn: Option<Conn>,
    state: State,
    keep_alive: bool,
    guard: TargetGuard,
    /// The trailer section of a chunked body, passed on (HTTP/2 clients, gRPC-web) once whole.
    trailers: Vec<u8>,
}

impl RawBody {
    /// The answer was read to its end: the connection goes back to its target if it can.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
            // A retired target's instance is about to stop: keep nothing open to it.
            && !self.guard.0.is_retired()
        {
            self.guard.0.raw.push(conn);
        }
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(Box::new(e))))
    }

    /// Reads more from the upstream; `Ok(0)` is its end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let conn = self
            .conn
            .as_mut()
            .expect("a body being read has its connection");
        conn.buf.reserve(READ_CHUNK);
        tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf)
    }

    /// Waits until the buffer holds bytes (`true`) or the upstream ended its stream (`false`).
    fn poll_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if !self.buf().is_empty() {
            return Poll::Ready(Ok(true));
        }
        ready!(self.poll_fill(cx)).map(|n| n > 0).into()
    }

    /// Up to `left` buffered bytes, and how many of `left` remain after them.
    fn take(&mut self, left: u64) -> (Bytes, u64) {
        let buf = self.buf();
        let n = (buf.len() as u64).min(left);
        (buf.split_to(n as usize).freeze(), left - n)
    }

    fn buf(&mut self) -> &mut BytesMut {
        &mut self
            .conn
            .as_mut()
            .expect("a body being read has its connection")
            .buf
    }

    /// Decodes chunked framing until it has data to hand on or needs more bytes.
    fn poll_chunked(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let State::Chunked(chunk) = self.state else {
                unreachable!("only called while chunked")
            };
            match ready!(self.poll_some(cx)) {
                Ok(true) => {}
                Ok(false) => {
                    return self.fail(invalid(
                        "the upstream closed the connection in the middle of a chunked body",
                    ));
                }
                Err(e) => return self.fail(e),
            }
            let next = match chunk {
                Chunk::Data(left) => {
                    let (data, left) = self.take(left);
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataEnd(false)
                    } else {
                        Chunk::Data(left)
                    });
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Chunk::Size {
                    value,
                    digits,
                    past,
                    cr,
                    line,
                } => {
                    let b = self.buf().get_u8();
                    if line >= MAX_CHUNK_LINE {
                        return self
                            .fail(invalid("a chunk-size line from the upstream is too long"));
                    }
                    let line = line + 1;
                    let size = |past, cr| Chunk::Size {
                        value,
                        digits,
                        past,
                        cr,
                        line,
                    };
                    match b {
                        b'\n' if cr && value == 0 => Chunk::Trailers { line: 0 },
                        b'\n' if cr => Chunk::Data(value),
                        _ if cr => return self.fail(invalid("a chunk-size line without CRLF")),
                        b'\r' if digits > 0 => size(true, true),
                        // Extensions (`;name=value`) are skipped.
                        _ if past && b != b'\n' => size(true, false),
                        b';' | b' ' | b'\t' if digits > 0 => size(true, false),
                        _ => match (b as char).to_digit(16) {
                            Some(d) if digits < 16 => Chunk::Size {
                                value: value * 16 + u64::from(d),
                                digits: digits + 1,
                                past,
                                cr,
                                line,
                            },
                            _ => {
                                return self
                                    .fail(invalid("an invalid chunk size from the upstream"));
                            }
                        },
                    }
                }
                Chunk::DataEnd(cr) => {
                    let b = self.buf().get_u8();
                    match (cr, b) {
                        (false, b'\r') => Chunk::DataEnd(true),
                        (true, b'\n') => NEXT_CHUNK,
                        _ => {
                            return self
                                .fail(invalid("chunk data from the upstream ran past its size"));
                        }
                    }
                }
                Chunk::Trailers { line } => {
                    let b = self.buf().get_u8();
                    if self.trailers.len() >= MAX_TRAILERS {
                        return self.fail(invalid("the upstream's trailers are over 64 KiB"));
                    }
                    self.trailers.push(b);
                    match b {
                        // An empty line ends the message.
                        b'\n' if line == 0 => {
                            let trailers = parse_trailers(&self.trailers);
                            self.finish();
                            return Poll::Ready(match trailers {
                                Ok(Some(map)) => Some(Ok(Frame::trailers(map))),
                                Ok(None) => None,
                                Err(e) => Some(Err(Box::new(e))),
                            });
                        }
                        b'\n' => Chunk::Trailers { line: 0 },
                        b'\r' => Chunk::Trailers { line },
                        _ => Chunk::Trailers { line: line + 1 },
                    }
                }
            };
            self.state = State::Chunked(next);
        }
    }
}

/// A trailer section (its lines and the empty line ending it) as headers; `None` when empty.
fn parse_trailers(section: &[u8]) -> io::Result<Option<HeaderMap>> {
    if section.len() <= 2 {
        return Ok(None);
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((_, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for f in fields {
                let name = HeaderName::from_bytes(f.name.as_bytes())
                    .map_err(|_| invalid("an invalid trailer name from the upstream"))?;
                let value = HeaderValue::from_bytes(f.value)
                    .map_err(|_| invalid("an invalid trailer value from the upstream"))?;
                map.append(name, value);
            }
            // Connection-specific fields would break an HTTP/2 stream; framing, routing and
            // the like are not allowed in trailers at all (RFC 9110 §6.5.1).
            crate::proxy::strip_hop_by_hop(&mut map, None);
            for name in [
                header::CONTENT_LENGTH,
                header::HOST,
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
            ] {
                map.remove(name);
            }
            Ok((!map.is_empty()).then_some(map))
        }
        _ => Err(invalid("invalid trailers from the upstream")),
    }
}

impl http_body::Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.state {
            State::Done => Poll::Ready(None),
            State::Length(left) => match ready!(this.poll_some(cx)) {
                Ok(true) => {
                    let (data, left) = this.take(left);
                    if left == 0 {
                        this.finish();
                    } else {
                        this.state = State::Length(left);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Ok(false) => this.fail(invalid(
                    "the upstream closed the connection before the end of its body",
                )),
                Err(e) => this.fail(e),
            },
            State::UntilClose => match ready!(this.poll_some(cx)) {
                Ok(true) => Poll::Ready(Some(Ok(Frame::data(this.buf().split().freeze())))),
                Ok(false) => {
                    this.finish();
                    Poll::Ready(None)
                }
                Err(e) => this.fail(e),
            },
            State::Chunked(_) => this.poll_chunked(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn seen(pairs: &[(&str, &str)]) -> Seen {
        let mut seen = Seen::default();
        for (k, v) in pairs {
            seen.note(k.as_bytes(), v.as_bytes());
        }
        seen
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let ok = StatusCode::OK;
        let f = |m: Method, s: StatusCode, h: &[(&str, &str)]| {
            framing(m == Method::HEAD, Version::HTTP_11, s, &seen(h)).ok()
        };
        assert_eq!(
            f(Method::HEAD, ok, &[("content-length", "5")]),
            Some((Framing::Empty, true))
        );
        assert_eq!(
            f(Method::GET, StatusCode::NOT_MODIFIED, &[]),
            Some((Framing::Empty, true))
        );
        assert_eq!(
            f(Method::GET, ok, &[("content-length", "5")]),
            Some((Framing::Length(5), true))
        );
        assert_eq!(
            f(Method::GET, ok, &[("content-length", "5, 5")]),
            Some((Framing::Length(5), true))
        );
        assert_eq!(
            f(
                Method::GET,
                ok,
                &[("content-length", "5"), ("content-length", "6")]
            ),
            None
        );
        assert_eq!(f(Method::GET, ok, &[("content-length", "-1")]), None);
        assert_eq!(
            f(Method::GET, ok, &[("transfer-encoding", "gzip, chunked")]),
            Some((Framing::Chunked, true))
        );
        assert_eq!(
            f(
                Method::GET,
                ok,
                &[("transfer-encoding", "chunked"), ("content-length", "3")]
            ),
            Some((Framing::Chunked, false)),
            "both: read as chunked, never reused"
        );
        assert_eq!(
            f(Method::GET, ok, &[("transfer-encoding", "gzip")]),
            Some((Framing::UntilClose, false))
        );
        assert_eq!(f(Method::GET, ok, &[]), Some((Framing::UntilClose, false)));
        assert_eq!(
            f(Method::GET, ok, &[("content-length", "+5")]),
            None,
            "digits only"
        );
        assert_eq!(
            framing(
                false,
                Version::HTTP_10,
                ok,
                &seen(&[("transfer-encoding", "chunked")])
            )
            .ok(),
            Some((Framing::Chunked, false)),
            "HTTP/1.0 with Transfer-Encoding: read, then closed"
        );
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        assert!(keeps_alive(Version::HTTP_11, &seen(&[])));
        assert!(!keeps_alive(
            Version::HTTP_11,
            &seen(&[("connection", "Close")])
        ));
        assert!(!keeps_alive(Version::HTTP_10, &seen(&[])));
        assert!(keeps_alive(
            Version::HTTP_10,
            &seen(&[("connection", "keep-alive")])
        ));
    }

    #[test]
    fn request_head_is_written_in_one_piece() {
        let mut out = Vec::new();
        let h = headers(&[("host", "a.test"), ("x-a", "1")]);
        write_head(
            &mut out,
            &Method::GET,
            &PathAndQuery::from_static("/p?q=1"),
            &h,
        );
        assert_eq!(
            out,
            b"GET /p?q=1 HTTP/1.1\r\nhost: a.test\r\nx-a: 1\r\n\r\n"
        );
    }
}
