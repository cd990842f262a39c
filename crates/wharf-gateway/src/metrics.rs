//! Prometheus metrics. Per-site handles are resolved once when a site is built, so the request
//! path only bumps atomics and never looks up a label set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteClass {
    site: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabel {
    site: String,
}

pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    site: SiteFamilies,
    pub(crate) open_connections: Gauge,
    pub(crate) unknown_host: Counter,
    pub(crate) reloads: Family<ReloadResult, Counter>,
}

/// The per-site series (shared handles: clones are the same families).
#[derive(Clone)]
struct SiteFamilies {
    requests: Family<SiteClass, Counter>,
    latency: Family<SiteLabel, Histogram>,
    upstream_errors: Family<SiteLabel, Counter>,
    /// Total time to response headers in microseconds, for the dashboard's mean latency: not
    /// exported (the histogram is), and prometheus-client only reads a histogram's sum in tests.
    latency_micros: Family<SiteLabel, Counter>,
    /// Sites that served a request since the last `take_active`, each once (or twice, when
    /// rebuilt meanwhile).
    active: Arc<Mutex<Vec<String>>>,
    /// Whether anyone takes that list (set by the first `take_active`).
    sampled: Arc<AtomicBool>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadResult {
    pub(crate) result: &'static str,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The counters one site touches on each request.
#[derive(Clone)]
pub(crate) struct SiteMetrics {
    by_class: [Counter; 5],
    latency: Histogram,
    latency_micros: Counter,
    pub(crate) upstream_errors: Counter,
}

/// A site's totals since the gateway started, for rates over time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// Sum of the times to response headers, in microseconds.
    pub latency_micros: u64,
}

/// A site's metric handles, made on its first request: a site nobody asks for holds no
/// series (ten thousand idle sites would otherwise hold ten thousand histograms), and
/// `/metrics` lists only sites that served something.
pub(crate) struct LazySiteMetrics {
    site: String,
    families: SiteFamilies,
    handles: OnceLock<SiteMetrics>,
    /// Set by a request, cleared when `Gateway::active_sites` reports it: whether the site is
    /// on the list of sites that served something since.
    listed: AtomicBool,
}

impl LazySiteMetrics {
    fn get(&self) -> &SiteMetrics {
        self.handles
            .get_or_init(|| self.families.for_site(&self.site))
    }

    pub(crate) fn record(&self, status: u16, seconds: f64) {
        self.get().record(status, seconds);
        if !self.families.sampled.load(Ordering::Relaxed) {
            return; // nobody reads the list (the standalone gateway)
        }
        // Ordered with `unlist` and the totals read after it: either the sampler sees these
        // counts, or this request sees the flag cleared and lists the site again.
        std::sync::atomic::fence(Ordering::SeqCst);
        // Once per site between two reports (a load first, so busy sites only read the flag).
        if !self.listed.load(Ordering::Relaxed) && !self.listed.swap(true, Ordering::AcqRel) {
            self.families
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(self.site.clone());
        }
    }

    /// Lets the next request list the site again; its totals are read after this.
    pub(crate) fn unlist(&self) {
        self.listed.store(false, Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    pub(crate) fn upstream_errors(&self) -> &Counter {
        &self.get().upstream_errors
    }

    pub(crate) fn stats(&self) -> SiteStats {
        self.handles
            .get()
            .map(SiteMetrics::stats)
            .unwrap_or_default()
    }

    /// The handles, if a request made them.
    pub(crate) fn handles(&self) -> Option<SiteMetrics> {
        self.handles.get().cloned()
    }
}

impl SiteMetrics {
    pub(crate) fn record(&self, status: u16, seconds: f64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].inc();
        self.latency.observe(seconds);
        self.latency_micros.inc_by((seconds * 1e6) as u64);
    }

    pub(crate) fn stats(&self) -> SiteStats {
        SiteStats {
            requests: self.by_class.iter().map(Counter::get).sum(),
            errors: self.by_class[4].get(),
            latency_micros: self.latency_micros.get(),
        }
    }
}

impl SiteFamilies {
    fn for_site(&self, site: &str) -> SiteMetrics {
        let label = SiteLabel {
            site: site.to_string(),
        };
        SiteMetrics {
            by_class: CLASSES.map(|class| {
                self.requests
                    .get_or_create(&SiteClass {
                        site: site.to_string(),
                        class,
                    })
                    .clone()
            }),
            latency: self.latency.get_or_create(&label).clone(),
            latency_micros: self.latency_micros.get_or_create(&label).clone(),
            upstream_errors: self.upstream_errors.get_or_create(&label).clone(),
        }
    }
}

impl Metrics {
    pub(crate) fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register(name, help, metric);
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wharf");
        let requests = Family::<SiteClass, Counter>::default();
        let latency = Family::<SiteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let upstream_errors = Family::<SiteLabel, Counter>::default();
        let latency_micros = Family::<SiteLabel, Counter>::default();
        let open_connections = Gauge::default();
        let unknown_host = Counter::default();
        let reloads = Family::<ReloadResult, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by site and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to response headers, by site",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream connection failures, timeouts and broken answers, by site",
            upstream_errors.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections currently open",
            open_connections.clone(),
        );
        registry.register(
            "unknown_host_requests",
            "Requests for a host no site serves",
            unknown_host.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            site: SiteFamilies {
                requests,
                latency,
                upstream_errors,
                latency_micros,
                active: Default::default(),
                sampled: Default::default(),
            },
            open_connections,
            unknown_host,
            reloads,
        }
    }

    /// `site`'s handles, made on its first request; `previous` (the handles of the site this
    /// one replaces, if it made them) carries its totals over.
    pub(crate) fn for_site(&self, site: &str, previous: Option<SiteMetrics>) -> LazySiteMetrics {
        let handles = OnceLock::new();
        if let Some(p) = previous {
            let _ = handles.set(p);
        }
        LazySiteMetrics {
            site: site.to_string(),
            families: self.site.clone(),
            handles,
            listed: AtomicBool::new(false),
        }
    }

    /// Drops a removed site's series, so sites that come and go do not grow the registry (and
    /// `/metrics`) for ever. A site added again later starts from zero.
    pub(crate) fn forget_site(&self, site: &str) {
        for class in CLASSES {
            self.site.requests.remove(&SiteClass {
                site: site.to_string(),
                class,
            });
        }
        let label = SiteLabel {
            site: site.to_string(),
        };
        self.site.latency.remove(&label);
        self.site.latency_micros.remove(&label);
        self.site.upstream_errors.remove(&label);
    }

    /// The sites that served a request since the last call, each once.
    pub(crate) fn take_active(&self) -> Vec<String> {
        self.site.sampled.store(true, Ordering::Relaxed);
        let mut names =
            std::mem::take(&mut *self.site.active.lock().unwrap_or_else(|p| p.into_inner()));
        names.sort_unstable();
        names.dedup();
        names
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
