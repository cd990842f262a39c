//! Validators (ETag, Last-Modified) and the conditional-request check.

use std::fs::Metadata;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE};

pub(crate) struct Validators {
    pub(crate) etag: String,
    pub(crate) modified: Option<SystemTime>,
}

impl Validators {
    pub(crate) fn of(meta: &Metadata) -> Validators {
        let modified = meta.modified().ok();
        let nanos = modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Validators {
            etag: format!("\"{:x}-{:x}\"", nanos, meta.len()),
            modified,
        }
    }

    pub(crate) fn last_modified(&self) -> Option<String> {
        self.modified.map(httpdate::fmt_http_date)
    }

    /// True when the client's cached copy is current (answer 304).
    pub(crate) fn not_modified(&self, headers: &HeaderMap) -> bool {
        if let Some(inm) = headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
            // If-None-Match wins over If-Modified-Since; weak comparison.
            return inm
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == self.etag);
        }
        let since = headers
            .get(IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        match (since, self.modified) {
            // HTTP dates have whole seconds.
            (Some(since), Some(modified)) => seconds(modified) <= seconds(since),
            _ => false,
        }
    }

    /// `If-Range`: a range applies only if the validator still matches (strong ETag or date).
    pub(crate) fn range_applies(&self, headers: &HeaderMap) -> bool {
        let Some(v) = headers.get(IF_RANGE).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        if v.starts_with('"') {
            return v == self.etag;
        }
        match (httpdate::parse_http_date(v).ok(), self.modified) {
            (Some(d), Some(m)) => seconds(m) == seconds(d),
            _ => false,
        }
    }
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
