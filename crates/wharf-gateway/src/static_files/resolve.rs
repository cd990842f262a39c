//! Maps safe segments to a file under the root: try_files, containment, precompressed siblings.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use super::path::SafePath;

pub(crate) struct Found {
    /// The file whose bytes are sent (maybe a `.br`/`.gz` sibling).
    pub(crate) path: PathBuf,
    pub(crate) meta: Metadata,
    /// The file the client asked for; its extension gives the MIME type.
    pub(crate) logical: PathBuf,
    pub(crate) encoding: Option<&'static str>,
}

pub(crate) enum Resolution {
    File(Box<Found>),
    /// A folder asked for without its trailing slash: redirect so relative links work.
    AddSlash,
    NotFound,
}

/// Which precompressed encodings the client takes, in our order of preference.
#[derive(Clone, Copy, Default)]
pub(crate) struct Accepts {
    pub(crate) br: bool,
    pub(crate) gzip: bool,
}

impl Accepts {
    pub(crate) fn parse(header: Option<&str>) -> Accepts {
        let mut a = Accepts::default();
        for item in header.unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            if refused {
                continue;
            }
            match coding {
                "br" => a.br = true,
                "gzip" => a.gzip = true,
                _ => {}
            }
        }
        a
    }
}

pub(crate) fn resolve(
    root: &Path,
    index: &[String],
    safe: &SafePath,
    accepts: Accepts,
) -> Resolution {
    let mut path = root.to_path_buf();
    path.extend(&safe.segments);
    let Ok(meta) = std::fs::metadata(&path) else {
        return Resolution::NotFound;
    };
    let (file, meta) = if meta.is_file() {
        (path, meta)
    } else if meta.is_dir() {
        if !safe.trailing_slash {
            return Resolution::AddSlash;
        }
        let found = index.iter().find_map(|name| {
            let candidate = path.join(name);
            let m = std::fs::metadata(&candidate).ok()?;
            m.is_file().then_some((candidate, m))
        });
        match found {
            Some(f) => f,
            None => return Resolution::NotFound,
        }
    } else {
        return Resolution::NotFound;
    };
    match contained(root, file, meta, accepts) {
        Some(found) => Resolution::File(Box::new(found)),
        None => Resolution::NotFound,
    }
}

/// Resolves a file given relative to the root (the custom 404 page).
pub(crate) fn resolve_relative(root: &Path, rel: &str, accepts: Accepts) -> Option<Found> {
    let path = root.join(rel);
    let meta = std::fs::metadata(&path).ok()?;
    meta.is_file().then_some(())?;
    contained(root, path, meta, accepts)
}

/// Checks that the real path (symlinks resolved) stays under the root, then picks a
/// precompressed sibling the client accepts, if one exists and is contained too.
fn contained(root: &Path, file: PathBuf, meta: Metadata, accepts: Accepts) -> Option<Found> {
    if !inside(root, &file) {
        tracing::warn!(path = %file.display(), "refused a file whose real path leaves the site root");
        return None;
    }
    for (on, ext, encoding) in [(accepts.br, "br", "br"), (accepts.gzip, "gz", "gzip")] {
        if !on {
            continue;
        }
        let mut sibling = file.clone().into_os_string();
        sibling.push(".");
        sibling.push(ext);
        let sibling = PathBuf::from(sibling);
        if let Ok(m) = std::fs::metadata(&sibling)
            && m.is_file()
            && inside(root, &sibling)
        {
            return Some(Found {
                path: sibling,
                meta: m,
                logical: file,
                encoding: Some(encoding),
            });
        }
    }
    Some(Found {
        path: file.clone(),
        meta,
        logical: file,
        encoding: None,
    })
}

fn inside(root: &Path, file: &Path) -> bool {
    std::fs::canonicalize(file).is_ok_and(|real| real.starts_with(root))
}
