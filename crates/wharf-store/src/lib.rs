//! wharf's desired state in one SQLite file: apps, their domains and env, users, their roles
//! and API tokens, and the operations log. Every write is one transaction; versioned migrations run on open.
#![forbid(unsafe_code)]

mod accounts;
mod apps;
mod backups;
mod error;
mod migrations;
mod model;
mod nodes;
mod operations;
mod releases;
mod tokens;
mod users;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use accounts::{ADMIN_USER, Grant, Role, User};
pub use backups::{
    AlertRecord, Backup, BackupKind, BackupOutcome, BackupState, Database, Schedule,
};
pub use error::{Result, StoreError};
pub use model::*;
pub use nodes::{Node, TokenRefusal, Tunnel};
pub use tokens::{Caller, TokenInfo};
pub use users::APP_UIDS;

/// A handle on the database. Calls are short and synchronous; the mutex serialises writers the
/// way SQLite would anyway.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and migrates it.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Store> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Store> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::run(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied (it rolls back
        // on drop), so the connection is still sound.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn open_test() -> Store {
        Store::in_memory().expect("in-memory database")
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
