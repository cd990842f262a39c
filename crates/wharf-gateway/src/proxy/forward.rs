//! Sends a request to one of the site's targets and streams the answer back.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;

use super::client_body::{ClientBody, ClientBodyError};
use super::headers::{add_forwarding, requested_upgrade, strip_hop_by_hop};
use crate::body::{Body, empty};
use crate::config::Timeouts;
use crate::server::ConnInfo;
use crate::site::Site;
use crate::synthetic;
use crate::upstream::{
    ExchangeError, Head, Pool, RawBody, Returning, SendError, Sender, Target, TargetGuard,
    Upgraded, body, exchange, response, send, write_head,
};

/// How the gateway talks to upstreams; the keep-alive connections themselves live on each
/// target (see `upstream::conn`).
pub(crate) struct Client {
    connect_timeout: Duration,
}

pub(crate) fn new_client(connect_timeout: Duration) -> Client {
    Client { connect_timeout }
}

/// What the proxy answered, and which target (if any) it went to, for the access log.
pub(crate) struct Forwarded {
    pub(crate) response: Response<Body>,
    pub(crate) upstream: Option<SocketAddr>,
}

pub(crate) async fn forward(
    client: &Client,
    site: &Site,
    pool: &Pool,
    conn: &ConnInfo,
    host: &str,
    timeouts: &Timeouts,
    mut req: Request<Incoming>,
) -> Forwarded {
    let read_timeout = timeouts.read;
    let upgrade = requested_upgrade(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();

    let path_and_query = upstream_path(site, &parts.uri);
    strip_hop_by_hop(&mut parts.headers, upgrade.as_ref());
    add_forwarding(&mut parts.headers, &conn.client_ip, conn.scheme, host);
    if !parts.headers.contains_key(header::HOST) {
        // HTTP/2 clients send the host as :authority only.
        if let Ok(v) = header::HeaderValue::try_from(host) {
            parts.headers.insert(header::HOST, v);
        }
    }

    // A request without a body can be sent again to another target when the first refuses the
    // connection: the user sees an answer instead of a 502 while a target is going away.
    let retryable = incoming.is_end_stream();
    if retryable && upgrade.is_none() && parts.method.is_idempotent() {
        let write =
            |out: &mut Vec<u8>| write_head(out, &parts.method, &path_and_query, &parts.headers);
        let head = parts.method == Method::HEAD;
        let at = tokio::time::Instant::now() + read_timeout;
        let timer = std::pin::pin!(tokio::time::sleep_until(at));
        let due = Due {
            at,
            timer,
            timeout: read_timeout,
        };
        return match bodiless(client, site, pool, head, &write, due).await {
            Ok(f) => Forwarded {
                response: response(&f.head, f.body).map(|b| b.boxed_unsync()),
                upstream: Some(f.upstream),
            },
            Err(own) => own,
        };
    }
    let mut body = Some(if retryable {
        empty()
    } else {
        // Marked so that a body the client breaks (bad chunking, early close) ends in a 400,
        // not in a 502 blaming the upstream.
        Limited::new(
            ClientBody::new(incoming, timeouts.body_read),
            site.config.max_body as usize,
        )
        .boxed_unsync()
    });
    let mut skip = None;
    let mut tries = pool.targets().len().max(1);
    loop {
        tries -= 1;
        let Some(guard) = pool.pick(skip) else {
            return no_upstream(site, skip);
        };
        let target = guard.0.clone();
        // Origin form (`/path?query`): the connection already knows where it goes.
        let mut up = Request::new(body.take().unwrap_or_else(empty));
        *up.uri_mut() = Uri::from(path_and_query.clone());
        *up.method_mut() = parts.method.clone();
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = if retryable && tries > 0 {
            parts.headers.clone()
        } else {
            std::mem::take(&mut parts.headers)
        };

        let outcome =
            tokio::time::timeout(read_timeout, send(&target, client.connect_timeout, up)).await;
        let (response, sender) = match outcome {
            Ok(Ok(exchange)) => exchange,
            Ok(Err(SendError::Connect(e))) => {
                connect_failed(site, &target, &e);
                if retryable && tries > 0 {
                    skip = Some(target.addr);
                    body = Some(empty());
                    continue;
                }
                return Forwarded {
                    response: synthetic::bad_gateway(),
                    upstream: Some(target.addr),
                };
            }
            Ok(Err(SendError::Request(e))) => {
                if caused_by_body_limit(&e) {
                    return Forwarded {
                        response: synthetic::too_large(),
                        upstream: Some(target.addr),
                    };
                }
                if let Some(body_error) = find::<ClientBodyError>(&e) {
                    tracing::debug!(site = %site.config.name, error = %error_chain(&e), "client sent a broken body");
                    let response = match body_error {
                        ClientBodyError::Stalled(_) => synthetic::request_timeout(),
                        ClientBodyError::Broken(_) => synthetic::bad_request(),
                    };
                    return Forwarded {
                        response,
                        upstream: Some(target.addr),
                    };
                }
                return upstream_failed(site, &target, &error_chain(&e));
            }
            Err(_) => return timed_out(site, &target, read_timeout),
        };
        target.mark_ok();
        return Forwarded {
            response: relay(response, sender, client_upgrade, guard),
            upstream: Some(target.addr),
        };
    }
}

/// An upstream's answer to a request without a body, as read so far.
pub(crate) struct Fetched {
    pub(crate) head: Head,
    pub(crate) body: RawBody,
    pub(crate) upstream: SocketAddr,
}

/// When an upstream's answer head is due, and the timer that says so. The timer is the caller's:
/// a connection that already has one (the HTTP/1 lane's) lends it, so a request sets no timer
/// of its own unless it fires. It is moved only when it would fire after `at`, or fires before.
pub(crate) struct Due<'a> {
    pub(crate) at: tokio::time::Instant,
    pub(crate) timer: Pin<&'a mut tokio::time::Sleep>,
    /// The read timeout `at` came from, for the log.
    pub(crate) timeout: Duration,
}

/// [`forward`] for an idempotent request without a body and no upgrade (most requests): the
/// exchange runs in this task over the gateway's own HTTP/1 connections (`upstream::h1`), and a
/// target that refuses the connection is skipped for the next. `write_head` writes the request
/// head as the upstream gets it; every try's answer head is due by `due.at`. The error is the
/// gateway's own answer (502, 503, 504).
pub(crate) async fn bodiless(
    client: &Client,
    site: &Site,
    pool: &Pool,
    head: bool,
    write_head: &(dyn Fn(&mut Vec<u8>) + Sync),
    mut due: Due<'_>,
) -> Result<Fetched, Forwarded> {
    if due.timer.deadline() > due.at {
        due.timer.as_mut().reset(due.at);
    }
    let mut skip = None;
    let mut tries = pool.targets().len().max(1);
    loop {
        tries -= 1;
        let Some(guard) = pool.pick(skip) else {
            return Err(no_upstream(site, skip));
        };
        let target = &guard.0;
        let sent = exchange(target, client.connect_timeout, head, write_head);
        let outcome = until(sent, &mut due).await;
        match outcome {
            Ok(Ok((head, conn))) => {
                target.mark_ok();
                let upstream = target.addr;
                let body = body(&head, conn, guard);
                return Ok(Fetched {
                    head,
                    body,
                    upstream,
                });
            }
            Ok(Err(ExchangeError::Connect(e))) => {
                connect_failed(site, target, &e);
                if tries > 0 {
                    skip = Some(target.addr);
                    continue;
                }
                return Err(Forwarded {
                    response: synthetic::bad_gateway(),
                    upstream: Some(target.addr),
                });
            }
            Ok(Err(ExchangeError::Upstream(e))) => return Err(upstream_failed(site, target, &e)),
            Err(Late) => return Err(timed_out(site, target, due.timeout)),
        }
    }
}

/// The deadline passed.
struct Late;

/// Runs `work` until it is done or `due.at` passes, whichever is first.
async fn until<F: Future>(work: F, due: &mut Due<'_>) -> Result<F::Output, Late> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return Ok(out),
            () = due.timer.as_mut() => {
                if tokio::time::Instant::now() >= due.at {
                    return Err(Late);
                }
                // An earlier deadline of the timer's owner went by: on to this one.
                due.timer.as_mut().reset(due.at);
            }
        }
    }
}

/// No target is available (all down, or the one left just failed).
fn no_upstream(site: &Site, skip: Option<SocketAddr>) -> Forwarded {
    site.metrics.upstream_errors().inc();
    Forwarded {
        response: synthetic::no_upstream(),
        upstream: skip,
    }
}

/// A target refused the connection: out of rotation until it is back.
fn connect_failed(site: &Site, target: &Target, e: &std::io::Error) {
    target.eject();
    site.metrics.upstream_errors().inc();
    tracing::warn!(site = %site.config.name, upstream = %target.addr, error = %e, "upstream connection failed");
}

/// The exchange broke, or the answer was not HTTP: a 502 blaming the upstream.
fn upstream_failed(site: &Site, target: &Target, e: &dyn std::fmt::Display) -> Forwarded {
    site.metrics.upstream_errors().inc();
    tracing::warn!(site = %site.config.name, upstream = %target.addr, error = %e, "upstream request failed");
    Forwarded {
        response: synthetic::bad_gateway(),
        upstream: Some(target.addr),
    }
}

fn timed_out(site: &Site, target: &Target, read_timeout: Duration) -> Forwarded {
    site.metrics.upstream_errors().inc();
    tracing::warn!(site = %site.config.name, upstream = %target.addr, timeout = ?read_timeout, "upstream did not answer in time");
    Forwarded {
        response: synthetic::gateway_timeout(),
        upstream: Some(target.addr),
    }
}

/// Turns the upstream's answer into the client's: headers cleaned, body streamed as it comes
/// (server-sent events included), the target counted busy until the body ends or the tunnel closes.
fn relay(
    mut resp: Response<Incoming>,
    sender: Sender,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    guard: TargetGuard,
) -> Response<Body> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_side) = client_upgrade
    {
        let proto = resp.headers().get(header::UPGRADE).cloned();
        let upstream_side = hyper::upgrade::on(&mut resp);
        let keep = Upgraded {
            _sender: sender,
            _guard: guard,
        };
        tokio::spawn(tunnel(client_side, upstream_side, keep));
        let (mut parts, _) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, proto.as_ref());
        return Response::from_parts(parts, empty());
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, None);
    Response::from_parts(parts, Returning::new(body, sender, guard).boxed_unsync())
}

async fn tunnel(
    client_side: hyper::upgrade::OnUpgrade,
    upstream_side: hyper::upgrade::OnUpgrade,
    keep: Upgraded,
) {
    match tokio::join!(client_side, upstream_side) {
        (Ok(c), Ok(u)) => {
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
        }
        (c, u) => {
            tracing::debug!(
                client_ok = c.is_ok(),
                upstream_ok = u.is_ok(),
                "upgrade did not complete"
            );
        }
    }
    drop(keep);
}

/// The path and query to send upstream: the client's, minus the site prefix when asked to strip it.
/// Without stripping this is a cheap clone of the client's bytes.
fn upstream_path(site: &Site, uri: &Uri) -> PathAndQuery {
    let original = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    stripped_target(site, uri.path(), uri.query())
        .and_then(|t| PathAndQuery::try_from(t).ok())
        .unwrap_or(original)
}

/// The request target without the site's path prefix, when the site asks to strip it (`None`:
/// the client's target goes as it is).
pub(crate) fn stripped_target(site: &Site, path: &str, query: Option<&str>) -> Option<String> {
    let prefix = site.config.path.as_str();
    let strip =
        matches!(&site.config.backend, crate::config::BackendConfig::Proxy(p) if p.strip_prefix);
    if !strip || prefix == "/" {
        return None;
    }
    let rest = match path.strip_prefix(prefix) {
        Some("") | None => "/",
        Some(rest) => rest,
    };
    Some(match query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    })
}

fn caused_by_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<http_body_util::LengthLimitError>(e)
}

fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    find::<T>(e).is_some()
}

fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}
