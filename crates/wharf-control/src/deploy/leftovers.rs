//! What a killed server's deploys leave behind, cleared at start-up before anything runs: build
//! process groups still running (recorded in `run/builds/<app>.pid`; one-off commands in
//! `run/one-off/<app>-<op>.pid`), reaped the way the process
//! runtime reaps app instances from `run/`), folders of releases that are not `ready` or `active` (a build cut short;
//! such a release is never served), checkouts in the making, and partial backups (`*.tmp`).

use std::os::fd::AsRawFd;

use rustix::fs::{Mode, OFlags};
use wharf_store::{ReleaseStatus, Store, StoreError};

use crate::paths::DataDir;

pub(crate) fn clear(store: &Store, data: &DataDir) -> Result<(), StoreError> {
    // Builds first: a build still running would write into the folder removed below.
    if let Ok(entries) = std::fs::read_dir(data.build_pids()) {
        for e in entries.flatten() {
            if wharf_runtime::pidfile::reap(&e.path()) {
                tracing::warn!(file = %e.path().display(), "stopped a build a previous server left running");
            }
        }
    }
    // One-off commands (`wharf run`) too: their client went with the server.
    if let Ok(entries) = std::fs::read_dir(data.run_pids()) {
        for e in entries.flatten() {
            if wharf_runtime::pidfile::reap(&e.path()) {
                tracing::warn!(file = %e.path().display(), "stopped a one-off command a previous server left running");
            }
        }
    }
    // Names only: every app's whole record at once would only swell the server's memory.
    for app in store.app_names()? {
        let servable: Vec<String> = store
            .releases(&app)?
            .into_iter()
            .filter(|r| matches!(r.status, ReleaseStatus::Ready | ReleaseStatus::Active))
            .map(|r| r.number.to_string())
            .collect();
        // `releases/` sits in the app's own folder: with per-app users the app may have made
        // it a link (to `/etc`, to another app's volume). It is held open without following a
        // link and everything below is reached through that descriptor, so only what really
        // is in the app's releases folder is removed.
        let releases = data.releases(&app);
        if let Ok(dir) = rustix::fs::open(
            &releases,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let held = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            for e in std::fs::read_dir(&held).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if servable.contains(&name) {
                    continue;
                }
                tracing::warn!(path = %releases.join(&name).display(), "removing what an unfinished build left");
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        if let Ok(entries) = std::fs::read_dir(data.backups(&app)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_releases_folder_replaced_by_a_link_removes_nothing_outside() {
        let base = std::env::temp_dir().join(format!("wharf-leftovers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let outside = base.join("etc");
        std::fs::create_dir_all(outside.join("ssh")).unwrap();
        std::fs::write(outside.join("passwd"), "root").unwrap();
        let data = DataDir::new(base.join("data"));
        std::fs::create_dir_all(data.root()).unwrap();
        let store = Store::open(&data.db()).unwrap();
        store
            .create_app(
                "evil",
                wharf_store::AppKind::Process,
                &Default::default(),
                &[],
                &Default::default(),
            )
            .unwrap();
        std::fs::create_dir_all(data.app_dir("evil")).unwrap();
        std::os::unix::fs::symlink(&outside, data.releases("evil")).unwrap();
        clear(&store, &data).unwrap();
        assert!(
            outside.join("passwd").exists(),
            "a file the link led to was removed"
        );
        assert!(
            outside.join("ssh").is_dir(),
            "a folder the link led to was removed"
        );
        // A real leftover is still removed.
        std::fs::remove_file(data.releases("evil")).unwrap();
        std::fs::create_dir_all(data.release("evil", 3)).unwrap();
        clear(&store, &data).unwrap();
        assert!(
            !data.release("evil", 3).exists(),
            "an unfinished build's folder stays"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
