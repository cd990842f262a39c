//! When backups run: standard 5-field cron expressions (an optional leading seconds field and
//! `@daily`-style nicknames too), evaluated in UTC, and the default schedule for a retention
//! template.

use std::str::FromStr;

use crate::BackupError;
use crate::retention::{Period, Template};

/// A parsed cron expression.
#[derive(Clone, Debug)]
pub struct Cron {
    inner: croner::Cron,
}

impl Cron {
    /// Parses `expr` (`0 3 * * *`, `*/15 * * * *`, `@hourly`, ...).
    pub fn parse(expr: &str) -> Result<Cron, BackupError> {
        let inner = croner::Cron::from_str(expr.trim()).map_err(|e| BackupError::InvalidCron {
            expr: expr.to_owned(),
            reason: format!("{e}; write MINUTE HOUR DAY MONTH WEEKDAY, e.g. \"0 3 * * *\""),
        })?;
        Ok(Cron { inner })
    }

    /// The first time strictly after `t` (unix seconds) that the expression matches, in UTC;
    /// `None` if there is none (e.g. February 30th) or it is out of range.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let start = jiff::Timestamp::from_second(t)
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC);
        let next = self.inner.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp().as_second())
    }
}

/// The schedule that fits a template: one run per smallest period it keeps (hourly on the
/// hour; daily, weekly on Mondays, monthly on the 1st and yearly on January 1st at 03:00 UTC).
pub fn default_cron(t: &Template) -> &'static str {
    match t.smallest() {
        Some(Period::Hour) => "0 * * * *",
        Some(Period::Day) | None => "0 3 * * *",
        Some(Period::Week) => "0 3 * * 1",
        Some(Period::Month) => "0 3 1 * *",
        Some(Period::Year) => "0 3 1 1 *",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-02-29 12:34:56 UTC, a Thursday.
    const T: i64 = 1_709_210_096;

    #[test]
    fn next_after_is_utc_and_strict() {
        let daily = Cron::parse("0 3 * * *").unwrap();
        // 2024-03-01 03:00:00 UTC.
        assert_eq!(daily.next_after(T), Some(1_709_262_000));
        assert_eq!(
            daily.next_after(1_709_262_000),
            Some(1_709_262_000 + 86_400)
        );
        let hourly = Cron::parse("@hourly").unwrap();
        assert_eq!(hourly.next_after(T), Some(1_709_211_600));
    }

    #[test]
    fn default_cron_follows_the_smallest_period_and_parses() {
        let cases = [
            ("production", "0 * * * *"),
            ("daily=7,monthly=2", "0 3 * * *"),
            ("weekly=4", "0 3 * * 1"),
            ("monthly=12", "0 3 1 * *"),
            ("yearly=3", "0 3 1 1 *"),
        ];
        for (template, cron) in cases {
            let t = Template::parse(template).unwrap();
            assert_eq!(default_cron(&t), cron, "{template}");
            Cron::parse(cron).unwrap().next_after(T).unwrap();
        }
        // The weekly default runs on Monday 2024-03-04 03:00 UTC.
        assert_eq!(
            Cron::parse("0 3 * * 1").unwrap().next_after(T),
            Some(1_709_521_200)
        );
    }

    #[test]
    fn bad_expressions_say_how_to_write_one() {
        for expr in ["", "61 * * * *", "every day", "* * *"] {
            let err = Cron::parse(expr).unwrap_err().to_string();
            assert!(err.contains("MINUTE HOUR"), "{expr}: {err}");
        }
    }
}
