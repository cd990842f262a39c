//! Lists in pages, the way GitHub's API does it: `limit` items per page, a keyset cursor
//! (`after` / `before`, the last or first key of the page the client has) and the neighbour
//! pages announced in a `Link` header (RFC 8288) with `rel="next"` / `rel="prev"`, only when
//! there is one. `X-Total-Count` says how many items match the filters. The body stays a plain
//! JSON array, so a client that reads it without paging still gets the first page.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use super::error::{ApiError, ApiResult};

/// The most items one page holds.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// `limit` checked: 1 to [`MAX_LIMIT`], `default` when absent.
pub(crate) fn limit(raw: Option<u32>, default: u32) -> ApiResult<u32> {
    match raw {
        None => Ok(default),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "`limit` {n} is out of range: a page holds 1 to {MAX_LIMIT} items"
        ))),
    }
}

/// A query string that did not parse, said with what to fix.
pub(crate) fn bad_query(e: QueryRejection, allowed: &str) -> ApiError {
    ApiError::bad_request(format!("{}; this list takes {allowed}", e.body_text()))
}

/// Unreserved characters (RFC 3986) stay as they are; everything else is escaped.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `<path?k=v&…>; rel="rel"` with the given parameters (empty values left out).
pub(crate) fn link(path: &str, params: &[(&str, Option<String>)], rel: &str) -> String {
    let query: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
        })
        .collect();
    format!("<{path}?{}>; rel=\"{rel}\"", query.join("&"))
}

/// The page as a JSON array with its `Link` and `X-Total-Count` headers.
pub(crate) fn respond<T: Serialize>(
    items: Vec<T>,
    links: Vec<String>,
    total: Option<u64>,
) -> Response {
    let mut resp = Json(items).into_response();
    let headers = resp.headers_mut();
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(", "))
    {
        headers.insert(header::LINK, v);
    }
    if let Some(n) = total {
        headers.insert("x-total-count", HeaderValue::from(n));
    }
    resp
}
