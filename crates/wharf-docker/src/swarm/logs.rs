//! Service logs, read from the manager (it gathers them from every node's tasks): past lines
//! for `logs` and `recent_output`, and one follower per service feeding the app's live feed.
//! Lines are shaped like the process runtime's: `<time> <instance> <stream>| <text>`.

use std::time::SystemTime;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::task::parse_time;

/// Whole lines of one service's log, oldest first: `(time, stream, text)` when `timestamps`,
/// else `(None, stream, text)`.
pub(crate) async fn read(
    docker: &Docker,
    service: &str,
    tail: usize,
    timestamps: bool,
) -> Result<Vec<(Option<String>, &'static str, String)>, bollard::errors::Error> {
    let opts = LogsOptions {
        stdout: true,
        stderr: true,
        timestamps,
        tail: tail.to_string(),
        ..Default::default()
    };
    let mut stream = docker.service_logs(service, Some(opts));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        for (at, stream, text) in split(&chunk?, timestamps) {
            out.push((at, stream, text));
        }
    }
    Ok(out)
}

/// An app's lines across its services, in time order, the last `lines` of them.
pub(crate) fn merge(mut all: Vec<(SystemTime, String)>, lines: usize) -> Vec<String> {
    // Stable: lines of one service with the same time stamp keep their order.
    all.sort_by_key(|(at, _)| *at);
    let skip = all.len().saturating_sub(lines);
    all.into_iter().skip(skip).map(|(_, l)| l).collect()
}

/// Formats one line as the app log shows it.
pub(crate) fn line(at: &str, instance: &str, stream: &str, text: &str) -> String {
    format!("{at} {instance} {stream}| {text}\n")
}

/// Follows `service`'s log from now on, sending each line to `live`, until the service is
/// removed (its log ends) or the returned handle is aborted.
pub(crate) fn follow(
    docker: Docker,
    service: String,
    instance: String,
    live: broadcast::Sender<String>,
) -> AbortHandle {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX));
    let task = tokio::spawn(async move {
        let opts = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since,
            ..Default::default()
        };
        let mut stream = docker.service_logs(&service, Some(opts));
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    for (at, stream, text) in split(&chunk, true) {
                        let _ =
                            live.send(line(at.as_deref().unwrap_or("-"), &instance, stream, &text));
                    }
                }
                Err(e) => {
                    tracing::debug!(service, error = %e, "the service's log ended");
                    return;
                }
            }
        }
    });
    task.abort_handle()
}

/// The lines of one chunk of log output, each with its time stamp (when asked for) and stream.
fn split(chunk: &LogOutput, timestamps: bool) -> Vec<(Option<String>, &'static str, String)> {
    let stream = match chunk {
        LogOutput::StdErr { .. } => "stderr",
        _ => "stdout",
    };
    let text = chunk.to_string();
    text.lines()
        .map(|l| {
            if timestamps {
                match l.split_once(' ') {
                    Some((at, rest)) if parse_time(at).is_some() => {
                        (Some(at.to_string()), stream, rest.to_string())
                    }
                    _ => (None, stream, l.to_string()),
                }
            } else {
                (None, stream, l.to_string())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_into_stamped_lines() {
        let chunk = LogOutput::StdErr {
            message: "2024-05-01T12:00:00.5Z boom\n2024-05-01T12:00:01Z again\n".into(),
        };
        let lines = split(&chunk, true);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0.as_deref(), Some("2024-05-01T12:00:00.5Z"));
        assert_eq!(lines[0].1, "stderr");
        assert_eq!(lines[1].2, "again");
    }

    #[test]
    fn merged_logs_keep_the_last_lines_in_time_order() {
        let t = |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let all = vec![(t(3), "c".into()), (t(1), "a".into()), (t(2), "b".into())];
        assert_eq!(merge(all, 2), vec!["b".to_string(), "c".to_string()]);
    }
}
