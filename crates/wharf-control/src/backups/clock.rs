//! The time schedules run by: the system's, or one read from a file (tests set it, so a
//! schedule is forced by moving the clock, not by waiting).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    /// Unix seconds, read from this file at each look (`wharf server --clock-file`).
    File(PathBuf),
}

impl Clock {
    /// Now, in unix seconds. A file clock that cannot be read falls back to the system's.
    pub fn now(&self) -> i64 {
        let system = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        };
        match self {
            Clock::System => system(),
            Clock::File(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(system),
        }
    }

    /// How often the scheduler looks: cron's resolution is a minute; a file clock may jump at
    /// any moment.
    pub(crate) fn tick(&self) -> Duration {
        match self {
            Clock::System => Duration::from_secs(20),
            Clock::File(_) => Duration::from_millis(100),
        }
    }
}
