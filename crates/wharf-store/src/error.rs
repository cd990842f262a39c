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
