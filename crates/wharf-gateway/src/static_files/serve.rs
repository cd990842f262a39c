//! The static-site handler: runs the pipeline described in the module doc and builds the reply.

use std::io::SeekFrom;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::conditional::Validators;
use super::path::{PathError, sanitize};
use super::resolve::{Accepts, Found, Resolution, Root, resolve, resolve_relative};
use crate::body::{Body, empty, full};
use crate::config::StaticConfig;
use crate::synthetic;

/// Files up to this size are read in one call on the worker; larger ones are streamed.
pub(crate) const INLINE_MAX: u64 = 256 * 1024;

pub(crate) struct StaticSite {
    root: Root,
    index: Vec<String>,
    not_found: Option<String>,
}

impl StaticSite {
    pub(crate) fn new(cfg: &StaticConfig) -> std::io::Result<StaticSite> {
        Ok(StaticSite {
            root: Root::open(&cfg.root)?,
            index: cfg.index.clone(),
            not_found: cfg.not_found.clone(),
        })
    }

    /// `rel_path` is the URI path with the site prefix removed; `full_path` the original path
    /// and query, for redirects.
    pub(crate) async fn serve(
        &self,
        method: &Method,
        rel_path: &str,
        full_path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return synthetic::method_not_allowed();
        }
        let safe = match sanitize(rel_path) {
            Ok(s) => s,
            Err(PathError::Malformed) => return synthetic::bad_request(),
            Err(PathError::Hidden) => return self.not_found(method, headers).await,
        };
        let accepts = Accepts::parse(
            headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        );
        match resolve(&self.root, &self.index, &safe, accepts) {
            Resolution::File(found) => reply(method, headers, *found, StatusCode::OK).await,
            Resolution::AddSlash => {
                let location = match query {
                    Some(q) => format!("{full_path}/?{q}"),
                    None => format!("{full_path}/"),
                };
                match HeaderValue::try_from(location) {
                    Ok(v) => synthetic::redirect(StatusCode::MOVED_PERMANENTLY, v),
                    Err(_) => synthetic::bad_request(),
                }
            }
            Resolution::NotFound => self.not_found(method, headers).await,
        }
    }

    async fn not_found(&self, method: &Method, headers: &HeaderMap) -> Response<Body> {
        let accepts = Accepts::parse(
            headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        );
        let page = self
            .not_found
            .as_deref()
            .and_then(|rel| resolve_relative(&self.root, rel, accepts));
        match page {
            // The custom page is sent whole, without conditionals or ranges.
            Some(found) => reply(method, &HeaderMap::new(), found, StatusCode::NOT_FOUND).await,
            None => synthetic::not_found(),
        }
    }
}

async fn reply(
    method: &Method,
    req: &HeaderMap,
    found: Found,
    status: StatusCode,
) -> Response<Body> {
    let validators = Validators::of(&found.meta);
    let len = found.meta.len();
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    let mime = mime_guess::from_path(&found.logical).first_or_octet_stream();
    let content_type = match (mime.type_(), mime.get_param(mime_guess::mime::CHARSET)) {
        (mime_guess::mime::TEXT, None) => format!("{mime}; charset=utf-8"),
        _ if mime.subtype() == mime_guess::mime::JAVASCRIPT
            || mime.subtype() == mime_guess::mime::JSON =>
        {
            format!("{mime}; charset=utf-8")
        }
        _ => mime.to_string(),
    };
    insert(h, header::CONTENT_TYPE, &content_type);
    insert(h, header::ETAG, &validators.etag);
    if let Some(lm) = validators.last_modified() {
        insert(h, header::LAST_MODIFIED, &lm);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(enc) = found.encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
    }

    if status == StatusCode::OK && validators.not_modified(req) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return resp;
    }

    let mut start = 0;
    let mut count = len;
    *resp.status_mut() = status;
    if status == StatusCode::OK
        && validators.range_applies(req)
        && let Some(range) = req.get(header::RANGE).and_then(|v| v.to_str().ok())
    {
        match http_range_header::parse_range_header(range).map(|r| r.validate(len)) {
            Ok(Ok(ranges)) if ranges.len() == 1 => {
                let r = &ranges[0];
                start = *r.start();
                count = r.end() - r.start() + 1;
                *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                let cr = format!("bytes {}-{}/{}", r.start(), r.end(), len);
                insert(resp.headers_mut(), header::CONTENT_RANGE, &cr);
            }
            // Several ranges: answering with the whole file is allowed and simpler.
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                insert(
                    r.headers_mut(),
                    header::CONTENT_RANGE,
                    &format!("bytes */{len}"),
                );
                return r;
            }
            // A Range header we cannot parse is ignored, as RFC 9110 allows.
            Err(_) => {}
        }
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD || count == 0 {
        return resp;
    }
    let body = if count <= INLINE_MAX {
        match read_at(&found.file, start, count) {
            Ok(bytes) => full(bytes),
            Err(e) => return read_failed(&found, e),
        }
    } else {
        match stream(found.file.try_clone(), start, count).await {
            Ok(body) => body,
            Err(e) => return read_failed(&found, e),
        }
    };
    *resp.body_mut() = body;
    resp
}

fn read_failed(found: &Found, e: std::io::Error) -> Response<Body> {
    tracing::error!(path = %found.logical, error = %e, "cannot read a static file");
    synthetic::page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The file could not be read.",
    )
}

fn read_at(file: &std::fs::File, start: u64, count: u64) -> std::io::Result<Bytes> {
    let mut buf = vec![0; count as usize];
    file.read_exact_at(&mut buf, start)?;
    Ok(Bytes::from(buf))
}

async fn stream(
    file: std::io::Result<std::fs::File>,
    start: u64,
    count: u64,
) -> std::io::Result<Body> {
    let mut file = tokio::fs::File::from_std(file?);
    file.seek(SeekFrom::Start(start)).await?;
    let reader = tokio_util::io::ReaderStream::with_capacity(file.take(count), 64 * 1024);
    let frames = futures_util::StreamExt::map(reader, |r| {
        r.map(http_body::Frame::data)
            .map_err(|e| Box::new(e) as crate::body::BoxError)
    });
    Ok(StreamBody::new(frames).boxed_unsync())
}

fn insert(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}
