//! Is a schedule's newest good backup recent enough? Warn and crit ages follow the smallest
//! period the template keeps, with sanoid's defaults where sanoid has them (hourly 90 min /
//! 6 h, daily 28 h / 32 h, monthly 32 d / 40 d); the weekly (8 d / 9 d) and yearly
//! (367 d / 400 d) ones are ours, sanoid leaves those unchecked.

use crate::retention::{Period, Template};

/// Nagios-style status: `Ok` = 0, `Warn` = 1, `Crit` = 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Ok,
    Warn,
    Crit,
}

/// Ages in seconds past which a schedule is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub warn: i64,
    pub crit: i64,
}

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The thresholds for a template, by the smallest period it keeps.
pub fn thresholds(t: &Template) -> Thresholds {
    let (warn, crit) = match t.smallest() {
        Some(Period::Hour) => (90 * MINUTE, 360 * MINUTE),
        Some(Period::Day) | None => (28 * HOUR, 32 * HOUR),
        Some(Period::Week) => (8 * DAY, 9 * DAY),
        Some(Period::Month) => (32 * DAY, 40 * DAY),
        Some(Period::Year) => (367 * DAY, 400 * DAY),
    };
    Thresholds { warn, crit }
}

/// A failed last run is `Crit`; no verified backup yet is `Warn`; otherwise the newest
/// verified backup's age decides (older than `crit` → `Crit`, than `warn` → `Warn`).
pub fn level(
    newest_verified: Option<i64>,
    last_run_failed: bool,
    now: i64,
    t: &Thresholds,
) -> Level {
    if last_run_failed {
        return Level::Crit;
    }
    let Some(newest) = newest_verified else {
        return Level::Warn;
    };
    let age = now.saturating_sub(newest);
    if age > t.crit {
        Level::Crit
    } else if age > t.warn {
        Level::Warn
    } else {
        Level::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_by_smallest_period() {
        let cases = [
            ("production", 90 * MINUTE, 6 * HOUR),
            ("daily=30,monthly=3", 28 * HOUR, 32 * HOUR),
            ("weekly=4,yearly=1", 8 * DAY, 9 * DAY),
            ("monthly=3", 32 * DAY, 40 * DAY),
            ("yearly=5", 367 * DAY, 400 * DAY),
        ];
        for (template, warn, crit) in cases {
            let t = Template::parse(template).unwrap();
            assert_eq!(thresholds(&t), Thresholds { warn, crit }, "{template}");
        }
    }

    #[test]
    fn levels() {
        let t = Thresholds {
            warn: 100,
            crit: 200,
        };
        let now = 10_000;
        assert_eq!(level(Some(now - 50), false, now, &t), Level::Ok);
        assert_eq!(level(Some(now - 100), false, now, &t), Level::Ok);
        assert_eq!(level(Some(now - 101), false, now, &t), Level::Warn);
        assert_eq!(level(Some(now - 201), false, now, &t), Level::Crit);
        assert_eq!(level(None, false, now, &t), Level::Warn);
        assert_eq!(level(Some(now), true, now, &t), Level::Crit);
        assert_eq!(level(None, true, now, &t), Level::Crit);
        // A backup stamped in the future (clock went back) is fresh, not an overflow.
        assert_eq!(level(Some(i64::MAX), false, i64::MIN, &t), Level::Ok);
    }
}
