//! The data directory layout, in one place.

use std::path::{Path, PathBuf};

/// `<data>/wharf.db`, `apps/<app>/[releases/<n>/, cache/]`, `volumes/<app>/`, `logs/<app>/`,
/// `backups/<app>/`, `cache/<app>.git`, `run/` (pid files), `certs/<host>/`, `admin.token`.
#[derive(Clone, Debug)]
pub(crate) struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub(crate) fn new(root: PathBuf) -> DataDir {
        DataDir { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Certificates (one folder per host) and the ACME account.
    pub(crate) fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.root.join("wharf.db")
    }

    pub(crate) fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    /// Where a process app runs unless it names its own folder.
    pub(crate) fn app_dir(&self, app: &str) -> PathBuf {
        self.root.join("apps").join(app)
    }

    /// What a static app serves unless it names its own folder.
    pub(crate) fn public_dir(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("public")
    }

    /// Persistent data, kept apart from the app's code.
    pub(crate) fn volume(&self, app: &str) -> PathBuf {
        self.root.join("volumes").join(app)
    }

    pub(crate) fn logs(&self, app: &str) -> PathBuf {
        self.root.join("logs").join(app)
    }

    /// `apps/<app>/releases/`: one folder per kept release.
    pub(crate) fn releases(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("releases")
    }

    pub(crate) fn release(&self, app: &str, number: u32) -> PathBuf {
        self.releases(app).join(number.to_string())
    }

    /// Bare repositories users `git push` to (`git/<app>.git`).
    pub(crate) fn push_repos(&self) -> PathBuf {
        self.root.join("git")
    }

    /// The bare git repository deploys fetch into.
    pub(crate) fn git_cache(&self, app: &str) -> PathBuf {
        self.root.join("cache").join(format!("{app}.git"))
    }

    /// `apps/<app>/cache/`: the build's `HOME` (npm's and pip's download caches, and anything
    /// else a build keeps under `HOME`), shared by the app's builds and never part of a
    /// release or a backup.
    pub(crate) fn build_cache(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("cache")
    }

    /// Pid files of running instances and builds, reaped after a killed server.
    pub(crate) fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The pid file of the build under way for `app` (instances are `<app>-<port>.pid`).
    pub(crate) fn build_pid(&self, app: &str) -> PathBuf {
        self.run().join(format!("{app}.build.pid"))
    }

    pub(crate) fn backups(&self, app: &str) -> PathBuf {
        self.root.join("backups").join(app)
    }
}
