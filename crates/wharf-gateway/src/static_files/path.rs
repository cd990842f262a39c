//! Turns a request path into safe, decoded segments relative to the site root.

use percent_encoding::percent_decode_str;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PathError {
    /// Syntax no honest client sends (traversal, encoded separators, NUL): 400.
    Malformed,
    /// A hidden file or folder (`.git`, `.env`): answered as if it did not exist.
    Hidden,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SafePath {
    pub(crate) segments: Vec<String>,
    pub(crate) trailing_slash: bool,
}

impl SafePath {
    /// The path relative to the root, `.` for the root itself.
    pub(crate) fn rel(&self) -> String {
        if self.segments.is_empty() {
            ".".to_string()
        } else {
            self.segments.join("/")
        }
    }
}

/// `raw` is the URI path after the site's prefix (may be empty).
pub(crate) fn sanitize(raw: &str) -> Result<SafePath, PathError> {
    if raw.contains('\\') {
        return Err(PathError::Malformed);
    }
    let mut segments = Vec::new();
    for seg in raw.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| PathError::Malformed)?;
        if decoded == "."
            || decoded == ".."
            || decoded.contains(['/', '\\', '\0'])
            || decoded.chars().any(char::is_control)
        {
            return Err(PathError::Malformed);
        }
        if decoded.starts_with('.') && decoded != ".well-known" {
            return Err(PathError::Hidden);
        }
        segments.push(decoded.into_owned());
    }
    Ok(SafePath {
        segments,
        // Empty is a prefixed site's own path (`/docs`): a folder without its slash.
        trailing_slash: raw.ends_with('/'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("/", vec![], true),
            ("", vec![], false),
            ("/a/b.html", vec!["a", "b.html"], false),
            ("/a//b/", vec!["a", "b"], true),
            ("/caf%C3%A9", vec!["café"], false),
            ("/.well-known/x", vec![".well-known", "x"], false),
            ("/a%20b", vec!["a b"], false),
        ];
        for (raw, segs, slash) in ok {
            let got = sanitize(raw).unwrap();
            assert_eq!(got.segments, segs, "{raw}");
            assert_eq!(got.trailing_slash, slash, "{raw}");
        }
        let malformed = [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/a%2fb",
            "/a%2F..%2Fb",
            "/a\\b",
            "/%5c..",
            "/a%00b",
            "/.",
            "/%2e",
            "/%ff",
        ];
        for raw in malformed {
            assert_eq!(sanitize(raw), Err(PathError::Malformed), "{raw}");
        }
        for raw in ["/.git/config", "/.env", "/a/.htpasswd"] {
            assert_eq!(sanitize(raw), Err(PathError::Hidden), "{raw}");
        }
    }
}
