//! Releases the server sends: `apps/<app>/releases/<n>/`, unpacked from a tar stream into a
//! fresh folder beside it and renamed into place, so a release folder is always complete.
//! Releases are immutable: one that is already there is kept.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::SyncIoBridge;

use crate::{AgentError, Node, Result};

/// The "release" number the server gives an app's folder that is no release (`--dir`): sent
/// at every start, it replaces what is there.
pub(crate) const FOLDER: u32 = 0;

/// Prefix of folders a release is unpacked into before it is renamed into place.
const PARTIAL: &str = ".partial-";

/// App names follow the server's rule (they become folder names here).
pub(crate) fn check_app(app: &str) -> Result<()> {
    wharf_store::validate_app_name(app).map_err(AgentError::BadName)
}

/// Instance names become pid file names: `<app>-<suffix>` in the same alphabet.
pub(crate) fn check_instance(instance: &str) -> Result<()> {
    let ok = !instance.is_empty()
        && instance.len() <= 128
        && !instance.starts_with('-')
        && instance
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AgentError::BadName(format!(
            "`{instance}` is not a valid instance name: lower-case letters, digits and dashes only"
        )))
    }
}

/// Image references go into the engine's API paths: a plain reference (`wharf/blog:3`,
/// `host:5000/x/y@sha256:…`) only.
pub(crate) fn check_image(image: &str) -> Result<()> {
    let ok = !image.is_empty()
        && image.len() <= 512
        && !image.starts_with(['-', '/', '.'])
        && !image.contains("..")
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AgentError::BadName(format!(
            "`{image}` is not a valid image reference"
        )))
    }
}

pub(crate) fn has(node: &Node, app: &str, release: u32) -> Result<bool> {
    check_app(app)?;
    Ok(node.release_dir(app, release).is_dir())
}

/// Unpacks the tar that `stream` carries (up to its end) as release `release` of `app`, and
/// gives the stream back for the answer.
pub(crate) async fn put<S>(
    node: &Node,
    app: &str,
    release: u32,
    sealed: bool,
    stream: S,
) -> (S, Result<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Err(e) = check_app(app) {
        return (stream, Err(e));
    }
    let fin = node.release_dir(app, release);
    let Some(parent) = fin.parent().map(Path::to_path_buf) else {
        unreachable!("a release folder has a parent")
    };
    let partial = parent.join(format!("{PARTIAL}{release}-{}", hex(rand::random::<u32>())));
    let bridge = SyncIoBridge::new(stream);
    let app = app.to_string();
    let job = tokio::task::spawn_blocking(move || {
        let mut bridge = bridge;
        let done = receive(&mut bridge, sealed, &parent, &partial, &fin, &app, release);
        if done.is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        (bridge.into_inner(), done)
    });
    match job.await {
        Ok(r) => r,
        // Only a panic in the tar crate gets here: the stream went with it.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn receive(
    stream: &mut impl Read,
    sealed: bool,
    parent: &Path,
    partial: &Path,
    fin: &Path,
    app: &str,
    release: u32,
) -> Result<()> {
    let unpack = |source| AgentError::Unpack {
        app: app.to_string(),
        release,
        source,
    };
    std::fs::create_dir_all(parent).map_err(unpack)?;
    std::fs::create_dir(partial).map_err(unpack)?;
    let mut tar = Counted {
        inner: stream,
        bytes: 0,
    };
    unpack_into(&mut tar, partial, app, release)?;
    // The sender ends its stream after the archive; whatever follows (the end blocks, the
    // seal) is read, so it sees its end acknowledged rather than a reset.
    let mut rest = Vec::new();
    std::io::Read::by_ref(&mut tar)
        .take(SEALED_TAIL_MAX)
        .read_to_end(&mut rest)
        .map_err(unpack)?;
    std::io::copy(&mut tar, &mut std::io::sink()).map_err(unpack)?;
    if sealed && !seal_holds(&rest, tar.bytes) {
        return Err(unpack(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the archive arrived cut short (the sender or the link stopped before its end); \
             nothing was kept, and the next start sends it again",
        )));
    }
    if release == FOLDER && fin.is_dir() {
        // Not a release but an app's folder (`--dir`), sent again at each start: the new copy
        // replaces the old one, which a running instance may still have open (unlinked).
        let old = partial.with_extension("replaced");
        std::fs::rename(fin, &old).map_err(unpack)?;
        let renamed = std::fs::rename(partial, fin).map_err(unpack);
        let _ = std::fs::remove_dir_all(&old);
        return renamed;
    }
    match std::fs::rename(partial, fin) {
        Ok(()) => Ok(()),
        // Sent twice (two sends raced): releases do not change, the first one stays.
        Err(_) if fin.is_dir() => {
            let _ = std::fs::remove_dir_all(partial);
            Ok(())
        }
        Err(e) => Err(unpack(e)),
    }
}

/// Unpacks every entry inside `dest`, refusing (not skipping) any that would land outside it.
fn unpack_into(tar: &mut impl Read, dest: &Path, app: &str, release: u32) -> Result<()> {
    let unpack = |source| AgentError::Unpack {
        app: app.to_string(),
        release,
        source,
    };
    let escapes = |entry: &Path| AgentError::Escapes {
        app: app.to_string(),
        release,
        entry: entry.display().to_string(),
    };
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_mtime(true);
    for entry in archive.entries().map_err(unpack)? {
        let mut entry = entry.map_err(unpack)?;
        let path: PathBuf = entry.path().map_err(unpack)?.into_owned();
        if !stays_inside(&path) {
            return Err(escapes(&path));
        }
        if entry.header().entry_type().is_hard_link()
            && let Some(target) = entry.link_name().map_err(unpack)?
            && !stays_inside(&target)
        {
            return Err(escapes(&path));
        }
        // `unpack_in` also refuses to write through a symbolic link that leads out.
        if !entry.unpack_in(dest).map_err(unpack)? {
            return Err(escapes(&path));
        }
    }
    Ok(())
}

/// A relative path without `..`.
fn stays_inside(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Removes the folders of releases a killed agent was still receiving.
pub(crate) fn remove_partial(apps: &Path) {
    let Ok(apps) = std::fs::read_dir(apps) else {
        return;
    };
    for app in apps.flatten() {
        let Ok(releases) = std::fs::read_dir(app.path().join("releases")) else {
            continue;
        };
        for r in releases.flatten() {
            if r.file_name().to_string_lossy().starts_with(PARTIAL) {
                let _ = std::fs::remove_dir_all(r.path());
            }
        }
    }
}

fn hex(n: u32) -> String {
    format!("{n:08x}")
}

/// Makes `path` (where the server has the folder) lead to `copy` (the agent's copy of it), so
/// what a build wrote there (a virtualenv's scripts name their interpreter by that path) works
/// here: a symbolic link, made or moved to `copy`, where the path is free or already one of
/// ours. Returns the path to run in, or `None` when something else is there (e.g. the server's
/// own folder, on the server's machine) or it cannot be made: then the copy is used as it is.
pub(crate) fn lead_to(path: &Path, copy: &Path) -> Option<PathBuf> {
    if !path.is_absolute()
        || path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return None;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            if std::fs::read_link(path).ok()? == copy {
                return Some(path.to_path_buf());
            }
            // Only links that lead into an agent's releases are ours to move.
            let target = std::fs::read_link(path).ok()?;
            if !target.components().any(|c| c.as_os_str() == "releases") {
                return None;
            }
        }
        Ok(_) => return None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    let parent = path.parent()?;
    std::fs::create_dir_all(parent).ok()?;
    // Made beside it and renamed over it: the path never leads nowhere.
    let name = path.file_name()?.to_string_lossy();
    let tmp = parent.join(format!(".{name}.wharf-link-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(copy, &tmp).ok()?;
    if std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return None;
    }
    Some(path.to_path_buf())
}

/// The most of a stream read after the archive itself: its second end block and the seal.
const SEALED_TAIL_MAX: u64 = 64 << 10;

/// Whether the stream (`total` bytes in all) ended with the seal and the archive's length.
fn seal_holds(rest: &[u8], total: u64) -> bool {
    let seal = wharf_link::proto::RELEASE_SEAL;
    let Some(tail) = rest.len().checked_sub(seal.len() + 8).map(|at| &rest[at..]) else {
        return false;
    };
    let (magic, length) = tail.split_at(seal.len());
    let length = u64::from_le_bytes(length.try_into().unwrap_or_default());
    magic == seal && length + (seal.len() as u64 + 8) == total
}

/// Counts what is read through it.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["blog", "my-blog-7f3a9c", "a1"] {
            assert!(check_instance(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "A", "-x", "a b", "x.pid"] {
            assert!(check_instance(bad).is_err(), "{bad}");
        }
        for ok in ["wharf/blog:3", "host:5000/wharf/blog:3", "x@sha256:0a"] {
            assert!(check_image(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/../b", "x?y", "a b", "/x", "-x"] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
        assert!(check_app("../etc").is_err());
        assert!(check_app("blog").is_ok());
    }

    #[test]
    fn inside() {
        assert!(stays_inside(Path::new("a/b.txt")));
        assert!(stays_inside(Path::new("./a")));
        assert!(!stays_inside(Path::new("../a")));
        assert!(!stays_inside(Path::new("a/../../b")));
        assert!(!stays_inside(Path::new("/etc/passwd")));
    }
}
