//! One-off commands (`wharf run APP -- CMD`, the dashboard's terminal): a command run as the
//! app's instances run (`Reconciler::one_off`: release folder, env, user, sandbox), its output
//! streamed as it comes, bounded in time and output, and ended with its whole process group
//! when it is done, too long, too loud, or nobody reads it any more.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wharf_client::dto::RunEvent;

use crate::reconciler::OneOff;

/// How long a run may take unless the request says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest timeout a request may ask for.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Output a run may send (standard output and error together); past it, it is stopped.
pub(crate) const MAX_OUTPUT: u64 = 64 << 20;

/// How a run ended.
pub(crate) enum Ended {
    Exited(ExitStatus),
    TimedOut(Duration),
    TooMuchOutput,
    /// The client went away (a closed connection, Ctrl-C in the terminal).
    ClientGone,
    /// Waiting for it failed (the server's fault, not the command's).
    Lost(String),
}

impl Ended {
    /// (exit code, signal, in words) for the client and the operations log.
    pub(crate) fn describe(&self) -> (Option<i32>, Option<i32>, String) {
        match self {
            Ended::Exited(s) => match (s.code(), s.signal()) {
                (Some(c), _) => (Some(c), None, format!("exit status {c}")),
                (None, Some(sig)) => (None, Some(sig), format!("killed by signal {sig}")),
                _ => (None, None, "ended".into()),
            },
            Ended::TimedOut(t) => (
                None,
                Some(9),
                format!("stopped after {} s (the run's timeout)", t.as_secs()),
            ),
            Ended::TooMuchOutput => (
                None,
                Some(9),
                format!(
                    "stopped: it wrote more than {} MiB of output",
                    MAX_OUTPUT >> 20
                ),
            ),
            Ended::ClientGone => (
                None,
                Some(9),
                "stopped: the client went away (or pressed Ctrl-C)".into(),
            ),
            Ended::Lost(why) => (None, None, format!("could not be watched: {why}")),
        }
    }

    pub(crate) fn success(&self) -> bool {
        matches!(self, Ended::Exited(s) if s.success())
    }
}

/// A one-off command started, not yet watched.
pub(crate) struct Running {
    child: Child,
    stdin: Option<Vec<u8>>,
    /// Names its process group while it runs, so a server killed meanwhile stops it when it
    /// starts again (`deploy::leftovers`).
    pid_file: PathBuf,
}

/// The shell script that runs `argv` as it is (each argument quoted for `/bin/sh`).
pub(crate) fn script_of(argv: &[String]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    format!("exec {}", quoted.join(" "))
}

/// Starts `script` with `/bin/sh -c` as `one` says, in its own process group.
pub(crate) fn spawn(
    launcher: Option<&Path>,
    one: OneOff,
    script: &str,
    stdin: Option<Vec<u8>>,
    pid_file: PathBuf,
) -> std::io::Result<Running> {
    let shell = wharf_runtime::shell_command(
        launcher,
        one.isolation.sandbox.as_ref(),
        one.isolation.user,
        script,
    )?;
    let mut command = Command::new(&shell.program);
    command
        .args(&shell.args)
        .current_dir(&one.workdir)
        .env_clear()
        .envs(one.env.iter().map(|(k, v)| (shell.env_name(k), v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(u) = shell.spawn_as {
        command.uid(u.uid).gid(u.gid);
    }
    let child = command.spawn()?;
    let recorded = pid_file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| match child.id() {
            Some(pid) => wharf_runtime::pidfile::record(&pid_file, pid),
            None => Ok(()),
        });
    if let Err(e) = recorded {
        tracing::warn!(error = %e, file = %pid_file.display(), "cannot record a one-off command's pid");
    }
    Ok(Running {
        child,
        stdin,
        pid_file,
    })
}

/// Sends the command's output to `tx` as it comes and waits for it to end, within `timeout`.
/// Whatever it left running in its process group ends with it.
pub(crate) async fn watch(
    running: Running,
    timeout: Duration,
    tx: &mpsc::Sender<RunEvent>,
) -> Ended {
    let Running {
        mut child,
        stdin,
        pid_file,
    } = running;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A command that does not read its input must not hold the run up.
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
        });
    }
    let written = Arc::new(AtomicU64::new(0));
    let too_much = CancellationToken::new();
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(pump(
            out,
            false,
            tx.clone(),
            written.clone(),
            too_much.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(pump(err, true, tx.clone(), written, too_much.clone()));
    }
    // The command leads its own process group; taken before `wait`, which forgets the pid.
    let group = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32));
    let ended = tokio::select! {
        s = child.wait() => match s {
            Ok(s) => Ended::Exited(s),
            Err(e) => Ended::Lost(e.to_string()),
        },
        () = tokio::time::sleep(timeout) => Ended::TimedOut(timeout),
        () = too_much.cancelled() => Ended::TooMuchOutput,
        () = tx.closed() => Ended::ClientGone,
    };
    if let Some(pid) = group {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    if !matches!(ended, Ended::Exited(_)) {
        let _ = child.kill().await;
    }
    let _ = std::fs::remove_file(&pid_file);
    // The pipes close once the group is gone; a process that left the group and kept them open
    // does not hold the answer up for long.
    for p in pumps {
        let abort = p.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    ended
}

/// Copies one of the command's streams to `tx` in chunks as they come, as text.
fn pump(
    mut reader: impl AsyncRead + Unpin + Send + 'static,
    stderr: bool,
    tx: mpsc::Sender<RunEvent>,
    written: Arc<AtomicU64>,
    too_much: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        let mut text = Utf8Chunks::default();
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if written.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > MAX_OUTPUT {
                too_much.cancel();
                break;
            }
            let chunk = text.push(&buf[..n]);
            if chunk.is_empty() {
                continue;
            }
            let event = if stderr {
                RunEvent::Stderr(chunk)
            } else {
                RunEvent::Stdout(chunk)
            };
            if tx.send(event).await.is_err() {
                break;
            }
        }
        let rest = text.finish();
        if !rest.is_empty() {
            let _ = tx
                .send(if stderr {
                    RunEvent::Stderr(rest)
                } else {
                    RunEvent::Stdout(rest)
                })
                .await;
        }
    })
}

/// Bytes to text chunk by chunk: a character cut between two reads is held back until its end
/// comes, so only bytes that are really not UTF-8 are replaced.
#[derive(Default)]
struct Utf8Chunks {
    held: Vec<u8>,
}

impl Utf8Chunks {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.held.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.held) {
                Ok(s) => {
                    out.push_str(s);
                    self.held.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.held[..good]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete at the end: keep it for the next read.
                        None => {
                            self.held.drain(..good);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.held.drain(..good + bad);
                        }
                    }
                }
            }
        }
    }

    fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.held).into_owned();
        self.held.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_between_reads_comes_out_whole() {
        let mut t = Utf8Chunks::default();
        let bytes = "é!".as_bytes();
        assert_eq!(t.push(&bytes[..1]), "");
        assert_eq!(t.push(&bytes[1..]), "é!");
        assert_eq!(t.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(t.push(&[0xe2, 0x82]), "");
        assert_eq!(t.finish(), "\u{fffd}");
    }

    #[test]
    fn arguments_reach_the_command_as_they_are() {
        assert_eq!(
            script_of(&["echo".into(), "it's $HOME".into()]),
            r"exec 'echo' 'it'\''s $HOME'"
        );
    }
}
