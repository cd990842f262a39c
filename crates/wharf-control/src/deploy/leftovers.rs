//! What a killed server's deploys leave behind, cleared at start-up before anything runs: build
//! process groups still running (recorded in `run/<app>.build.pid`, reaped the way app
//! instances are), folders of releases that are not `ready` or `active` (a build cut short;
//! such a release is never served), checkouts in the making, and partial backups (`*.tmp`).

use wharf_store::{ReleaseStatus, Store, StoreError};

use crate::paths::DataDir;

pub(crate) fn clear(store: &Store, data: &DataDir) -> Result<(), StoreError> {
    // Builds first: a build still running would write into the folder removed below.
    if let Ok(entries) = std::fs::read_dir(data.run()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".build.pid")
                && wharf_runtime::pidfile::reap(&e.path())
            {
                tracing::warn!(file = %e.path().display(), "stopped a build a previous server left running");
            }
        }
    }
    for app in store.apps()? {
        let servable: Vec<String> = store
            .releases(&app.name)?
            .into_iter()
            .filter(|r| matches!(r.status, ReleaseStatus::Ready | ReleaseStatus::Active))
            .map(|r| r.number.to_string())
            .collect();
        if let Ok(entries) = std::fs::read_dir(data.releases(&app.name)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if servable.contains(&name) {
                    continue;
                }
                tracing::warn!(path = %e.path().display(), "removing what an unfinished build left");
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        if let Ok(entries) = std::fs::read_dir(data.backups(&app.name)) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    tracing::warn!(path = %e.path().display(), "removing a partial backup");
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(())
}
