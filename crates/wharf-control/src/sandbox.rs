//! What each app's sandbox allows (the policies the runtime and the build hand to the
//! launcher), and how `wharf status` describes it.

use std::path::{Path, PathBuf};

use wharf_runtime::SandboxPolicy;
use wharf_store::App;

use crate::paths::DataDir;

/// The policy for an instance of `app` running in `workdir` on `port`: its code (a release,
/// which is immutable, read-only; a folder the admin named, as pm2-style apps expect,
/// read-write), its volume and private tmp read-write, its own port to bind. `None` when the
/// app opted out or wharf has no launcher.
pub(crate) fn instance_policy(
    launcher: Option<&Path>,
    data: &DataDir,
    app: &App,
    workdir: &Path,
    port: u16,
) -> Option<SandboxPolicy> {
    (app.sandbox && launcher.is_some()).then(|| {
        let mut write = vec![data.volume(&app.name), data.tmp(&app.name)];
        let mut read = Vec::new();
        if app.release.is_some() {
            read.push(workdir.to_path_buf());
        } else {
            write.push(workdir.to_path_buf());
        }
        SandboxPolicy {
            read,
            write,
            bind_ports: vec![port],
        }
    })
}

/// The policy for a one-off command (`wharf run`) of `app` in `workdir`: an instance's,
/// without a port to bind (the command serves nothing; its instances hold the app's ports).
pub(crate) fn run_policy(
    launcher: Option<&Path>,
    data: &DataDir,
    app: &App,
    workdir: &Path,
) -> Option<SandboxPolicy> {
    instance_policy(launcher, data, app, workdir, 0).map(|p| SandboxPolicy {
        bind_ports: Vec::new(),
        ..p
    })
}

/// The policy for a build of `app` in `release`: the release folder, the build cache (its
/// `HOME`) and the private tmp read-write; no port (a build serves nothing).
pub(crate) fn build_policy(
    launcher: Option<&Path>,
    data: &DataDir,
    app: &App,
    release: &Path,
) -> Option<SandboxPolicy> {
    (app.sandbox && launcher.is_some()).then(|| SandboxPolicy {
        read: Vec::new(),
        write: vec![
            release.to_path_buf(),
            data.build_cache(&app.name),
            data.tmp(&app.name),
        ],
        bind_ports: Vec::new(),
    })
}

/// Creates the folders a policy names (a missing one would stop the launcher) and points
/// `TMPDIR` at the app's private tmp unless the app sets its own.
pub(crate) fn prepare(
    policy: Option<&SandboxPolicy>,
    tmp: PathBuf,
    env: &mut std::collections::BTreeMap<String, String>,
) -> std::io::Result<()> {
    let Some(policy) = policy else { return Ok(()) };
    for dir in policy.write.iter().chain(&policy.read) {
        std::fs::create_dir_all(dir)?;
    }
    env.entry("TMPDIR".into())
        .or_insert_with(|| tmp.display().to_string());
    Ok(())
}

/// For `wharf status`: how the app's processes are sandboxed, or why they are not.
pub(crate) fn status(app: &App, launcher: Option<&Path>, data: &DataDir) -> String {
    if !app.sandbox {
        return "off (opted out)".to_string();
    }
    if launcher.is_none() {
        return "off (this server has no sandbox launcher)".to_string();
    }
    let mut s = wharf_sandbox::support().describe();
    if let Some(warning) = data_folder_warning(data) {
        s.push_str("; ");
        s.push_str(&warning);
    }
    s
}

/// Set when the data folder lies in a folder every sandboxed app may read.
pub(crate) fn data_folder_warning(data: &DataDir) -> Option<String> {
    wharf_sandbox::readable_system_folder(data.root()).map(|root| {
        format!(
            "but the data folder is inside {root}, which sandboxed apps may read: move it \
             (e.g. to /var/lib/wharf)"
        )
    })
}
