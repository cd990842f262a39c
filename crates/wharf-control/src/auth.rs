//! API tokens: random, shown once, stored only as SHA-256 hashes. On first start the server
//! writes an admin token to `<data>/admin.token` (mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wharf_store::Store;

use crate::error::ControlError;
use crate::paths::DataDir;

pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("wharf_{}", hex::encode(bytes))
}

/// Creates the admin token when the store has none; returns the file it was written to.
pub(crate) fn ensure_admin_token(
    store: &Store,
    data: &DataDir,
) -> Result<Option<PathBuf>, ControlError> {
    if store.token_count()? > 0 {
        return Ok(None);
    }
    let token = new_token();
    let path = data.admin_token();
    // Written before the hash is stored: a crash in between leaves a file but no token, and the
    // next start simply makes a new one.
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| ControlError::Io {
            context: format!("cannot write {}", path.display()),
            source,
        })?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|source| ControlError::Io {
            context: format!("cannot write {}", path.display()),
            source,
        })?;
    store.add_token("admin", &hash(&token))?;
    Ok(Some(path))
}

/// The credentials of an `Authorization` header if its scheme is `scheme`. The scheme is
/// case-insensitive (RFC 9110, 11.1): `bearer` and `BEARER` are `Bearer`.
fn credentials<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.trim().split_once([' ', '\t'])?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn known(store: &Store, token: &str) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    store.token_name(&hash(token)).ok().flatten()
}

/// The token's name if the `Authorization` header is `Bearer <token>` with a known token: the
/// API's one way in.
pub(crate) fn bearer(store: &Store, header: Option<&str>) -> Option<String> {
    known(store, credentials(header?, "Bearer")?)
}

/// The token's name if the `Authorization` header is HTTP Basic with a known token as the
/// password: what git sends, so accepted for `git push` only.
pub(crate) fn basic(store: &Store, header: Option<&str>) -> Option<String> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials(header?, "Basic")?)
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    known(
        store,
        pair.split_once(':')
            .map_or(pair.as_str(), |(_, password)| password),
    )
}
