//! Containers' output: the engine keeps it (with time stamps); wharf follows each container's
//! log to feed the app's live followers and the instance's recent output, and reads the tail of
//! every container of an app for past lines. Lines look like the process runtime's:
//! `<rfc3339> <instance> <stream>| <text>`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{ListContainersOptions, LogsOptions};
use futures_util::StreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::labels;

/// Lines of output kept per instance for `recent_output`.
pub(crate) const KEEP_OUTPUT: usize = 100;
/// Longer lines are cut there.
const KEEP_LINE_BYTES: usize = 1000;

/// One line of a container's log.
#[derive(Debug, PartialEq)]
pub(crate) struct Line {
    /// Nanoseconds since the epoch, as stamped by the engine.
    pub(crate) at: i128,
    pub(crate) stream: &'static str,
    pub(crate) text: String,
}

impl Line {
    /// The app log's form (no final newline).
    pub(crate) fn format(&self, instance: &str) -> String {
        format!(
            "{} {instance} {}| {}",
            rfc3339_secs(self.at),
            self.stream,
            self.text
        )
    }
}

/// The last lines an instance wrote, bounded in count and width.
#[derive(Default)]
pub(crate) struct Recent(Mutex<VecDeque<String>>);

impl Recent {
    pub(crate) fn push(&self, line: &str) {
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if out.len() == KEEP_OUTPUT {
            out.pop_front();
        }
        out.push_back(clip(line));
    }

    pub(crate) fn last(&self, n: usize) -> Vec<String> {
        let out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        out.iter()
            .skip(out.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// A line cut to a bounded width: bounded memory and error messages, whatever an app prints.
pub(crate) fn clip(line: &str) -> String {
    let mut end = line.len().min(KEEP_LINE_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

/// Splits one frame of the engine's log stream (one or more `<timestamp> <text>` lines).
pub(crate) fn parse(frame: LogOutput, last_at: i128) -> Vec<Line> {
    let (stream, bytes) = match frame {
        LogOutput::StdErr { message } => ("err", message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => ("out", message),
        LogOutput::StdIn { .. } => return Vec::new(),
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut at = last_at;
    text.lines()
        .map(|l| {
            let l = l.trim_end_matches('\r');
            let text = match l
                .split_once(' ')
                .and_then(|(ts, rest)| Some((nanos(ts)?, rest)))
            {
                Some((t, rest)) => {
                    at = t;
                    rest
                }
                None => l,
            };
            Line {
                at,
                stream,
                text: text.to_string(),
            }
        })
        .collect()
}

/// An RFC 3339 time (the engine's, to the nanosecond) as nanoseconds since the epoch.
pub(crate) fn nanos(ts: &str) -> Option<i128> {
    OffsetDateTime::parse(ts, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp_nanos)
}

/// The engine's time as a [`SystemTime`]; `None` for its "never" (year 1).
pub(crate) fn system_time(ts: &str) -> Option<SystemTime> {
    let n = nanos(ts)?;
    let n = u64::try_from(n).ok().filter(|n| *n > 0)?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(n))
}

/// `seconds.nanoseconds`, the form the engine's `since` takes.
pub(crate) fn since_arg(at: i128) -> String {
    format!(
        "{}.{:09}",
        at.div_euclid(1_000_000_000),
        at.rem_euclid(1_000_000_000)
    )
}

/// `2026-11-22T14:00:00Z`, the app log's stamp (whole seconds, UTC).
fn rfc3339_secs(at: i128) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The engine's options for reading a log with time stamps.
pub(crate) fn options(follow: bool, since_secs: i64, tail: Option<usize>) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        since: i32::try_from(since_secs).unwrap_or(0),
        until: 0,
        timestamps: true,
        tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
    }
}

/// The last `n` lines of every container of `app` (running or not), merged oldest first.
pub(crate) async fn past(
    docker: &Docker,
    owner: Option<String>,
    app: &str,
    n: usize,
) -> Result<Vec<String>, String> {
    // This server's containers only: another server on the engine may have an app of the name.
    let mut labelled = vec![
        format!("{}={app}", labels::APP),
        labels::INSTANCE.to_string(),
    ];
    labelled.extend(owner);
    let filters = HashMap::from([("label".to_string(), labelled)]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| format!("cannot list the containers of {app}: {e}"))?;
    let reads = containers.iter().filter_map(|c| {
        let id = c.id.clone()?;
        let labels = c.labels.clone().unwrap_or_default();
        let name = c.names.as_ref().and_then(|n| n.first()).map(String::as_str);
        if !crate::container::is_ours(&labels, name) {
            return None;
        }
        let instance = labels.get(labels::INSTANCE).cloned()?;
        Some(async move {
            let mut stream = docker.logs(&id, Some(options(false, 0, Some(n))));
            let mut lines = Vec::new();
            let mut at = 0;
            while let Some(Ok(frame)) = stream.next().await {
                for line in parse(frame, at) {
                    at = line.at;
                    lines.push((line.at, line.format(&instance)));
                }
            }
            lines
        })
    });
    let mut all: Vec<(i128, String)> = futures_util::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|(at, _)| *at);
    let skip = all.len().saturating_sub(n);
    Ok(all.into_iter().skip(skip).map(|(_, l)| l).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn frames_become_stamped_lines() {
        let frame = LogOutput::StdErr {
            message: Bytes::from_static(
                b"2026-11-22T14:00:00.123456789Z boom\n2026-11-22T14:00:01Z second line\n",
            ),
        };
        let lines = parse(frame, 0);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "boom");
        assert_eq!(lines[0].stream, "err");
        assert_eq!(lines[0].at, 1_795_356_000_123_456_789);
        assert_eq!(
            lines[1].format("blog-1"),
            "2026-11-22T14:00:01Z blog-1 err| second line"
        );
        assert_eq!(since_arg(lines[0].at), "1795356000.123456789");
    }

    #[test]
    fn a_line_without_a_stamp_keeps_the_last_one() {
        let frame = LogOutput::StdOut {
            message: Bytes::from_static(b"no stamp here"),
        };
        let lines = parse(frame, 42);
        assert_eq!(
            lines,
            [Line {
                at: 42,
                stream: "out",
                text: "no stamp here".into()
            }]
        );
    }

    #[test]
    fn never_is_none() {
        assert_eq!(system_time("0001-01-01T00:00:00Z"), None);
        assert!(system_time("2026-11-22T14:00:00.5Z").is_some());
    }

    #[test]
    fn recent_output_is_bounded() {
        let r = Recent::default();
        for i in 0..150 {
            r.push(&format!("{i}"));
        }
        r.push(&"é".repeat(800));
        let last = r.last(1000);
        assert_eq!(last.len(), KEEP_OUTPUT);
        assert_eq!(last[0], "51");
        assert!(last[99].len() <= KEEP_LINE_BYTES);
        assert_eq!(r.last(2)[0], "149");
    }
}
