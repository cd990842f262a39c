//! Runs the engines' tools as child processes: bounded in time, output captured, and a
//! failure reported with the (redacted) tail of stderr.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{DbError, Result};

/// What a tool reads on stdin.
pub(crate) enum Input<'a> {
    Null,
    File(&'a Path),
}

/// Runs `cmd` to its end (or until `deadline`, then kills it) and returns its stdout; a
/// non-zero exit is an error carrying the stderr tail, with `secret` masked.
pub(crate) fn run(
    mut cmd: Command,
    what: &str,
    input: Input<'_>,
    deadline: Option<Instant>,
    secret: &str,
) -> Result<Vec<u8>> {
    let stdin = match input {
        Input::Null => Stdio::null(),
        Input::File(path) => {
            Stdio::from(std::fs::File::open(path).map_err(|source| DbError::Io {
                what: "cannot open dump",
                path: path.to_path_buf(),
                source,
            })?)
        }
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| DbError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait(&mut child, deadline);
    let (out, err) = (join(out), join(err));
    match status {
        None => Err(DbError::Timeout {
            what: what.to_string(),
        }),
        Some(status) if status.success() => Ok(out),
        Some(status) => Err(DbError::Failed {
            what: what.to_string(),
            status: status.to_string(),
            stderr: tail(if err.is_empty() { &out } else { &err }, secret),
        }),
    }
}

/// Waits for the child; `None` when the deadline passed (the child is then killed).
pub(crate) fn wait(child: &mut Child, deadline: Option<Instant>) -> Option<ExitStatus> {
    let Some(deadline) = deadline else {
        return child.wait().ok();
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            buf
        })
    })
}

fn join(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// The last lines of a tool's output, at most ~1500 characters, with `secret` masked.
pub(crate) fn tail(bytes: &[u8], secret: &str) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.char_indices().rev().nth(1500).map_or(0, |(i, _)| i);
    redact(&text[start..], secret)
}

pub(crate) fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "****")
    }
}

/// Writes `bytes` to a new file beside `dest` and renames it over `dest`, so a reader never
/// sees half a file.
pub(crate) fn write_atomic(dest: &Path, mut src: impl Read) -> Result<u64> {
    let io = |what, source| DbError::Io {
        what,
        path: dest.to_path_buf(),
        source,
    };
    let part = dest.with_extension("wharf-part");
    let mut file = std::fs::File::create(&part).map_err(|e| io("cannot create", e))?;
    let n = std::io::copy(&mut src, &mut file).map_err(|e| io("cannot write", e))?;
    file.flush()
        .and_then(|()| file.sync_all())
        .map_err(|e| io("cannot write", e))?;
    std::fs::rename(&part, dest).map_err(|e| io("cannot replace", e))?;
    Ok(n)
}
