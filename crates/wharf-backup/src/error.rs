//! The crate's one error type. Every message names the repository (as [`crate::Location`]'s
//! `Display`, which never shows keys) and what failed; no variant holds a password or a key.

use rustic_core::RusticError;

/// What went wrong with a repository, a location, a template or a schedule.
#[derive(thiserror::Error, Debug)]
pub enum BackupError {
    /// The repository string could not be understood, or the S3 keys are missing.
    #[error("repository location {input:?}: {reason}")]
    InvalidLocation { input: String, reason: String },

    /// The restic-format engine reported a failure.
    #[error("repository {repo}: {action} failed: {detail}")]
    Engine {
        repo: String,
        action: &'static str,
        /// The engine's own one-line account (its `Display` spans many lines).
        detail: String,
        #[source]
        source: Box<RusticError>,
    },

    /// The S3 client could not be built.
    #[error("repository {repo}: setting up the S3 client failed: {detail}")]
    S3Setup { repo: String, detail: String },

    /// A local folder or file could not be read or written.
    #[error("repository {repo}: {action} {path}: {source}")]
    Io {
        repo: String,
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A folder exists at a local repository's place, is not empty and is no repository.
    #[error(
        "repository {repo}: the folder is not empty and holds no restic repository (no `config` file); point to an empty folder or an existing repository"
    )]
    NotARepository { repo: String },

    /// Some of the backed-up data could not be read; no snapshot was kept.
    #[error("repository {repo}: backup of {source_path} failed, no snapshot kept: {problems}")]
    SourceUnreadable {
        repo: String,
        source_path: String,
        problems: String,
    },

    /// A value given to an operation that it cannot use.
    #[error("repository {repo}: {reason}")]
    InvalidInput { repo: String, reason: String },

    /// No snapshot with this id (or unique id prefix).
    #[error("repository {repo}: no snapshot {id}")]
    SnapshotNotFound { repo: String, id: String },

    /// The snapshot holds no file of that name.
    #[error("repository {repo}: snapshot {id} holds no file {filename:?}")]
    FileNotInSnapshot {
        repo: String,
        id: String,
        filename: String,
    },

    /// A restore target that exists and is not empty.
    #[error(
        "repository {repo}: restore target {path} exists and is not empty; restore into a new or empty folder"
    )]
    TargetNotEmpty { repo: String, path: String },

    /// `verify` or `check` found damage.
    #[error("repository {repo}: {what} found damage: {problems}")]
    Damaged {
        repo: String,
        what: String,
        problems: String,
    },

    /// A retention template that could not be understood.
    #[error("retention template {input:?}: {reason}")]
    InvalidTemplate { input: String, reason: String },

    /// A cron expression that could not be understood.
    #[error("cron expression {expr:?}: {reason}")]
    InvalidCron { expr: String, reason: String },
}

impl BackupError {
    pub(crate) fn engine(repo: &str, action: &'static str, source: Box<RusticError>) -> Self {
        BackupError::Engine {
            repo: repo.to_owned(),
            action,
            detail: source.display_log(),
            source,
        }
    }
}
