//! The data directory layout, in one place, and its permissions: the folder holds env values
//! in clear (in the database) and keys, so only the server's user may read it. When apps run
//! as their own users, the folder and `apps/`, `volumes/` let them pass (0711: enter, not list)
//! to their own `apps/<app>` and `volumes/<app>` (theirs, 0700); nothing else is theirs.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use rustix::fs::{Mode, OFlags};
use std::path::{Path, PathBuf};

use wharf_runtime::AppUser;

/// The data folder: owner only.
const DIR_MODE: u32 = 0o700;
/// The data folder, `apps/` and `volumes/` when apps run as their own users: they may pass
/// through to their own folder, but not list what is there.
const PASS_MODE: u32 = 0o711;
/// The database (and SQLite's `-wal`/`-shm`, which take the database's mode) and the token.
const FILE_MODE: u32 = 0o600;
/// Folders for wharf alone, whatever runs as whom.
const PRIVATE_DIRS: [&str; 7] = [
    "certs",
    "run",
    "backups",
    "logs",
    "cache",
    "git",
    "repository",
];
/// Folders that hold one folder per app, owned by the app's user.
const APP_PARENTS: [&str; 2] = ["apps", "volumes"];

/// The id of the server that owns `dir` (kept in `dir/server-id`, made on first use): what it
/// creates on a shared Docker engine carries it, so servers never touch each other's objects.
pub fn server_id(dir: &Path) -> std::io::Result<String> {
    let file = dir.join("server-id");
    match std::fs::read_to_string(&file) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    // Whole or not at all, and on disk before anything is labelled with it: an id lost to a
    // power cut would orphan every container at the next start.
    let tmp = dir.join("server-id.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &file)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(id)
}

/// Creates the data folder owner-only (0700; its parents as the umask says) if it does not exist.
pub fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// `<data>/wharf.db`, `apps/<app>/[releases/<n>/, cache/, public/]`, `volumes/<app>/`,
/// `logs/<app>/`, `backups/<app>/`, `cache/<app>.git`, `git/<app>.git`, `run/` (pid files),
/// `certs/<host>/`, `admin.token`.
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
    /// The link's certificate authority (`ca.pem`, `ca.key`).
    pub(crate) fn link(&self) -> PathBuf {
        self.root.join("link")
    }

    pub(crate) fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.root.join("wharf.db")
    }

    /// `traffic.json`: the apps' recent traffic, so the dashboard's graphs survive a restart.
    pub(crate) fn traffic(&self) -> PathBuf {
        self.root.join("traffic.json")
    }

    /// Makes the folder private and the database files and token 0600, whatever the umask,
    /// and creates the database file 0600 before SQLite opens it (SQLite gives `-wal` and
    /// `-shm` the mode of the database). The folder, `apps/` and `volumes/` are 0711 when apps
    /// run as their own users (`app_users`), else 0700; `certs/`, `run/`, `backups/`, `logs/`,
    /// `cache/` and `git/` are 0700 (created here, so nothing makes them with the umask's
    /// mode later). Returns what had to be tightened (an install from before this rule), as
    /// "path (was 0644)".
    pub(crate) fn make_private(&self, app_users: bool) -> std::io::Result<Vec<String>> {
        let shared = if app_users { PASS_MODE } else { DIR_MODE };
        let mut fixed = Vec::new();
        let mut tighten = |path: &Path, mode: u32| -> std::io::Result<()> {
            let meta = match std::fs::metadata(path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            let was = meta.permissions().mode() & 0o7777;
            // Opening up (0700 → 0711 when apps get their own users) is not worth a warning.
            if was != mode {
                std::fs::set_permissions(path, Permissions::from_mode(mode))?;
                if was & !mode != 0 {
                    fixed.push(format!("{} (was {was:04o})", path.display()));
                }
            }
            Ok(())
        };
        tighten(&self.root, shared)?;
        let db = self.db();
        if !db.exists() {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(FILE_MODE)
                .open(&db)?;
        }
        for file in [
            db.clone(),
            self.root.join("wharf.db-wal"),
            self.root.join("wharf.db-shm"),
            self.admin_token(),
            self.repository_password(),
        ] {
            tighten(&file, FILE_MODE)?;
        }
        for (names, mode) in [(&PRIVATE_DIRS[..], DIR_MODE), (&APP_PARENTS[..], shared)] {
            for name in names {
                let dir = self.root.join(name);
                match std::fs::DirBuilder::new().mode(mode).create(&dir) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    other => other?,
                }
                tighten(&dir, mode)?;
            }
        }
        Ok(fixed)
    }

    /// Makes `apps/<app>` and `volumes/<app>` (created if missing) the app user's, 0700, with
    /// everything in them that is not yet: the folders themselves, the build cache and each
    /// release are checked (a full walk only where one of them belongs to someone else, so
    /// a start does not walk every file every time).
    pub(crate) fn give_app_folders(&self, app: &str, user: AppUser) -> std::io::Result<()> {
        // The build cache is the builds' `HOME`; `tmp` the instances' `HOME` and everyone's
        // private `TMPDIR` in the sandbox.
        for dir in [self.build_cache(app), self.tmp(app)] {
            std::fs::DirBuilder::new()
                .mode(DIR_MODE)
                .recursive(true)
                .create(dir)?;
        }
        for dir in [self.app_dir(app), self.volume(app)] {
            std::fs::DirBuilder::new()
                .mode(DIR_MODE)
                .recursive(true)
                .create(&dir)?;
            // Everything below is the app's to change while this runs: held open and never
            // followed through a link (a `releases` the app replaced by a link to `/etc` must
            // not give `/etc`'s files away).
            let fd = crate::users::open_dir(&dir)?;
            let st = rustix::fs::fstat(&fd)?;
            if st.st_uid != user.uid || st.st_gid != user.gid {
                crate::users::chown_tree(&dir, user)?;
            } else {
                for name in ["cache", "tmp", "public", "releases"] {
                    crate::users::give_entry(&fd, name, user, true)?;
                }
                if let Ok(releases) = rustix::fs::openat(
                    &fd,
                    "releases",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    let names: Vec<_> = rustix::fs::Dir::read_from(&releases)?
                        .flatten()
                        .map(|e| e.file_name().to_owned())
                        .filter(|n| n.as_c_str() != c"." && n.as_c_str() != c"..")
                        .collect();
                    for name in names {
                        crate::users::give_entry(&releases, name, user, true)?;
                    }
                }
            }
            if st.st_mode & 0o7777 != DIR_MODE {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(DIR_MODE))?;
            }
        }
        Ok(())
    }

    /// The backup repository's default place (restic format), and its password file.
    pub(crate) fn repository(&self) -> PathBuf {
        self.root.join("repository")
    }

    pub(crate) fn repository_password(&self) -> PathBuf {
        self.root.join("repository.password")
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

    /// `logs/<app>/builds/<n>.log`: release n's whole build output, kept with the release.
    pub(crate) fn build_log(&self, app: &str, release: u32) -> PathBuf {
        self.logs(app).join("builds").join(format!("{release}.log"))
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

    /// `apps/<app>/tmp/`: the app's private `TMPDIR` (the sandbox keeps it off the shared /tmp).
    pub(crate) fn tmp(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("tmp")
    }

    /// Pid files of running instances and builds, reaped after a killed server.
    pub(crate) fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    /// `run/builds/`: the pid files of running builds, apart from the instances' (the process
    /// runtime reaps those in `run/`; start-up reaps these, see `deploy::leftovers`).
    pub(crate) fn build_pids(&self) -> PathBuf {
        self.run().join("builds")
    }

    /// The pid file of the build under way for `app` (instances are `<app>-<port>.pid`).
    pub(crate) fn build_pid(&self, app: &str) -> PathBuf {
        self.build_pids().join(format!("{app}.pid"))
    }

    /// Pid files of one-off commands (`wharf run`) under way: `<app>-<operation>.pid`.
    pub(crate) fn run_pids(&self) -> PathBuf {
        self.run().join("one-off")
    }

    pub(crate) fn run_pid(&self, app: &str, op: i64) -> PathBuf {
        self.run_pids().join(format!("{app}-{op}.pid"))
    }

    pub(crate) fn backups(&self, app: &str) -> PathBuf {
        self.root.join("backups").join(app)
    }
}
