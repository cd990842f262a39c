//! The user id each app runs as, allocated once from a reserved range and kept for life.

use std::ops::RangeInclusive;

use rusqlite::{OptionalExtension, params};

use crate::Store;
use crate::error::{Result, StoreError};

/// The uids (and gids, the same number) apps get: systemd's range for `DynamicUser=`, which
/// distributions keep out of `/etc/passwd`.
pub const APP_UIDS: RangeInclusive<u32> = 61184..=65519;

impl Store {
    /// The app's uid, allocating the lowest free one of `range` the first time. `taken` says
    /// whether the system uses a uid already (e.g. it is in `/etc/passwd`); those are skipped.
    pub fn app_uid(
        &self,
        app: &str,
        range: RangeInclusive<u32>,
        taken: impl Fn(u32) -> bool,
    ) -> Result<u32> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let known: Option<u32> = tx
            .query_row("SELECT uid FROM app_users WHERE app = ?1", [app], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(uid) = known {
            return Ok(uid);
        }
        let used: std::collections::HashSet<u32> = tx
            .prepare("SELECT uid FROM app_users")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let uid = range
            .clone()
            .find(|u| !used.contains(u) && !taken(*u))
            .ok_or_else(|| StoreError::NoFreeUid {
                app: app.to_string(),
                first: *range.start(),
                last: *range.end(),
            })?;
        tx.execute(
            "INSERT INTO app_users (app, uid) VALUES (?1, ?2)",
            params![app, uid],
        )?;
        tx.commit()?;
        Ok(uid)
    }

    /// The app's uid if it has one.
    pub fn known_app_uid(&self, app: &str) -> Result<Option<u32>> {
        Ok(self
            .conn()
            .query_row("SELECT uid FROM app_users WHERE app = ?1", [app], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Gives the app's uid back, once nothing it owned remains (its files were purged).
    pub fn free_app_uid(&self, app: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM app_users WHERE app = ?1", [app])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_kept_per_name_skipped_when_taken_and_freed_by_purge_only() {
        let s = Store::open_test();
        let a = s.app_uid("a", 100..=103, |u| u == 100).unwrap();
        assert_eq!(a, 101, "100 is the system's");
        assert_eq!(s.app_uid("a", 100..=103, |_| false).unwrap(), 101, "kept");
        assert_eq!(s.app_uid("b", 100..=103, |u| u == 100).unwrap(), 102);
        assert_eq!(s.known_app_uid("b").unwrap(), Some(102));
        assert_eq!(s.app_uid("c", 100..=103, |u| u == 100).unwrap(), 103);
        let err = s.app_uid("d", 100..=103, |u| u == 100).unwrap_err();
        assert!(err.to_string().contains("no free user id"), "{err}");
        s.free_app_uid("b").unwrap();
        assert_eq!(s.known_app_uid("b").unwrap(), None);
        assert_eq!(s.app_uid("d", 100..=103, |u| u == 100).unwrap(), 102);
    }
}
