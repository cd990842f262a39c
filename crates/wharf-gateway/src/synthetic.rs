//! Every response the gateway makes up itself (errors, redirects, the unknown-host page) is built
//! here, so they all look alike and none reflects request input.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, empty, full};

/// A short HTML page for `status` with a fixed, user-facing explanation.
pub(crate) fn page(status: StatusCode, detail: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(html(status, detail)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn html(status: StatusCode, detail: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("");
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\
         <body><h1>{code} {reason}</h1><p>{detail}</p><hr><p>wharf</p></body></html>\n",
        code = status.as_u16()
    )
}

const URI_TOO_LONG: &str = "The address of this request is too long.";

/// The 414 page as bytes on the wire, for a request line too long to reach the handler.
pub(crate) fn raw_uri_too_long() -> &'static [u8] {
    static RAW: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let body = html(StatusCode::URI_TOO_LONG, URI_TOO_LONG);
        format!(
            "HTTP/1.1 414 URI Too Long\r\ncontent-type: text/html; charset=utf-8\r\n\
             cache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    &RAW
}

pub(crate) fn bad_request() -> Response<Body> {
    page(
        StatusCode::BAD_REQUEST,
        "The request could not be understood.",
    )
}

pub(crate) fn uri_too_long() -> Response<Body> {
    page(StatusCode::URI_TOO_LONG, URI_TOO_LONG)
}

pub(crate) fn unknown_host() -> Response<Body> {
    page(
        StatusCode::NOT_FOUND,
        "No site is configured for this host name.",
    )
}

pub(crate) fn not_found() -> Response<Body> {
    page(
        StatusCode::NOT_FOUND,
        "The page you asked for does not exist.",
    )
}

pub(crate) fn forbidden() -> Response<Body> {
    page(
        StatusCode::FORBIDDEN,
        "Your address is not allowed to use this site.",
    )
}

pub(crate) fn too_large() -> Response<Body> {
    page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "The request body is larger than this site accepts.",
    )
}

/// The client stopped sending its request body for longer than `body_timeout`.
pub(crate) fn request_timeout() -> Response<Body> {
    let mut r = page(
        StatusCode::REQUEST_TIMEOUT,
        "The request body stopped arriving before it was complete.",
    );
    // The rest of the body may still come; the connection cannot carry another request.
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

pub(crate) fn bad_gateway() -> Response<Body> {
    page(
        StatusCode::BAD_GATEWAY,
        "The application behind this site did not answer properly.",
    )
}

pub(crate) fn no_upstream() -> Response<Body> {
    let mut r = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The application behind this site is not available right now.",
    );
    // Nothing to serve it (starting, or its machine unreachable): clients and crawlers that
    // honour it come back instead of giving up.
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

pub(crate) fn gateway_timeout() -> Response<Body> {
    page(
        StatusCode::GATEWAY_TIMEOUT,
        "The application behind this site took too long to answer.",
    )
}

pub(crate) fn method_not_allowed() -> Response<Body> {
    let mut r = page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Static files can only be read (GET or HEAD).",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

pub(crate) fn redirect(status: StatusCode, location: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}

/// `301` to the same host and path over HTTPS. `host` is the normalised Host (DNS characters
/// or an IPv6 address) and `path_and_query` came through hyper's URI parser, so neither can
/// inject a header.
pub(crate) fn https_redirect(host: &str, port: u16, path_and_query: &str) -> Response<Body> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let location = if port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{port}{path_and_query}")
    };
    match HeaderValue::try_from(location) {
        Ok(v) => redirect(StatusCode::MOVED_PERMANENTLY, v),
        Err(_) => bad_request(),
    }
}

/// The key authorization of a pending ACME HTTP-01 challenge.
pub(crate) fn acme_challenge(key_authorization: String) -> Response<Body> {
    let mut resp = Response::new(full(key_authorization));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}
