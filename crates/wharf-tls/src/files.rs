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

/// Keeps a certificate's chain and key in `dir`, with the source that made them (`acme`,
/// `self-signed`, `manual`), so files one source wrote are never taken for another's.
pub fn write_cert_files(
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    source: &str,
) -> Result<(), TlsError> {
    write_private(&dir.join("key.pem"), key_pem.as_bytes())?;
    write_private(&dir.join("cert.pem"), cert_pem.as_bytes())?;
    write_private(&dir.join("source"), source.as_bytes())
}

/// The source recorded with the files in `dir`; `None` for files kept before sources were
/// recorded.
pub(crate) fn recorded_source(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("source")).ok()
}
