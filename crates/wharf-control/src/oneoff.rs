//! One-off commands (`wharf run APP -- CMD`, the dashboard's terminal): for a process app, a
//! command run as the app's instances run (`Reconciler::one_off`: release folder, env, user,
//! sandbox); for a container app, run in one of its running containers as `docker exec` runs
//! it. Either way its output is streamed as it comes, bounded in time and output, and it is
//! ended with its whole process group when it is done, too long, too loud, or nobody reads it
//! any more.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use wharf_client::dto::RunEvent;

use crate::reconciler::OneOff;

/// How long a run may take unless the request says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest timeout a request may ask for.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Output a run may send (standard output and error together); past it, it is stopped.
pub(crate) const MAX_OUTPUT: u64 = 64 << 20;
/// Bytes read from a command's pipe at once.
const READ_CHUNK: usize = 16 << 10;

/// How a command that ended by itself ended.
pub(crate) enum Exit {
    Code(i32),
    Signal(i32),
    Unknown,
}

/// How a run ended.
pub(crate) enum Ended {
    Exited(Exit),
    TimedOut(Duration),
    TooMuchOutput,
    /// The client went away (a closed connection, Ctrl-C in the terminal).
    ClientGone,
    /// The server began to stop.
    ServerStopping,
    /// Waiting for it failed (the server's fault, not the command's).
    Lost(String),
}

impl Ended {
    /// (exit code, signal, in words) for the client and the operations log.
    pub(crate) fn describe(&self) -> (Option<i32>, Option<i32>, String) {
        match self {
            Ended::Exited(Exit::Code(c)) => (Some(*c), None, format!("exit status {c}")),
            Ended::Exited(Exit::Signal(sig)) => {
                (None, Some(*sig), format!("killed by signal {sig}"))
            }
            Ended::Exited(Exit::Unknown) => (None, None, "ended".into()),
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
            Ended::ServerStopping => (None, Some(9), "stopped: the server is stopping".into()),
            Ended::Lost(why) => (None, None, format!("could not be watched: {why}")),
        }
    }

    pub(crate) fn success(&self) -> bool {
        matches!(self, Ended::Exited(Exit::Code(0)))
    }
}

/// Where a command's standard input is written.
type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// A one-off command started, not yet watched.
pub(crate) struct Running {
    job: Job,
    /// Its standard output and error, merged, each chunk marked `true` when from standard error.
    output: BoxStream<'static, (bool, Bytes)>,
    /// What to give its standard input, and where.
    stdin: Option<(Vec<u8>, Input)>,
    /// Names its process group while it runs, so a server killed meanwhile stops it when it
    /// starts again (`deploy::leftovers`).
    pid_file: PathBuf,
}

/// What runs the command.
enum Job {
    /// A child process of the server, leading its own process group (taken at start: `wait`
    /// forgets the pid).
    Process {
        child: Child,
        group: Option<rustix::process::Pid>,
    },
    /// An exec in a container: the engine cannot stop one, so its process (as this machine
    /// sees it, recorded in the pid file) is killed here.
    Container(wharf_docker::Exec),
}

impl Job {
    /// Waits for the command to end by itself. `output_closed` fires once its output ended.
    async fn wait(&mut self, output_closed: &CancellationToken) -> Ended {
        match self {
            Job::Process { child, .. } => match child.wait().await {
                Ok(s) => Ended::Exited(match (s.code(), s.signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(sig)) => Exit::Signal(sig),
                    _ => Exit::Unknown,
                }),
                Err(e) => Ended::Lost(e.to_string()),
            },
            // The engine tells of an exec's end only when asked; its output ends with it.
            Job::Container(exec) => {
                output_closed.cancelled().await;
                match exec.exit_code().await {
                    Ok(Some(c)) => Ended::Exited(Exit::Code(i32::try_from(c).unwrap_or(-1))),
                    // It closed its output and runs on: left to the timeout or the client.
                    Ok(None) => std::future::pending().await,
                    Err(e) => Ended::Lost(e.to_string()),
                }
            }
        }
    }

    /// Ends what is left of the command, however it ended: its whole process group.
    async fn stop(&mut self, ended: &Ended, pid_file: &Path) {
        match self {
            Job::Process { child, group } => {
                if let Some(pid) = group {
                    let _ =
                        rustix::process::kill_process_group(*pid, rustix::process::Signal::KILL);
                }
                if !matches!(ended, Ended::Exited(_)) {
                    let _ = child.kill().await;
                }
                let _ = std::fs::remove_file(pid_file);
            }
            Job::Container(exec) => {
                // Only while the recorded process still leads its group: its pid may be another
                // process's by now.
                let stopped = wharf_runtime::pidfile::reap(pid_file);
                if !stopped && !matches!(ended, Ended::Exited(_)) {
                    tracing::warn!(
                        pid = exec.pid,
                        "a one-off command in a container could not be stopped: its process is not seen here"
                    );
                }
            }
        }
    }
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
    let mut child = command.spawn()?;
    record(&pid_file, child.id());
    let mut streams = Vec::new();
    if let Some(out) = child.stdout.take() {
        streams.push(chunks(out, false));
    }
    if let Some(err) = child.stderr.take() {
        streams.push(chunks(err, true));
    }
    let stdin = match (stdin, child.stdin.take()) {
        (Some(input), Some(pipe)) => Some((input, Box::pin(pipe) as Input)),
        _ => None,
    };
    let group = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32));
    Ok(Running {
        job: Job::Process { child, group },
        output: futures_util::stream::select_all(streams).boxed(),
        stdin,
        pid_file,
    })
}

/// Starts `script` with `/bin/sh -c` in the running container `container` of `engine`, as
/// `docker exec` does (the container's user, folder and env).
pub(crate) async fn exec(
    engine: &wharf_docker::Engine,
    container: &str,
    script: &str,
    stdin: Option<Vec<u8>>,
    pid_file: PathBuf,
) -> Result<Running, wharf_docker::ExecError> {
    let started = engine.exec(container, script, stdin.is_some()).await?;
    let exec = started.exec;
    record(&pid_file, exec.pid);
    let output = started.output.map(|c| (c.stderr, c.bytes)).boxed();
    let stdin = stdin.zip(started.input);
    Ok(Running {
        job: Job::Container(exec),
        output,
        stdin,
        pid_file,
    })
}

/// Records the command's process group leader in `pid_file` (see [`Running::pid_file`]).
fn record(pid_file: &Path, pid: Option<u32>) {
    let recorded = pid_file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| match pid {
            Some(pid) => wharf_runtime::pidfile::record(pid_file, pid),
            None => Ok(()),
        });
    if let Err(e) = recorded {
        tracing::warn!(error = %e, file = %pid_file.display(), "cannot record a one-off command's pid");
    }
}

/// A pipe's bytes as chunks of output, marked as standard error or not.
fn chunks(
    pipe: impl tokio::io::AsyncRead + Send + 'static,
    stderr: bool,
) -> BoxStream<'static, (bool, Bytes)> {
    ReaderStream::with_capacity(pipe, READ_CHUNK)
        .take_while(|r| std::future::ready(r.is_ok()))
        .filter_map(move |r| std::future::ready(r.ok().map(|b| (stderr, b))))
        .boxed()
}

/// Sends the command's output to `tx` as it comes and waits for it to end, within `timeout`.
/// Whatever it left running in its process group ends with it.
pub(crate) async fn watch(
    running: Running,
    timeout: Duration,
    tx: &mpsc::Sender<RunEvent>,
    stopping: &CancellationToken,
) -> Ended {
    let Running {
        mut job,
        output,
        stdin,
        pid_file,
    } = running;
    if let Some((input, mut pipe)) = stdin {
        // A command that does not read its input must not hold the run up. Shut down after
        // it: the command reads end of file.
        tokio::spawn(async move {
            if pipe.write_all(&input).await.is_ok() {
                let _ = pipe.shutdown().await;
            }
        });
    }
    let too_much = CancellationToken::new();
    let output_closed = CancellationToken::new();
    let job_ended = CancellationToken::new();
    let mut pump = pump(
        output,
        tx.clone(),
        too_much.clone(),
        output_closed.clone(),
        job_ended.clone(),
    );
    let ended = tokio::select! {
        e = job.wait(&output_closed) => e,
        () = tokio::time::sleep(timeout) => Ended::TimedOut(timeout),
        () = too_much.cancelled() => Ended::TooMuchOutput,
        () = tx.closed() => Ended::ClientGone,
        () = stopping.cancelled() => Ended::ServerStopping,
    };
    job.stop(&ended, &pid_file).await;
    job_ended.cancel();
    // All it wrote reaches the client (the pump itself gives up reading what a process that
    // left the group keeps open); a client that takes nothing more has a minute, a stopping
    // server none.
    tokio::select! {
        _ = &mut pump => {}
        () = tokio::time::sleep(AFTER_END) => pump.abort(),
        () = stopping.cancelled() => pump.abort(),
    }
    ended
}

/// After the command ended: how long its output may stay open with nothing coming (a process
/// that left its group keeps it open), and how long a client may take to read the rest.
const LINGER: Duration = Duration::from_secs(5);
const AFTER_END: Duration = Duration::from_secs(60);

/// Returns `LINGER` after `ended` fired: from then on, a quiet output is over.
async fn quiet_after(ended: &CancellationToken) {
    ended.cancelled().await;
    tokio::time::sleep(LINGER).await;
}

/// Copies the command's output to `tx` in chunks as they come, as text; `closed` fires when
/// the output ended.
fn pump(
    mut output: BoxStream<'static, (bool, Bytes)>,
    tx: mpsc::Sender<RunEvent>,
    too_much: CancellationToken,
    closed: CancellationToken,
    ended: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _closed = closed.drop_guard();
        let event = |stderr: bool, text: String| {
            if stderr {
                RunEvent::Stderr(text)
            } else {
                RunEvent::Stdout(text)
            }
        };
        // Per stream: a character may be cut between two chunks of the same stream.
        let mut texts = [Utf8Chunks::default(), Utf8Chunks::default()];
        let mut written = 0u64;
        loop {
            // Only the reading is bounded once the command ended, never the sending.
            let next = tokio::select! {
                n = output.next() => n,
                () = quiet_after(&ended) => None,
            };
            let Some((stderr, bytes)) = next else { break };
            written += bytes.len() as u64;
            if written > MAX_OUTPUT {
                too_much.cancel();
                break;
            }
            let chunk = texts[usize::from(stderr)].push(&bytes);
            if chunk.is_empty() {
                continue;
            }
            if tx.send(event(stderr, chunk)).await.is_err() {
                break;
            }
        }
        for (stderr, text) in [false, true].into_iter().zip(&mut texts) {
            let rest = text.finish();
            if !rest.is_empty() {
                let _ = tx.send(event(stderr, rest)).await;
            }
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
