//! Per-app log files: one `app.log` shared by the app's instances, each line stamped with the
//! time, the instance and the stream; rotated at 10 MiB (three old files kept); every line also
//! broadcast to live followers.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

const ROTATE_AT: u64 = 10 << 20;
const KEEP: u32 = 3;

pub(crate) struct AppLog {
    /// Unknown until the app's first instance starts (followers may subscribe before that).
    dir: Mutex<Option<PathBuf>>,
    file: Mutex<Option<(File, u64)>>,
    pub(crate) live: broadcast::Sender<String>,
}

impl AppLog {
    pub(crate) fn new(dir: Option<PathBuf>) -> AppLog {
        AppLog {
            dir: Mutex::new(dir),
            file: Mutex::new(None),
            live: broadcast::channel(1024).0,
        }
    }

    pub(crate) fn dir(&self) -> Option<PathBuf> {
        self.dir.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_dir(&self, dir: &std::path::Path) {
        let mut d = self.dir.lock().unwrap_or_else(|p| p.into_inner());
        if d.as_deref() != Some(dir) {
            *d = Some(dir.to_path_buf());
            *self.file.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Writes one line. A log that cannot be written is reported once per failure in the
    /// server's own log; the app keeps running.
    pub(crate) fn line(&self, instance: &str, stream: &str, text: &str) {
        let line = format!(
            "{} {instance} {stream}| {}\n",
            rfc3339(SystemTime::now()),
            text.trim_end_matches(['\n', '\r'])
        );
        let _ = self.live.send(line.clone());
        let Some(dir) = self.dir.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return;
        };
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = write(&dir, &mut guard, line.as_bytes()) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write an app log");
            *guard = None;
        }
    }
}

/// Reading more than this from the end of a log is never needed for a tail.
const TAIL_WINDOW: u64 = 4 << 20;

/// The last `n` lines of a log file (none if it does not exist yet).
pub(crate) fn tail(path: &std::path::Path, n: usize) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_WINDOW)))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(n);
    Ok(all[skip..].iter().map(|l| l.to_string()).collect())
}

fn write(
    dir: &std::path::Path,
    slot: &mut Option<(File, u64)>,
    bytes: &[u8],
) -> std::io::Result<()> {
    let path = dir.join("app.log");
    if slot.as_ref().is_some_and(|(_, size)| *size >= ROTATE_AT) {
        *slot = None;
        for n in (1..KEEP).rev() {
            let _ = std::fs::rename(
                dir.join(format!("app.log.{n}")),
                dir.join(format!("app.log.{}", n + 1)),
            );
        }
        std::fs::rename(&path, dir.join("app.log.1"))?;
    }
    if slot.is_none() {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        *slot = Some((file, size));
    }
    let (file, size) = slot.as_mut().expect("opened above");
    file.write_all(bytes)?;
    *size += bytes.len() as u64;
    Ok(())
}

/// `2026-11-22T14:00:00Z`, computed without a date crate (days-to-civil conversion).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_356_000), "2026-11-22T14:00:00Z");
    }

    #[test]
    fn rotates_and_keeps_three() {
        let dir = std::env::temp_dir().join(format!("wharf-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = AppLog::new(Some(dir.clone()));
        let big = "x".repeat(1 << 20);
        for _ in 0..45 {
            log.line("a-1", "out", &big);
        }
        for f in ["app.log", "app.log.1", "app.log.2", "app.log.3"] {
            assert!(dir.join(f).exists(), "{f}");
        }
        assert!(!dir.join("app.log.4").exists());
        assert!(std::fs::metadata(dir.join("app.log.1")).unwrap().len() >= ROTATE_AT);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
