//! Taking one backup: write it, read it back, copy it off-site, record what happened.

use std::fs::File;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use wharf_backup::Repository;
use wharf_db::Params;
use wharf_notify::{Alert, AlertKind};
use wharf_runtime::AppUser;
use wharf_store::{Backup, BackupKind, BackupOutcome};

use super::{Backups, Target};

/// How long a test restore of a dump may take.
const VERIFY_WITHIN: Duration = Duration::from_secs(300);

/// What a blocking backup needs to know of its target.
struct Job {
    target: Target,
    params: Option<Params>,
    user: Option<AppUser>,
    tags: Vec<String>,
    time: i64,
    row: i64,
}

impl Backups {
    /// Takes a backup of `target` now, verifies it and copies it off-site. The record says how
    /// it went (verified or failed, and why); `Err` only when it could not even be recorded.
    pub(crate) async fn take(
        self: &Arc<Self>,
        target: &Target,
        kind: BackupKind,
        schedule: Option<&str>,
    ) -> Result<Backup, String> {
        let _work = self.work.lock().await;
        self.take_locked(target, kind, schedule).await
    }

    /// [`Backups::take`], for a caller that holds the work lock (a restore).
    pub(crate) async fn take_locked(
        self: &Arc<Self>,
        target: &Target,
        kind: BackupKind,
        schedule: Option<&str>,
    ) -> Result<Backup, String> {
        let time = self.clock.now();
        let name = target.name().to_string();
        let row = self
            .store
            .begin_backup(&name, schedule, kind, time)
            .map_err(|e| e.to_string())?;
        let mut tags = vec![
            "wharf".to_string(),
            format!("target={name}"),
            format!("kind={}", kind.as_str()),
            format!("backup={row}"),
        ];
        if let Some(s) = schedule {
            tags.push(format!("schedule={s}"));
        }
        let prepared = match target {
            Target::App(_) => Ok((None, None)),
            Target::Database(db) => self
                .databases
                .params(db)
                .and_then(|p| Ok((Some(p), self.databases.user(&db.name)?))),
        };
        let outcome = match prepared {
            Err(e) => BackupOutcome {
                error: Some(e),
                ..Default::default()
            },
            Ok((params, user)) => {
                let job = Job {
                    target: target.clone(),
                    params,
                    user,
                    tags,
                    time,
                    row,
                };
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.write_and_verify(&job))
                    .await
                    .unwrap_or_else(|e| BackupOutcome {
                        error: Some(format!("the backup task failed: {e}")),
                        ..Default::default()
                    })
            }
        };
        if outcome.error.is_some() {
            self.reset();
        }
        let done = self
            .store
            .finish_backup(row, self.clock.now(), &outcome)
            .map_err(|e| e.to_string())?;
        match &done.error {
            Some(why) => {
                tracing::error!(target = %name, error = %why, "backup failed");
                self.alert(
                    AlertKind::Failure,
                    &name,
                    format!("backup of {name} failed"),
                    format!(
                        "The {} backup of {name} (#{}) failed: {why}",
                        kind.as_str(),
                        done.id
                    ),
                )
                .await;
            }
            None => tracing::info!(
                target = %name,
                snapshot = done.snapshot.as_deref().unwrap_or(""),
                "backup verified"
            ),
        }
        Ok(done)
    }

    /// Writes the backup, reads it back, copies it: blocking, in a worker thread.
    fn write_and_verify(&self, job: &Job) -> BackupOutcome {
        let mut o = BackupOutcome::default();
        if let Err(e) = self.write_and_verify_into(job, &mut o) {
            o.error = Some(e);
        }
        o
    }

    fn write_and_verify_into(&self, job: &Job, o: &mut BackupOutcome) -> Result<(), String> {
        let repo = self.repo()?;
        let snap = match (&job.target, &job.params) {
            (Target::Database(_), Some(params)) => {
                let scratch = self.spool().join(format!("b-{}", job.row));
                let result = dump_into(&repo, params, &scratch, job);
                let _ = std::fs::remove_dir_all(&scratch);
                result?
            }
            (target, _) => {
                let volume = self.data.volume(target.name());
                std::fs::create_dir_all(&volume)
                    .map_err(|e| format!("cannot make {}: {e}", volume.display()))?;
                repo.backup_path(&volume, &job.tags, job.time)
                    .map_err(|e| e.to_string())?
            }
        };
        o.snapshot = Some(snap.id.clone());
        o.total_bytes = Some(snap.total_bytes);
        o.added_bytes = Some(snap.bytes_added);
        repo.verify(&snap.id)
            .map_err(|e| format!("verification failed: {e}"))?;
        o.note = format!("{} files read back", snap.files);
        if let (Target::Database(db), Some(params)) = (&job.target, &job.params) {
            o.note = self.test_restore(&repo, &snap.id, db, params, job.user)?;
        }
        if let Some(copy) = self.copy_repo()? {
            repo.copy_to(&copy, std::slice::from_ref(&snap.id))
                .map_err(|e| format!("copy to {}: {e}", copy_name(self)))?;
            // By the snapshot it copies, not by tag: another server that used this copy
            // repository (row ids start again at 1) left snapshots with the same tags.
            let copied = copy
                .snapshots()
                .map_err(|e| format!("copy to {}: {e}", copy_name(self)))?
                .into_iter()
                .find(|s| s.original.as_deref() == Some(snap.id.as_str()))
                .ok_or_else(|| format!("copy to {}: the copy is missing", copy_name(self)))?;
            copy.verify(&copied.id)
                .map_err(|e| format!("copy to {}: verification failed: {e}", copy_name(self)))?;
            o.copies.push(format!("copy:{}", copied.id));
        }
        Ok(())
    }

    /// Restores the dump just written into a scratch server, as the database's user.
    fn test_restore(
        &self,
        repo: &Repository,
        snapshot: &str,
        db: &wharf_store::Database,
        params: &Params,
        user: Option<AppUser>,
    ) -> Result<String, String> {
        // The dump stays in wharf's own folder; only the scratch server's folder is the
        // database user's (short: MariaDB's socket lands below it, and a unix socket path
        // holds 107 bytes).
        let short = &snapshot[..snapshot.len().min(8)];
        let spool = self.spool().join(format!("v-{short}"));
        let scratch = self.data.tmp(&db.name).join(format!("v-{short}"));
        for d in [&spool, &scratch] {
            let _ = std::fs::remove_dir_all(d);
        }
        let result = (|| {
            for d in [&spool, &scratch] {
                std::fs::create_dir_all(d)
                    .map_err(|e| format!("cannot make {}: {e}", d.display()))?;
            }
            let dump = spool.join("dump");
            let mut f =
                File::create(&dump).map_err(|e| format!("cannot write {}: {e}", dump.display()))?;
            repo.dump(snapshot, &params.engine.dump_filename(&db.name), &mut f)
                .map_err(|e| format!("verification failed: {e}"))?;
            drop(f);
            if let Some(u) = user {
                crate::users::chown_tree(&scratch, u)
                    .map_err(|e| format!("cannot give {} away: {e}", scratch.display()))?;
            }
            wharf_db::verify_dump(
                params.engine,
                &dump,
                &scratch,
                user.map(|u| (u.uid, u.gid)),
                VERIFY_WITHIN,
            )
            .map(|r| format!("test restore: {}", r.summary))
            .map_err(|e| format!("test restore failed: {e}"))
        })();
        for d in [&spool, &scratch] {
            let _ = std::fs::remove_dir_all(d);
        }
        result
    }

    /// Sends an alert on every channel and records how each took it.
    pub(crate) async fn alert(&self, kind: AlertKind, target: &str, subject: String, body: String) {
        let alert = Alert {
            kind,
            subject: subject.clone(),
            body,
            target: target.to_string(),
            at: self.clock.now(),
        };
        let deliveries = self.notifier.send(&alert).await;
        for d in deliveries.iter().filter(|d| !d.ok) {
            tracing::error!(
                channel = %d.channel,
                error = d.error.as_deref().unwrap_or(""),
                "an alert could not be sent"
            );
        }
        let json = serde_json::Value::Array(
            deliveries
                .iter()
                .map(|d| serde_json::json!({"channel": d.channel, "ok": d.ok, "error": d.error}))
                .collect(),
        );
        if let Err(e) = self.store.record_alert(
            alert.at,
            kind_str(kind),
            target,
            &subject,
            &json.to_string(),
        ) {
            tracing::warn!(error = %e, "could not record an alert");
        }
    }
}

pub(crate) fn kind_str(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Failure => "failure",
        AlertKind::Stale => "stale",
        AlertKind::Recovery => "recovery",
    }
}

fn copy_name(b: &Backups) -> String {
    b.copy.as_ref().map(|l| l.to_string()).unwrap_or_default()
}

/// Dumps the database into a file beside it, then writes that into the repository: a dump
/// that fails never reaches it, and the file's size is recorded (restic's `restore` needs it).
fn dump_into(
    repo: &Repository,
    params: &Params,
    scratch: &std::path::Path,
    job: &Job,
) -> Result<wharf_backup::Snapshot, String> {
    std::fs::create_dir_all(scratch)
        .map_err(|e| format!("cannot make {}: {e}", scratch.display()))?;
    let dump = scratch.join("dump");
    let errors = scratch.join("dump.err");
    let file = |p: &std::path::Path| {
        File::create(p).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    let mut cmd = params.dump_command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file(&dump)?))
        .stderr(Stdio::from(file(&errors)?));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start the dump: {e}"))?;
    if !status.success() {
        let tail = std::fs::read_to_string(&errors).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        return Err(format!(
            "the dump failed ({status}): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    repo.backup_file(
        &dump,
        &params.engine.dump_filename(&params.name),
        &job.tags,
        job.time,
    )
    .map_err(|e| e.to_string())
}
