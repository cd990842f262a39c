//! Turns a request path into safe, decoded segments relative to the site root.
//!
//! Dot segments are removed as nginx and Caddy do (RFC 3986 §5.2.4): `.` goes, `..` takes the
//! segment before it away, and a `..` with nothing left to take would leave the root: refused.
//! Segments are decoded first, so `%2e%2e` is a `..` too; what reaches the file system never
//! holds one, whatever the encoding.

use percent_encoding::percent_decode_str;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PathError {
    /// Syntax no honest client sends (a `..` above the root, encoded separators, NUL): 400.
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
    let mut segments: Vec<String> = Vec::new();
    // `/a/.` and `/a/b/..` name the folder `a/`, as `/a/` does.
    let mut ends_in_dot_segment = false;
    for seg in raw.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| PathError::Malformed)?;
        if decoded.contains(['/', '\\', '\0']) || decoded.chars().any(char::is_control) {
            return Err(PathError::Malformed);
        }
        ends_in_dot_segment = true;
        match &*decoded {
            "." => {}
            ".." => {
                segments.pop().ok_or(PathError::Malformed)?;
            }
            _ => {
                ends_in_dot_segment = false;
                segments.push(decoded.into_owned());
            }
        }
    }
    // Judged on what is left: `/.git/../a` is `/a`, as the file system would see it.
    if segments
        .iter()
        .any(|s| s.starts_with('.') && s != ".well-known")
    {
        return Err(PathError::Hidden);
    }
    Ok(SafePath {
        segments,
        // Empty is a prefixed site's own path (`/docs`): a folder without its slash.
        trailing_slash: raw.ends_with('/') || ends_in_dot_segment,
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
            ("/library/./os.html", vec!["library", "os.html"], false),
            ("/a/x/../b.html", vec!["a", "b.html"], false),
            ("/a/%2e/x/%2E%2e/b.html", vec!["a", "b.html"], false),
            ("/a/.", vec!["a"], true),
            ("/a/b/..", vec!["a"], true),
            ("/.", vec![], true),
            ("/%2e", vec![], true),
            ("/a/..", vec![], true),
            ("/.git/../a", vec!["a"], false),
            // Decoded once: a literal `%2e` file name, not a dot segment.
            ("/%252e%252e/a", vec!["%2e%2e", "a"], false),
        ];
        for (raw, segs, slash) in ok {
            let got = sanitize(raw).unwrap();
            assert_eq!(got.segments, segs, "{raw}");
            assert_eq!(got.trailing_slash, slash, "{raw}");
        }
        let malformed = [
            "/../etc/passwd",
            "/..",
            "/a/../../x",
            "/a/./../..",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/a/%2e%2e/%2e%2e/x",
            "/a%2fb",
            "/a%2F..%2Fb",
            "/a\\b",
            "/%5c..",
            "/a%00b",
            "/%ff",
        ];
        for raw in malformed {
            assert_eq!(sanitize(raw), Err(PathError::Malformed), "{raw}");
        }
        for raw in [
            "/.git/config",
            "/.env",
            "/a/.htpasswd",
            "/a/../.env",
            "/x/./.git/",
        ] {
            assert_eq!(sanitize(raw), Err(PathError::Hidden), "{raw}");
        }
    }

    /// Every path of up to 6 pieces from dots, encoded dots, names and slashes: what comes out
    /// never holds a segment that could climb, and is what removing dot segments by hand gives.
    #[test]
    fn no_combination_of_dots_climbs() {
        let pieces = ["/", ".", "%2e", "%2E", "a", ".."];
        let mut paths = vec![String::new()];
        let mut last = paths.clone();
        for _ in 0..6 {
            last = last
                .iter()
                .flat_map(|p| pieces.iter().map(move |piece| format!("{p}{piece}")))
                .collect();
            paths.extend(last.iter().cloned());
        }
        for raw in paths.iter().map(|p| format!("/{p}")) {
            let decoded = raw.replace("%2e", ".").replace("%2E", ".");
            let mut want: Option<Vec<&str>> = Some(Vec::new());
            for seg in decoded.split('/').filter(|s| !s.is_empty()) {
                want = want.and_then(|mut w| match seg {
                    "." => Some(w),
                    ".." => w.pop().map(|_| w),
                    s => {
                        w.push(s);
                        Some(w)
                    }
                });
            }
            match sanitize(&raw) {
                Ok(safe) => {
                    assert!(
                        safe.segments
                            .iter()
                            .all(|s| !s.is_empty() && s != "." && s != ".."),
                        "{raw}: {safe:?}"
                    );
                    assert_eq!(
                        Some(safe.segments.iter().map(String::as_str).collect()),
                        want,
                        "{raw}"
                    );
                }
                Err(PathError::Malformed) => assert_eq!(want, None, "{raw} was refused"),
                // Names such as `...` are hidden files.
                Err(PathError::Hidden) => assert!(
                    want.is_some_and(|w| w.iter().any(|s| s.starts_with('.'))),
                    "{raw}"
                ),
            }
        }
    }
}
