//! A user per app: when wharf may switch users (root, or the capabilities below), every app's
//! instances and builds run as the app's own uid and gid, allocated once from
//! [`wharf_store::APP_UIDS`], and its folders (`apps/<app>`, `volumes/<app>`) belong to it.
//! Otherwise apps run as wharf's own user, and [`AppUsers::note`] says why.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
use wharf_runtime::AppUser;
use wharf_store::{APP_UIDS, Store};

use crate::paths::DataDir;

/// What wharf needs to run apps as their own users and still manage them: switch users, give
/// folders away, read, write and re-mode what apps own (backups, purge), and signal their
/// processes (stop, restart).
const NEEDED: [(u32, &str); 6] = [
    (7, "CAP_SETUID"),
    (6, "CAP_SETGID"),
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (5, "CAP_KILL"),
];

/// Whether apps get their own users here.
#[derive(Clone, Debug)]
pub(crate) struct AppUsers {
    /// `None`: on. `Some(why)`: off, and why.
    off: Option<String>,
}

impl AppUsers {
    /// Decides from wharf's own privileges and the data folder's place: apps must be able to
    /// pass through its parents to reach their own folders.
    pub(crate) fn detect(data_root: &Path) -> AppUsers {
        let uid = rustix::process::geteuid().as_raw();
        let caps = effective_caps();
        let missing: Vec<&str> = NEEDED
            .iter()
            .filter(|(bit, _)| caps.is_none_or(|c| c & (1 << bit) == 0))
            .map(|(_, name)| *name)
            .collect();
        if !missing.is_empty() {
            return AppUsers::off(format!(
                "wharf runs as uid {uid} without {}",
                missing.join(", ")
            ));
        }
        for dir in data_root.ancestors().skip(1) {
            if let Ok(meta) = std::fs::metadata(dir)
                && meta.permissions().mode() & 0o001 == 0
            {
                return AppUsers::off(format!(
                    "the data folder is inside {}, which other users cannot enter (mode {:04o}); \
                     move the data folder or allow it with `chmod o+x {}`",
                    dir.display(),
                    meta.permissions().mode() & 0o7777,
                    dir.display()
                ));
            }
        }
        AppUsers { off: None }
    }

    pub(crate) fn off(why: String) -> AppUsers {
        AppUsers { off: Some(why) }
    }

    pub(crate) fn on(&self) -> bool {
        self.off.is_none()
    }

    /// Set when wharf runs as root but cannot give apps users of their own: then no instance
    /// or build may start, since it would run as root.
    pub(crate) fn refusal(&self) -> Option<String> {
        let why = self.off.as_deref()?;
        rustix::process::geteuid().is_root().then(|| {
            format!(
                "wharf runs as root and never runs apps as root, but per-app users are off: {why}"
            )
        })
    }

    /// Why apps run as wharf's own user, when they do.
    pub(crate) fn note(&self) -> Option<&str> {
        self.off.as_deref()
    }

    /// The app's user (allocated on first use), with its folders made its own; `None` when
    /// per-app users are off.
    pub(crate) fn prepare(
        &self,
        store: &Store,
        data: &DataDir,
        app: &str,
    ) -> Result<Option<AppUser>, String> {
        if !self.on() {
            return Ok(None);
        }
        let uid = store
            .app_uid(app, APP_UIDS, taken_by_system)
            .map_err(|e| e.to_string())?;
        let user = AppUser { uid, gid: uid };
        data.give_app_folders(app, user)
            .map_err(|e| format!("cannot give {app}'s folders to its user (uid {uid}): {e}"))?;
        Ok(Some(user))
    }
}

/// Empties this thread's ambient capability set, so that no process wharf starts inherits
/// wharf's capabilities: a wharf run as an ordinary user with systemd's
/// `AmbientCapabilities=` would otherwise pass `CAP_SETUID` and the rest to every app and
/// build through `exec` (a switch from root clears them anyway). Capabilities are per thread:
/// call this before any other thread starts, as `wharf server` does first thing; the threads
/// started later copy the cleared set.
pub fn drop_inherited_capabilities() -> std::io::Result<()> {
    rustix::thread::clear_ambient_capability_set().map_err(Into::into)
}

/// `CapEff` of this process, from `/proc/self/status`.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Whether the system has this uid or gid for something else (systemd's dynamic users share
/// the range but are not listed; a uid wharf hands out is checked against the files only).
fn taken_by_system(id: u32) -> bool {
    ["/etc/passwd", "/etc/group"].iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines()
                .any(|l| l.split(':').nth(2) == Some(id.to_string().as_str()))
        })
    })
}

/// Gives `path` and everything under it to `user`, links themselves and never what they point
/// to. `path`'s parents are trusted (wharf's own folders); from there the walk holds each
/// folder open and goes on from that descriptor, never following a link: an app that swaps a
/// folder of its own for a link while this runs as root cannot make it give away anything
/// outside.
pub(crate) fn chown_tree(path: &Path, user: AppUser) -> std::io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other(format!(
            "{} names no file",
            path.display()
        )));
    };
    let parent = rustix::fs::open(parent, dir_flags(), Mode::empty())?;
    give_entry(&parent, name, user, false)
}

/// Opens `path` (a folder wharf made, whose parents are wharf's) without following a link
/// in its last part.
pub(crate) fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, dir_flags(), Mode::empty())?)
}

/// Gives `name` in `parent` (and all under it, when it is a folder) to `user`; with
/// `only_if_not_its`, leaves it alone when it already is the user's. Never follows a link.
pub(crate) fn give_entry(
    parent: &OwnedFd,
    name: impl rustix::path::Arg,
    user: AppUser,
    only_if_not_its: bool,
) -> std::io::Result<()> {
    let name = name.into_c_str()?;
    if only_if_not_its {
        let st = match rustix::fs::statat(parent, &*name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            other => other?,
        };
        if st.st_uid == user.uid && st.st_gid == user.gid {
            return Ok(());
        }
    }
    match rustix::fs::openat(parent, &*name, dir_flags(), Mode::empty()) {
        Ok(sub) => chown_dir(&sub, user),
        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => chown_file(parent, &name, user),
        Err(e) => Err(e.into()),
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Gives a file or link (not what it points to) to `user`, unless it has other names: a hard
/// link an app made to a file that is not its own (another app's, or `/etc/shadow` where the
/// system allows such links) must not become the app's. The file is held open (`O_PATH`) from
/// the check to the change, so it cannot be swapped in between.
fn chown_file(parent: &OwnedFd, name: &std::ffi::CStr, user: AppUser) -> std::io::Result<()> {
    let file = rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&file)?;
    if st.st_uid == user.uid && st.st_gid == user.gid {
        return Ok(());
    }
    let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
    if st.st_nlink > 1 && !is_dir {
        tracing::warn!(
            file = %name.to_string_lossy(),
            uid = user.uid,
            "not giving a file with several names (hard links) to the app's user"
        );
        return Ok(());
    }
    rustix::fs::chownat(
        &file,
        c"",
        Some(Uid::from_raw(user.uid)),
        Some(Gid::from_raw(user.gid)),
        AtFlags::EMPTY_PATH,
    )?;
    Ok(())
}

fn chown_dir(dir: &OwnedFd, user: AppUser) -> std::io::Result<()> {
    let st = rustix::fs::fstat(dir)?;
    if st.st_uid != user.uid || st.st_gid != user.gid {
        rustix::fs::fchown(
            dir,
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
        )?;
    }
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        give_entry(dir, name, user, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn chown_tree_gives_away_links_never_what_they_point_to() {
        if !rustix::process::geteuid().is_root() {
            return; // giving files away needs root (CI runs as root)
        }
        let base = std::env::temp_dir().join(format!("wharf-chown-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let tree = base.join("tree");
        let outside = base.join("outside");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(tree.join("sub/file"), "x").unwrap();
        std::fs::write(outside.join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("sub/link")).unwrap();
        // A hard link to a file that is not the app's (where the system allows making one).
        std::fs::hard_link(outside.join("secret"), tree.join("sub/hard")).unwrap();
        let user = AppUser {
            uid: 61990,
            gid: 61991,
        };
        chown_tree(&tree, user).unwrap();
        let owner = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        for p in ["", "sub", "sub/file", "sub/link"] {
            assert_eq!(owner(&tree.join(p)), (61990, 61991), "{p}");
        }
        assert_eq!(owner(&outside), (0, 0));
        assert_eq!(
            owner(&outside.join("secret")),
            (0, 0),
            "through a hard link"
        );
        // A link given as the top is given away itself, not followed.
        chown_tree(&tree.join("sub/link"), user).unwrap();
        assert_eq!(owner(&outside), (0, 0));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_releases_folder_replaced_by_a_link_gives_nothing_outside_away() {
        if !rustix::process::geteuid().is_root() {
            return; // giving files away needs root (CI runs as root)
        }
        let base = std::env::temp_dir().join(format!("wharf-give-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let outside = base.join("etc");
        std::fs::create_dir_all(outside.join("cron.d")).unwrap();
        std::fs::write(outside.join("shadow"), "x").unwrap();
        let data = DataDir::new(base.join("data"));
        let user = AppUser {
            uid: 61992,
            gid: 61992,
        };
        std::fs::create_dir_all(data.release("evil", 1)).unwrap();
        data.give_app_folders("evil", user).unwrap();
        // The app (which owns its folder) puts a link where its releases were.
        let releases = data.releases("evil");
        std::fs::rename(&releases, data.app_dir("evil").join("old")).unwrap();
        std::os::unix::fs::symlink(&outside, &releases).unwrap();
        std::os::unix::fs::lchown(&releases, Some(user.uid), Some(user.gid)).unwrap();
        data.give_app_folders("evil", user).unwrap();
        for p in ["", "shadow", "cron.d"] {
            let m = std::fs::symlink_metadata(outside.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (0, 0), "{p} was given away");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_data_folder_others_cannot_reach_turns_users_off_with_the_fix() {
        let base = std::env::temp_dir().join(format!("wharf-users-{}", std::process::id()));
        let closed = base.join("closed");
        std::fs::create_dir_all(closed.join("data")).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let users = AppUsers::detect(&closed.join("data"));
        let note = users.note().expect("off").to_string();
        std::fs::remove_dir_all(&base).unwrap();
        // Unprivileged, the capabilities are what is missing; as root, the folder is.
        if rustix::process::geteuid().is_root() {
            assert!(note.contains("chmod o+x"), "{note}");
            assert!(note.contains("closed"), "{note}");
        } else {
            assert!(note.contains("without CAP_SETUID"), "{note}");
        }
    }
}
