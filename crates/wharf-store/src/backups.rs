//! Managed databases, backup schedules, the backups taken and the alerts sent about them.
//! A database's password is a secret: it leaves the store only through
//! [`Store::database_password`], which only the databases' supervisor and the backups call.

use rusqlite::{OptionalExtension, Row, params};

use crate::error::{Result, StoreError, exists_on_conflict};
use crate::{Store, now};

/// A managed database as recorded (its password is not part of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    /// `postgres`, `mysql` or `redis`.
    pub engine: String,
    /// The loopback port it listens on, fixed for its life (apps' URLs name it).
    pub port: u16,
    pub user: String,
    pub created_at: i64,
}

/// A backup schedule: when to back up a target and what to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    /// An app or a database.
    pub target: String,
    pub cron: String,
    /// A retention template (`hourly=36,daily=30,monthly=3`).
    pub template: String,
    pub created_at: i64,
}

/// Why a backup was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupKind {
    Scheduled,
    Manual,
    /// Taken by a restore before it changes anything.
    PreRestore,
}

impl BackupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Scheduled => "scheduled",
            BackupKind::Manual => "manual",
            BackupKind::PreRestore => "pre-restore",
        }
    }

    fn parse(s: &str) -> BackupKind {
        match s {
            "scheduled" => BackupKind::Scheduled,
            "pre-restore" => BackupKind::PreRestore,
            _ => BackupKind::Manual,
        }
    }
}

/// Where a backup stands. Only `Verified` counts as a backup one can restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupState {
    Running,
    Verified,
    Failed,
    /// Removed by retention (or by hand) from the repository.
    Removed,
}

impl BackupState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupState::Running => "running",
            BackupState::Verified => "verified",
            BackupState::Failed => "failed",
            BackupState::Removed => "removed",
        }
    }

    fn parse(s: &str) -> BackupState {
        match s {
            "running" => BackupState::Running,
            "verified" => BackupState::Verified,
            "removed" => BackupState::Removed,
            _ => BackupState::Failed,
        }
    }
}

/// One backup taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    pub id: i64,
    pub target: String,
    pub schedule: Option<String>,
    pub kind: BackupKind,
    pub state: BackupState,
    /// The snapshot's id in the repository, once written.
    pub snapshot: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The size of what was backed up, and what it added to the repository.
    pub total_bytes: Option<u64>,
    pub added_bytes: Option<u64>,
    /// Why it failed (or why a copy failed).
    pub error: Option<String>,
    /// Where copies are: `NAME:SNAPSHOT` per repository besides the main one.
    pub copies: Vec<String>,
    /// What the verification found ("3 tables, 12 rows").
    pub note: String,
}

/// How a backup ended.
#[derive(Clone, Debug, Default)]
pub struct BackupOutcome {
    pub snapshot: Option<String>,
    pub total_bytes: Option<u64>,
    pub added_bytes: Option<u64>,
    /// `None`: verified.
    pub error: Option<String>,
    pub copies: Vec<String>,
    pub note: String,
}

/// An alert as recorded, with how each channel took it (JSON, as the notifier reported).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRecord {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub target: String,
    pub subject: String,
    pub deliveries: String,
}

fn db_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        what: "database",
        name: name.to_string(),
    }
}

fn database(r: &Row<'_>) -> rusqlite::Result<Database> {
    Ok(Database {
        name: r.get(0)?,
        engine: r.get(1)?,
        port: r.get(2)?,
        user: r.get(3)?,
        created_at: r.get(4)?,
    })
}

fn schedule(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        name: r.get(0)?,
        target: r.get(1)?,
        cron: r.get(2)?,
        template: r.get(3)?,
        created_at: r.get(4)?,
    })
}

const BACKUP_COLUMNS: &str = "id, target, schedule, kind, state, snapshot, started_at, \
     finished_at, total_bytes, added_bytes, error, copies, note";

fn backup(r: &Row<'_>) -> rusqlite::Result<Backup> {
    let copies: String = r.get(11)?;
    Ok(Backup {
        id: r.get(0)?,
        target: r.get(1)?,
        schedule: r.get(2)?,
        kind: BackupKind::parse(&r.get::<_, String>(3)?),
        state: BackupState::parse(&r.get::<_, String>(4)?),
        snapshot: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        total_bytes: r.get(8)?,
        added_bytes: r.get(9)?,
        error: r.get(10)?,
        copies: copies
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        note: r.get(12)?,
    })
}

impl Store {
    /// Records a database. Its name may not be an app's (backups and links name either).
    pub fn create_database(
        &self,
        name: &str,
        engine: &str,
        port: u16,
        user: &str,
        password: &str,
    ) -> Result<Database> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let app: Option<i64> = tx
            .query_row("SELECT id FROM apps WHERE name = ?1", [name], |r| r.get(0))
            .optional()?;
        if app.is_some() {
            return Err(StoreError::Exists {
                what: "app",
                name: name.to_string(),
            });
        }
        tx.execute(
            "INSERT INTO databases (name, engine, port, user, password, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![name, engine, port, user, password, now()],
        )
        .map_err(|e| exists_on_conflict(e, "database", name))?;
        let db = tx.query_row(
            "SELECT name, engine, port, user, created_at FROM databases WHERE name = ?1",
            [name],
            database,
        )?;
        tx.commit()?;
        Ok(db)
    }

    pub fn databases(&self) -> Result<Vec<Database>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT name, engine, port, user, created_at FROM databases ORDER BY name")?;
        let rows = st.query_map([], database)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn database(&self, name: &str) -> Result<Database> {
        self.conn()
            .query_row(
                "SELECT name, engine, port, user, created_at FROM databases WHERE name = ?1",
                [name],
                database,
            )
            .optional()?
            .ok_or_else(|| db_not_found(name))
    }

    /// The database's password: for its server, its dumps and the apps it is linked to.
    pub fn database_password(&self, name: &str) -> Result<String> {
        self.conn()
            .query_row(
                "SELECT password FROM databases WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| db_not_found(name))
    }

    /// Ports taken by databases, to pick a free one.
    pub fn database_ports(&self) -> Result<Vec<u16>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT port FROM databases")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a database's record and its schedules (its backups stay).
    pub fn delete_database(&self, name: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if tx.execute("DELETE FROM databases WHERE name = ?1", [name])? == 0 {
            return Err(db_not_found(name));
        }
        tx.execute("DELETE FROM backup_schedules WHERE target = ?1", [name])?;
        tx.commit()?;
        Ok(())
    }

    pub fn add_schedule(&self, s: &Schedule) -> Result<Schedule> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO backup_schedules (name, target, cron, template, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.name, s.target, s.cron, s.template, s.created_at],
        )
        .map_err(|e| exists_on_conflict(e, "schedule", &s.name))?;
        Ok(s.clone())
    }

    pub fn schedules(&self) -> Result<Vec<Schedule>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT name, target, cron, template, created_at FROM backup_schedules ORDER BY name",
        )?;
        let rows = st.query_map([], schedule)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn remove_schedule(&self, name: &str) -> Result<()> {
        if self
            .conn()
            .execute("DELETE FROM backup_schedules WHERE name = ?1", [name])?
            == 0
        {
            return Err(StoreError::NotFound {
                what: "schedule",
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Records a backup as running; returns its id.
    pub fn begin_backup(
        &self,
        target: &str,
        schedule: Option<&str>,
        kind: BackupKind,
        at: i64,
    ) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO backups (target, schedule, kind, state, started_at)
             VALUES (?1, ?2, ?3, 'running', ?4)",
            params![target, schedule, kind.as_str(), at],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Records how a backup ended: verified when the outcome holds no error.
    pub fn finish_backup(&self, id: i64, at: i64, o: &BackupOutcome) -> Result<Backup> {
        let state = if o.error.is_none() {
            BackupState::Verified
        } else {
            BackupState::Failed
        };
        let conn = self.conn();
        conn.execute(
            "UPDATE backups SET state = ?2, snapshot = ?3, finished_at = ?4, total_bytes = ?5,
               added_bytes = ?6, error = ?7, copies = ?8, note = ?9 WHERE id = ?1",
            params![
                id,
                state.as_str(),
                o.snapshot,
                at,
                o.total_bytes,
                o.added_bytes,
                o.error,
                o.copies.join(","),
                o.note
            ],
        )?;
        Ok(conn.query_row(
            &format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE id = ?1"),
            [id],
            backup,
        )?)
    }

    /// Backups, newest first; of one target when given.
    pub fn backups(&self, target: Option<&str>) -> Result<Vec<Backup>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE ?1 IS NULL OR target = ?1
             ORDER BY started_at DESC, id DESC"
        ))?;
        let rows = st.query_map([target], backup)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The target's backups whose snapshot id starts with `prefix` (restic prints 8 hex
    /// digits), newest first, removed ones left out.
    pub fn backups_by_snapshot(&self, target: &str, prefix: &str) -> Result<Vec<Backup>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE target = ?1
             AND substr(snapshot, 1, length(?2)) = ?2 AND state != 'removed' ORDER BY id DESC"
        ))?;
        let found = st
            .query_map(params![target, prefix], backup)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(found)
    }

    /// Marks backups removed from the repository.
    pub fn mark_backups_removed(&self, ids: &[i64]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in ids {
            tx.execute("UPDATE backups SET state = 'removed' WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Backups a stopped server left running are failed (their snapshot, if any, unverified).
    /// Fails every backup still marked running; returns each one's id, target and kind (for
    /// the alerts a failure sends).
    pub fn fail_running_backups(&self, why: &str, at: i64) -> Result<Vec<(i64, String, String)>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let failed = {
            let mut q =
                tx.prepare("SELECT id, target, kind FROM backups WHERE state = 'running'")?;
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.execute(
            "UPDATE backups SET state = 'failed', error = ?1, finished_at = ?2
             WHERE state = 'running'",
            params![why, at],
        )?;
        tx.commit()?;
        Ok(failed)
    }

    pub fn record_alert(
        &self,
        at: i64,
        kind: &str,
        target: &str,
        subject: &str,
        deliveries: &str,
    ) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO alerts (at, kind, target, subject, deliveries) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![at, kind, target, subject, deliveries],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// The latest alerts, newest first.
    pub fn alerts(&self, limit: u32) -> Result<Vec<AlertRecord>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, at, kind, target, subject, deliveries FROM alerts
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| {
            Ok(AlertRecord {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                target: r.get(3)?,
                subject: r.get(4)?,
                deliveries: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppKind, AppSettings};

    #[test]
    fn database_and_app_names_never_clash_and_the_password_stays_apart() {
        let s = Store::open_test();
        s.create_database("pg", "postgres", 15432, "pg", "secret")
            .unwrap();
        let e = s
            .create_app(
                "pg",
                AppKind::Process,
                &AppSettings::default(),
                &[],
                &Default::default(),
            )
            .unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Exists {
                    what: "database",
                    ..
                }
            ),
            "{e}"
        );
        s.create_app(
            "web",
            AppKind::Process,
            &AppSettings::default(),
            &[],
            &Default::default(),
        )
        .unwrap();
        let e = s
            .create_database("web", "redis", 16379, "web", "x")
            .unwrap_err();
        assert!(matches!(e, StoreError::Exists { what: "app", .. }), "{e}");
        assert!(!format!("{:?}", s.databases().unwrap()).contains("secret"));
        assert_eq!(s.database_password("pg").unwrap(), "secret");
    }

    #[test]
    fn a_backup_is_verified_only_without_an_error_and_running_ones_fail_at_start() {
        let s = Store::open_test();
        let a = s
            .begin_backup("pg", Some("pg"), BackupKind::Scheduled, 10)
            .unwrap();
        let b = s.begin_backup("pg", None, BackupKind::Manual, 20).unwrap();
        let done = s
            .finish_backup(
                a,
                11,
                &BackupOutcome {
                    snapshot: Some("abcdef12".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(done.state, BackupState::Verified);
        assert_eq!(s.fail_running_backups("stopped", 30).unwrap().len(), 1);
        let all = s.backups(Some("pg")).unwrap();
        assert_eq!(all[0].id, b);
        assert_eq!(all[0].state, BackupState::Failed);
        assert_eq!(
            s.backups_by_snapshot("pg", "abcd")
                .unwrap()
                .iter()
                .map(|b| b.id)
                .collect::<Vec<_>>(),
            vec![a]
        );
        assert!(s.backups_by_snapshot("pg", "abcd_").unwrap().is_empty());
    }
}
