//! The sandbox every app process and build runs in: `no_new_privs` plus a Landlock domain that
//! allows reading the system's folders and the policy's `read` folders, reading and writing the
//! policy's `write` folders, binding TCP only on the policy's ports (Landlock ABI 4 and later)
//! and signalling only processes of the same sandbox (ABI 6 and later). Everything else of the
//! file system (the data folder, other apps, `/root`, `/home`, `/tmp`) is out of reach.
//!
//! A process can only restrict itself, so [`restrict_self`] is called by the launcher (`wharf
//! sandbox-exec`) right before it execs the app's command; the restrictions are inherited by
//! everything the command starts and cannot be lifted. Parts the kernel lacks are skipped (best
//! effort) and the [`Report`] says what applied.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, LandlockStatus, NetPort, PathBeneath, PathFd,
    RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

/// The newest Landlock ABI this sandbox was written and tested for; newer kernels are used at
/// this level.
const TARGET_ABI: ABI = ABI::V7;

/// What programs need to run (read and execute): binaries, libraries, configuration (DNS,
/// certificates, locales), and `/proc` and `/sys` for the process's own information. Paths that
/// do not exist on this system are skipped. Other processes' `/proc/<pid>/environ` and memory
/// stay closed: Landlock forbids inspecting (ptrace-like access to) processes outside the
/// sandbox.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    // Where `/etc/resolv.conf` points on systems with a local resolver.
    "/run/systemd/resolve",
];

/// The system folder `path` lies in, if any: sandboxed programs may read all of it, so a
/// data folder there would be readable by every app (Landlock rules only ever add access).
pub fn readable_system_folder(path: &Path) -> Option<&'static str> {
    let real = std::fs::canonicalize(path).ok()?;
    SYSTEM_READ
        .iter()
        .copied()
        .find(|root| std::fs::canonicalize(root).is_ok_and(|r| real.starts_with(r)))
}

/// Device files every program may read and write.
pub const SYSTEM_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// What a sandboxed process may reach besides the system's folders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Folders (or files) readable and executable.
    pub read: Vec<PathBuf>,
    /// Folders (or files) readable and writable.
    pub write: Vec<PathBuf>,
    /// TCP ports the process may bind; none means it may bind no TCP port at all.
    pub bind_ports: Vec<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot allow {what} `{path}`: {source}")]
    Path {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Landlock refused the rules: {0}")]
    Landlock(#[from] landlock::RulesetError),
}

/// Which parts of the sandbox the kernel enforces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Support {
    /// The kernel's Landlock ABI version; `None` when it has no (or no enabled) Landlock.
    pub landlock_abi: Option<u32>,
    /// File-system rules (ABI 1).
    pub files: bool,
    /// TCP bind limited to the policy's ports (ABI 4).
    pub tcp_bind: bool,
    /// Signals only to processes of the same sandbox (ABI 6).
    pub signals: bool,
}

impl Support {
    fn from_status(status: LandlockStatus) -> Support {
        match status {
            LandlockStatus::Available {
                effective_abi,
                kernel_abi,
            } => {
                let abi = effective_abi as i32;
                Support {
                    landlock_abi: Some(kernel_abi.unwrap_or(abi).max(0) as u32),
                    files: abi >= 1,
                    tcp_bind: abi >= 4,
                    signals: abi >= 6,
                }
            }
            LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => Support::default(),
        }
    }

    /// For status lines: "landlock ABI 7 (files, tcp bind, signals)", or why there is none.
    pub fn describe(&self) -> String {
        let Some(abi) = self.landlock_abi else {
            return "unavailable (the kernel has no Landlock enabled)".to_string();
        };
        let parts: Vec<&str> = [
            (self.files, "files"),
            (self.tcp_bind, "tcp bind"),
            (self.signals, "signals"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        format!("landlock ABI {abi} ({})", parts.join(", "))
    }
}

/// What [`restrict_self`] applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub support: Support,
    /// Whether every requested restriction is enforced (false: some or none, see `support`).
    pub complete: bool,
    pub no_new_privs: bool,
}

/// What the running kernel supports, learnt once per process.
pub fn support() -> Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    *SUPPORT.get_or_init(|| {
        // The landlock crate tells the kernel's ABI only after restricting a thread, so a
        // throwaway thread restricts itself (Landlock and no_new_privs are per thread) and ends.
        std::thread::spawn(|| {
            Ruleset::default()
                .handle_access(AccessFs::Execute)
                .and_then(|r| r.create())
                .and_then(|r| r.restrict_self())
                .map(|s| Support::from_status(s.landlock))
                .unwrap_or_default()
        })
        .join()
        .unwrap_or_default()
    })
}

/// Confines the calling thread (and so whatever it execs next) to `policy`. Call it from a
/// single-threaded launcher right before `exec`.
pub fn restrict_self(policy: &Policy) -> Result<Report, SandboxError> {
    let abi = TARGET_ABI;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut rules: Vec<PathBeneath<PathFd>> = Vec::new();
    for path in SYSTEM_READ {
        // A folder this system lacks is no error: there is nothing to allow.
        if let Ok(rule) = rule(Path::new(path), read) {
            rules.push(rule);
        }
    }
    for path in SYSTEM_DEVICES {
        if let Ok(rule) = rule(Path::new(path), all) {
            rules.push(rule);
        }
    }
    for path in &policy.read {
        rules.push(rule(path, read).map_err(|source| SandboxError::Path {
            what: "reading",
            path: path.clone(),
            source,
        })?);
    }
    for path in &policy.write {
        rules.push(rule(path, all).map_err(|source| SandboxError::Path {
            what: "writing",
            path: path.clone(),
            source,
        })?);
    }
    let status: RestrictionStatus = Ruleset::default()
        .handle_access(all)?
        // Connecting stays free (databases, package registries); only binding is limited.
        .handle_access(AccessNet::BindTcp)?
        .scope(Scope::from_all(abi))?
        .create()?
        .add_rules(rules.into_iter().map(Ok::<_, landlock::RulesetError>))?
        .add_rules(
            policy
                .bind_ports
                .iter()
                .map(|&p| Ok::<_, landlock::RulesetError>(NetPort::new(p, AccessNet::BindTcp))),
        )?
        .restrict_self()?;
    let support = match status.ruleset {
        RulesetStatus::NotEnforced => Support::default(),
        _ => Support::from_status(status.landlock),
    };
    Ok(Report {
        support,
        complete: status.ruleset == RulesetStatus::FullyEnforced,
        no_new_privs: status.no_new_privs,
    })
}

/// `PATH` without the folders the sandbox keeps out of reach. A program found in such a
/// folder could not run, and worse, tools that locate themselves through `PATH` (Python records
/// the first `python3` on `PATH` as its own path, which a virtualenv then links to) would
/// point at it; dropping those entries lets the search go on to one that works.
pub fn reachable_path(path: &std::ffi::OsStr, policy: &Policy) -> std::ffi::OsString {
    let roots: Vec<PathBuf> = SYSTEM_READ
        .iter()
        .map(PathBuf::from)
        .chain(policy.read.iter().cloned())
        .chain(policy.write.iter().cloned())
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let kept: Vec<PathBuf> = std::env::split_paths(path)
        .filter(|dir| {
            std::fs::canonicalize(dir).is_ok_and(|real| roots.iter().any(|r| real.starts_with(r)))
        })
        .collect();
    std::env::join_paths(kept).unwrap_or_default()
}

/// A rule for `path` with `access`, narrowed to what applies to a file when it is not a folder.
fn rule(path: &Path, access: BitFlags<AccessFs>) -> std::io::Result<PathBeneath<PathFd>> {
    let meta = std::fs::metadata(path)?;
    let fd = PathFd::new(path).map_err(|e| std::io::Error::other(e.to_string()))?;
    let access = if meta.is_dir() {
        access
    } else {
        access & AccessFs::from_file(TARGET_ABI)
    };
    Ok(PathBeneath::new(fd, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_the_parts_that_apply() {
        let full = Support {
            landlock_abi: Some(7),
            files: true,
            tcp_bind: true,
            signals: true,
        };
        assert_eq!(full.describe(), "landlock ABI 7 (files, tcp bind, signals)");
        let old = Support {
            landlock_abi: Some(3),
            files: true,
            ..Default::default()
        };
        assert_eq!(old.describe(), "landlock ABI 3 (files)");
        assert!(Support::default().describe().contains("no Landlock"));
    }

    #[test]
    fn path_keeps_only_folders_the_sandbox_reaches() {
        let dir = std::env::temp_dir().join(format!("wharf-sandbox-path-{}", std::process::id()));
        let tools = dir.join("release/.venv/bin");
        let outside = dir.join("home/.pyenv/shims");
        std::fs::create_dir_all(&tools).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let policy = Policy {
            write: vec![dir.join("release")],
            ..Default::default()
        };
        let path = std::env::join_paths([&tools, &outside, Path::new("/usr/bin")]).unwrap();
        let kept = reachable_path(&path, &policy);
        let kept: Vec<PathBuf> = std::env::split_paths(&kept).collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(kept, [tools, PathBuf::from("/usr/bin")]);
    }

    #[test]
    fn a_folder_inside_a_system_folder_is_noticed() {
        assert_eq!(
            readable_system_folder(Path::new("/etc/hostname")),
            Some("/etc")
        );
        assert_eq!(readable_system_folder(Path::new("/nonexistent")), None);
        let tmp = std::env::temp_dir();
        assert_eq!(readable_system_folder(&tmp), None, "{}", tmp.display());
    }

    #[test]
    fn a_missing_policy_folder_is_a_clear_error() {
        // The thread that fails to build its rules is not restricted.
        let err = std::thread::spawn(|| {
            restrict_self(&Policy {
                read: vec!["/nonexistent/wharf-release".into()],
                ..Default::default()
            })
        })
        .join()
        .unwrap()
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("reading `/nonexistent/wharf-release`"),
            "{msg}"
        );
    }
}
