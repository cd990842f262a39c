//! wharf's backups: restic-format repositories, retention, schedules and freshness.
//!
//! A [`Repository`] is a restic repository (format version 2, zstd-compressed, encrypted,
//! deduplicated) in a local folder or an S3 bucket ([`Location`]), written and read with
//! rustic's engine; the restic tool alone can list, check and restore it with the same
//! password. Every operation blocks: async callers use `spawn_blocking`.
//!
//! - A backup either saves a complete snapshot or fails: a file that cannot be read, or a store
//!   that goes away, fails it and keeps no snapshot ([`Repository::backup_path`],
//!   [`Repository::backup_stream`]). A run that is killed leaves only unreferenced packs, which
//!   `check` tolerates and the next `forget` removes.
//! - [`Repository::verify`] reads back one snapshot's data and checks every hash; only a
//!   verified snapshot counts for [`retention`] and [`freshness`].
//! - [`Repository::forget`] prunes at once (as restic does), holding this process's lock on the
//!   repository, which shared operations (backups, copies) also take: do not run a restic or
//!   rustic prune on the same repository while wharf writes to it.
//! - [`retention::expired`] decides what to forget per schedule, sanoid-style;
//!   [`schedule::Cron`] says when to run; [`freshness::level`] says whether the newest good
//!   backup is recent enough.
//!
//! Errors ([`BackupError`]) name the repository by its restic string and never hold a
//! password or an S3 key.
#![forbid(unsafe_code)]

mod error;
pub mod freshness;
mod location;
mod repo;
pub mod retention;
mod s3;
pub mod schedule;
mod source;

pub use error::BackupError;
pub use location::{Location, S3Location};
pub use repo::{Repository, Snapshot};
