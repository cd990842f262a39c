//! Each app's traffic over the last half hour, for the dashboard's graphs: the gateway's totals
//! sampled every few seconds, turned into rates on request.
//!
//! Costs what traffic changes, not the number of apps: each sample asks the gateway for the
//! sites that served something since the last one (`Gateway::active_sites`), so idle apps are
//! never visited. Every sample time is kept once for all apps; an app that served something
//! keeps its last totals and, for each interval in which they moved, by how much. An interval
//! with no entry had no traffic and reads as zero; an app never seen reads as zero throughout.
//!
//! The history survives a restart: [`Traffic::save`] writes it (every minute and at shutdown)
//! to `traffic.json` in the data folder, atomically, and [`Traffic::load`] reads it back at
//! start. Only apps with traffic in the window are written, the busiest [`MAX_SAVED_APPS`] at
//! most, so the file stays small (a few KB per busy app) however many apps there are.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use wharf_client::dto::TrafficPoint;
use wharf_gateway::SiteStats;

pub(crate) const INTERVAL: Duration = Duration::from_secs(5);
/// Half an hour of samples (and one more, for the first rate).
const KEEP: usize = 361;
/// The most apps whose history is written to disk (the busiest ones).
pub(crate) const MAX_SAVED_APPS: usize = 200;
/// Version of the history file; another version is ignored (graphs start empty).
const FILE_VERSION: u32 = 1;

/// The history file: sample times, and for each app the intervals in which its totals moved,
/// as `[sample time, requests, errors, latency µs]`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    version: u32,
    times: Vec<i64>,
    apps: HashMap<String, Vec<[u64; 4]>>,
}

#[derive(Default)]
pub(crate) struct Traffic {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// When the last `KEEP` samples were taken, oldest first (the same for every app).
    times: VecDeque<i64>,
    apps: HashMap<String, Series>,
    /// Each recorded move's sample time and app, oldest first: when a time leaves the window,
    /// only the apps listed for it are trimmed, so an app that went idle is cleaned up
    /// without a pass over every app.
    recorded: VecDeque<(i64, String)>,
}

#[derive(Default)]
struct Series {
    /// The totals at the last sample that saw the app active. A site's totals start at its
    /// first request (the gateway makes its counters then), so zero is the right start.
    last: SiteStats,
    /// The intervals in which the totals moved, oldest first: the sample ending each, and how
    /// much they moved by. Empty (and unallocated) for an app idle for half an hour.
    moves: VecDeque<(i64, SiteStats)>,
}

impl Traffic {
    /// Records a sample taken at `now`: the totals of the sites that served something since
    /// the last sample (every other app moved by nothing).
    pub(crate) fn sample(&self, now: i64, active: Vec<(String, SiteStats)>) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        if inner.times.len() == KEEP {
            inner.times.pop_front();
        }
        inner.times.push_back(now);
        for (name, totals) in active {
            let series = inner.apps.entry(name.clone()).or_default();
            if totals == series.last {
                continue;
            }
            // Totals start again from zero when a site is removed and made again (a stop and
            // start, a delete and create): a total that went down counts from zero.
            let restarted = totals.requests < series.last.requests
                || totals.errors < series.last.errors
                || totals.latency_micros < series.last.latency_micros;
            let base = if restarted {
                SiteStats::default()
            } else {
                series.last
            };
            let moved = SiteStats {
                requests: totals.requests - base.requests,
                errors: totals.errors - base.errors,
                latency_micros: totals.latency_micros - base.latency_micros,
            };
            series.last = totals;
            series.moves.push_back((now, moved));
            inner.recorded.push_back((now, name));
        }
        // A move is used while the sample before it is kept.
        let oldest = inner.times.front().copied().unwrap_or(now);
        while inner.recorded.front().is_some_and(|(at, _)| *at <= oldest) {
            let Some((_, name)) = inner.recorded.pop_front() else {
                break;
            };
            if let Some(series) = inner.apps.get_mut(&name) {
                while series.moves.front().is_some_and(|(at, _)| *at <= oldest) {
                    series.moves.pop_front();
                }
                if series.moves.is_empty() && series.moves.capacity() > 0 {
                    series.moves = VecDeque::new();
                }
            }
        }
    }

    /// Forgets a deleted app (an app made again under its name starts from zero).
    pub(crate) fn forget(&self, app: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.apps.remove(app);
    }

    /// Writes the history to `path` atomically (a temporary file renamed over it).
    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        let saved = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let mut busy: Vec<(&String, &Series, u64)> = inner
                .apps
                .iter()
                .filter(|(_, s)| !s.moves.is_empty())
                .map(|(n, s)| (n, s, s.moves.iter().map(|(_, m)| m.requests).sum()))
                .collect();
            busy.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(b.0)));
            busy.truncate(MAX_SAVED_APPS);
            Saved {
                version: FILE_VERSION,
                times: inner.times.iter().copied().collect(),
                apps: busy
                    .into_iter()
                    .map(|(n, s, _)| {
                        let moves = s
                            .moves
                            .iter()
                            .map(|(at, m)| [*at as u64, m.requests, m.errors, m.latency_micros])
                            .collect();
                        (n.clone(), moves)
                    })
                    .collect(),
            }
        };
        let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            // On disk before it replaces the last good file: a power cut leaves one or the other.
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }

    /// The history saved at `path`, without what is older than the window before `now`.
    /// No file is an empty history; an unreadable one is reported, and starts empty too.
    pub(crate) fn load(path: &Path, now: i64) -> Result<Traffic, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Traffic::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let saved: Saved = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a traffic history: {e}", path.display()))?;
        if saved.version != FILE_VERSION {
            return Err(format!(
                "{} has version {}, not {FILE_VERSION}",
                path.display(),
                saved.version
            ));
        }
        let window = (KEEP as i64) * INTERVAL.as_secs() as i64;
        let mut times: Vec<i64> = saved
            .times
            .into_iter()
            .filter(|t| *t > now - window && *t <= now)
            .collect();
        times.sort_unstable();
        times.dedup();
        if times.len() > KEEP {
            times.drain(..times.len() - KEEP);
        }
        let mut inner = Inner {
            times: times.iter().copied().collect(),
            ..Default::default()
        };
        // A move is used while the sample before it is kept (as in `sample`).
        let oldest = times.first().copied().unwrap_or(now);
        let kept: std::collections::HashSet<i64> = times.iter().copied().collect();
        for (name, moves) in saved.apps.into_iter().take(MAX_SAVED_APPS) {
            let mut moves: Vec<(i64, SiteStats)> = moves
                .into_iter()
                .map(|[at, requests, errors, latency_micros]| {
                    let stats = SiteStats {
                        requests,
                        errors,
                        latency_micros,
                    };
                    (at as i64, stats)
                })
                .filter(|(at, _)| *at > oldest && kept.contains(at))
                .collect();
            moves.sort_by_key(|(at, _)| *at);
            moves.dedup_by_key(|(at, _)| *at);
            if moves.is_empty() {
                continue;
            }
            inner
                .recorded
                .extend(moves.iter().map(|(at, _)| (*at, name.clone())));
            // The gateway of this new process counts from zero: `last` starts there.
            let series = Series {
                last: SiteStats::default(),
                moves: moves.into(),
            };
            inner.apps.insert(name, series);
        }
        inner.recorded.make_contiguous().sort();
        Ok(Traffic {
            inner: Mutex::new(inner),
        })
    }

    /// Rates between consecutive samples, oldest first.
    pub(crate) fn points(&self, app: &str) -> Vec<TrafficPoint> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let none = VecDeque::new();
        let mut moves = inner
            .apps
            .get(app)
            .map_or(&none, |s| &s.moves)
            .iter()
            .peekable();
        let times = &inner.times;
        times
            .iter()
            .zip(times.iter().skip(1))
            .map(|(t0, t1)| {
                while moves.next_if(|(at, _)| at < t1).is_some() {}
                let moved = moves.next_if(|(at, _)| at == t1).map(|(_, m)| *m);
                rate(*t0, *t1, moved.unwrap_or_default())
            })
            .collect()
    }

    /// The latest requests/s, once two samples exist. (Every app view asks; only the last
    /// interval is read.)
    pub(crate) fn rate(&self, app: &str) -> Option<f64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let n = inner.times.len();
        if n < 2 {
            return None;
        }
        let (t0, t1) = (inner.times[n - 2], inner.times[n - 1]);
        let moved = match inner.apps.get(app).and_then(|s| s.moves.back()) {
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

    /// A sample at `now` in which the apps given were active with these totals.
    fn sample(t: &Traffic, now: i64, active: &[(&str, SiteStats)]) {
        t.sample(
            now,
            active.iter().map(|(a, s)| (a.to_string(), *s)).collect(),
        );
    }

    #[test]
    fn rates_between_samples() {
        let t = Traffic::default();
        sample(&t, 100, &[]);
        sample(&t, 105, &[("blog", stats(10, 5, 20_000))]);
        sample(&t, 110, &[]);
        let p = t.points("blog");
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].at, p[0].requests_per_second, p[0].errors_per_second),
            (105, 2.0, 1.0)
        );
        assert_eq!(p[0].mean_latency_ms, Some(2.0));
        assert_eq!(p[1].mean_latency_ms, None);
        assert_eq!(t.rate("blog"), Some(0.0));
        // An app that never served anything reads as zero.
        assert_eq!(t.rate("other"), Some(0.0));
        assert!(
            t.points("other")
                .iter()
                .all(|p| p.requests_per_second == 0.0)
        );
    }

    #[test]
    fn idle_apps_are_never_visited_and_hold_nothing() {
        let t = Traffic::default();
        for i in 0..400u64 {
            sample(&t, 1000 + 5 * i as i64, &[("busy", stats(i + 1, 0, 0))]);
        }
        {
            let inner = t.inner.lock().unwrap();
            assert!(!inner.apps.contains_key("idle"), "an idle app got a series");
            // Half an hour of one request per sample: one entry per interval, no more.
            assert_eq!(inner.apps["busy"].moves.len(), KEEP - 1);
            assert_eq!(inner.recorded.len(), KEEP - 1);
        }
        let idle = t.points("idle");
        assert_eq!(idle.len(), KEEP - 1);
        assert!(idle.iter().all(|p| p.requests_per_second == 0.0));
        assert!(
            t.points("busy")
                .iter()
                .all(|p| p.requests_per_second == 0.2)
        );

        // Once `busy` has been idle for half an hour (nothing active), it holds only its
        // last totals.
        for i in 400..400 + KEEP as i64 {
            sample(&t, 1000 + 5 * i, &[]);
        }
        let inner = t.inner.lock().unwrap();
        assert_eq!(inner.apps["busy"].moves.capacity(), 0);
        assert!(inner.recorded.is_empty());
        drop(inner);
        assert!(
            t.points("busy")
                .iter()
                .all(|p| p.requests_per_second == 0.0)
        );
    }

    #[test]
    fn rates_across_idle_stretches() {
        let t = Traffic::default();
        // Active in the samples where the totals moved; absent otherwise.
        let totals = [0, 0, 0, 50, 50, 50, 50, 60, 60];
        let mut last = 0;
        for (i, r) in totals.iter().enumerate() {
            let active: Vec<(&str, SiteStats)> = if *r != last {
                vec![("blog", stats(*r, 0, *r * 1000))]
            } else {
                vec![]
            };
            last = *r;
            sample(&t, 100 + 5 * i as i64, &active);
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
    fn a_site_made_again_counts_from_zero() {
        let t = Traffic::default();
        sample(&t, 100, &[]);
        sample(&t, 105, &[("app", stats(500, 0, 0))]);
        // Stopped and started: its new site's totals begin again, below the old ones.
        sample(&t, 110, &[("app", stats(10, 0, 0))]);
        assert_eq!(t.rate("app"), Some(2.0));
    }

    #[test]
    fn the_history_survives_a_restart_bounded() {
        let dir = std::env::temp_dir().join(format!("wharf-traffic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("traffic.json");
        // No file yet: an empty history.
        assert!(
            Traffic::load(&file, 1000)
                .unwrap()
                .points("blog")
                .is_empty()
        );

        let t = Traffic::default();
        // More apps with traffic than are kept, and one that is busiest; more samples than
        // the window holds.
        for i in 0..(KEEP as i64 + 20) {
            let mut active = vec![("blog", stats(10 * (i as u64 + 1), 0, 0))];
            let quiet: Vec<String> = (0..MAX_SAVED_APPS + 10).map(|n| format!("a{n}")).collect();
            if i == 5 {
                for q in &quiet {
                    active.push((q.as_str(), stats(1, 0, 0)));
                }
            }
            sample(&t, 1000 + 5 * i, &active);
        }
        let graph = |t: &Traffic| -> Vec<(i64, f64)> {
            t.points("blog")
                .iter()
                .map(|p| (p.at, p.requests_per_second))
                .collect()
        };
        let before = graph(&t);
        assert_eq!(before.len(), KEEP - 1);
        t.save(&file).unwrap();

        // Read back right after: the same graph, and rates go on from zero totals (the
        // gateway of a new process counts from zero).
        let now = 1000 + 5 * (KEEP as i64 + 19);
        let back = Traffic::load(&file, now).unwrap();
        assert_eq!(graph(&back), before);
        back.sample(now + 5, vec![("blog".into(), stats(20, 0, 0))]);
        assert_eq!(back.rate("blog"), Some(4.0));
        // Bounded: apps whose traffic left the window are not written.
        let saved: Saved = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(saved.apps.len(), 1, "{:?}", saved.apps.keys());
        assert_eq!(saved.times.len(), KEEP);

        // At most MAX_SAVED_APPS apps, the busiest first.
        let t = Traffic::default();
        sample(&t, 100, &[]);
        let names: Vec<String> = (0..MAX_SAVED_APPS + 10).map(|n| format!("a{n}")).collect();
        let active: Vec<(String, SiteStats)> = names
            .iter()
            .enumerate()
            .map(|(n, a)| (a.clone(), stats(n as u64 + 1, 0, 0)))
            .collect();
        t.sample(105, active);
        t.save(&file).unwrap();
        let back = Traffic::load(&file, 110).unwrap();
        assert_eq!(back.inner.lock().unwrap().apps.len(), MAX_SAVED_APPS);
        assert!(back.rate(&names[MAX_SAVED_APPS + 9]).unwrap() > 0.0);
        assert_eq!(back.rate("a0"), Some(0.0));

        // A history older than the window is dropped at start.
        let stale = Traffic::load(&file, 105 + 3600).unwrap();
        assert!(stale.points(&names[MAX_SAVED_APPS + 9]).is_empty());
        // A damaged file is reported, not trusted.
        std::fs::write(&file, "{").unwrap();
        let Err(e) = Traffic::load(&file, 110) else {
            panic!("a damaged history was read");
        };
        assert!(e.contains("traffic.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_forgotten_app_starts_again_from_zero() {
        let t = Traffic::default();
        sample(&t, 100, &[]);
        sample(&t, 105, &[("app", stats(50, 0, 0))]);
        t.forget("app");
        assert!(t.points("app").iter().all(|p| p.requests_per_second == 0.0));
        // Made again: its new site counts from its own first request.
        sample(&t, 110, &[("app", stats(5, 0, 0))]);
        assert_eq!(t.rate("app"), Some(1.0));
    }
}
