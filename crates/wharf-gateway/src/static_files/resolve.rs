//! Maps safe segments to an open file under the root: try_files, containment, precompressed
//! siblings.
//!
//! Containment is enforced by the kernel: files are opened with `openat2(RESOLVE_BENEATH)`
//! relative to the root's descriptor, so no `..` or symlink can lead out, and the opened file is
//! the one checked (no window between check and open). Kernels without `openat2` (before 5.6),
//! and absolute symlinks (which `RESOLVE_BENEATH` refuses outright), fall back to comparing the
//! canonical path with the root. A site that follows links outside its root opens with a plain
//! `openat` instead: the request path has no `..` (see `path`), so only links can lead out.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags, ResolveFlags};

pub(crate) struct Found {
    pub(crate) file: File,
    /// The file opened, relative to the root (an index file, a precompressed sibling).
    pub(crate) opened: String,
    pub(crate) meta: Metadata,
    /// The path the client asked for (relative to the root); its extension gives the MIME type.
    pub(crate) logical: String,
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
    /// Two bits, for cache keys.
    pub(crate) fn bits(self) -> u8 {
        u8::from(self.br) | u8::from(self.gzip) << 1
    }

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

/// A site root: its canonical path and an open descriptor files are resolved beneath.
pub(crate) struct Root {
    /// Unique in the process: a new root (a deploy) never sees an old root's cached files.
    id: u64,
    path: PathBuf,
    dir: OwnedFd,
    beneath: bool,
    /// The site's `follow_links_outside_root`.
    follow_links: bool,
}

impl Root {
    pub(crate) fn open(path: &Path, follow_links: bool) -> io::Result<Root> {
        let path = std::fs::canonicalize(path)?;
        let dir = rustix::fs::open(
            &path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let beneath = match open_beneath(&dir, ".") {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSYS.raw_os_error()) => false,
            Err(e) => return Err(e),
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(Root {
            id,
            path,
            dir,
            beneath,
            follow_links,
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// `stat` of a path under the root. It may follow links anywhere: callers only compare the
    /// result with a file they opened beneath the root.
    pub(crate) fn stat(&self, rel: &str) -> Option<rustix::fs::Stat> {
        rustix::fs::statat(&self.dir, rel, rustix::fs::AtFlags::empty()).ok()
    }

    /// Opens `rel` if it exists inside the root; `None` for missing files and refused escapes.
    fn open_file(&self, rel: &str) -> Option<(File, Metadata)> {
        let file = if self.follow_links {
            File::from(rustix::fs::openat(&self.dir, rel, OPEN_FLAGS, Mode::empty()).ok()?)
        } else if self.beneath {
            match open_beneath(&self.dir, rel) {
                Ok(f) => f,
                // RESOLVE_BENEATH also refuses absolute symlinks, even to files inside the root
                // (deploy tools make those); judge such paths by where they really lead.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                    self.open_canonical(rel)?
                }
                Err(_) => return None,
            }
        } else {
            self.open_canonical(rel)?
        };
        let meta = file.metadata().ok()?;
        Some((file, meta))
    }

    /// The slow path: resolve every link, then require the real path to be inside the root.
    fn open_canonical(&self, rel: &str) -> Option<File> {
        let real = std::fs::canonicalize(self.path.join(rel)).ok()?;
        if !real.starts_with(&self.path) {
            tracing::warn!(path = rel, "refused a path that leads out of the site root");
            return None;
        }
        File::open(real).ok()
    }
}

const OPEN_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY)
    .union(OFlags::NONBLOCK);

fn open_beneath(dir: &OwnedFd, rel: &str) -> io::Result<File> {
    let fd = rustix::fs::openat2(
        dir,
        rel,
        OPEN_FLAGS,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )?;
    Ok(File::from(fd))
}

/// `rel` is a [`SafePath`](super::path::SafePath)'s path; `trailing_slash` whether it ended in `/`.
pub(crate) fn resolve(
    root: &Root,
    index: &[String],
    rel: &str,
    trailing_slash: bool,
    accepts: Accepts,
) -> Resolution {
    let rel = rel.to_string();
    let Some((file, meta)) = root.open_file(&rel) else {
        return Resolution::NotFound;
    };
    let (rel, file, meta) = if meta.is_file() {
        (rel, file, meta)
    } else if meta.is_dir() {
        if !trailing_slash {
            return Resolution::AddSlash;
        }
        drop(file);
        let found = index.iter().find_map(|name| {
            let candidate = if rel == "." {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let (f, m) = root.open_file(&candidate)?;
            m.is_file().then_some((candidate, f, m))
        });
        match found {
            Some(f) => f,
            None => return Resolution::NotFound,
        }
    } else {
        return Resolution::NotFound;
    };
    Resolution::File(Box::new(with_sibling(root, rel, file, meta, accepts)))
}

/// Resolves a file given relative to the root (the custom 404 page).
pub(crate) fn resolve_relative(root: &Root, rel: &str, accepts: Accepts) -> Option<Found> {
    let (file, meta) = root.open_file(rel)?;
    meta.is_file().then_some(())?;
    Some(with_sibling(root, rel.to_string(), file, meta, accepts))
}

/// Picks a precompressed sibling the client accepts, if one exists (inside the root too).
fn with_sibling(root: &Root, rel: String, file: File, meta: Metadata, accepts: Accepts) -> Found {
    for (on, ext, encoding) in [(accepts.br, "br", "br"), (accepts.gzip, "gz", "gzip")] {
        if !on {
            continue;
        }
        let sibling = format!("{rel}.{ext}");
        if let Some((f, m)) = root.open_file(&sibling)
            && m.is_file()
        {
            return Found {
                file: f,
                opened: sibling,
                meta: m,
                logical: rel,
                encoding: Some(encoding),
            };
        }
    }
    Found {
        file,
        opened: rel.clone(),
        meta,
        logical: rel,
        encoding: None,
    }
}
