//! Each app's traffic over the last half hour, for the dashboard's graphs: the gateway's totals
//! sampled every few seconds, turned into rates on request.
//!
//! Kept sparse, so that thousands of mostly idle apps cost what their traffic changes: every
//! sample time is kept once for all apps; an app keeps its last totals and, for each interval in
//! which they moved, by how much. An interval with no entry had no traffic and reads as zero.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use wharf_client::dto::TrafficPoint;
use wharf_gateway::SiteStats;

pub(crate) const INTERVAL: Duration = Duration::from_secs(5);
/// Half an hour of samples (and one more, for the first rate).
const KEEP: usize = 361;
/// How many samples pass between two reads of the app list from the store: reading every app
/// of a large store every few seconds would cost more than the sampling itself. Apps someone
/// looks at are picked up sooner (see `Traffic::points`).
pub(crate) const TRACK_EVERY: u64 = 12;
/// `Series::since` of an app not sampled yet.
const NOT_YET: i64 = i64::MAX;

#[derive(Default)]
pub(crate) struct Traffic {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// When the last `KEEP` samples were taken, oldest first (the same for every app).
    times: VecDeque<i64>,
    apps: HashMap<String, Series>,
}

struct Series {
    /// The first sample of this app (its graph starts there).
    since: i64,
    /// The totals at the last sample.
    last: SiteStats,
    /// The intervals in which the totals moved, oldest first: the sample ending each, and how
    /// much they moved by. Empty (and unallocated) for an app idle for half an hour.
    moves: VecDeque<(i64, SiteStats)>,
}

impl Series {
    fn new() -> Series {
        Series {
            since: NOT_YET,
            last: SiteStats::default(),
            moves: VecDeque::new(),
        }
    }
}

impl Traffic {
    /// Samples `apps` from now on, and forgets every other app.
    pub(crate) fn track(&self, apps: Vec<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let keep: HashSet<&str> = apps.iter().map(String::as_str).collect();
        inner.apps.retain(|name, _| keep.contains(name.as_str()));
        for app in apps {
            inner.apps.entry(app).or_insert_with(Series::new);
        }
    }

    /// Records the totals of every tracked app now; `stats` gives an app's totals (`None`: no
    /// site, which counts as no traffic yet).
    pub(crate) fn sample(&self, now: i64, stats: impl Fn(&str) -> Option<SiteStats>) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        if inner.times.len() == KEEP {
            inner.times.pop_front();
        }
        inner.times.push_back(now);
        // A move is used while the sample before it is kept.
        let oldest = inner.times.front().copied().unwrap_or(now);
        for (name, series) in &mut inner.apps {
            let totals = stats(name).unwrap_or_default();
            if series.since == NOT_YET {
                series.since = now;
            } else if totals != series.last {
                // Totals restart from zero when a site is rebuilt under a new name; never negative.
                let moved = SiteStats {
                    requests: totals.requests.saturating_sub(series.last.requests),
                    errors: totals.errors.saturating_sub(series.last.errors),
                    latency_micros: totals
                        .latency_micros
                        .saturating_sub(series.last.latency_micros),
                };
                series.moves.push_back((now, moved));
            }
            series.last = totals;
            while series.moves.front().is_some_and(|(at, _)| *at <= oldest) {
                series.moves.pop_front();
            }
            if series.moves.is_empty() && series.moves.capacity() > 0 {
                series.moves = VecDeque::new();
            }
        }
    }

    /// Rates between consecutive samples, oldest first. An app not tracked yet is tracked from
    /// the next sample on (the caller knows it exists).
    pub(crate) fn points(&self, app: &str) -> Vec<TrafficPoint> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !inner.apps.contains_key(app) {
            inner.apps.insert(app.to_string(), Series::new());
            return Vec::new();
        }
        let series = &inner.apps[app];
        let mut moves = series.moves.iter().peekable();
        let times = &inner.times;
        times
            .iter()
            .zip(times.iter().skip(1))
            .filter(|(t0, _)| **t0 >= series.since)
            .map(|(t0, t1)| {
                while moves.next_if(|(at, _)| at < t1).is_some() {}
                let moved = moves.next_if(|(at, _)| at == t1).map(|(_, m)| *m);
                rate(*t0, *t1, moved.unwrap_or_default())
            })
            .collect()
    }

    /// The latest requests/s, once two samples exist. (Every app view asks; only the last
    /// interval is read.) An app not tracked yet is tracked from the next sample on.
    pub(crate) fn rate(&self, app: &str) -> Option<f64> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let n = inner.times.len();
        if !inner.apps.contains_key(app) {
            inner.apps.insert(app.to_string(), Series::new());
            return None;
        }
        let series = &inner.apps[app];
        if n < 2 || inner.times[n - 2] < series.since {
            return None;
        }
        let (t0, t1) = (inner.times[n - 2], inner.times[n - 1]);
        let moved = match series.moves.back() {
            Some((at, m)) if *at == t1 => *m,
            _ => SiteStats::default(),
        };
        Some(rate(t0, t1, moved).requests_per_second)
    }
}

/// The rates over the interval from `t0` to `t1`, in which the totals moved by `moved`.
fn rate(t0: i64, t1: i64, moved: SiteStats) -> TrafficPoint {
    let secs = (t1 - t0).max(1) as f64;
    TrafficPoint {
        at: t1,
        requests_per_second: moved.requests as f64 / secs,
        errors_per_second: moved.errors as f64 / secs,
        mean_latency_ms: (moved.requests > 0)
            .then(|| moved.latency_micros as f64 / moved.requests as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, errors: u64, latency_micros: u64) -> SiteStats {
        SiteStats {
            requests,
            errors,
            latency_micros,
        }
    }

    /// Samples `totals` (app → totals) at `now`.
    fn sample(t: &Traffic, now: i64, totals: &[(&str, SiteStats)]) {
        t.sample(now, |app| {
            totals.iter().find(|(a, _)| *a == app).map(|(_, s)| *s)
        });
    }

    #[test]
    fn rates_between_samples() {
        let t = Traffic::default();
        t.track(vec!["blog".into()]);
        sample(&t, 100, &[("blog", stats(0, 0, 0))]);
        sample(&t, 105, &[("blog", stats(10, 5, 20_000))]);
        sample(&t, 110, &[("blog", stats(10, 5, 20_000))]);
        let p = t.points("blog");
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].at, p[0].requests_per_second, p[0].errors_per_second),
            (105, 2.0, 1.0)
        );
        assert_eq!(p[0].mean_latency_ms, Some(2.0));
        assert_eq!(p[1].mean_latency_ms, None);
        assert_eq!(t.rate("blog"), Some(0.0));
        assert_eq!(t.rate("other"), None);
    }

    #[test]
    fn idle_app_keeps_only_its_last_totals() {
        let t = Traffic::default();
        t.track(vec!["busy".into(), "idle".into()]);
        // `idle` served 7 requests before sampling began, none since.
        for i in 0..400u64 {
            let now = 1000 + 5 * i as i64;
            sample(
                &t,
                now,
                &[("busy", stats(i, 0, 0)), ("idle", stats(7, 0, 0))],
            );
        }
        {
            let inner = t.inner.lock().unwrap();
            let idle = &inner.apps["idle"];
            assert_eq!((idle.moves.capacity(), idle.last), (0, stats(7, 0, 0)));
            // Half an hour of one request per sample: one entry per interval, no more.
            assert_eq!(inner.apps["busy"].moves.len(), KEEP - 1);
        }
        let idle = t.points("idle");
        assert_eq!(idle.len(), KEEP - 1);
        assert!(idle.iter().all(|p| p.requests_per_second == 0.0));
        assert_eq!(t.rate("idle"), Some(0.0));
        assert!(
            t.points("busy")
                .iter()
                .all(|p| p.requests_per_second == 0.2)
        );

        // Once `busy` has been idle for half an hour, it holds no more than `idle`.
        for i in 400..400 + KEEP as i64 {
            sample(&t, 1000 + 5 * i, &[("busy", stats(399, 0, 0))]);
        }
        assert_eq!(t.inner.lock().unwrap().apps["busy"].moves.capacity(), 0);
        assert!(
            t.points("busy")
                .iter()
                .all(|p| p.requests_per_second == 0.0)
        );
    }

    #[test]
    fn rates_across_idle_stretches() {
        let t = Traffic::default();
        t.track(vec!["blog".into()]);
        let totals = [0, 0, 0, 50, 50, 50, 50, 60, 60];
        for (i, r) in totals.iter().enumerate() {
            sample(&t, 100 + 5 * i as i64, &[("blog", stats(*r, 0, *r * 1000))]);
        }
        let p = t.points("blog");
        let rates: Vec<f64> = p.iter().map(|p| p.requests_per_second).collect();
        assert_eq!(rates, [0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 2.0, 0.0]);
        assert_eq!(
            p.iter().map(|p| p.at).collect::<Vec<_>>(),
            (1..9).map(|i| 100 + 5 * i).collect::<Vec<_>>()
        );
        assert_eq!(p[2].mean_latency_ms, Some(1.0));
        assert_eq!(t.rate("blog"), Some(0.0));
    }

    #[test]
    fn gone_apps_are_forgotten_and_new_ones_start_at_their_first_sample() {
        let t = Traffic::default();
        t.track(vec!["old".into(), "kept".into()]);
        sample(&t, 100, &[]);
        sample(
            &t,
            105,
            &[("old", stats(5, 0, 0)), ("kept", stats(5, 0, 0))],
        );
        t.track(vec!["kept".into(), "new".into()]);
        assert!(!t.inner.lock().unwrap().apps.contains_key("old"));
        sample(
            &t,
            110,
            &[("kept", stats(10, 0, 0)), ("new", stats(3, 0, 0))],
        );
        sample(
            &t,
            115,
            &[("kept", stats(10, 0, 0)), ("new", stats(8, 0, 0))],
        );
        let kept: Vec<f64> = t
            .points("kept")
            .iter()
            .map(|p| p.requests_per_second)
            .collect();
        assert_eq!(kept, [1.0, 1.0, 0.0]);
        // `new` counts from its first sample, not from when sampling began.
        let new: Vec<f64> = t
            .points("new")
            .iter()
            .map(|p| p.requests_per_second)
            .collect();
        assert_eq!(new, [1.0]);
        // An app someone asks about is sampled from then on.
        assert_eq!(t.rate("late"), None);
        sample(&t, 120, &[("late", stats(1, 0, 0))]);
        sample(&t, 125, &[("late", stats(6, 0, 0))]);
        assert_eq!(t.rate("late"), Some(1.0));
    }
}
