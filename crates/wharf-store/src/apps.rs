//! Apps, their domains and their env vars.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::error::{Result, StoreError, exists_on_conflict};
use crate::model::{
    App, AppFilter, AppKind, AppSettings, Availability, NameCursor, RuntimeKind, Tls,
};
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

/// `select` with the filter's conditions appended, and their arguments in order.
fn app_filter_sql(select: &str, filter: &AppFilter) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = format!("{select} WHERE 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(p) = &filter.prefix {
        // A range on the name, so the index finds the first match: every name starting with
        // `p` sorts from `p` (inclusive) to `p` followed by the highest character.
        sql.push_str(" AND name >= ? AND name < ?");
        args.push(p.clone().into());
        args.push(format!("{p}{}", char::MAX).into());
    }
    if let Some(c) = &filter.contains {
        sql.push_str(" AND instr(name, ?) > 0");
        args.push(c.clone().into());
    }
    if let Some(k) = filter.kind {
        sql.push_str(" AND kind = ?");
        args.push(k.as_str().to_string().into());
    }
    if let Some(u) = &filter.visible_to {
        // Through the grants' primary key (user, app): a user has few apps.
        sql.push_str(" AND name IN (SELECT app FROM grants WHERE user = ?)");
        args.push(u.clone().into());
    }
    (sql, args)
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

    /// Up to `limit` apps matching `filter` from `cursor` on, in the cursor's direction (name
    /// order for `Start` and `After`, reverse for `Before`), with their domains and env names.
    /// Only the page's rows are read: the name index gives the order and the cursor's place.
    pub fn apps_page(
        &self,
        filter: &AppFilter,
        cursor: NameCursor<'_>,
        limit: u32,
    ) -> Result<Vec<App>> {
        let (mut sql, mut args) =
            app_filter_sql(&format!("SELECT {APP_COLUMNS} FROM apps"), filter);
        let order = match cursor {
            NameCursor::Start => "ASC",
            NameCursor::After(name) => {
                sql.push_str(" AND name > ?");
                args.push(name.to_string().into());
                "ASC"
            }
            NameCursor::Before(name) => {
                sql.push_str(" AND name < ?");
                args.push(name.to_string().into());
                "DESC"
            }
        };
        sql.push_str(&format!(" ORDER BY name {order} LIMIT ?"));
        args.push(i64::from(limit).into());
        let conn = self.conn();
        let mut q = conn.prepare_cached(&sql)?;
        let rows = q
            .query_map(rusqlite::params_from_iter(args), row_to_app)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut apps = Vec::with_capacity(rows.len());
        for (id, mut app) in rows {
            fill(&conn, id, &mut app)?;
            apps.push(app);
        }
        Ok(apps)
    }

    /// How many apps match `filter` (counted on the name index, no row is read whole).
    pub fn count_apps(&self, filter: &AppFilter) -> Result<u64> {
        let (sql, args) = app_filter_sql("SELECT COUNT(*) FROM apps", filter);
        let conn = self.conn();
        let mut q = conn.prepare_cached(&sql)?;
        Ok(q.query_row(rusqlite::params_from_iter(args), |r| r.get(0))?)
    }

    /// Every app's name, in name order (no other column read).
    pub fn app_names(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut q = conn.prepare_cached("SELECT name FROM apps ORDER BY name")?;
        let names = q
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }

    pub fn app_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM apps WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Names of the apps placed on `node`, in name order.
    pub fn apps_on_node(&self, node: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut q = conn.prepare_cached("SELECT name FROM apps WHERE node = ?1 ORDER BY name")?;
        let names = q.query_map([node], |r| r.get(0))?;
        Ok(names.collect::<rusqlite::Result<_>>()?)
    }

    /// The app that has `host` among its domains, if any.
    pub fn domain_owner(&self, host: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT a.name FROM domains d JOIN apps a ON a.id = d.app_id WHERE d.host = ?1",
                [host],
                |r| r.get(0),
            )
            .optional()?)
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

    fn bulk(s: &Store, names: &[String]) {
        for (i, n) in names.iter().enumerate() {
            let kind = if i % 3 == 0 {
                AppKind::Static
            } else {
                AppKind::Process
            };
            s.create_app(
                n,
                kind,
                &AppSettings::default(),
                &[format!("{n}.example.com")],
                &BTreeMap::new(),
            )
            .unwrap();
        }
    }

    /// Walks every page forward from `Start`, `limit` at a time.
    fn walk(s: &Store, filter: &AppFilter, limit: u32) -> Vec<String> {
        let mut seen = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let cursor = last.as_deref().map_or(NameCursor::Start, NameCursor::After);
            let page = s.apps_page(filter, cursor, limit).unwrap();
            assert!(page.len() <= limit as usize);
            let Some(end) = page.last() else { break };
            last = Some(end.name.clone());
            seen.extend(page.into_iter().map(|a| a.name));
        }
        seen
    }

    #[test]
    fn pages_cover_every_app_once_in_name_order() {
        let s = Store::open_test();
        // Created out of order, so name order is not creation order.
        let mut names: Vec<String> = (0..57)
            .map(|i| format!("app-{:02}", (i * 17) % 57))
            .collect();
        bulk(&s, &names);
        names.sort();
        for limit in [1, 7, 10, 57, 100] {
            assert_eq!(
                walk(&s, &AppFilter::default(), limit),
                names,
                "limit {limit}"
            );
        }
        let page = s
            .apps_page(&AppFilter::default(), NameCursor::Start, 3)
            .unwrap();
        assert_eq!(
            page[0].domains,
            ["app-00.example.com"],
            "a page carries its domains"
        );
        assert_eq!(s.count_apps(&AppFilter::default()).unwrap(), 57);
        // Backwards from a name: the nearest names first.
        let back: Vec<String> = s
            .apps_page(&AppFilter::default(), NameCursor::Before("app-10"), 3)
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(back, ["app-09", "app-08", "app-07"]);
    }

    #[test]
    fn a_cursor_past_the_end_or_deleted_still_pages_on() {
        let s = Store::open_test();
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        bulk(&s, &names);
        let all = AppFilter::default();
        assert!(
            s.apps_page(&all, NameCursor::After("zzz"), 10)
                .unwrap()
                .is_empty()
        );
        assert!(
            s.apps_page(&all, NameCursor::Before("a"), 10)
                .unwrap()
                .is_empty()
        );
        // The previous page ended at "c", which is deleted before the next page is read.
        s.delete_app("c").unwrap();
        let next: Vec<String> = s
            .apps_page(&all, NameCursor::After("c"), 10)
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(next, ["d", "e"]);
    }

    #[test]
    fn filters_keep_prefix_substring_and_kind() {
        let s = Store::open_test();
        let names: Vec<String> = ["blog", "blog-api", "blogroll", "shop", "shop-blog", "b"]
            .map(String::from)
            .to_vec();
        bulk(&s, &names);
        let f = |prefix: Option<&str>, contains: Option<&str>, kind: Option<AppKind>| AppFilter {
            prefix: prefix.map(String::from),
            contains: contains.map(String::from),
            kind,
            visible_to: None,
        };
        let prefix = f(Some("blog"), None, None);
        assert_eq!(walk(&s, &prefix, 2), ["blog", "blog-api", "blogroll"]);
        assert_eq!(s.count_apps(&prefix).unwrap(), 3);
        let contains = f(None, Some("blog"), None);
        assert_eq!(
            walk(&s, &contains, 2),
            ["blog", "blog-api", "blogroll", "shop-blog"]
        );
        assert_eq!(s.count_apps(&contains).unwrap(), 4);
        // Every third app of `bulk` is static: blog, shop.
        let stat = f(None, None, Some(AppKind::Static));
        assert_eq!(walk(&s, &stat, 1), ["blog", "shop"]);
        let both = f(Some("blog"), None, Some(AppKind::Process));
        assert_eq!(walk(&s, &both, 5), ["blog-api", "blogroll"]);
        assert!(walk(&s, &f(Some("zz"), None, None), 5).is_empty());
        assert_eq!(s.count_apps(&f(Some("zz"), None, None)).unwrap(), 0);
        // A user with roles on single apps sees those, paged like the rest.
        s.add_user("ann", None).unwrap();
        for app in ["blogroll", "shop", "blog"] {
            s.grant("ann", crate::Role::Viewer, Some(app)).unwrap();
        }
        let ann = AppFilter {
            visible_to: Some("ann".into()),
            ..f(Some("blog"), None, None)
        };
        assert_eq!(walk(&s, &ann, 1), ["blog", "blogroll"]);
        assert_eq!(s.count_apps(&ann).unwrap(), 2);
    }

    #[test]
    fn a_deleted_apps_collaborators_go_with_it() {
        let s = Store::open_test();
        bulk(&s, &["blog".to_string(), "shop".to_string()]);
        s.add_user("ann", None).unwrap();
        s.grant("ann", crate::Role::Deployer, Some("blog")).unwrap();
        s.grant("ann", crate::Role::Viewer, Some("shop")).unwrap();
        s.delete_app("blog").unwrap();
        let apps: Vec<_> = s
            .user("ann")
            .unwrap()
            .grants
            .into_iter()
            .map(|g| g.app)
            .collect();
        assert_eq!(
            apps,
            [Some("shop".to_string())],
            "a new blog starts without ann"
        );
    }

    #[test]
    fn name_and_domain_lookups_answer_without_a_listing() {
        let s = Store::open_test();
        bulk(&s, &["blog".to_string()]);
        assert!(s.app_exists("blog").unwrap());
        assert!(!s.app_exists("shop").unwrap());
        assert_eq!(
            s.domain_owner("blog.example.com").unwrap().as_deref(),
            Some("blog")
        );
        assert_eq!(s.domain_owner("shop.example.com").unwrap(), None);
    }
}
