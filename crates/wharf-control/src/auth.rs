//! API tokens: random, shown once, stored only as SHA-256 hashes, each a user's. On first
//! start the server writes a token of the built-in `admin` user to `<data>/admin.token`
//! (mode 0600). Passwords are kept as Argon2id hashes.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wharf_store::{ADMIN_USER, Caller, Role, Store, StoreError};

use crate::error::ControlError;
use crate::paths::DataDir;

pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("wharf_{}", hex::encode(bytes))
}

/// Creates the admin token when the store has none (a first start, or every token was
/// revoked: the way back in for whoever can read the data folder); returns the file it was
/// written to.
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
    match store.add_user(ADMIN_USER, None) {
        Ok(()) | Err(StoreError::Exists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    store.grant(ADMIN_USER, Role::Admin, None)?;
    store.add_token(ADMIN_USER, "admin", "api", &hash(&token), None)?;
    Ok(Some(path))
}

/// The credentials of an `Authorization` header if its scheme is `scheme`. The scheme is
/// case-insensitive (RFC 9110, 11.1): `bearer` and `BEARER` are `Bearer`.
fn credentials<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.trim().split_once([' ', '\t'])?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Who the token speaks for; looked up on every request (no cache), so a revoked token or a
/// changed role counts at once.
fn known(store: &Store, token: &str) -> Option<Caller> {
    if token.is_empty() {
        return None;
    }
    store.caller(&hash(token)).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot look a token up");
        None
    })
}

/// The bearer token of an `Authorization` header, if it has one.
pub(crate) fn bearer_token(header: Option<&str>) -> Option<&str> {
    credentials(header?, "Bearer")
}

/// The caller if the `Authorization` header is `Bearer <token>` with a known token: the API's
/// one way in.
pub(crate) fn bearer(store: &Store, header: Option<&str>) -> Option<Caller> {
    known(store, bearer_token(header)?)
}

/// The caller if the `Authorization` header is HTTP Basic with a known token as the password:
/// what git sends, so accepted for `git push` only.
pub(crate) fn basic(store: &Store, header: Option<&str>) -> Option<Caller> {
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

/// Failed logins by user name, to slow guessing down: from the fifth failure in a row, each
/// next try waits 1 s, doubling up to 15 minutes; a success clears it. Names, not addresses:
/// every dashboard login reaches the API from the dashboard.
pub(crate) static LOGINS: std::sync::LazyLock<LoginThrottle> =
    std::sync::LazyLock::new(LoginThrottle::default);

#[derive(Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, std::time::Instant)>>,
}

const FREE_FAILURES: u32 = 5;
const LONGEST_WAIT: u64 = 15 * 60;
/// Names kept at most; beyond it, those whose wait is over go first.
const NAMES_KEPT: usize = 10_000;

impl LoginThrottle {
    fn delay(failures: u32) -> u64 {
        match failures.checked_sub(FREE_FAILURES) {
            None => 0,
            Some(extra) => 1u64
                .checked_shl(extra)
                .unwrap_or(u64::MAX)
                .min(LONGEST_WAIT),
        }
    }

    /// Seconds `user` must still wait before a login is tried (0: now).
    pub(crate) fn wait(&self, user: &str) -> u64 {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some((n, last)) = failures.get(user) else {
            return 0;
        };
        let due = std::time::Duration::from_secs(Self::delay(*n));
        let elapsed = last.elapsed();
        if elapsed >= due {
            0
        } else {
            (due - elapsed).as_secs_f64().ceil() as u64
        }
    }

    pub(crate) fn failed(&self, user: &str) {
        // No user has a longer name (so none could log in with it), and a key per request
        // body of up to a MiB would let a guesser fill memory.
        if user.len() > 63 {
            return;
        }
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= NAMES_KEPT && !map.contains_key(user) {
            map.retain(|_, (n, last)| {
                last.elapsed() < std::time::Duration::from_secs(Self::delay(*n))
            });
            if map.len() >= NAMES_KEPT {
                map.clear();
            }
        }
        let entry = map
            .entry(user.to_string())
            .or_insert((0, std::time::Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = std::time::Instant::now();
    }

    pub(crate) fn succeeded(&self, user: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }
}

/// At most this many password hashes are worked out at once: each takes ~19 MiB and tens of
/// milliseconds by design, so a burst of logins queues instead of exhausting the machine.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A salted Argon2id hash (PHC string) of `password`, worked out off the async threads.
pub(crate) async fn hash_password(password: String) -> Result<String, String> {
    let _turn = HASHING.acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| format!("cannot hash the password: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Whether `password` matches `stored`. Without a stored hash (no such user, or no password)
/// a hash is still checked, against a fixed one, so the answer takes as long either way and
/// does not tell which user names exist.
pub(crate) async fn verify_password(stored: Option<String>, password: String) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let Ok(_turn) = HASHING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let argon = argon2::Argon2::default();
        let real = stored.is_some();
        let stored = stored.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    argon
                        .hash_password(new_token().as_bytes())
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                })
                .clone()
        });
        let ok = argon
            .verify_password(password.as_bytes(), stored.as_str())
            .is_ok();
        ok && real
    })
    .await
    .unwrap_or(false)
}
