//! Recording an operation's actions as they happen, in words a user can act on.

use std::sync::Arc;

use wharf_store::{OpStatus, Store};

/// The actor of what a webhook starts.
pub(crate) const HOOK: &str = "hook";
/// The actor of the server's own work: boot, recovery, healing, schedules.
pub(crate) const SYSTEM: &str = "system";

/// One running operation. Failing to write the log never fails the operation itself.
pub(crate) struct OpLog {
    store: Arc<Store>,
    pub(crate) id: i64,
}

impl OpLog {
    /// Starts an operation done by `actor`: a user's name, [`HOOK`] or [`SYSTEM`].
    pub(crate) fn begin(store: &Arc<Store>, app: Option<&str>, kind: &str, actor: &str) -> OpLog {
        let id = store.begin_operation(app, kind, actor).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot record an operation");
            0
        });
        OpLog {
            store: store.clone(),
            id,
        }
    }

    pub(crate) fn ok(&self, action: &str, message: impl AsRef<str>) {
        self.action(action, OpStatus::Succeeded, message.as_ref());
    }

    pub(crate) fn failed(&self, action: &str, message: impl AsRef<str>) {
        self.action(action, OpStatus::Failed, message.as_ref());
    }

    fn action(&self, action: &str, status: OpStatus, message: &str) {
        tracing::info!(op = self.id, action, status = status.as_str(), message);
        if let Err(e) = self.store.add_action(self.id, action, status, message) {
            tracing::error!(error = %e, "cannot record an action");
        }
    }

    pub(crate) fn finish(&self, result: &Result<String, String>) {
        let (status, message) = match result {
            Ok(m) => (OpStatus::Succeeded, m.as_str()),
            Err(m) => (OpStatus::Failed, m.as_str()),
        };
        if let Err(e) = self.store.finish_operation(self.id, status, message) {
            tracing::error!(error = %e, "cannot finish an operation");
        }
    }
}
