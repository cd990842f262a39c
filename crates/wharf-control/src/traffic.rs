//! Each app's traffic over the last half hour, for the dashboard's graphs: the gateway's totals
//! sampled every few seconds, kept in a small ring per app, turned into rates on request.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use wharf_client::dto::TrafficPoint;
use wharf_gateway::{Gateway, SiteStats};

pub(crate) const INTERVAL: Duration = Duration::from_secs(5);
/// Half an hour of samples (and one more, for the first rate).
const KEEP: usize = 361;

#[derive(Default)]
pub(crate) struct Traffic {
    series: Mutex<HashMap<String, VecDeque<(i64, SiteStats)>>>,
}

impl Traffic {
    /// Records the totals of `apps` now; forgets apps that are gone.
    pub(crate) fn sample(&self, gateway: &Gateway, apps: &[String], now: i64) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.retain(|name, _| apps.contains(name));
        for app in apps {
            let stats = gateway.site_stats(app).unwrap_or_default();
            let ring = series.entry(app.clone()).or_default();
            if ring.len() == KEEP {
                ring.pop_front();
            }
            ring.push_back((now, stats));
        }
    }

    /// Rates between consecutive samples, oldest first.
    pub(crate) fn points(&self, app: &str) -> Vec<TrafficPoint> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ring) = series.get(app) else {
            return Vec::new();
        };
        ring.iter().zip(ring.iter().skip(1)).map(rate).collect()
    }

    /// The latest requests/s, once two samples exist. (Every app view asks; only the last two
    /// samples are read.)
    pub(crate) fn rate(&self, app: &str) -> Option<f64> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let ring = series.get(app)?;
        let n = ring.len();
        (n >= 2).then(|| rate((&ring[n - 2], &ring[n - 1])).requests_per_second)
    }
}

/// The rates between two samples.
fn rate(((t0, a), (t1, b)): (&(i64, SiteStats), &(i64, SiteStats))) -> TrafficPoint {
    let secs = (t1 - t0).max(1) as f64;
    // Totals restart from zero when a site is rebuilt under a new name; never negative.
    let requests = b.requests.saturating_sub(a.requests);
    let errors = b.errors.saturating_sub(a.errors);
    let micros = b.latency_micros.saturating_sub(a.latency_micros);
    TrafficPoint {
        at: *t1,
        requests_per_second: requests as f64 / secs,
        errors_per_second: errors as f64 / secs,
        mean_latency_ms: (requests > 0).then(|| micros as f64 / requests as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_between_samples() {
        let t = Traffic::default();
        let stats = |requests, errors, latency_micros| SiteStats {
            requests,
            errors,
            latency_micros,
        };
        t.series.lock().unwrap().insert(
            "blog".into(),
            [
                (100, stats(0, 0, 0)),
                (105, stats(10, 5, 20_000)),
                (110, stats(10, 5, 20_000)),
            ]
            .into_iter()
            .collect(),
        );
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
}
