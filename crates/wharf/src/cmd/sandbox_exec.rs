//! `wharf sandbox-exec --read P.. --write P.. --bind-port N.. -- CMD ARGS..`: the launcher the
//! runtime starts instead of the app's shell when the app is sandboxed. It confines itself with
//! `wharf_sandbox::restrict_self` and execs CMD, which inherits the confinement. Started by a
//! root wharf, it switches to the app's user (`--uid`/`--gid`) as it execs; otherwise it is
//! started as the app's user and needs no privileges. Hidden: it
//! is parsed before the CLI proper, so nothing of the app's environment (e.g. a stray
//! `WHARF_LOG_FORMAT`) can change how it starts, and it sets up no logging and no runtime.
//! What goes wrong is said on stderr, which the runtime writes into the app's log.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "wharf sandbox-exec",
    about = "Run a command in the app sandbox"
)]
struct Args {
    /// A folder (or file) the command may read and execute.
    #[arg(long, value_name = "PATH")]
    read: Vec<PathBuf>,
    /// A folder (or file) the command may read and write.
    #[arg(long, value_name = "PATH")]
    write: Vec<PathBuf>,
    /// Run the command as this user id (set when wharf runs as root: the switch happens
    /// right before exec, after the confinement).
    #[arg(long, value_name = "UID", requires = "gid")]
    uid: Option<u32>,
    /// Run the command as this group id (supplementary groups are dropped).
    #[arg(long, value_name = "GID", requires = "uid")]
    gid: Option<u32>,
    /// A TCP port the command may bind (none: it may bind no TCP port).
    #[arg(long = "bind-port", value_name = "PORT")]
    bind_ports: Vec<u16>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Runs the launcher with `args` (what follows `sandbox-exec`). Returns only on failure.
pub(crate) fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args =
        match Args::try_parse_from(std::iter::once(OsString::from("sandbox-exec")).chain(args)) {
            Ok(a) => a,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(126);
            }
        };
    let policy = wharf_sandbox::Policy {
        read: args.read,
        write: args.write,
        bind_ports: args.bind_ports,
    };
    // Before confining: finding out what is reachable needs the file system as it is.
    let path = std::env::var_os("PATH").map(|p| wharf_sandbox::reachable_path(&p, &policy));
    match wharf_sandbox::restrict_self(&policy) {
        Ok(report) if !report.complete => eprintln!(
            "wharf sandbox: only partly enforced by this kernel: {}",
            report.support.describe()
        ),
        Ok(_) => {}
        Err(e) => {
            eprintln!("wharf sandbox: cannot confine the app, not starting it: {e}");
            return ExitCode::from(126);
        }
    }
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    if let (Some(uid), Some(gid)) = (args.uid, args.gid) {
        // std sets the group, drops supplementary groups, then the user, right before exec.
        cmd.uid(uid).gid(gid);
    }
    // A root launcher gets the loader's variables under another name (see
    // `wharf_runtime::HIDDEN_ENV_PREFIX`): they act from here on, in the app's command only.
    for (name, value) in std::env::vars_os() {
        if let Some(real) = name
            .to_str()
            .and_then(|n| n.strip_prefix(wharf_runtime::HIDDEN_ENV_PREFIX))
        {
            cmd.env_remove(&name).env(real, value);
        }
    }
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let err = cmd.exec();
    eprintln!(
        "wharf sandbox: cannot run {}: {err}",
        program.to_string_lossy()
    );
    ExitCode::from(127)
}
