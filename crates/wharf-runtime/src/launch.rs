//! How a shell command is started, confined or not: `/bin/sh -c CMD`, or, with a sandbox, the
//! launcher `LAUNCHER sandbox-exec [--uid U --gid G] --read P.. --write P.. --bind-port N.. --
//! /bin/sh -c CMD`, which confines itself and then execs the shell. The argument format is the
//! contract with the launcher (`wharf sandbox-exec`).
//!
//! Who switches to the app's user: when wharf runs as root, the launcher does, right before it
//! execs (so the app's user need not reach wharf's own binary, wherever it is installed); a
//! wharf that is not root holds its capabilities only until it execs, so there the caller starts
//! the launcher as the app's user and the launcher needs no privileges.

use std::ffi::OsString;
use std::path::Path;

use crate::{AppUser, SandboxPolicy};

/// The prefix under which a root launcher receives the variables the dynamic loader acts on
/// (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT`, `GLIBC_TUNABLES`...): an app's env (which its
/// own `wharf.toml` may set) must not load code into a process that still runs as root. The
/// launcher gives them back their names for the command it execs.
pub const HIDDEN_ENV_PREFIX: &str = "WHARF_SANDBOX_HIDDEN_";

/// Whether the dynamic loader or libc reads `name` in a way that can load code or files an app
/// chose: glibc's own list of variables it ignores in set-user-id programs (`unsecvars.h`),
/// since the launcher is, in effect, one until it switches to the app's user.
fn loader_reads(name: &str) -> bool {
    const NAMES: [&str; 11] = [
        "GCONV_PATH",
        "GETCONF_DIR",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TMPDIR",
        "TZDIR",
    ];
    name.starts_with("LD_")
        || name.starts_with("GLIBC_")
        || name.starts_with("MALLOC_")
        || NAMES.contains(&name)
}

/// What to spawn for a shell command.
#[derive(Debug)]
pub struct Shell {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The user and group to spawn `program` as (`CommandExt::uid`/`gid`); `None` when it
    /// starts as wharf (no app user, or a root launcher that switches by itself).
    pub spawn_as: Option<AppUser>,
    /// `program` is the launcher and starts as root: see [`Shell::env_name`].
    privileged_launcher: bool,
}

impl Shell {
    /// The name to give the app's env variable `name` on the spawned command: the variables
    /// the dynamic loader reads are hidden from a launcher that starts as root (under
    /// [`HIDDEN_ENV_PREFIX`]), so they act only once it runs the app's command as the app.
    pub fn env_name(&self, name: &str) -> OsString {
        if self.privileged_launcher && loader_reads(name) {
            format!("{HIDDEN_ENV_PREFIX}{name}").into()
        } else {
            name.into()
        }
    }
}

/// How to run `script` with `/bin/sh -c` as `user`, through `launcher` when `sandbox` is set.
/// Fails when a sandbox is wanted but no launcher is known.
pub fn shell_command(
    launcher: Option<&Path>,
    sandbox: Option<&SandboxPolicy>,
    user: Option<AppUser>,
    script: &str,
) -> std::io::Result<Shell> {
    shell_command_as(
        launcher,
        sandbox,
        user,
        script,
        rustix::process::geteuid().is_root(),
    )
}

fn shell_command_as(
    launcher: Option<&Path>,
    sandbox: Option<&SandboxPolicy>,
    user: Option<AppUser>,
    script: &str,
    root: bool,
) -> std::io::Result<Shell> {
    let shell = [OsString::from("-c"), OsString::from(script)];
    let Some(policy) = sandbox else {
        return Ok(Shell {
            program: "/bin/sh".into(),
            args: shell.into(),
            spawn_as: user,
            privileged_launcher: false,
        });
    };
    let launcher = launcher.ok_or_else(|| {
        std::io::Error::other("the sandbox is on but the runtime has no sandbox launcher")
    })?;
    let mut args: Vec<OsString> = vec!["sandbox-exec".into()];
    let mut spawn_as = user;
    if let (Some(u), true) = (user, root) {
        args.extend(["--uid".into(), u.uid.to_string().into()]);
        args.extend(["--gid".into(), u.gid.to_string().into()]);
        spawn_as = None;
    }
    for p in &policy.read {
        args.push("--read".into());
        args.push(p.into());
    }
    for p in &policy.write {
        args.push("--write".into());
        args.push(p.into());
    }
    for port in &policy.bind_ports {
        args.push("--bind-port".into());
        args.push(port.to_string().into());
    }
    args.push("--".into());
    args.push("/bin/sh".into());
    args.extend(shell);
    Ok(Shell {
        program: launcher.into(),
        args,
        spawn_as,
        privileged_launcher: root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_sandbox_the_shell_runs_directly() {
        let user = Some(AppUser {
            uid: 61184,
            gid: 61184,
        });
        let sh = shell_command_as(None, None, user, "echo hi", true).unwrap();
        assert_eq!(sh.program, "/bin/sh");
        assert_eq!(sh.args, ["-c", "echo hi"]);
        assert_eq!(sh.spawn_as, user, "the shell itself starts as the app");
    }

    #[test]
    fn with_a_sandbox_the_launcher_gets_the_policy_then_the_shell() {
        let policy = SandboxPolicy {
            read: vec!["/srv/rel".into()],
            write: vec!["/srv/vol".into(), "/srv/tmp".into()],
            bind_ports: vec![3001],
        };
        let sh = shell_command_as(
            Some(Path::new("/usr/bin/wharf")),
            Some(&policy),
            None,
            "run",
            false,
        )
        .unwrap();
        assert_eq!(sh.program, "/usr/bin/wharf");
        assert_eq!(sh.spawn_as, None);
        let args: Vec<_> = sh.args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "sandbox-exec",
                "--read",
                "/srv/rel",
                "--write",
                "/srv/vol",
                "--write",
                "/srv/tmp",
                "--bind-port",
                "3001",
                "--",
                "/bin/sh",
                "-c",
                "run"
            ]
        );
        let missing = shell_command_as(None, Some(&policy), None, "run", false).unwrap_err();
        assert!(missing.to_string().contains("no sandbox launcher"));
    }

    /// The same sandboxed command for an app's user, as a root wharf and as an unprivileged
    /// one start it.
    fn for_app_user() -> (Shell, Shell, Option<AppUser>) {
        let policy = SandboxPolicy {
            read: vec![],
            write: vec![],
            bind_ports: vec![],
        };
        let user = Some(AppUser {
            uid: 61190,
            gid: 61190,
        });
        let launcher = Some(Path::new("/usr/bin/wharf"));
        let start = |root| shell_command_as(launcher, Some(&policy), user, "run", root).unwrap();
        (start(true), start(false), user)
    }

    #[test]
    fn a_root_launcher_gets_what_libc_reads_under_another_name() {
        let (root, unprivileged, _) = for_app_user();
        for name in ["LD_PRELOAD", "GLIBC_TUNABLES", "GCONV_PATH", "TMPDIR"] {
            assert_eq!(
                root.env_name(name),
                format!("{HIDDEN_ENV_PREFIX}{name}").as_str()
            );
        }
        assert_eq!(root.env_name("DATABASE_URL"), "DATABASE_URL");
        assert_eq!(unprivileged.env_name("GCONV_PATH"), "GCONV_PATH");
    }

    #[test]
    fn a_root_launcher_switches_to_the_app_user_itself() {
        let (root, unprivileged, user) = for_app_user();
        assert_eq!(root.spawn_as, None, "started as root");
        let args: Vec<_> = root.args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args[..5],
            ["sandbox-exec", "--uid", "61190", "--gid", "61190"]
        );
        // Not root: capabilities end at exec, so the launcher starts as the app.
        assert_eq!(unprivileged.spawn_as, user);
        assert!(!unprivileged.args.iter().any(|a| a == "--uid"));
    }
}
