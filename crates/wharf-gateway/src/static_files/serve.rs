//! The static-site handler: runs the pipeline described in the module doc and builds the reply.

use std::io::SeekFrom;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::cache;
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
            root: Root::open(&cfg.root, cfg.follow_links_outside_root)?,
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
        let rel = safe.rel();
        let lookup = cache::Lookup {
            root: self.root.id(),
            flags: accepts.bits() | u8::from(safe.trailing_slash) << 2,
            path: &rel,
        };
        if let Some(hit) = cache::get(&lookup, |file| self.root.stat(file)) {
            let body = Content::Bytes(hit.body.clone());
            return reply(method, headers, &hit.prepared, body, StatusCode::OK).await;
        }
        match resolve(&self.root, &self.index, &rel, safe.trailing_slash, accepts) {
            Resolution::File(found) => {
                let prepared = Prepared::of(&found);
                let body = if found.meta.len() <= cache::MAX_FILE {
                    match read_at(&found.file, 0, found.meta.len()) {
                        Ok(bytes) => {
                            let version = cache::Version::of(&found.meta);
                            let entry = cache::put(&lookup, found.opened, version, prepared, bytes);
                            let body = Content::Bytes(entry.body.clone());
                            return reply(method, headers, &entry.prepared, body, StatusCode::OK)
                                .await;
                        }
                        Err(e) => return read_failed(&found.logical, e),
                    }
                } else {
                    Content::File(found.file)
                };
                reply(method, headers, &prepared, body, StatusCode::OK).await
            }
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
            Some(found) => {
                let prepared = Prepared::of(&found);
                let body = Content::File(found.file);
                reply(
                    method,
                    &HeaderMap::new(),
                    &prepared,
                    body,
                    StatusCode::NOT_FOUND,
                )
                .await
            }
            None => synthetic::not_found(),
        }
    }
}

/// A file's reply headers, built once per version of the file.
pub(crate) struct Prepared {
    /// The path the client asked for, for messages.
    logical: String,
    validators: Validators,
    len: u64,
    content_type: HeaderValue,
    etag: HeaderValue,
    last_modified: Option<HeaderValue>,
    encoding: Option<&'static str>,
}

impl Prepared {
    fn of(found: &Found) -> Prepared {
        let validators = Validators::of(&found.meta);
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
        let value = |s: &str| HeaderValue::from_str(s).ok();
        Prepared {
            len: found.meta.len(),
            content_type: value(&content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            etag: value(&validators.etag).unwrap_or(HeaderValue::from_static("\"0\"")),
            last_modified: validators.last_modified().as_deref().and_then(value),
            encoding: found.encoding,
            logical: found.logical.clone(),
            validators,
        }
    }
}

/// Where the bytes come from: memory (small, cached files) or the open file.
enum Content {
    Bytes(Bytes),
    File(std::fs::File),
}

async fn reply(
    method: &Method,
    req: &HeaderMap,
    file_info: &Prepared,
    content: Content,
    status: StatusCode,
) -> Response<Body> {
    let file = file_info;
    let validators = &file.validators;
    let len = file.len;
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, file.content_type.clone());
    h.insert(header::ETAG, file.etag.clone());
    if let Some(lm) = &file.last_modified {
        h.insert(header::LAST_MODIFIED, lm.clone());
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(enc) = file.encoding {
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
    let body =
        match content {
            // A file shorter than its stat said (changed while read) is served as read.
            Content::Bytes(bytes) => full(bytes.slice(
                (start as usize).min(bytes.len())..((start + count) as usize).min(bytes.len()),
            )),
            Content::File(file) if count <= INLINE_MAX => match read_at(&file, start, count) {
                Ok(bytes) => full(bytes),
                Err(e) => return read_failed(&file_info.logical, e),
            },
            Content::File(file) => match stream(file, start, count).await {
                Ok(body) => body,
                Err(e) => return read_failed(&file_info.logical, e),
            },
        };
    *resp.body_mut() = body;
    resp
}

fn read_failed(path: &str, e: std::io::Error) -> Response<Body> {
    tracing::error!(path, error = %e, "cannot read a static file");
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

async fn stream(file: std::fs::File, start: u64, count: u64) -> std::io::Result<Body> {
    let mut file = tokio::fs::File::from_std(file);
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
