//! A restic-format repository: open or create it, back up a folder or a stream, list, verify,
//! check, forget and prune, restore, dump, copy. Everything blocks; run it off the async
//! executor (`spawn_blocking`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rustic_backend::local::LocalBackend;
use rustic_core::repofile::{MasterKey, SnapshotFile, StringList};
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, KeyOptions, LimitOption,
    LocalDestination, LocalSource, LsOptions, OpenStatus, PruneOptions, RepositoryBackends,
    RepositoryOptions, RestoreOptions, SnapshotOptions, WriteBackend,
};

use crate::s3::S3Backend;
use crate::source::{Problems, StreamSource, Tracked};
use crate::{BackupError, Location};

type Engine = rustic_core::Repository<OpenStatus>;

/// An open repository (see the crate doc for what the operations promise).
#[derive(Clone)]
pub struct Repository {
    /// The backends, to open per operation (the engine's open state cannot be shared).
    unopened: rustic_core::Repository<()>,
    /// The master key found with the password: reopening needs no key derivation.
    key: MasterKey,
    /// The restic repository string: every error names it.
    name: String,
    /// Backups, copies, reads and checks share it; `forget` (which prunes) takes it alone, so
    /// that a prune never deletes packs a running backup is about to reference or a restore is
    /// reading. One per location in this process (other processes are not held back).
    lock: Arc<RwLock<()>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.name)
            .finish_non_exhaustive()
    }
}

/// One backup in a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The full hex id (what `restic snapshots --json` calls `id`).
    pub id: String,
    /// The snapshot's time, unix seconds (the caller's clock at backup time).
    pub time: i64,
    pub tags: Vec<String>,
    /// What was backed up: the folder's absolute path, or the stream's file name.
    pub paths: Vec<String>,
    /// Bytes this snapshot added to the repository as stored (compressed, new data only).
    pub bytes_added: u64,
    /// Size of what was backed up.
    pub total_bytes: u64,
    /// Number of files backed up.
    pub files: u64,
    /// For a copy made by [`Repository::copy_to`]: the id of the snapshot it was copied from.
    pub original: Option<String>,
}

impl Snapshot {
    fn from_file(snap: &SnapshotFile) -> Snapshot {
        let summary = snap.summary.as_ref();
        Snapshot {
            id: snap.id.to_hex().to_string(),
            time: snap.time.timestamp().as_second(),
            tags: snap.tags.iter().cloned().collect(),
            paths: snap.paths.iter().cloned().collect(),
            bytes_added: summary.map_or(0, |s| s.data_added_packed),
            total_bytes: summary.map_or(0, |s| s.total_bytes_processed),
            files: summary.map_or(0, |s| s.total_files_processed),
            // The engine fills `original` with the snapshot's own id when the file has none.
            original: snap
                .original
                .filter(|id| *id != snap.id)
                .map(|id| id.to_hex().to_string()),
        }
    }
}

fn lock_for(name: &str) -> Arc<RwLock<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<RwLock<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    locks.entry(name.to_owned()).or_default().clone()
}

impl Repository {
    /// Opens the repository at `location`, creating it when there is none yet (repository
    /// format version 2 with zstd compression, readable by restic 0.14 and later). A local
    /// folder that exists, is not empty and holds no repository is refused.
    pub fn open_or_init(location: &Location, password: &str) -> Result<Repository, BackupError> {
        let name = location.to_string();
        if password.is_empty() {
            return Err(BackupError::InvalidInput {
                repo: name,
                reason: "the repository password is empty".into(),
            });
        }
        let backend: Arc<dyn WriteBackend> = match location {
            Location::Local(path) => {
                refuse_foreign_folder(path, &name)?;
                let path_str = path.to_str().ok_or_else(|| BackupError::InvalidInput {
                    repo: name.clone(),
                    reason: "the repository path is not valid UTF-8".into(),
                })?;
                Arc::new(
                    LocalBackend::new(path_str, [])
                        .map_err(|e| BackupError::engine(&name, "opening the folder", e))?,
                )
            }
            Location::S3(s3) => Arc::new(S3Backend::new(s3, &name)?),
        };
        let backends = RepositoryBackends::new(backend, None);
        // No local cache: a server keeps no per-user cache folder, and every read is checked.
        let opts = RepositoryOptions::default().no_cache(true);
        let repo = rustic_core::Repository::new(&opts, &backends)
            .map_err(|e| BackupError::engine(&name, "opening", e))?;
        let credentials = Credentials::password(password);
        let exists = repo
            .config_id()
            .map_err(|e| BackupError::engine(&name, "reading the repository config", e))?
            .is_some();
        let engine = if exists {
            repo.clone()
                .open(&credentials)
                .map_err(|e| BackupError::engine(&name, "opening (is the password right?)", e))?
        } else {
            repo.clone()
                .init(
                    &credentials,
                    &KeyOptions::default(),
                    &ConfigOptions::default(),
                )
                .map_err(|e| BackupError::engine(&name, "creating the repository", e))?
        };
        Ok(Repository {
            unopened: repo,
            key: engine.key(),
            lock: lock_for(&name),
            name,
        })
    }

    /// The repository string (as [`Location`]'s `Display`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn engine(&self) -> Result<Engine, BackupError> {
        self.unopened
            .clone()
            .open(&Credentials::Masterkey(self.key.clone()))
            .map_err(self.engine_err("opening"))
    }

    fn engine_err(
        &self,
        action: &'static str,
    ) -> impl FnOnce(Box<rustic_core::RusticError>) -> BackupError + '_ {
        move |e| BackupError::engine(&self.name, action, e)
    }

    fn new_snapshot(&self, tags: &[String], time: i64) -> Result<SnapshotFile, BackupError> {
        let time = jiff::Timestamp::from_second(time)
            .map_err(|e| BackupError::InvalidInput {
                repo: self.name.clone(),
                reason: format!("snapshot time {time}: {e}"),
            })?
            .to_zoned(jiff::tz::TimeZone::UTC);
        let opts = SnapshotOptions::default().time(time);
        let mut snap =
            SnapshotFile::from_options(&opts).map_err(self.engine_err("preparing the snapshot"))?;
        let mut list = StringList::default();
        for tag in tags {
            list.add(tag.clone());
        }
        snap.tags = list;
        Ok(snap)
    }

    /// Drops a snapshot that was saved although some of its data could not be read.
    fn discard_incomplete(
        &self,
        snap: &SnapshotFile,
        source_path: String,
        problems: String,
    ) -> BackupError {
        let removed = self.engine().and_then(|engine| {
            engine
                .delete_snapshots(&[snap.id])
                .map_err(self.engine_err("removing the incomplete snapshot"))
        });
        if let Err(e) = removed {
            return BackupError::SourceUnreadable {
                repo: self.name.clone(),
                source_path,
                problems: format!(
                    "{problems} (and removing the incomplete snapshot {} failed: {e})",
                    &*snap.id.to_hex(),
                ),
            };
        }
        BackupError::SourceUnreadable {
            repo: self.name.clone(),
            source_path,
            problems,
        }
    }

    /// Backs up the folder `source` (all of it, following no mount boundaries' rules: what a
    /// plain walk sees) as one snapshot at `time` (unix seconds) with `tags`. Any file that
    /// cannot be read fails the backup and no snapshot is kept. The snapshot records the
    /// folder's absolute path, like restic's; [`Repository::restore`] puts its content back
    /// without that path.
    pub fn backup_path(
        &self,
        source: &Path,
        tags: &[String],
        time: i64,
    ) -> Result<Snapshot, BackupError> {
        let source = source.canonicalize().map_err(|e| BackupError::Io {
            repo: self.name.clone(),
            action: "reading the backup source",
            path: source.display().to_string(),
            source: e,
        })?;
        if !source.is_dir() {
            return Err(BackupError::InvalidInput {
                repo: self.name.clone(),
                reason: format!("backup source {} is not a folder", source.display()),
            });
        }
        let _shared = self.lock.read().unwrap_or_else(|e| e.into_inner());
        let snap = self.new_snapshot(tags, time)?;
        let indexed = self
            .engine()?
            .to_indexed_ids()
            .map_err(self.engine_err("reading the index"))?;
        let opts = BackupOptions::default();
        let problems = Problems::default();
        let local = LocalSource::new(
            opts.ignore_save_opts,
            &opts.excludes,
            &opts.ignore_filter_opts,
            std::slice::from_ref(&source),
        )
        .map_err(self.engine_err("reading the backup source"))?;
        let src = Tracked::new(local, problems.clone());
        let snap = indexed
            .archive(&opts, &src, snap, std::slice::from_ref(&source))
            .map_err(self.engine_err("backup"))?;
        if let Some(problems) = problems.summary() {
            return Err(self.discard_incomplete(&snap, source.display().to_string(), problems));
        }
        Ok(Snapshot::from_file(&snap))
    }

    /// Backs up the file at `file` as one file named `filename`, with its size recorded, so
    /// that `restic restore` as well as `restic dump` gives it back (database dumps, spooled
    /// first so a failed dump never reaches the repository).
    pub fn backup_file(
        &self,
        file: &Path,
        filename: &str,
        tags: &[String],
        time: i64,
    ) -> Result<Snapshot, BackupError> {
        let io_err = |e: io::Error| BackupError::InvalidInput {
            repo: self.name.clone(),
            reason: format!("cannot read {}: {e}", file.display()),
        };
        let mut f = std::fs::File::open(file).map_err(io_err)?;
        let size = f.metadata().map_err(io_err)?.len();
        self.archive_stream(&mut f, filename, tags, time, Some(size))
    }

    /// Backs up what `reader` yields as one file named `filename` (like restic's `backup
    /// --stdin --stdin-filename`). A read error fails the backup and no snapshot is kept. The
    /// size is not known up front, so `restic restore` writes the file empty (`restic dump`
    /// reads it whole): prefer [`Repository::backup_file`] for what users restore with restic.
    pub fn backup_stream(
        &self,
        reader: &mut dyn Read,
        filename: &str,
        tags: &[String],
        time: i64,
    ) -> Result<Snapshot, BackupError> {
        self.archive_stream(reader, filename, tags, time, None)
    }

    fn archive_stream(
        &self,
        reader: &mut dyn Read,
        filename: &str,
        tags: &[String],
        time: i64,
        size: Option<u64>,
    ) -> Result<Snapshot, BackupError> {
        if filename.is_empty() || filename.contains('/') || filename == "." || filename == ".." {
            return Err(BackupError::InvalidInput {
                repo: self.name.clone(),
                reason: format!("stream file name {filename:?} must be a plain file name"),
            });
        }
        let _shared = self.lock.read().unwrap_or_else(|e| e.into_inner());
        let snap = self.new_snapshot(tags, time)?;
        let mtime = snap.time.timestamp();
        let indexed = self
            .engine()?
            .to_indexed_ids()
            .map_err(self.engine_err("reading the index"))?;
        let mut opts = BackupOptions::default();
        // A dump has no meaningful parent (restic's --stdin uses none either).
        opts.parent_opts.force = true;
        let path = PathBuf::from(filename);
        let (stream, tx) = StreamSource::new(path.clone(), mtime, size);
        let problems = Problems::default();
        let src = Tracked::new(stream, problems.clone());
        let result = std::thread::scope(|scope| {
            let archive = scope.spawn(move || {
                // Owned here so that the receiving end goes away with this thread, which
                // unblocks the feeding loop below if the backup stops early.
                let src = src;
                indexed.archive(&opts, &src, snap, std::slice::from_ref(&path))
            });
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.send(Ok(buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
            drop(tx);
            archive.join()
        });
        let snap = match result {
            Ok(r) => r.map_err(self.engine_err("backup"))?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Some(problems) = problems.summary() {
            return Err(self.discard_incomplete(&snap, filename.to_owned(), problems));
        }
        Ok(Snapshot::from_file(&snap))
    }

    fn all_snapshots(&self) -> Result<Vec<SnapshotFile>, BackupError> {
        let mut snaps = self
            .engine()?
            .get_all_snapshots()
            .map_err(self.engine_err("listing snapshots"))?;
        snaps.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(snaps)
    }

    /// Finds a snapshot by its full id or a unique prefix of it.
    fn find(&self, id: &str) -> Result<SnapshotFile, BackupError> {
        let not_found = || BackupError::SnapshotNotFound {
            repo: self.name.clone(),
            id: id.to_owned(),
        };
        let id_lower = id.to_ascii_lowercase();
        if id_lower.is_empty() || !id_lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let mut found = self
            .all_snapshots()?
            .into_iter()
            .filter(|s| s.id.to_hex().starts_with(&id_lower));
        match (found.next(), found.next()) {
            (Some(snap), None) => Ok(snap),
            (Some(_), Some(_)) => Err(BackupError::InvalidInput {
                repo: self.name.clone(),
                reason: format!("snapshot id prefix {id} is ambiguous; give more of the id"),
            }),
            (None, _) => Err(not_found()),
        }
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, BackupError> {
        Ok(self
            .all_snapshots()?
            .iter()
            .map(Snapshot::from_file)
            .collect())
    }

    /// Reads back the snapshot's trees and every pack holding its data, checking every hash
    /// (restic's `check --read-data`, limited to what this snapshot uses), after the structural
    /// check of [`Repository::check`].
    pub fn verify(&self, id: &str) -> Result<(), BackupError> {
        let _shared = self.lock.read().unwrap_or_else(|e| e.into_inner());
        let snap = self.find(id)?;
        let results = self
            .engine()?
            .check_with_trees(CheckOptions::default().read_data(true), vec![snap.tree])
            .map_err(self.engine_err("verifying"))?;
        self.damage(
            results,
            format!("verifying snapshot {}", &*snap.id.to_hex()),
        )
    }

    /// Structural check of the whole repository, like `restic check`: index files readable,
    /// every indexed pack present with the right size, every snapshot's trees readable and
    /// every blob they use indexed. Pack contents are not read (see [`Repository::verify`]).
    pub fn check(&self) -> Result<(), BackupError> {
        let _shared = self.lock.read().unwrap_or_else(|e| e.into_inner());
        let results = self
            .engine()?
            .check(CheckOptions::default())
            .map_err(self.engine_err("checking"))?;
        self.damage(results, "checking the repository".into())
    }

    fn damage(&self, results: rustic_core::CheckResults, what: String) -> Result<(), BackupError> {
        if results.is_ok().is_ok() {
            return Ok(());
        }
        // The engine's level type is not nameable from outside; its Debug form is its name.
        let errors: Vec<String> = results
            .0
            .iter()
            .filter(|(level, _)| format!("{level:?}") == "Error")
            .map(|(_, e)| e.to_string())
            .collect();
        let mut problems = errors
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if errors.len() > 5 {
            problems.push_str(&format!("; and {} more", errors.len() - 5));
        }
        Err(BackupError::Damaged {
            repo: self.name.clone(),
            what,
            problems,
        })
    }

    /// Removes these snapshots, then prunes: every pack that no remaining snapshot uses is
    /// deleted and partly used packs are repacked, so no unused data stays behind. All ids
    /// are looked up first: an unknown id removes nothing.
    pub fn forget(&self, ids: &[String]) -> Result<(), BackupError> {
        let _alone = self.lock.write().unwrap_or_else(|e| e.into_inner());
        let snaps = ids
            .iter()
            .map(|id| self.find(id))
            .collect::<Result<Vec<_>, _>>()?;
        let snap_ids: Vec<_> = snaps.iter().map(|s| s.id).collect();
        let engine = self.engine()?;
        engine
            .delete_snapshots(&snap_ids)
            .map_err(self.engine_err("removing snapshots"))?;
        let mut opts = PruneOptions::default();
        opts.max_unused = LimitOption::Percentage(0);
        opts.max_repack = LimitOption::Unlimited;
        // We hold the only writer's lock in this process; packs go at once, as with restic.
        opts.instant_delete = true;
        opts.keep_delete = jiff::Span::new();
        let plan = engine
            .prune_plan(&opts)
            .map_err(self.engine_err("planning the prune"))?;
        engine
            .prune(&opts, plan)
            .map_err(self.engine_err("pruning"))
    }

    /// Restores the snapshot into `dest` (created; if it exists it must be empty): the backed
    /// up folder's content lands directly in `dest` (for a stream, the one file does).
    pub fn restore(&self, id: &str, dest: &Path) -> Result<(), BackupError> {
        let io_err = |action: &'static str, e: io::Error| BackupError::Io {
            repo: self.name.clone(),
            action,
            path: dest.display().to_string(),
            source: e,
        };
        match std::fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(BackupError::TargetNotEmpty {
                        repo: self.name.clone(),
                        path: dest.display().to_string(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dest)
                    .map_err(|e| io_err("creating the restore target", e))?;
            }
            Err(e) => return Err(io_err("reading the restore target", e)),
        }
        let _shared = self.lock.read().unwrap_or_else(|e| e.into_inner());
        let snap = self.find(id)?;
        let indexed = self
            .engine()?
            .to_indexed()
            .map_err(self.engine_err("reading the index"))?;
        let root = snap.paths.iter().next().cloned().unwrap_or_default();
        let mut node = indexed
            .node_from_snapshot_and_path(&snap, &root)
            .map_err(self.engine_err("finding the snapshot's folder"))?;
        if !node.is_dir() {
            // A stream: restore the folder holding its one file.
            let parent = Path::new(&root).parent().unwrap_or(Path::new(""));
            node = indexed
                .node_from_snapshot_and_path(&snap, &parent.to_string_lossy())
                .map_err(self.engine_err("finding the snapshot's folder"))?;
        }
        let dest_str = dest.to_str().ok_or_else(|| BackupError::InvalidInput {
            repo: self.name.clone(),
            reason: format!("restore target {} is not valid UTF-8", dest.display()),
        })?;
        let destination = LocalDestination::new(dest_str, true, false)
            .map_err(self.engine_err("preparing the restore target"))?;
        let opts = RestoreOptions::default().numeric_id(true);
        let ls = indexed
            .ls(&node, &LsOptions::default())
            .map_err(self.engine_err("listing the snapshot"))?;
        let plan = indexed
            .prepare_restore(&opts, ls.clone(), &destination, false)
            .map_err(self.engine_err("planning the restore"))?;
        indexed
            .restore(plan, &opts, ls, &destination)
            .map_err(self.engine_err("restoring"))
    }

    /// Writes one file of the snapshot (for a stream backup: its `filename`; for a folder: a
    /// path inside the backed-up folder's absolute path) to `out`; returns the bytes written.
    pub fn dump(&self, id: &str, filename: &str, out: &mut dyn Write) -> Result<u64, BackupError> {
        let _shared = self.lock.read().unwrap_or_else(|e| e.into_inner());
        let snap = self.find(id)?;
        let indexed = self
            .engine()?
            .to_indexed()
            .map_err(self.engine_err("reading the index"))?;
        let missing = || BackupError::FileNotInSnapshot {
            repo: self.name.clone(),
            id: snap.id.to_hex().to_string(),
            filename: filename.to_owned(),
        };
        let node = indexed
            .node_from_snapshot_and_path(&snap, filename)
            .map_err(|_| missing())?;
        if !node.is_file() {
            return Err(missing());
        }
        let mut counted = Counting { inner: out, n: 0 };
        indexed
            .dump(&node, &mut counted)
            .map_err(self.engine_err("dumping"))?;
        Ok(counted.n)
    }

    /// Copies these snapshots and the data they use into `other` (like `restic copy`), skipping
    /// those `other` already holds a copy of. A copy gets a NEW id in `other`: a snapshot's id
    /// is the hash of its encrypted file, and `other` has its own keys. The copy keeps the
    /// time, tags, paths and tree, and names the source snapshot in
    /// [`Snapshot::original`]; the data blobs and trees keep their ids (so both repositories
    /// must share the chunker parameters for deduplication across them to work, which is not
    /// needed for correctness).
    pub fn copy_to(&self, other: &Repository, ids: &[String]) -> Result<(), BackupError> {
        let snaps = ids
            .iter()
            .map(|id| self.find(id))
            .collect::<Result<Vec<_>, _>>()?;
        // Both shared, taken in name order so that two copies in opposite directions and a
        // waiting forget cannot wait on each other in a cycle.
        let (first, second) = if self.name <= other.name {
            (self, other)
        } else {
            (other, self)
        };
        let _shared_first = first.lock.read().unwrap_or_else(|e| e.into_inner());
        let _shared_second = if Arc::ptr_eq(&self.lock, &other.lock) {
            None
        } else {
            Some(second.lock.read().unwrap_or_else(|e| e.into_inner()))
        };
        let source = self
            .engine()?
            .to_indexed()
            .map_err(self.engine_err("reading the index"))?;
        let dest = other
            .engine()?
            .to_indexed_ids()
            .map_err(|e| BackupError::engine(&other.name, "reading the index", e))?;
        // Already there when the destination has one with the same time, tree, paths and
        // tags. (The engine's own test compares times alone, which would skip a second
        // snapshot taken in the same second.)
        let there = other.all_snapshots()?;
        let todo: Vec<&SnapshotFile> = snaps
            .iter()
            .filter(|sn| {
                !there.iter().any(|d| {
                    d.time == sn.time
                        && d.tree == sn.tree
                        && d.paths == sn.paths
                        && d.tags == sn.tags
                })
            })
            .collect();
        source.copy(&dest, todo).map_err(|e| BackupError::Engine {
            repo: self.name.clone(),
            action: "copying snapshots",
            detail: format!("to {}: {}", other.name, e.display_log()),
            source: e,
        })
    }
}

/// A local repository's folder may be missing or empty (it is created) or hold a repository.
fn refuse_foreign_folder(path: &Path, name: &str) -> Result<(), BackupError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => {
            if entries.next().is_some() && !path.join("config").exists() {
                return Err(BackupError::NotARepository {
                    repo: name.to_owned(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::Io {
            repo: name.to_owned(),
            action: "reading",
            path: path.display().to_string(),
            source: e,
        }),
    }
}

struct Counting<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
