//! Retention: which backups of a schedule to remove, sanoid-style, never at the cost of the
//! last good one.
//!
//! [`expired`] answers for ONE schedule, among entries that may belong to several:
//!
//! 1. Only entries of that schedule are ever returned (another schedule's backups are its own
//!    business, whatever their age).
//! 2. The newest verified entry of the schedule is never returned, whatever the template says.
//! 3. Unverified entries newer than the newest verified one are kept: they are in progress or
//!    being checked. With no verified entry at all, every entry is kept.
//! 4. Unverified entries not newer than the newest verified one are returned (failed runs).
//! 5. A verified entry is kept when it is the newest verified entry of its bucket in one of the
//!    last `hourly` hours, `daily` days, `weekly` ISO weeks (Monday to Sunday), `monthly`
//!    calendar months or `yearly` calendar years, in UTC, counting back from (and including)
//!    `now`'s bucket; other verified entries are returned. An entry from after `now` (the
//!    clock went back) counts in `now`'s bucket. Among entries of the same second, the greater
//!    id counts as newer, so the answer never depends on the order of `entries`.
//!
//! So at most `hourly + daily + weekly + monthly + yearly + 1` verified entries stay, and
//! applying the answer then asking again removes nothing more.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::BackupError;

/// How many of each period to keep (0 = none of that period).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Template {
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

/// Named templates, with sanoid's numbers.
const NAMED: [(&str, Template); 3] = [
    (
        "production",
        Template {
            hourly: 36,
            daily: 30,
            weekly: 0,
            monthly: 3,
            yearly: 0,
        },
    ),
    (
        "backup",
        Template {
            hourly: 30,
            daily: 90,
            weekly: 0,
            monthly: 12,
            yearly: 0,
        },
    ),
    (
        "hotspare",
        Template {
            hourly: 30,
            daily: 90,
            weekly: 0,
            monthly: 3,
            yearly: 0,
        },
    ),
];

const KEYS: &str = "hourly, daily, weekly, monthly, yearly";

impl Template {
    /// A named template (`production`, `backup`, `hotspare`: sanoid's) or a list like
    /// `hourly=36,daily=30,monthly=3` (spaces allowed, missing periods are 0).
    pub fn parse(s: &str) -> Result<Template, BackupError> {
        let invalid = |reason: String| BackupError::InvalidTemplate {
            input: s.to_owned(),
            reason,
        };
        let text = s.trim();
        if let Some((_, t)) = NAMED
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
        {
            return Ok(*t);
        }
        if !text.contains('=') {
            let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
            return Err(invalid(format!(
                "not a template name ({}) nor a list like hourly=36,daily=30,monthly=3",
                names.join(", ")
            )));
        }
        let mut t = Template::default();
        let mut seen = HashSet::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("{part:?} is not KEY=NUMBER")))?;
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            let n: u32 = value.parse().map_err(|_| {
                invalid(format!("{key}: {value:?} is not a whole number of periods"))
            })?;
            let slot = match key.as_str() {
                "hourly" => &mut t.hourly,
                "daily" => &mut t.daily,
                "weekly" => &mut t.weekly,
                "monthly" => &mut t.monthly,
                "yearly" => &mut t.yearly,
                _ => return Err(invalid(format!("unknown period {key:?}; use {KEYS}"))),
            };
            if !seen.insert(key.clone()) {
                return Err(invalid(format!("{key} is given twice")));
            }
            *slot = n;
        }
        if t.periods().iter().all(|(_, n)| *n == 0) {
            return Err(invalid(format!(
                "keeps nothing; give at least one of {KEYS} above 0"
            )));
        }
        Ok(t)
    }

    /// The periods in order, smallest first.
    pub(crate) fn periods(&self) -> [(Period, u32); 5] {
        [
            (Period::Hour, self.hourly),
            (Period::Day, self.daily),
            (Period::Week, self.weekly),
            (Period::Month, self.monthly),
            (Period::Year, self.yearly),
        ]
    }

    /// The smallest period this template keeps any of.
    pub(crate) fn smallest(&self) -> Option<Period> {
        self.periods()
            .into_iter()
            .find(|(_, n)| *n > 0)
            .map(|(p, _)| p)
    }
}

impl fmt::Display for Template {
    /// The canonical form: `hourly=36,daily=30,monthly=3` (periods kept, smallest first).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .periods()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| format!("{}={n}", p.key()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    fn key(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    /// The UTC bucket (hour, day, ISO week, month or year number) holding unix second `t`.
    pub(crate) fn bucket(self, t: i64) -> i64 {
        let days = t.div_euclid(86_400);
        match self {
            Period::Hour => t.div_euclid(3_600),
            Period::Day => days,
            // 1970-01-01 was a Thursday: shifting by 3 days makes weeks start on Mondays.
            Period::Week => (days + 3).div_euclid(7),
            Period::Month => {
                let (y, m, _) = civil_from_days(days);
                y * 12 + i64::from(m) - 1
            }
            Period::Year => civil_from_days(days).0,
        }
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), total over all of i64's range of unix seconds.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One backup as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub schedule: String,
    /// Unix seconds.
    pub time: i64,
    /// Counts as a good backup (its data was read back and checked).
    pub verified: bool,
}

/// Newer first by time, then by id: a total order that does not depend on input order.
fn newer(a: &Entry, b: &Entry) -> bool {
    (a.time, &a.id) > (b.time, &b.id)
}

/// The ids to remove among `entries` for `schedule` under `template` at `now` (rules in the
/// module doc), oldest first, each once.
pub fn expired(entries: &[Entry], schedule: &str, template: &Template, now: i64) -> Vec<String> {
    let mine: Vec<&Entry> = entries.iter().filter(|e| e.schedule == schedule).collect();
    let Some(newest_verified) = mine
        .iter()
        .copied()
        .filter(|e| e.verified)
        .reduce(|a, b| if newer(b, a) { b } else { a })
    else {
        // Nothing good yet: keep everything.
        return Vec::new();
    };

    let mut keep: HashSet<&str> = HashSet::new();
    keep.insert(&newest_verified.id);
    for (period, count) in template.periods() {
        if count == 0 {
            continue;
        }
        let now_bucket = period.bucket(now);
        let oldest_bucket = now_bucket - i64::from(count) + 1;
        let mut best: HashMap<i64, &Entry> = HashMap::new();
        for e in mine.iter().copied().filter(|e| e.verified) {
            let bucket = period.bucket(e.time.min(now));
            if bucket < oldest_bucket {
                continue;
            }
            best.entry(bucket)
                .and_modify(|b| {
                    if newer(e, b) {
                        *b = e;
                    }
                })
                .or_insert(e);
        }
        keep.extend(best.values().map(|e| e.id.as_str()));
    }

    let mut out: Vec<&Entry> = mine
        .into_iter()
        .filter(|e| {
            if keep.contains(e.id.as_str()) {
                return false;
            }
            if e.verified {
                return true;
            }
            // Unverified: keep while it may still become the newest good one.
            !newer(e, newest_verified)
        })
        .collect();
    out.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    let mut seen = HashSet::new();
    out.into_iter()
        .filter(|e| seen.insert(e.id.as_str()))
        .map(|e| e.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_print_canonically() {
        let cases = [
            ("production", "hourly=36,daily=30,monthly=3"),
            ("Production", "hourly=36,daily=30,monthly=3"),
            (
                "hourly = 36, daily = 30, monthly = 3",
                "hourly=36,daily=30,monthly=3",
            ),
            (
                "monthly=3,hourly=36,daily=30",
                "hourly=36,daily=30,monthly=3",
            ),
            ("weekly=4,yearly=2", "weekly=4,yearly=2"),
            ("daily=7,hourly=0", "daily=7"),
        ];
        for (input, canonical) in cases {
            let t = Template::parse(input).unwrap();
            assert_eq!(t.to_string(), canonical, "{input}");
            assert_eq!(Template::parse(canonical).unwrap(), t);
        }
    }

    #[test]
    fn template_errors_say_what_to_fix() {
        let cases = [
            ("prod", "not a template name"),
            ("hourly=x", "whole number"),
            ("minutely=5", "unknown period"),
            ("daily=1,daily=2", "twice"),
            ("daily=0", "keeps nothing"),
            ("daily", "not a template name"),
            ("daily=-1", "whole number"),
        ];
        for (input, needle) in cases {
            let err = Template::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn buckets_are_utc_calendar_periods() {
        // 2024-02-29 12:34:56 UTC, a Thursday.
        let t = 1_709_210_096;
        assert_eq!(civil_from_days(t / 86_400), (2024, 2, 29));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // Monday 2024-02-26 00:00 starts its ISO week; Sunday 2024-02-25 23:59:59 ends the last.
        let monday = 1_708_905_600;
        assert_eq!(Period::Week.bucket(t), Period::Week.bucket(monday));
        assert_eq!(
            Period::Week.bucket(monday - 1) + 1,
            Period::Week.bucket(monday)
        );
        assert_eq!(Period::Month.bucket(t), 2024 * 12 + 1);
        assert_eq!(Period::Year.bucket(t), 2024);
        assert_eq!(Period::Hour.bucket(t), t / 3600);
    }

    fn e(id: &str, schedule: &str, time: i64, verified: bool) -> Entry {
        Entry {
            id: id.into(),
            schedule: schedule.into(),
            time,
            verified,
        }
    }

    #[test]
    fn keeps_one_per_bucket_and_the_newest_good_one() {
        let h = 3600;
        let now = 1_000 * 86_400 + 10 * h + 1_800;
        let t = Template {
            hourly: 2,
            ..Template::default()
        };
        let entries = [
            e("a", "s", now - 3 * h, true),       // outside the 2-hour window
            e("b", "s", now - h - 60, true),      // previous hour, older
            e("c", "s", now - h + 60, true),      // previous hour, newest there
            e("d", "s", now - 30, false),         // failed run, older than the newest good
            e("e", "s", now - 20, true),          // newest good
            e("f", "s", now - 10, false),         // in progress
            e("x", "other", now - 100 * h, true), // another schedule
        ];
        assert_eq!(expired(&entries, "s", &t, now), vec!["a", "b", "d"]);
    }

    #[test]
    fn never_removes_the_only_good_backup_however_old() {
        let t = Template {
            daily: 1,
            ..Template::default()
        };
        let entries = [e("old", "s", 0, true), e("failed", "s", 10, false)];
        assert_eq!(
            expired(&entries, "s", &t, 100 * 86_400),
            vec![] as Vec<String>
        );
        let entries = [e("old", "s", 10, true), e("failed", "s", 0, false)];
        assert_eq!(expired(&entries, "s", &t, 100 * 86_400), vec!["failed"]);
    }
}
