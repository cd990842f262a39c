//! How a shell command is started, confined or not: `/bin/sh -c CMD`, or, with a sandbox, the
//! launcher `LAUNCHER sandbox-exec --read P.. --write P.. --bind-port N.. -- /bin/sh -c CMD`,
//! which confines itself and then execs the shell. The argument format is the contract with
//! the launcher (`wharf sandbox-exec`); the user and group (if any) are set on the same command
//! by the caller, so the launcher runs as the app and needs no privileges.

use std::ffi::OsString;
use std::path::Path;

use crate::SandboxPolicy;

/// The program and arguments that run `script` with `/bin/sh -c`, through `launcher` when
/// `sandbox` is set. Fails when a sandbox is wanted but no launcher is known.
pub fn shell_command(
    launcher: Option<&Path>,
    sandbox: Option<&SandboxPolicy>,
    script: &str,
) -> std::io::Result<(OsString, Vec<OsString>)> {
    let shell = [OsString::from("-c"), OsString::from(script)];
    let Some(policy) = sandbox else {
        return Ok(("/bin/sh".into(), shell.into()));
    };
    let launcher = launcher.ok_or_else(|| {
        std::io::Error::other("the sandbox is on but the runtime has no sandbox launcher")
    })?;
    let mut args: Vec<OsString> = vec!["sandbox-exec".into()];
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
    Ok((launcher.into(), args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_sandbox_the_shell_runs_directly() {
        let (prog, args) = shell_command(None, None, "echo hi").unwrap();
        assert_eq!(prog, "/bin/sh");
        assert_eq!(args, ["-c", "echo hi"]);
    }

    #[test]
    fn with_a_sandbox_the_launcher_gets_the_policy_then_the_shell() {
        let policy = SandboxPolicy {
            read: vec!["/srv/rel".into()],
            write: vec!["/srv/vol".into(), "/srv/tmp".into()],
            bind_ports: vec![3001],
        };
        let (prog, args) =
            shell_command(Some(Path::new("/usr/bin/wharf")), Some(&policy), "run").unwrap();
        assert_eq!(prog, "/usr/bin/wharf");
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
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
        let missing = shell_command(None, Some(&policy), "run").unwrap_err();
        assert!(missing.to_string().contains("no sandbox launcher"));
    }
}
