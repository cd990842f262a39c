//! The store's error type.

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} \"{name}\" does not exist")]
    NotFound { what: &'static str, name: String },
    #[error("{what} \"{name}\" already exists")]
    Exists { what: &'static str, name: String },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database was written by a newer wharf (schema {found}, this build knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error(
        "no free user id left for app \"{app}\": every uid from {first} to {last} is in use \
         (purge deleted apps to free theirs)"
    )]
    NoFreeUid { app: String, first: u32, last: u32 },
    #[error("that would leave no admin: give another user the admin role first")]
    LastAdmin,
    /// A node that apps are placed on, or tunnels use, stays.
    #[error("node \"{node}\" is in use (apps: {apps:?}; tunnels: {tunnels:?})")]
    NodeInUse {
        node: String,
        apps: Vec<String>,
        tunnels: Vec<String>,
    },
}

impl StoreError {
    /// What the operator can do when the database itself could not be written (rather than
    /// refusing the request): the change was rolled back, nothing half-written.
    pub fn storage_trouble(&self) -> Option<&'static str> {
        let StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) = self else {
            return None;
        };
        Some(match f.code {
            rusqlite::ErrorCode::DiskFull => {
                "the disk holding the server's data folder is full: free some space and try again \
                 (nothing was changed)"
            }
            rusqlite::ErrorCode::ReadOnly => {
                "the server's database cannot be written (a read-only disk, or its file's \
                 owner or mode changed): fix that and try again (nothing was changed)"
            }
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                "the server's database is busy: try again (nothing was changed)"
            }
            rusqlite::ErrorCode::SystemIoFailure => {
                "the server could not read or write its database (an I/O error from the disk): \
                 check the disk, then try again"
            }
            _ => return None,
        })
    }
}

/// Maps a UNIQUE/PRIMARY KEY violation to `Exists`, leaving other errors as they are.
pub(crate) fn exists_on_conflict(e: rusqlite::Error, what: &'static str, name: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) =>
        {
            StoreError::Exists {
                what,
                name: name.to_string(),
            }
        }
        _ => StoreError::Sqlite(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_as_such() {
        let full = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        assert!(full.storage_trouble().unwrap().contains("is full"));
        let other = StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows);
        assert_eq!(other.storage_trouble(), None);
    }
}
