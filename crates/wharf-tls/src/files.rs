//! Private files (keys, account credentials): written whole to a temporary file with mode 0600,
//! then renamed, so a crash never leaves half a key and no other user can read one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::TlsError;

/// Writes `bytes` to `path` with mode 0600, whole or not at all.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The files of a certificate in its folder, written and replaced together.
const CERT_FILES: [&str; 3] = ["key.pem", "cert.pem", "source"];
/// Present while a complete new set (`<file>.new`) is being moved into place.
const COMMIT: &str = "commit";

/// Keeps a certificate's chain and key in `dir`, with the source that made them (`acme`,
/// `self-signed`, `manual`), so files one source wrote are never taken for another's.
///
/// The three are replaced as one: a crash leaves the old set or the new, never a new key with
/// the old chain. The new set is written beside the old (`*.new`), then a `commit` marker, then
/// each is renamed into place; [`settle_cert_files`] finishes or discards an interrupted one.
pub fn write_cert_files(
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    source: &str,
) -> Result<(), TlsError> {
    settle_cert_files(dir)?;
    let contents = [key_pem, cert_pem, source];
    for (name, text) in CERT_FILES.iter().zip(contents) {
        write_private(&dir.join(format!("{name}.new")), text.as_bytes())?;
    }
    sync_dir(dir)?;
    write_private(&dir.join(COMMIT), b"")?;
    sync_dir(dir)?;
    settle_cert_files(dir)
}

/// Completes a replacement that got as far as its `commit` marker, or drops the new files of
/// one that did not (the old set is then whole).
pub(crate) fn settle_cert_files(dir: &Path) -> Result<(), TlsError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    let commit = dir.join(COMMIT);
    let committed = commit.exists();
    let mut touched = false;
    for name in CERT_FILES {
        let new = dir.join(format!("{name}.new"));
        if !new.exists() {
            continue;
        }
        touched = true;
        if committed {
            std::fs::rename(&new, dir.join(name)).map_err(err(&new))?;
        } else {
            std::fs::remove_file(&new).map_err(err(&new))?;
        }
    }
    if committed {
        sync_dir(dir)?;
        std::fs::remove_file(&commit).map_err(err(&commit))?;
        touched = true;
    }
    if touched {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// The source recorded with the files in `dir`; `None` for files kept before sources were
/// recorded.
pub(crate) fn recorded_source(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("source")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(dir: &Path) -> [String; 3] {
        CERT_FILES.map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
    }

    #[test]
    fn a_certificate_set_is_replaced_whole_or_not_at_all() {
        let dir = std::env::temp_dir().join(format!("wharf-tls-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_cert_files(&dir, "cert 1", "key 1", "manual").unwrap();
        assert_eq!(set(&dir), ["key 1", "cert 1", "manual"]);

        // Cut off while the new set was written: the old one stands.
        write_private(&dir.join("key.pem.new"), b"key 2").unwrap();
        settle_cert_files(&dir).unwrap();
        assert_eq!(set(&dir), ["key 1", "cert 1", "manual"]);

        // Cut off after the commit, one file moved: the rest follow.
        for (n, t) in CERT_FILES.iter().zip(["key 3", "cert 3", "acme"]) {
            write_private(&dir.join(format!("{n}.new")), t.as_bytes()).unwrap();
        }
        write_private(&dir.join(COMMIT), b"").unwrap();
        std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).unwrap();
        settle_cert_files(&dir).unwrap();
        assert_eq!(set(&dir), ["key 3", "cert 3", "acme"]);

        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["cert.pem", "key.pem", "source"], "nothing else left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
