//! The request pipeline, top to bottom:
//! 1. admin listener → admin endpoints; on plain HTTP, pending ACME HTTP-01 challenges;
//! 2. requests that could be read two ways (two Host headers) → 400, a request target over
//!    8 KiB → 414;
//!    host: URI authority (HTTP/2) or `Host`, normalised; missing or malformed → 400;
//! 3. site: the listener's own site, or the route table by (host, path); none → 404 page or
//!    closed connection, per `unknown_host`;
//! 4. plain HTTP to a site with a certificate for the host → 301 to HTTPS; allowlist → 403;
//! 5. declared body size over the site's limit → 413 (streamed bodies are cut at the limit too);
//! 6. static files or proxy;
//! 7. HSTS on HTTPS answers of sites that ask for it; metrics and access log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Request, Response, header};
use hyper::body::Incoming;

use super::listener::{ConnInfo, Role};
use crate::access_log::Entry;
use crate::body::Body;
use crate::config::UnknownHost;
use crate::gateway::Shared;
use crate::routing::{normalize_host, prefix_matches};
use crate::site::{Backend, Site};
use crate::{proxy, synthetic};

pub(super) const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Returned to hyper to drop the connection without an answer.
#[derive(Debug)]
pub(crate) struct Close;

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed for an unknown host")
    }
}

impl std::error::Error for Close {}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Close> {
    if conn.role == Role::Admin {
        return Ok(super::admin::handle(&shared, &req));
    }
    if conn.scheme == "http"
        && let Some(token) = req.uri().path().strip_prefix(ACME_CHALLENGE_PREFIX)
        && let Some(answer) = shared.certs.http_challenge(token)
    {
        return Ok(synthetic::acme_challenge(answer));
    }
    if let Some(refused) = ambiguous(&req) {
        return Ok(refused);
    }
    let start = Instant::now();
    let table = shared.table.load_full();

    let raw_host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    });
    let host = match raw_host.map(normalize_host) {
        Some(Some(h)) => h,
        Some(None) => return Ok(synthetic::bad_request()),
        // A site's own port serves HTTP/1.0 clients that send no Host.
        None if matches!(conn.role, Role::Site(_)) => String::new(),
        None => return Ok(synthetic::bad_request()),
    };

    let site = match &conn.role {
        Role::Site(name) => table
            .site(name)
            .filter(|s| prefix_matches(&s.config.path, req.uri().path())),
        _ => table.lookup(&host, req.uri().path()),
    };
    let Some(site) = site.cloned() else {
        shared.metrics.unknown_host.inc();
        return match table.unknown_host {
            UnknownHost::Close => Err(Close),
            UnknownHost::NotFound => Ok(synthetic::unknown_host()),
        };
    };

    let logged =
        wants_log(&shared, &site).then(|| (req.method().clone(), req.uri().path().to_owned()));

    let https_port = shared.https_port.load(Ordering::Relaxed);
    let redirect = conn.scheme == "http"
        && https_port != 0
        && site.config.https.redirect
        && shared.certs.covers(&host);
    let (mut response, upstream) = if redirect {
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        (synthetic::https_redirect(&host, https_port, pq), None)
    } else if !allowed(&site.config.allow, &conn) {
        (synthetic::forbidden(), None)
    } else if declared_length(&req).is_some_and(|n| n > site.config.max_body) {
        (synthetic::too_large(), None)
    } else {
        match &site.backend {
            Backend::Static(files) => {
                let path = req.uri().path();
                let rel = if site.config.path == "/" {
                    path
                } else {
                    &path[site.config.path.len().min(path.len())..]
                };
                let resp = files
                    .serve(req.method(), rel, path, req.uri().query(), req.headers())
                    .await;
                (resp, None)
            }
            Backend::Proxy(pool) => {
                let f = proxy::forward(
                    &shared.client,
                    &site,
                    pool,
                    &conn,
                    &host,
                    &table.timeouts,
                    req,
                )
                .await;
                (f.response, f.upstream)
            }
        }
    };

    if conn.scheme == "https"
        && let Some(v) = &site.hsts
    {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    let status = response.status().as_u16();
    let logged = logged.as_ref().map(|(m, p)| (m.as_str(), p.as_str()));
    account(
        &shared,
        &site,
        &conn,
        &host,
        logged,
        status,
        start.elapsed(),
        upstream,
    );
    Ok(response)
}

/// Whether a request to `site` gets an access-log line (its method and path are then kept).
pub(super) fn wants_log(shared: &Shared, site: &Site) -> bool {
    site.config.access_log && shared.access_log.load().enabled()
}

/// Counts an answered request in the site's metrics and writes its access-log line, if
/// `logged` holds its method and path.
#[allow(clippy::too_many_arguments)]
pub(super) fn account(
    shared: &Shared,
    site: &Site,
    conn: &ConnInfo,
    host: &str,
    logged: Option<(&str, &str)>,
    status: u16,
    elapsed: Duration,
    upstream: Option<SocketAddr>,
) {
    let elapsed = elapsed.as_secs_f64();
    site.metrics.record(status, elapsed);
    if let Some((method, path)) = logged {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        shared.access_log.load().write(&Entry {
            ts,
            site: &site.config.name,
            client: conn.remote.ip().to_canonical(),
            method,
            host,
            path,
            status,
            duration_ms: elapsed * 1000.0,
            upstream: upstream.map(|u| u.to_string()),
        });
    }
}

pub(super) fn allowed(allow: &[ipnet::IpNet], conn: &ConnInfo) -> bool {
    if allow.is_empty() {
        return true;
    }
    let ip = conn.remote.ip().to_canonical();
    allow.iter().any(|net| net.contains(&ip))
}

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Longest request target accepted, as nginx's default header buffers allow.
pub(super) const MAX_URI: usize = 8 * 1024;

/// Requests not to pass on: an upstream could read their host differently from us, or they are
/// longer than any real page address.
fn ambiguous<B>(req: &Request<B>) -> Option<Response<Body>> {
    let h = req.headers();
    // (Content-Length next to chunked needs no check here: hyper reads such a body as chunked
    // and drops the Content-Length, and the proxy frames what it sends on itself.)
    if h.get_all(header::HOST).iter().nth(1).is_some() {
        return Some(synthetic::bad_request());
    }
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    (target > MAX_URI).then(synthetic::uri_too_long)
}
