//! Releases: one per deploy, numbered per app; at most one active.

use rusqlite::{OptionalExtension, Row, params};

use crate::error::{Result, StoreError};
use crate::model::{BuildResult, Interrupted, Release, ReleaseStatus};
use crate::{Store, now};

const COLUMNS: &str = "a.name, r.number, r.status, r.source, r.commit_sha, r.build, r.run, r.static_dir, \
                       r.health_path, r.config, r.backup, r.backup_sha256, r.message, r.created_at, r.env_defaults, r.image";

fn row(r: &Row<'_>) -> rusqlite::Result<Release> {
    let status: String = r.get(2)?;
    Ok(Release {
        app: r.get(0)?,
        number: r.get(1)?,
        status: status.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?,
        source: r.get(3)?,
        commit: r.get(4)?,
        build: r.get(5)?,
        run: r.get(6)?,
        static_dir: r.get(7)?,
        health_path: r.get(8)?,
        config: r.get(9)?,
        backup: r.get(10)?,
        backup_sha256: r.get(11)?,
        message: r.get(12)?,
        created_at: r.get(13)?,
        env_defaults: r.get(14)?,
        image: r.get(15)?,
    })
}

fn app_id(conn: &rusqlite::Connection, app: &str) -> Result<i64> {
    conn.query_row("SELECT id FROM apps WHERE name = ?1", [app], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "app",
            name: app.to_string(),
        })
}

fn missing(app: &str, number: u32) -> StoreError {
    StoreError::NotFound {
        what: "release",
        name: format!("{app} #{number}"),
    }
}

impl Store {
    /// Starts release N+1 in state `building` and returns N+1.
    pub fn begin_release(&self, app: &str, source: &str) -> Result<u32> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = app_id(&tx, app)?;
        let next: u32 = tx.query_row(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE app_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO releases (app_id, number, status, source, created_at) VALUES (?1, ?2, 'building', ?3, ?4)",
            params![id, next, source, now()],
        )?;
        tx.commit()?;
        Ok(next)
    }

    /// Records a build's outcome: `ready` (with what was built) or `failed` (with why).
    pub fn finish_release(
        &self,
        app: &str,
        number: u32,
        status: ReleaseStatus,
        b: &BuildResult,
    ) -> Result<()> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        let n = conn.execute(
            "UPDATE releases SET status = ?3, commit_sha = ?4, build = ?5, run = ?6, static_dir = ?7,
                 health_path = ?8, message = ?9, env_defaults = ?10, image = ?11
             WHERE app_id = ?1 AND number = ?2",
            params![id, number, status.as_str(), b.commit, b.build, b.run, b.static_dir, b.health_path, b.message,
                    if b.env_defaults.is_empty() { "{}" } else { b.env_defaults.as_str() }, b.image],
        )?;
        if n == 0 {
            return Err(missing(app, number));
        }
        Ok(())
    }

    pub fn set_release_backup(
        &self,
        app: &str,
        number: u32,
        path: &str,
        sha256: &str,
    ) -> Result<()> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        conn.execute(
            "UPDATE releases SET backup = ?3, backup_sha256 = ?4 WHERE app_id = ?1 AND number = ?2",
            params![id, number, path, sha256],
        )?;
        Ok(())
    }

    /// Makes `number` the app's active release (the previous active one becomes `ready`), with
    /// the config snapshot it runs with. Returns the previously active number.
    pub fn activate_release(&self, app: &str, number: u32, config: &str) -> Result<Option<u32>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = app_id(&tx, app)?;
        let previous: Option<u32> =
            tx.query_row("SELECT release FROM apps WHERE id = ?1", [id], |r| r.get(0))?;
        tx.execute(
            "UPDATE releases SET status = 'ready' WHERE app_id = ?1 AND status = 'active'",
            [id],
        )?;
        let n = tx.execute(
            "UPDATE releases SET status = 'active', config = ?3 WHERE app_id = ?1 AND number = ?2",
            params![id, number, config],
        )?;
        if n == 0 {
            return Err(missing(app, number));
        }
        tx.execute(
            "UPDATE apps SET release = ?2, updated_at = ?3, switching = 1, switching_from = ?4
             WHERE id = ?1",
            params![id, number, now(), previous],
        )?;
        tx.commit()?;
        Ok(previous)
    }

    /// Marks the start of a switch that changes the app's config before its release (a
    /// rollback), keeping `config`, the config in force now, until the switch is over.
    pub fn begin_switch(&self, app: &str, config: &str) -> Result<()> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        conn.execute(
            "UPDATE apps SET switching = 1, switching_from = release, switching_config = ?2
             WHERE id = ?1",
            params![id, config],
        )?;
        Ok(())
    }

    /// The release activated last now serves: the switch is over.
    pub fn finish_switch(&self, app: &str) -> Result<()> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        conn.execute(
            "UPDATE apps SET switching = 0, switching_from = NULL, switching_config = NULL
             WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// The release switches a stopped server left unfinished. Nothing changes here: the caller
    /// restores any saved config first and then calls [`Store::undo_switch`], so a server
    /// killed again half-way finds the same list and can start over.
    pub fn interrupted_switches(&self) -> Result<Vec<Interrupted>> {
        let conn = self.conn();
        let mut q = conn.prepare(
            "SELECT name, release, switching_from, switching_config FROM apps WHERE switching = 1",
        )?;
        let rows = q.query_map([], |r| {
            Ok(Interrupted {
                app: r.get(0)?,
                going_live: r.get(1)?,
                previous: r.get(2)?,
                config: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Puts `previous` back as the active release after `failed` could not go live.
    pub fn revert_release(
        &self,
        app: &str,
        failed: u32,
        previous: Option<u32>,
        message: &str,
    ) -> Result<()> {
        self.undo_switch(app, failed, previous, ReleaseStatus::Failed, Some(message))
    }

    /// Ends a switch to `from` by making `previous` active again (`from` gets `status`, and
    /// `message` if given), in one transaction. With `from == previous` (nothing was switched
    /// yet) it only closes the switch.
    pub fn undo_switch(
        &self,
        app: &str,
        from: u32,
        previous: Option<u32>,
        status: ReleaseStatus,
        message: Option<&str>,
    ) -> Result<()> {
        if Some(from) == previous {
            return self.finish_switch(app);
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = app_id(&tx, app)?;
        tx.execute(
            "UPDATE releases SET status = ?3, message = COALESCE(?4, message)
             WHERE app_id = ?1 AND number = ?2",
            params![id, from, status.as_str(), message],
        )?;
        if let Some(p) = previous {
            tx.execute(
                "UPDATE releases SET status = 'active' WHERE app_id = ?1 AND number = ?2",
                params![id, p],
            )?;
        }
        tx.execute(
            "UPDATE apps SET release = ?2, switching = 0, switching_from = NULL,
             switching_config = NULL WHERE id = ?1",
            params![id, previous],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Newest first.
    pub fn releases(&self, app: &str) -> Result<Vec<Release>> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        let mut q = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.app_id = ?1 ORDER BY r.number DESC"
        ))?;
        Ok(q.query_map([id], row)?.collect::<rusqlite::Result<_>>()?)
    }

    /// Up to `limit` of the app's releases, newest first, numbered below `before` when given
    /// (keyset pagination on the `(app, number)` index).
    pub fn releases_page(
        &self,
        app: &str,
        before: Option<u32>,
        limit: u32,
    ) -> Result<Vec<Release>> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        let mut q = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM releases r JOIN apps a ON a.id = r.app_id
             WHERE r.app_id = ?1 AND r.number < ?2 ORDER BY r.number DESC LIMIT ?3"
        ))?;
        let before = before.map_or(i64::MAX, i64::from);
        Ok(q.query_map(params![id, before, limit], row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// How many releases the app has.
    pub fn count_releases(&self, app: &str) -> Result<u64> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        Ok(conn.query_row(
            "SELECT COUNT(*) FROM releases WHERE app_id = ?1",
            [id],
            |r| r.get(0),
        )?)
    }

    pub fn release(&self, app: &str, number: u32) -> Result<Release> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.app_id = ?1 AND r.number = ?2"),
            params![id, number],
            row,
        )
        .optional()?
        .ok_or_else(|| missing(app, number))
    }

    pub fn delete_release(&self, app: &str, number: u32) -> Result<()> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        conn.execute(
            "DELETE FROM releases WHERE app_id = ?1 AND number = ?2",
            params![id, number],
        )?;
        Ok(())
    }

    /// Releases left `building` by a server that stopped mid-deploy become `failed`.
    pub fn fail_interrupted_releases(&self) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE releases SET status = 'failed', message = 'interrupted: the server stopped during the build'
             WHERE status = 'building'",
            [],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{AppKind, AppSettings};

    #[test]
    fn an_interrupted_switch_is_listed_until_undone() {
        let s = Store::open_test();
        s.create_app(
            "blog",
            AppKind::Process,
            &AppSettings::default(),
            &[],
            &BTreeMap::new(),
        )
        .unwrap();
        for n in 1..=2 {
            s.begin_release("blog", "git x main").unwrap();
            s.finish_release("blog", n, ReleaseStatus::Ready, &BuildResult::default())
                .unwrap();
            s.activate_release("blog", n, "{}").unwrap();
            s.finish_switch("blog").unwrap();
        }
        let status = |n: u32| {
            let r = s.releases("blog").unwrap();
            r.into_iter().find(|r| r.number == n).unwrap().status
        };
        assert!(s.interrupted_switches().unwrap().is_empty());

        // Stopped before the rollback activated its target: only the switch is closed.
        s.begin_switch("blog", "saved").unwrap();
        let open = s.interrupted_switches().unwrap();
        assert_eq!(
            open,
            [Interrupted {
                app: "blog".into(),
                going_live: Some(2),
                previous: Some(2),
                config: Some("saved".into()),
            }]
        );
        s.undo_switch("blog", 2, Some(2), ReleaseStatus::Ready, None)
            .unwrap();
        assert!(s.interrupted_switches().unwrap().is_empty());
        assert_eq!(s.app("blog").unwrap().release, Some(2));

        // Stopped after: listing changes nothing (a second crash finds the same), undoing puts
        // release 2 back and leaves 1 ready to roll back to.
        s.begin_switch("blog", "saved").unwrap();
        s.activate_release("blog", 1, "{}").unwrap();
        let open = s.interrupted_switches().unwrap();
        assert_eq!(open, s.interrupted_switches().unwrap());
        assert_eq!(open[0].going_live, Some(1));
        assert_eq!(open[0].previous, Some(2));
        s.undo_switch("blog", 1, Some(2), ReleaseStatus::Ready, None)
            .unwrap();
        assert!(s.interrupted_switches().unwrap().is_empty());
        assert_eq!(s.app("blog").unwrap().release, Some(2));
        assert_eq!(status(1), ReleaseStatus::Ready);
        assert_eq!(status(2), ReleaseStatus::Active);
    }

    #[test]
    fn release_lifecycle() {
        let s = Store::open_test();
        s.create_app(
            "blog",
            AppKind::Process,
            &AppSettings::default(),
            &[],
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(s.begin_release("blog", "git x main").unwrap(), 1);
        s.finish_release(
            "blog",
            1,
            ReleaseStatus::Ready,
            &BuildResult {
                build: "static".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.activate_release("blog", 1, "{}").unwrap(), None);
        assert_eq!(s.begin_release("blog", "git x main").unwrap(), 2);
        s.finish_release("blog", 2, ReleaseStatus::Ready, &BuildResult::default())
            .unwrap();
        assert_eq!(s.activate_release("blog", 2, "{}").unwrap(), Some(1));
        s.revert_release("blog", 2, Some(1), "did not start")
            .unwrap();
        let r = s.releases("blog").unwrap();
        assert_eq!(
            r.iter().map(|r| (r.number, r.status)).collect::<Vec<_>>(),
            [(2, ReleaseStatus::Failed), (1, ReleaseStatus::Active)]
        );
        assert_eq!(s.app("blog").unwrap().release, Some(1));
        assert_eq!(s.begin_release("blog", "archive").unwrap(), 3);
        assert_eq!(s.fail_interrupted_releases().unwrap(), 1);
        assert_eq!(s.release("blog", 3).unwrap().status, ReleaseStatus::Failed);
    }

    #[test]
    fn release_pages_walk_newest_first() {
        let s = Store::open_test();
        s.create_app(
            "blog",
            AppKind::Process,
            &AppSettings::default(),
            &[],
            &BTreeMap::new(),
        )
        .unwrap();
        for _ in 0..7 {
            s.begin_release("blog", "git x main").unwrap();
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = s.releases_page("blog", before, 3).unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.number);
            seen.extend(page.iter().map(|r| r.number));
        }
        assert_eq!(seen, [7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(s.count_releases("blog").unwrap(), 7);
        assert!(matches!(
            s.releases_page("nope", None, 3),
            Err(StoreError::NotFound { .. })
        ));
    }
}
