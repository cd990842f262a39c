//! Sessions: a random id in an HttpOnly, SameSite=Strict cookie maps to the API token the user
//! logged in with (pasted, or made by a password login) and a CSRF token every form and script request must echo. Kept in memory:
//! a server restart logs everyone out, which is the safe direction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::COOKIE;

pub(crate) const COOKIE_NAME: &str = "wharf_session";
/// Sessions end this long after login, whatever happens in between.
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) token: String,
    pub(crate) csrf: String,
    /// The token came from a password login (a session token the server made): logging out
    /// revokes it. A pasted API token is left alone.
    pub(crate) from_password: bool,
    expires: Instant,
}

#[derive(Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// A new session for `token`; returns its id (the cookie value).
    pub(crate) fn create(&self, token: String, from_password: bool) -> String {
        let id = random_hex();
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(
            id.clone(),
            Session {
                token,
                csrf: random_hex(),
                from_password,
                expires: now + LIFETIME,
            },
        );
        id
    }

    /// The live session named by the request's cookie.
    pub(crate) fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&id);
                None
            }
            None => None,
        }
    }

    /// The id the request's cookie names, to ask [`Sessions::live`] about later.
    pub(crate) fn id(headers: &HeaderMap) -> Option<String> {
        cookie(headers)
    }

    /// Whether the session `id` still stands: not logged out, not expired. Asked by what
    /// outlives a request, such as an open terminal.
    pub(crate) fn live(&self, id: &str) -> bool {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|s| s.expires > Instant::now())
    }

    pub(crate) fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.by_id
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
}

/// Compares without stopping at the first difference.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
