//! Deploys: get the code, build it, back up what runs, make the new release live through the
//! reconciler's zero-downtime switch, keep the last releases; and rollback.

mod backup;
pub(crate) mod leftovers;
pub(crate) mod manifest;
mod pipeline;
pub(crate) mod source;
mod tools;

pub(crate) use pipeline::{Deploys, Source, deploy, deploy_claimed, restore_config, rollback};
pub(crate) use source::{check_git, check_image, git_credentials, redact_git};
pub(crate) use tools::add_tool_paths;

/// What one release's build log keeps at most; past it, lines are counted, not kept.
const BUILD_LOG_MAX: u64 = 4 << 20;

/// Build and deploy output for the user, with env values masked; also kept in the release's
/// build log once [`Output::keep_in`] names it.
#[derive(Clone)]
pub(crate) struct Output {
    tx: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    secrets: Vec<String>,
    kept: std::sync::Arc<std::sync::Mutex<Option<KeptLog>>>,
}

/// A release's build log being written: each line with the time since the deploy began.
struct KeptLog {
    /// Unbuffered: the log can be read while the build runs.
    file: std::fs::File,
    started: std::time::Instant,
    written: u64,
    dropped: u64,
}

impl Drop for KeptLog {
    fn drop(&mut self) {
        use std::io::Write;
        if self.dropped > 0 {
            let _ = writeln!(
                self.file,
                "({} more lines were not kept: a build log keeps {} MiB)",
                self.dropped,
                BUILD_LOG_MAX >> 20
            );
        }
    }
}

impl Output {
    pub(crate) fn new(tx: Option<tokio::sync::mpsc::UnboundedSender<String>>) -> Output {
        Output {
            tx,
            secrets: Vec::new(),
            kept: Default::default(),
        }
    }

    /// Keeps every line from now on in `path` (made afresh), as well as streaming it. A log
    /// that cannot be written is only a warning: the deploy itself goes on.
    pub(crate) fn keep_in(&self, path: &std::path::Path) {
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::File::create(path));
        let log = match file {
            Ok(f) => Some(KeptLog {
                file: f,
                started: std::time::Instant::now(),
                written: 0,
                dropped: 0,
            }),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot keep the build log");
                None
            }
        };
        *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = log;
    }

    /// Ends the build log (the deploy's last line written).
    pub(crate) fn close(&self) {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn keep(&self, line: &str) {
        use std::io::Write;
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let Some(log) = kept.as_mut() else {
            return;
        };
        if log.written + line.len() as u64 + 12 > BUILD_LOG_MAX {
            log.dropped += 1;
            return;
        }
        let secs = log.started.elapsed().as_secs_f64();
        if writeln!(log.file, "[{secs:7.1}s] {line}").is_ok() {
            log.written += line.len() as u64 + 12;
        }
    }

    /// Values that must never appear in output (short ones would mask too much by accident).
    /// Output is read a line at a time, so a value of several lines (a PEM key) is masked line
    /// by line.
    pub(crate) fn mask(&mut self, values: impl IntoIterator<Item = String>) {
        for value in values {
            self.secrets.extend(
                value
                    .lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| l.len() >= 4)
                    .map(str::to_string),
            );
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    pub(crate) fn line(&self, line: &str) {
        let mut line = line.to_string();
        for s in &self.secrets {
            if line.contains(s.as_str()) {
                line = line.replace(s.as_str(), "****");
            }
        }
        tracing::debug!(%line, "deploy output");
        self.keep(&line);
        if let Some(tx) = &self.tx {
            let _ = tx.send(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_of_several_lines_is_masked_on_every_line() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut out = Output::new(Some(tx));
        out.mask([
            "-----BEGIN KEY-----\r\nc2VjcmV0LWtleQ==\n-----END KEY-----\n".to_string(),
            "hunter22".to_string(),
        ]);
        for line in [
            "key: -----BEGIN KEY-----",
            "c2VjcmV0LWtleQ==",
            "pass=hunter22 end",
        ] {
            out.line(line);
        }
        let seen: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(seen, ["key: ****", "****", "pass=**** end"]);
    }
}
