//! The operations log: what was done, step by step, and how it ended, in words for the user.

use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::model::{Action, OpFilter, OpStatus, Operation};
use crate::{Store, now};

impl Store {
    /// Starts an operation done by `actor` (a user's name, `hook` or `system`).
    pub fn begin_operation(&self, app: Option<&str>, kind: &str, actor: &str) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO operations (app, kind, status, started_at, actor) VALUES (?1, ?2, 'running', ?3, ?4)",
            params![app, kind, now(), actor],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn add_action(&self, op: i64, name: &str, status: OpStatus, message: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO actions (operation_id, seq, name, status, message, at)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM actions WHERE operation_id = ?1), ?2, ?3, ?4, ?5)",
            params![op, name, status.as_str(), message, now()],
        )?;
        Ok(())
    }

    pub fn finish_operation(&self, op: i64, status: OpStatus, message: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE operations SET status = ?2, message = ?3, finished_at = ?4 WHERE id = ?1",
            params![op, status.as_str(), message, now()],
        )?;
        Ok(())
    }

    /// Marks operations still `running` (the server stopped under them) as failed.
    pub fn fail_interrupted_operations(&self) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE operations SET status = 'failed', finished_at = ?1,
               message = 'interrupted: the server stopped before this finished'
             WHERE status = 'running'",
            [now()],
        )?)
    }

    pub fn operation(&self, id: i64) -> Result<Operation> {
        let conn = self.conn();
        let op = conn
            .query_row(
                "SELECT id, app, kind, status, message, started_at, finished_at, actor FROM operations WHERE id = ?1",
                [id],
                row_to_op,
            )
            .optional()?
            .ok_or(StoreError::NotFound { what: "operation", name: id.to_string() })?;
        with_actions(&conn, vec![op]).map(|mut v| v.remove(0))
    }

    /// Newest first; `app` filters to one app.
    pub fn operations(&self, app: Option<&str>, limit: u32) -> Result<Vec<Operation>> {
        let filter = OpFilter {
            app: app.map(str::to_string),
            ..Default::default()
        };
        self.operations_page(&filter, None, limit)
    }

    /// Up to `limit` operations matching `filter`, newest first, older than `before` (an id)
    /// when given: keyset pagination on the id, each filter read through its index.
    pub fn operations_page(
        &self,
        filter: &OpFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Operation>> {
        let (mut sql, mut args) = op_filter_sql(
            "SELECT id, app, kind, status, message, started_at, finished_at, actor FROM operations",
            filter,
        );
        if let Some(id) = before {
            sql.push_str(" AND id < ?");
            args.push(id.into());
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(i64::from(limit).into());
        let conn = self.conn();
        let mut q = conn.prepare_cached(&sql)?;
        let ops = q
            .query_map(rusqlite::params_from_iter(args), row_to_op)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        with_actions(&conn, ops)
    }

    /// How many operations match `filter`.
    pub fn count_operations(&self, filter: &OpFilter) -> Result<u64> {
        let (sql, args) = op_filter_sql("SELECT COUNT(*) FROM operations", filter);
        let conn = self.conn();
        let mut q = conn.prepare_cached(&sql)?;
        Ok(q.query_row(rusqlite::params_from_iter(args), |r| r.get(0))?)
    }
}

fn op_filter_sql(select: &str, filter: &OpFilter) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = format!("{select} WHERE 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(app) = &filter.app {
        sql.push_str(" AND app = ?");
        args.push(app.clone().into());
    }
    if let Some(kind) = &filter.kind {
        sql.push_str(" AND kind = ?");
        args.push(kind.clone().into());
    }
    if let Some(status) = filter.status {
        sql.push_str(" AND status = ?");
        args.push(status.as_str().to_string().into());
    }
    (sql, args)
}

fn status(idx: usize, s: String) -> rusqlite::Result<OpStatus> {
    s.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

fn row_to_op(r: &rusqlite::Row<'_>) -> rusqlite::Result<Operation> {
    Ok(Operation {
        id: r.get(0)?,
        app: r.get(1)?,
        kind: r.get(2)?,
        status: status(3, r.get(3)?)?,
        message: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        actor: r.get(7)?,
        actions: Vec::new(),
    })
}

fn with_actions(conn: &rusqlite::Connection, mut ops: Vec<Operation>) -> Result<Vec<Operation>> {
    let mut q = conn.prepare_cached(
        "SELECT name, status, message, at FROM actions WHERE operation_id = ?1 ORDER BY seq",
    )?;
    for op in &mut ops {
        op.actions = q
            .query_map([op.id], |r| {
                Ok(Action {
                    name: r.get(0)?,
                    status: status(1, r.get(1)?)?,
                    message: r.get(2)?,
                    at: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_keep_ordered_actions() {
        let s = Store::open_test();
        let op = s.begin_operation(Some("blog"), "create", "ann").unwrap();
        s.add_action(op, "store", OpStatus::Succeeded, "saved")
            .unwrap();
        s.add_action(op, "start", OpStatus::Failed, "exited with status 1")
            .unwrap();
        s.finish_operation(
            op,
            OpStatus::Failed,
            "blog did not start: exited with status 1",
        )
        .unwrap();
        let got = s.operation(op).unwrap();
        assert_eq!(got.status, OpStatus::Failed);
        assert_eq!(got.actor, "ann");
        assert_eq!(
            got.actions
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>(),
            ["store", "start"]
        );
        let other = s.begin_operation(Some("x"), "restart", "ann").unwrap();
        assert_eq!(s.operations(Some("blog"), 10).unwrap().len(), 1);
        assert_eq!(s.operations(None, 10).unwrap()[0].id, other);
        assert_eq!(s.fail_interrupted_operations().unwrap(), 1);
        assert_eq!(s.operation(other).unwrap().status, OpStatus::Failed);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn operation_pages_walk_newest_first_with_filters() {
        let s = Store::open_test();
        let mut ids = Vec::new();
        for i in 0..25 {
            let app = format!("app-{}", i % 3);
            let kind = if i % 2 == 0 { "deploy" } else { "restart" };
            let op = s.begin_operation(Some(&app), kind, "ann").unwrap();
            if i % 5 == 0 {
                s.finish_operation(op, OpStatus::Failed, "no").unwrap();
            } else {
                s.finish_operation(op, OpStatus::Succeeded, "ok").unwrap();
            }
            ids.push(op);
        }
        let walk = |filter: &OpFilter, limit: u32| {
            let mut seen = Vec::new();
            let mut before = None;
            loop {
                let page = s.operations_page(filter, before, limit).unwrap();
                let Some(last) = page.last() else { break };
                before = Some(last.id);
                seen.extend(page.iter().map(|o| o.id));
            }
            seen
        };
        let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
        assert_eq!(walk(&OpFilter::default(), 4), newest_first);
        let failed = OpFilter {
            status: Some(OpStatus::Failed),
            ..Default::default()
        };
        assert_eq!(
            walk(&failed, 2),
            [ids[20], ids[15], ids[10], ids[5], ids[0]]
        );
        assert_eq!(s.count_operations(&failed).unwrap(), 5);
        let app_kind = OpFilter {
            app: Some("app-0".into()),
            kind: Some("deploy".into()),
            ..Default::default()
        };
        // i % 3 == 0 and i even: 0, 6, 12, 18, 24.
        assert_eq!(
            walk(&app_kind, 3),
            [ids[24], ids[18], ids[12], ids[6], ids[0]]
        );
        assert_eq!(s.count_operations(&app_kind).unwrap(), 5);
        assert!(
            s.operations_page(&OpFilter::default(), Some(ids[0]), 10)
                .unwrap()
                .is_empty()
        );
    }
}
