//! The operations log: what was done, step by step, and how it ended, in words for the user.

use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::model::{Action, OpStatus, Operation};
use crate::{Store, now};

impl Store {
    pub fn begin_operation(&self, app: Option<&str>, kind: &str) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO operations (app, kind, status, started_at) VALUES (?1, ?2, 'running', ?3)",
            params![app, kind, now()],
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
                "SELECT id, app, kind, status, message, started_at, finished_at FROM operations WHERE id = ?1",
                [id],
                row_to_op,
            )
            .optional()?
            .ok_or(StoreError::NotFound { what: "operation", name: id.to_string() })?;
        with_actions(&conn, vec![op]).map(|mut v| v.remove(0))
    }

    /// Newest first; `app` filters to one app.
    pub fn operations(&self, app: Option<&str>, limit: u32) -> Result<Vec<Operation>> {
        let conn = self.conn();
        let mut q = conn.prepare_cached(
            "SELECT id, app, kind, status, message, started_at, finished_at FROM operations
             WHERE ?1 IS NULL OR app = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let ops = q
            .query_map(params![app, limit], row_to_op)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        with_actions(&conn, ops)
    }
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
        let op = s.begin_operation(Some("blog"), "create").unwrap();
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
        assert_eq!(
            got.actions
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>(),
            ["store", "start"]
        );
        let other = s.begin_operation(Some("x"), "restart").unwrap();
        assert_eq!(s.operations(Some("blog"), 10).unwrap().len(), 1);
        assert_eq!(s.operations(None, 10).unwrap()[0].id, other);
        assert_eq!(s.fail_interrupted_operations().unwrap(), 1);
        assert_eq!(s.operation(other).unwrap().status, OpStatus::Failed);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }
}
