//! API tokens, stored only as hashes (the caller hashes; the store never sees a token). Each
//! belongs to a user; a session token is one a password login made. Revoking deletes the row,
//! and every request looks its token up again, so a revoked token is refused at once.

use rusqlite::{OptionalExtension, params};

use crate::accounts::{Grant, grants};
use crate::error::{Result, StoreError, exists_on_conflict};
use crate::{Store, now};

/// A token as listed: everything but its value (which nobody keeps) and its hash.
#[derive(Clone, Debug)]
pub struct TokenInfo {
    pub name: String,
    pub user: String,
    /// `api` (made by hand) or `session` (a password login).
    pub kind: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// Who a request's token speaks for, read afresh on every request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    pub token: String,
    pub session: bool,
    /// When the token stops working, if it does.
    pub expires_at: Option<i64>,
    pub grants: Vec<Grant>,
}

/// How often a token's last use is written at most: a write per request would be the most
/// frequent write of all, for a value read rarely.
const LAST_USED_EVERY: i64 = 60;

impl Store {
    /// Adds a token of `user`; `kind` is `api` or `session`.
    pub fn add_token(
        &self,
        user: &str,
        name: &str,
        kind: &str,
        hash: &str,
        expires_at: Option<i64>,
    ) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO tokens (user, name, kind, hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![user, name, kind, hash, now(), expires_at],
            )
            .map_err(|e| match exists_on_conflict(e, "token", name) {
                StoreError::Sqlite(e) if is_foreign_key(&e) => StoreError::NotFound {
                    what: "user",
                    name: user.to_string(),
                },
                other => other,
            })?;
        Ok(())
    }

    /// The caller a token hash stands for, unless it is unknown or expired; notes its use.
    pub fn caller(&self, hash: &str) -> Result<Option<Caller>> {
        let conn = self.conn();
        let t = now();
        type Row = (i64, String, String, String, Option<i64>, Option<i64>);
        let found: Option<Row> = conn
            .query_row(
                "SELECT id, user, name, kind, last_used_at, expires_at FROM tokens
                 WHERE hash = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                params![hash, t],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, user, token, kind, last, expires_at)) = found else {
            return Ok(None);
        };
        if last.is_none_or(|l| t - l >= LAST_USED_EVERY) {
            conn.execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
                params![id, t],
            )?;
        }
        let grants = grants(&conn, &user)?;
        Ok(Some(Caller {
            user,
            token,
            session: kind == "session",
            expires_at,
            grants,
        }))
    }

    /// Tokens of `user`, or of everyone, by user then name (expired ones are dropped first).
    pub fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            [now()],
        )?;
        let mut q = conn.prepare_cached(
            "SELECT name, user, kind, created_at, last_used_at, expires_at FROM tokens
             WHERE ?1 IS NULL OR user = ?1 ORDER BY user, name",
        )?;
        Ok(q.query_map([user], |r| {
            Ok(TokenInfo {
                name: r.get(0)?,
                user: r.get(1)?,
                kind: r.get(2)?,
                created_at: r.get(3)?,
                last_used_at: r.get(4)?,
                expires_at: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes `user`'s token `name`.
    pub fn remove_token(&self, user: &str, name: &str) -> Result<()> {
        let n = self.conn().execute(
            "DELETE FROM tokens WHERE user = ?1 AND name = ?2",
            params![user, name],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "token",
                name: format!("{name} of {user}"),
            });
        }
        Ok(())
    }

    /// Revokes the token with this hash (a logout).
    pub fn remove_token_by_hash(&self, hash: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM tokens WHERE hash = ?1", [hash])?;
        Ok(())
    }

    /// Tokens that still let someone in (expired ones are dropped first, so a server whose
    /// last tokens expired writes a new admin token at start).
    pub fn token_count(&self) -> Result<u64> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            [now()],
        )?;
        Ok(conn.query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))?)
    }
}

fn is_foreign_key(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{ADMIN_USER, Role};

    #[test]
    fn tokens_belong_to_users_expire_and_go_at_once() {
        let s = Store::open_test();
        s.add_user("ann", None).unwrap();
        crate::accounts::tests::blog(&s);
        s.grant("ann", Role::Deployer, Some("blog")).unwrap();
        s.add_token("ann", "laptop", "api", "h1", None).unwrap();
        assert!(matches!(
            s.add_token("ann", "laptop", "api", "h2", None),
            Err(StoreError::Exists { .. })
        ));
        assert!(matches!(
            s.add_token("bob", "x", "api", "h3", None),
            Err(StoreError::NotFound { what: "user", .. })
        ));
        s.add_token("ann", "old", "session", "h4", Some(now() - 1))
            .unwrap();
        let c = s.caller("h1").unwrap().expect("known");
        assert_eq!((c.user.as_str(), c.token.as_str()), ("ann", "laptop"));
        assert_eq!(c.grants[0].app.as_deref(), Some("blog"));
        assert!(s.caller("h4").unwrap().is_none(), "expired");
        let listed = s.tokens(Some("ann")).unwrap();
        assert_eq!(listed.len(), 1, "the expired one is gone");
        assert!(listed[0].last_used_at.is_some());
        s.remove_token("ann", "laptop").unwrap();
        assert!(s.caller("h1").unwrap().is_none(), "revoked at once");
        s.add_token("ann", "t", "api", "h5", None).unwrap();
        s.grant("ann", Role::Admin, None).unwrap();
        s.remove_user("ann").unwrap();
        assert!(
            s.caller("h5").unwrap().is_none(),
            "a removed user's tokens go"
        );
        assert!(s.tokens(Some(ADMIN_USER)).unwrap().is_empty());
    }

    #[test]
    fn expired_tokens_do_not_count_as_a_way_in() {
        let s = Store::open_test();
        s.add_user("ann", None).unwrap();
        s.add_token("ann", "old", "session", "h1", Some(now() - 1))
            .unwrap();
        assert_eq!(
            s.token_count().unwrap(),
            0,
            "the next start writes admin.token"
        );
        s.add_token("ann", "live", "api", "h2", None).unwrap();
        assert_eq!(s.token_count().unwrap(), 1);
    }

    #[test]
    fn an_existing_admin_token_becomes_the_admin_users_and_old_operations_keep() {
        // A database as the last release left it: schema 12 with the admin token and an
        // operation.
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for step in &crate::migrations::STEPS[..12] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 12).unwrap();
        conn.execute(
            "INSERT INTO tokens (name, hash, created_at) VALUES ('admin', 'adminhash', 5)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO operations (app, kind, status, started_at) VALUES ('blog', 'deploy', 'succeeded', 6)",
            [],
        )
        .unwrap();
        crate::migrations::run(&mut conn).unwrap();
        let s = Store {
            conn: std::sync::Mutex::new(conn),
        };
        let c = s.caller("adminhash").unwrap().expect("the old token works");
        assert_eq!(c.user, ADMIN_USER);
        assert_eq!(
            c.grants,
            vec![Grant {
                role: Role::Admin,
                app: None
            }]
        );
        let t = &s.tokens(None).unwrap()[0];
        assert_eq!(
            (t.name.as_str(), t.kind.as_str(), t.created_at),
            ("admin", "api", 5)
        );
        let op = s.operation(1).unwrap();
        assert_eq!(op.actor, "", "nobody is named for what came before");
    }
}
