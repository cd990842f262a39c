//! API tokens, stored only as hashes (the caller hashes; the store never sees a token).

use rusqlite::{OptionalExtension, params};

use crate::error::{Result, exists_on_conflict};
use crate::{Store, now};

impl Store {
    pub fn add_token(&self, name: &str, hash: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO tokens (name, hash, created_at) VALUES (?1, ?2, ?3)",
                params![name, hash, now()],
            )
            .map_err(|e| exists_on_conflict(e, "token", name))?;
        Ok(())
    }

    /// The name of the token with this hash, if any.
    pub fn token_name(&self, hash: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT name FROM tokens WHERE hash = ?1", [hash], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn token_count(&self) -> Result<u64> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))?)
    }
}
