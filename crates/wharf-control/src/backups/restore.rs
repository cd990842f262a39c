//! Restores: what is there is backed up first (never lose it), then the backup comes back, is
//! checked, and the report says what came back.

use std::fs::File;
use std::sync::Arc;

use wharf_store::{Backup, BackupKind, BackupState};

use super::{Backups, Target};
use crate::oplog::OpLog;

/// What a restore did.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Restored {
    pub(crate) target: String,
    pub(crate) snapshot: String,
    /// The backup of what was there before, taken first.
    pub(crate) pre_restore: Option<i64>,
    /// Its snapshot: what `wharf backups restore` takes to put it back.
    pub(crate) pre_restore_snapshot: Option<String>,
    pub(crate) summary: String,
}

impl Backups {
    /// Restores `snapshot` (a backup of `source`) into `source`, or into `to`: an existing
    /// app, or a new database made like the source one.
    pub(crate) async fn restore(
        self: &Arc<Self>,
        source: &str,
        snapshot: &str,
        to: Option<&str>,
        actor: &str,
    ) -> Result<Restored, String> {
        let _work = self.work.lock().await;
        if snapshot.len() < 8 || !snapshot.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "snapshot `{snapshot}`: give at least its first 8 hex digits, as `wharf backups \
                 list {source}` shows them"
            ));
        }
        let found = self
            .store
            .backups_by_snapshot(source, &snapshot.to_ascii_lowercase())
            .map_err(|e| e.to_string())?;
        let backup = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(format!(
                    "{source} has no backup {snapshot} (see `wharf backups list {source}`)"
                ));
            }
            _ => {
                return Err(format!(
                    "{snapshot} names several backups of {source}: give more of its id"
                ));
            }
        };
        if backup.state != BackupState::Verified {
            return Err(format!(
                "backup {snapshot} of {source} was never verified ({}); choose a verified one",
                backup.error.as_deref().unwrap_or(backup.state.as_str())
            ));
        }
        let snap = backup.snapshot.clone().unwrap_or_default();
        // What the backup holds: a database's dump (by its file's name) or a volume's files.
        // Read from the repository, so a deleted app's or database's backups come back too.
        let me = self.clone();
        let (snap2, source2) = (snap.clone(), source.to_string());
        let paths = tokio::task::spawn_blocking(move || -> Result<Option<Vec<String>>, String> {
            let repo = me.repo()?;
            Ok(repo
                .snapshots()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|s| s.id == snap2)
                .map(|s| s.paths))
        })
        .await
        .map_err(|e| e.to_string())??;
        let Some(paths) = paths else {
            return Err(format!(
                "snapshot {} of {source} is not in the repository {} (pruned, or the repository \
                 moved): pick one `wharf backups list {source}` shows",
                short(&snap),
                self.location
            ));
        };
        let dumped = [
            wharf_db::Engine::Postgres,
            wharf_db::Engine::Mysql,
            wharf_db::Engine::Redis,
        ]
        .into_iter()
        .find(|e| {
            paths
                .iter()
                .any(|p| p.trim_start_matches('/') == e.dump_filename(&source2))
        });
        let dest_name = to.unwrap_or(source);
        let dest = match (dumped, self.target(dest_name)) {
            (None, Ok(Target::App(name))) => Target::App(name),
            (Some(engine), Ok(Target::Database(b))) if b.engine == engine.as_str() => {
                Target::Database(b)
            }
            (None, Err(_)) => {
                return Err(format!(
                    "no app is named \"{dest_name}\": create it first (`wharf apps create`), \
                     then restore into its volume"
                ));
            }
            (Some(engine), Err(_)) => {
                Target::Database(self.databases.create(dest_name, engine).await?)
            }
            _ => {
                return Err(format!(
                    "{dest_name} is not the same kind of thing as {source}; restore an app's \
                     volume into an app, a database into a database of the same engine"
                ));
            }
        };
        // Never lose what is there: a backup of it first, verified, or nothing happens.
        let pre = self
            .take_locked(&dest, BackupKind::PreRestore, None)
            .await?;
        if pre.state != BackupState::Verified {
            return Err(format!(
                "nothing was restored: the backup of what {} holds now failed: {}",
                dest.name(),
                pre.error.as_deref().unwrap_or("unknown")
            ));
        }
        let op = OpLog::begin(&self.store, Some(dest.name()), "restore", actor);
        let result = match &dest {
            Target::Database(db) => self.restore_database(&backup, &snap, source, db).await,
            Target::App(app) => self.restore_volume(&snap, app, &op).await,
        };
        let result = result
            .map(|summary| Restored {
                target: dest.name().to_string(),
                snapshot: snap.clone(),
                pre_restore: Some(pre.id),
                pre_restore_snapshot: pre.snapshot.clone(),
                summary,
            })
            .map_err(|e| {
                // A restore may have changed part of what was there: say where that is.
                format!(
                    "{e} (what was there before is backup {} of {})",
                    short(pre.snapshot.as_deref().unwrap_or("")),
                    dest.name()
                )
            });
        match &result {
            Ok(r) => op.ok(
                "restore",
                format!(
                    "restored {} from {} ({}); what was there is backup {}",
                    r.target,
                    short(&snap),
                    r.summary,
                    short(pre.snapshot.as_deref().unwrap_or(""))
                ),
            ),
            Err(e) => op.failed("restore", e),
        }
        op.finish(&result.as_ref().map(|_| String::new()).map_err(Clone::clone));
        result
    }

    async fn restore_database(
        self: &Arc<Self>,
        backup: &Backup,
        snap: &str,
        source: &str,
        db: &wharf_store::Database,
    ) -> Result<String, String> {
        let params = self.databases.params(db)?;
        let file = self.spool().join(format!("r-{}", backup.id));
        let me = self.clone();
        let (snap2, source2, params2, file2) = (
            snap.to_string(),
            source.to_string(),
            params.clone(),
            file.clone(),
        );
        let written = tokio::task::spawn_blocking(move || -> Result<(), String> {
            if let Some(dir) = file2.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let mut f = File::create(&file2).map_err(|e| e.to_string())?;
            me.repo()?
                .dump(&snap2, &params2.engine.dump_filename(&source2), &mut f)
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let result = match written {
            Err(e) => Err(format!("cannot read the backup: {e}")),
            Ok(()) => self.load_dump(db, &params, &file).await,
        };
        let _ = std::fs::remove_file(&file);
        result
    }

    /// Loads a dump into the running database (Redis: stopped, its data file replaced, started).
    async fn load_dump(
        &self,
        db: &wharf_store::Database,
        params: &wharf_db::Params,
        file: &std::path::Path,
    ) -> Result<String, String> {
        if params.engine == wharf_db::Engine::Redis {
            let lock = self.databases.lock(&db.name);
            let _held = lock.lock().await;
            self.databases.stop_locked(&db.name).await?;
            let replaced = params.restore_offline(file).map_err(|e| e.to_string());
            self.databases.start_locked(db).await?;
            replaced.map_err(|e| format!("restore failed: {e}"))?;
            let params = params.clone();
            return tokio::task::spawn_blocking(move || params.contents())
                .await
                .map_err(|e| e.to_string())?
                .map(|r| r.summary)
                .map_err(|e| format!("restored, but cannot read it back: {e}"));
        }
        let (params, file) = (params.clone(), file.to_path_buf());
        tokio::task::spawn_blocking(move || params.restore(&file))
            .await
            .map_err(|e| e.to_string())?
            .map(|r| r.summary)
            .map_err(|e| format!("restore failed: {e}"))
    }

    /// Puts the snapshot's files in place of the app's volume and restarts the app on it.
    async fn restore_volume(
        self: &Arc<Self>,
        snap: &str,
        app: &str,
        op: &OpLog,
    ) -> Result<String, String> {
        let volume = self.data.volume(app);
        let parent = volume.parent().expect("volumes/<app>").to_path_buf();
        let incoming = parent.join(format!(".restore-{app}"));
        // Left by an earlier restore that did not finish: it may hold the app's only copy of
        // its files, so it is the user's to look at, never removed here.
        if incoming.exists() {
            return Err(format!(
                "{} is left from an earlier restore of {app} and may hold its files: look into \
                 it, move or remove it, then restore again",
                incoming.display()
            ));
        }
        let me = self.clone();
        let (snap2, incoming2) = (snap.to_string(), incoming.clone());
        let restored = tokio::task::spawn_blocking(move || -> Result<(u64, u64), String> {
            me.repo()?
                .restore(&snap2, &incoming2)
                .map_err(|e| e.to_string())?;
            Ok(count(&incoming2))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let (files, bytes) = match restored {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&incoming);
                return Err(format!("cannot restore the files: {e}"));
            }
        };
        if let Some(u) = self.reconciler.app_user(app)?
            && let Err(e) = crate::users::chown_tree(&incoming, u)
        {
            // Only restored files so far: nothing of the app's is in there.
            let _ = std::fs::remove_dir_all(&incoming);
            return Err(format!(
                "cannot give the restored files to {app}'s user: {e}"
            ));
        }
        // One atomic exchange: at no moment is there no volume. The old files end up in
        // `incoming`, kept until the app runs on the restored ones.
        let had_volume = volume.exists();
        let swap = if had_volume {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &incoming,
                rustix::fs::CWD,
                &volume,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(std::io::Error::from)
        } else {
            std::fs::rename(&incoming, &volume)
        };
        swap.map_err(|e| format!("cannot put the restored volume in place: {e}"))?;
        // New instances start on the restored files; the old ones are drained and stopped.
        match self.reconciler.reconcile(app, true, op).await {
            Ok(_) => {
                let _ = std::fs::remove_dir_all(&incoming);
                Ok(format!("{files} files, {bytes} bytes"))
            }
            Err(e) if !had_volume => Err(format!(
                "the files are in place but {app} did not restart: {e}"
            )),
            Err(e) => {
                // The instances still serving use the previous files (mounts and the sandbox
                // follow the folder, not its name): they go back where backups look.
                let back = rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &incoming,
                    rustix::fs::CWD,
                    &volume,
                    rustix::fs::RenameFlags::EXCHANGE,
                );
                Err(match back {
                    Ok(()) => format!(
                        "{app} did not start on the restored files ({e}), so its own files are \
                         back in place; the restored ones are in {}",
                        incoming.display()
                    ),
                    Err(b) => format!(
                        "{app} did not start on the restored files ({e}), and its own files \
                         could not be put back ({b}): they are in {}",
                        incoming.display()
                    ),
                })
            }
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// Files and bytes under `dir`.
fn count(dir: &std::path::Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => {
                    files += 1;
                    bytes += e.metadata().map_or(0, |m| m.len());
                }
                Err(_) => {}
            }
        }
    }
    (files, bytes)
}
