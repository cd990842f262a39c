//! Pid files for process groups wharf starts (app instances and builds): `<pid> <start time>`,
//! so a server started after a `kill -9` can stop what the killed one left running, without
//! touching a process that merely reused the pid.

use std::path::Path;

use rustix::process::{Pid, Signal, kill_process_group};

use super::stats::identity;

/// Records `pid`, the leader of its own process group, in `file`.
pub fn record(file: &Path, pid: u32) -> std::io::Result<()> {
    let (started, _) = identity(pid).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("no process {pid}"))
    })?;
    std::fs::write(file, format!("{pid} {started}\n"))
}

/// Kills the process group recorded in `file` if its leader is still the process that was
/// recorded, then removes the file. Returns whether a group was killed.
pub fn reap(file: &Path) -> bool {
    let recorded = std::fs::read_to_string(file).ok().and_then(|t| {
        let mut parts = t.split_whitespace();
        Some((
            parts.next()?.parse::<u32>().ok()?,
            parts.next()?.parse::<u64>().ok()?,
        ))
    });
    let mut killed = false;
    if let Some((pid, started)) = recorded
        && identity(pid) == Some((started, pid))
        && let Some(group) = Pid::from_raw(pid as i32)
    {
        tracing::warn!(pid, file = %file.display(), "stopping a process group left by a previous run");
        killed = kill_process_group(group, Signal::KILL).is_ok();
    }
    let _ = std::fs::remove_file(file);
    killed
}
