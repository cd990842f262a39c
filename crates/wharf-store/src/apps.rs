//! Apps, their domains and their env vars.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::error::{Result, StoreError, exists_on_conflict};
use crate::model::{App, AppKind, AppSettings, Availability, RuntimeKind, Tls};
use crate::{Store, now};

const APP_COLUMNS: &str = "id, name, kind, availability, run, workdir, root, replicas, memory_bytes, \
                           cpu_millis, max_body, health_path, created_at, updated_at, release, keep_releases, \
                           git_url, git_ref, webhook_secret IS NOT NULL, hsts_seconds, sandbox, \
                           runtime, port, read_only, constraints, stop_grace_ms, node";

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        what: "app",
        name: name.to_string(),
    }
}

fn parse<T: std::str::FromStr<Err = String>>(idx: usize, s: String) -> rusqlite::Result<T> {
    s.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

fn row_to_app(row: &Row<'_>) -> rusqlite::Result<(i64, App)> {
    Ok((
        row.get(0)?,
        App {
            name: row.get(1)?,
            kind: parse(2, row.get(2)?)?,
            availability: parse(3, row.get(3)?)?,
            run: row.get(4)?,
            workdir: row.get(5)?,
            root: row.get(6)?,
            replicas: row.get(7)?,
            memory_bytes: row.get(8)?,
            cpu_millis: row.get(9)?,
            max_body: row.get(10)?,
            health_path: row.get(11)?,
            domains: Vec::new(),
            env_names: Vec::new(),
            created_at: row.get(12)?,
            updated_at: row.get(13)?,
            release: row.get(14)?,
            keep_releases: row.get(15)?,
            git_url: row.get(16)?,
            git_ref: row.get(17)?,
            has_webhook: row.get(18)?,
            hsts_seconds: row.get(19)?,
            sandbox: row.get(20)?,
            runtime: parse(21, row.get(21)?)?,
            port: row.get(22)?,
            read_only: row.get(23)?,
            constraints: {
                // One per line: a constraint holds no control characters (the API checks).
                let lines: String = row.get(24)?;
                lines.lines().map(str::to_string).collect()
            },
            stop_grace_ms: row.get(25)?,
            node: row.get(26)?,
            tls: BTreeMap::new(),
        },
    ))
}

fn app_id(tx: &rusqlite::Connection, name: &str) -> Result<i64> {
    tx.query_row("SELECT id FROM apps WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| not_found(name))
}

fn load(conn: &rusqlite::Connection, name: &str) -> Result<App> {
    let (id, mut app) = conn
        .query_row(
            &format!("SELECT {APP_COLUMNS} FROM apps WHERE name = ?1"),
            [name],
            row_to_app,
        )
        .optional()?
        .ok_or_else(|| not_found(name))?;
    fill(conn, id, &mut app)?;
    Ok(app)
}

fn fill(conn: &rusqlite::Connection, id: i64, app: &mut App) -> Result<()> {
    let mut q =
        conn.prepare_cached("SELECT host, tls FROM domains WHERE app_id = ?1 ORDER BY host")?;
    let rows: Vec<(String, String)> = q
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    app.domains = rows.iter().map(|(h, _)| h.clone()).collect();
    app.tls = rows
        .into_iter()
        .filter(|(_, t)| t != "none")
        .map(|(h, t)| parse(1, t).map(|t| (h, t)))
        .collect::<rusqlite::Result<_>>()?;
    let mut q = conn.prepare_cached("SELECT name FROM env WHERE app_id = ?1 ORDER BY name")?;
    app.env_names = q
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

fn apply_settings(tx: &Transaction<'_>, id: i64, s: &AppSettings) -> Result<()> {
    // One statement per provided field keeps the query simple; they share the transaction.
    macro_rules! set {
        ($field:ident, $col:literal, $value:expr) => {
            if let Some(v) = &s.$field {
                tx.execute(
                    concat!("UPDATE apps SET ", $col, " = ?1 WHERE id = ?2"),
                    params![$value(v), id],
                )?;
            }
        };
    }
    set!(availability, "availability", |v: &Availability| v.as_str());
    set!(run, "run", |v: &Option<String>| v.clone());
    set!(workdir, "workdir", |v: &Option<String>| v.clone());
    set!(root, "root", |v: &Option<String>| v.clone());
    set!(replicas, "replicas", |v: &u32| *v);
    set!(memory_bytes, "memory_bytes", |v: &Option<u64>| *v);
    set!(cpu_millis, "cpu_millis", |v: &Option<u32>| *v);
    set!(max_body, "max_body", |v: &Option<u64>| *v);
    set!(health_path, "health_path", |v: &Option<String>| v.clone());
    set!(keep_releases, "keep_releases", |v: &u32| *v);
    set!(git_url, "git_url", |v: &Option<String>| v.clone());
    set!(git_ref, "git_ref", |v: &Option<String>| v.clone());
    set!(hsts_seconds, "hsts_seconds", |v: &Option<u64>| *v);
    set!(sandbox, "sandbox", |v: &bool| *v);
    set!(runtime, "runtime", |v: &RuntimeKind| v.as_str());
    set!(port, "port", |v: &Option<u16>| *v);
    set!(read_only, "read_only", |v: &bool| *v);
    set!(stop_grace_ms, "stop_grace_ms", |v: &Option<u64>| *v);
    set!(constraints, "constraints", |v: &Vec<String>| v.join("\n"));
    set!(node, "node", |v: &Option<String>| v.clone());
    tx.execute(
        "UPDATE apps SET updated_at = ?1 WHERE id = ?2",
        params![now(), id],
    )?;
    Ok(())
}

impl Store {
    /// Creates an app with its settings, domains and env in one transaction.
    pub fn create_app(
        &self,
        name: &str,
        kind: AppKind,
        settings: &AppSettings,
        domains: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<App> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let t = now();
        // Backups and links name an app or a database: one name, one thing.
        let db: Option<String> = tx
            .query_row("SELECT name FROM databases WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if db.is_some() {
            return Err(StoreError::Exists {
                what: "database",
                name: name.to_string(),
            });
        }
        tx.execute(
            "INSERT INTO apps (name, kind, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
            params![name, kind.as_str(), t],
        )
        .map_err(|e| exists_on_conflict(e, "app", name))?;
        let id = tx.last_insert_rowid();
        apply_settings(&tx, id, settings)?;
        for host in domains {
            tx.execute(
                "INSERT INTO domains (app_id, host) VALUES (?1, ?2)",
                params![id, host],
            )
            .map_err(|e| exists_on_conflict(e, "domain", host))?;
        }
        for (k, v) in env {
            tx.execute(
                "INSERT INTO env (app_id, name, value) VALUES (?1, ?2, ?3)",
                params![id, k, v],
            )?;
        }
        let app = load(&tx, name)?;
        tx.commit()?;
        Ok(app)
    }

    pub fn app(&self, name: &str) -> Result<App> {
        load(&self.conn(), name)
    }

    pub fn apps(&self) -> Result<Vec<App>> {
        let conn = self.conn();
        let mut q =
            conn.prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name"))?;
        let rows = q
            .query_map([], row_to_app)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut apps = Vec::with_capacity(rows.len());
        for (id, mut app) in rows {
            fill(&conn, id, &mut app)?;
            apps.push(app);
        }
        Ok(apps)
    }

    pub fn update_app(&self, name: &str, settings: &AppSettings) -> Result<App> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = app_id(&tx, name)?;
        apply_settings(&tx, id, settings)?;
        let app = load(&tx, name)?;
        tx.commit()?;
        Ok(app)
    }

    /// Removes an app and its backup schedules (its backups stay, to bring it back).
    pub fn delete_app(&self, name: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if tx.execute("DELETE FROM apps WHERE name = ?1", [name])? == 0 {
            return Err(not_found(name));
        }
        tx.execute("DELETE FROM backup_schedules WHERE target = ?1", [name])?;
        tx.commit()?;
        Ok(())
    }

    /// Adds a host name; a name another app already has is `Exists`.
    pub fn add_domain(&self, app: &str, host: &str) -> Result<App> {
        self.add_domain_tls(app, host, None)
    }

    /// Adds a host name with a certificate source, or changes the source of one the app has.
    /// A name another app has, or one this app has already with no source given, is `Exists`.
    pub fn add_domain_tls(&self, app: &str, host: &str, tls: Option<Tls>) -> Result<App> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = app_id(&tx, app)?;
        let owner: Option<i64> = tx
            .query_row("SELECT app_id FROM domains WHERE host = ?1", [host], |r| {
                r.get(0)
            })
            .optional()?;
        match (owner, tls) {
            (Some(o), Some(t)) if o == id => {
                tx.execute(
                    "UPDATE domains SET tls = ?1 WHERE host = ?2",
                    params![t.as_str(), host],
                )?;
            }
            _ => {
                tx.execute(
                    "INSERT INTO domains (app_id, host, tls) VALUES (?1, ?2, ?3)",
                    params![id, host, tls.unwrap_or(Tls::None).as_str()],
                )
                .map_err(|e| exists_on_conflict(e, "domain", host))?;
            }
        }
        tx.execute(
            "UPDATE apps SET updated_at = ?1 WHERE id = ?2",
            params![now(), id],
        )?;
        let a = load(&tx, app)?;
        tx.commit()?;
        Ok(a)
    }

    pub fn remove_domain(&self, app: &str, host: &str) -> Result<App> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = app_id(&tx, app)?;
        let n = tx.execute(
            "DELETE FROM domains WHERE app_id = ?1 AND host = ?2",
            params![id, host],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "domain",
                name: host.to_string(),
            });
        }
        tx.execute(
            "UPDATE apps SET updated_at = ?1 WHERE id = ?2",
            params![now(), id],
        )?;
        let a = load(&tx, app)?;
        tx.commit()?;
        Ok(a)
    }

    /// Sets (adds or replaces) env vars and removes `unset`, in one transaction.
    pub fn change_env(
        &self,
        app: &str,
        set: &BTreeMap<String, String>,
        unset: &[String],
    ) -> Result<App> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = app_id(&tx, app)?;
        for (k, v) in set {
            tx.execute(
                "INSERT INTO env (app_id, name, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app_id, name) DO UPDATE SET value = excluded.value",
                params![id, k, v],
            )?;
        }
        for k in unset {
            let n = tx.execute(
                "DELETE FROM env WHERE app_id = ?1 AND name = ?2",
                params![id, k],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "variable",
                    name: k.clone(),
                });
            }
        }
        tx.execute(
            "UPDATE apps SET updated_at = ?1 WHERE id = ?2",
            params![now(), id],
        )?;
        let a = load(&tx, app)?;
        tx.commit()?;
        Ok(a)
    }

    /// Sets (or with `None` removes) the app's webhook secret.
    pub fn set_webhook_secret(&self, app: &str, secret: Option<&str>) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE apps SET webhook_secret = ?1, updated_at = ?2 WHERE name = ?3",
            params![secret, now(), app],
        )?;
        if n == 0 {
            return Err(not_found(app));
        }
        Ok(())
    }

    /// The webhook secret, for signature checks only.
    pub fn webhook_secret(&self, app: &str) -> Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT webhook_secret FROM apps WHERE name = ?1",
                [app],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| not_found(app))
    }

    /// The app's env vars with their values: for the runtime only, never for API output.
    pub fn env(&self, app: &str) -> Result<BTreeMap<String, String>> {
        let conn = self.conn();
        let id = app_id(&conn, app)?;
        let mut q = conn.prepare_cached("SELECT name, value FROM env WHERE app_id = ?1")?;
        let rows = q.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn create_read_update_delete() {
        let s = Store::open_test();
        let settings = AppSettings {
            run: Some(Some("./run.sh".into())),
            replicas: Some(2),
            ..Default::default()
        };
        let app = s
            .create_app(
                "blog",
                AppKind::Process,
                &settings,
                &["blog.example.com".into()],
                &env(&[("A", "1")]),
            )
            .unwrap();
        assert_eq!(app.run.as_deref(), Some("./run.sh"));
        assert_eq!(app.replicas, 2);
        assert_eq!(app.domains, ["blog.example.com"]);
        assert_eq!(app.env_names, ["A"]);
        assert!(matches!(
            s.create_app(
                "blog",
                AppKind::Static,
                &AppSettings::default(),
                &[],
                &BTreeMap::new()
            ),
            Err(StoreError::Exists { .. })
        ));
        let app = s
            .update_app(
                "blog",
                &AppSettings {
                    availability: Some(Availability::NotServed),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(app.availability, Availability::NotServed);
        let app = s
            .change_env("blog", &env(&[("B", "2"), ("A", "3")]), &[])
            .unwrap();
        assert_eq!(app.env_names, ["A", "B"]);
        assert_eq!(s.env("blog").unwrap()["A"], "3");
        assert!(matches!(
            s.change_env("blog", &BTreeMap::new(), &["NOPE".into()]),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            s.env("blog").unwrap().len(),
            2,
            "a failed change writes nothing"
        );
        s.delete_app("blog").unwrap();
        assert!(matches!(s.app("blog"), Err(StoreError::NotFound { .. })));
        assert!(s.apps().unwrap().is_empty());
    }

    #[test]
    fn a_domain_belongs_to_one_app_and_failed_creates_leave_nothing() {
        let s = Store::open_test();
        s.create_app(
            "a",
            AppKind::Static,
            &AppSettings::default(),
            &["x.test".into()],
            &BTreeMap::new(),
        )
        .unwrap();
        let err = s
            .create_app(
                "b",
                AppKind::Static,
                &AppSettings::default(),
                &["x.test".into()],
                &BTreeMap::new(),
            )
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Exists { what: "domain", .. }),
            "{err}"
        );
        assert!(
            matches!(s.app("b"), Err(StoreError::NotFound { .. })),
            "no half-created app"
        );
        assert!(matches!(
            s.add_domain("a", "x.test"),
            Err(StoreError::Exists { .. })
        ));
        let a = s.remove_domain("a", "x.test").unwrap();
        assert!(a.domains.is_empty());
    }
}
