//! The running gateway: start, reload, deploy, shutdown. This is the library API the standalone
//! binary and the control plane both drive.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wharf_tls::CertStore;

use crate::access_log::AccessLog;
use crate::config::{GatewayConfig, HealthConfig, SiteConfig};
use crate::error::{GatewayError, Result};
use crate::metrics::{Metrics, ReloadResult};
use crate::proxy::{Client, new_client};
use crate::routing::RouteTable;
use crate::server::{Role, bind, spawn_accept_loop};
use crate::site::{Backend, Site};
use crate::upstream::{Pool, Target, Targets, probe, spawn_checker};

/// State every connection and request reaches through one `Arc`.
pub(crate) struct Shared {
    pub(crate) table: ArcSwap<RouteTable>,
    pub(crate) metrics: Metrics,
    pub(crate) access_log: ArcSwap<AccessLog>,
    pub(crate) client: Client,
    pub(crate) shutdown: CancellationToken,
    /// Set with `shutdown`, for checks on every request (the token's own check takes a lock).
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    pub(crate) tracker: TaskTracker,
    /// Certificates by SNI, and pending ACME challenge answers.
    pub(crate) certs: Arc<CertStore>,
    pub(crate) tls: tokio_rustls::TlsAcceptor,
    /// Port of the first HTTPS listener, for redirects (0: none).
    pub(crate) https_port: AtomicU16,
    /// Every upstream target by site and address, shared by all pool generations and deploys.
    pub(crate) targets: Targets,
}

struct Listening {
    local: SocketAddr,
    stop: CancellationToken,
}

/// Control-side state, touched only by reloads and deploys.
struct Control {
    config: GatewayConfig,
    listeners: HashMap<(SocketAddr, Role), Listening>,
}

/// A running gateway. Cheap to clone; all clones drive the same gateway.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    control: Arc<Mutex<Control>>,
    /// One lock per site: deploys of a site run one at a time.
    deploys: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A change to some sites, for [`Gateway::update`]; every other site stays as it is.
#[derive(Clone, Debug, Default)]
pub struct SiteChanges {
    /// Sites added, or replacing the site of the same name.
    pub upsert: Vec<SiteConfig>,
    /// Names of sites taken out (names not configured are ignored).
    pub remove: Vec<String>,
}

/// Settings of one [`Gateway::deploy`].
#[derive(Clone, Debug)]
pub struct DeployOptions {
    /// How long the new targets have to pass their health checks.
    pub health_timeout: Duration,
    /// How long in-flight requests on the old targets may run; `None` takes the config's.
    pub drain_timeout: Option<Duration>,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            health_timeout: Duration::from_secs(30),
            drain_timeout: None,
        }
    }
}

/// What a deploy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployReport {
    /// Targets that were swapped out (and drained).
    pub removed: Vec<SocketAddr>,
    /// False when the drain timeout cut in-flight requests short.
    pub drained: bool,
}

impl Gateway {
    /// Binds every listener and starts serving. Must run inside a Tokio runtime.
    pub fn start(config: GatewayConfig) -> Result<Gateway> {
        let certs = CertStore::new();
        let tls = wharf_tls::server_config(certs.clone()).map_err(GatewayError::Tls)?;
        let shared = Arc::new(Shared {
            certs,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            https_port: AtomicU16::new(0),
            table: ArcSwap::from_pointee(RouteTable::new(
                Vec::new(),
                config.unknown_host,
                config.timeouts,
            )),
            metrics: Metrics::new(),
            access_log: ArcSwap::from_pointee(AccessLog::open(
                &crate::config::AccessLogTarget::Off,
            )?),
            client: new_client(config.timeouts.connect),
            shutdown: CancellationToken::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            tracker: TaskTracker::new(),
            targets: Targets::default(),
        });
        let gw = Gateway {
            shared,
            control: Arc::new(Mutex::new(Control {
                // Differs from any real config so the first apply opens the access log.
                config: GatewayConfig {
                    sites: Vec::new(),
                    listen: Vec::new(),
                    admin: None,
                    ..Default::default()
                },
                listeners: HashMap::new(),
            })),
            deploys: Default::default(),
        };
        gw.apply(config, true)?;
        spawn_idle_sweep(&gw.shared);
        Ok(gw)
    }

    /// Replaces the configuration. Everything is built and every new address bound first; only
    /// then is the new route table swapped in. On error nothing changes and the old config keeps
    /// serving. Existing listeners are never re-bound.
    pub fn reload(&self, config: GatewayConfig) -> Result<()> {
        self.counted(self.apply(config, false))
    }

    /// Counts a configuration refused before it reached [`Gateway::reload`] (a file that does
    /// not parse), so the reloads metric shows every refusal.
    pub fn reload_refused(&self) {
        self.count("refused");
    }

    /// How many sites the configuration in force has.
    pub fn site_count(&self) -> usize {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .sites
            .len()
    }

    /// Counts a reload or update by its result on `/metrics`.
    fn counted(&self, result: Result<()>) -> Result<()> {
        self.count(if result.is_ok() { "ok" } else { "refused" });
        result
    }

    fn count(&self, label: &'static str) {
        self.shared
            .metrics
            .reloads
            .get_or_create(&ReloadResult { result: label })
            .inc();
    }

    fn apply(&self, config: GatewayConfig, first: bool) -> Result<()> {
        let mut control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.shared.table.load_full();

        // 1. Build sites, reusing pools that did not change.
        let (sites, fresh_pools) = self.build_sites(&old, config.sites.iter().cloned())?;

        // 2. Access log, if its target changed, and a file's at every reload: after logrotate
        // moved it, the reload (SIGHUP) starts the new one.
        let reopen = first
            || config.access_log != control.config.access_log
            || matches!(config.access_log, crate::config::AccessLogTarget::File(_));
        let new_log = reopen
            .then(|| AccessLog::open(&config.access_log))
            .transpose()?;

        // 3. Bind addresses not yet bound.
        let wanted = wanted_listeners(&config);
        let bound = bind_missing(&control, &wanted)?;

        // 4. Commit. A new pool's targets are listed again only now: a refused reload must
        // not bring back a target a deploy or drain retired.
        for pool in &fresh_pools {
            pool.enlist();
        }
        let pools: HashSet<*const Pool> = sites
            .iter()
            .filter_map(|s| s.pool())
            .map(Arc::as_ptr)
            .collect();
        let table = RouteTable::new(sites, config.unknown_host, config.timeouts);
        self.shared.table.store(Arc::new(table));
        if first || config.default_sni != control.config.default_sni {
            self.shared
                .certs
                .set_default_host(config.default_sni.clone());
        }
        // A replaced pool's health checks stop now, though requests may still hold it: its
        // targets are shared with the pool that replaced it, whose checks now decide.
        for pool in old.sites().filter_map(|s| s.pool()) {
            if !pools.contains(&Arc::as_ptr(pool)) {
                pool.supersede();
            }
        }
        for site in old.sites() {
            if self.shared.table.load().site(&site.config.name).is_none() {
                self.shared.metrics.forget_site(&site.config.name);
            }
        }
        if let Some(log) = new_log {
            self.shared.access_log.store(Arc::new(log));
        }
        for pool in &fresh_pools {
            spawn_checker(pool, self.shared.shutdown.clone());
        }
        self.commit_listeners(&mut control, bound);
        let wanted: HashSet<_> = wanted.into_iter().collect();
        control.listeners.retain(|key, l| {
            let keep = wanted.contains(key);
            if !keep {
                tracing::info!(address = %l.local, "listener removed by the new configuration");
                l.stop.cancel();
            }
            keep
        });
        // The port redirects to HTTPS name: one that listens now (443 if it does), also
        // after the HTTPS listener moved.
        let https = control
            .listeners
            .iter()
            .filter(|(key, _)| key.1 == Role::Https)
            .map(|(_, l)| l.local.port())
            .min_by_key(|p| (*p != 443, *p))
            .unwrap_or(0);
        self.shared.https_port.store(https, Ordering::Relaxed);
        control.config = config;
        Ok(())
    }

    /// Changes some sites and leaves every other one exactly as it is (its pool, health state,
    /// idle upstream connections and metrics): the sites in `changes.upsert` are built (a site
    /// of the same name replaced), those in `changes.remove` taken out, and the new route table
    /// swapped in. Costs what it changes, not the number of sites. As with [`Gateway::reload`],
    /// everything is built and bound first: on error nothing changes.
    pub fn update(&self, changes: SiteChanges) -> Result<()> {
        self.counted(self.apply_changes(changes))
    }

    fn apply_changes(&self, changes: SiteChanges) -> Result<()> {
        let SiteChanges { upsert, remove } = changes;
        let mut control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.shared.table.load_full();

        // 1. Build the changed sites, reusing pools that did not change.
        let mut seen = HashSet::new();
        if let Some(twice) = upsert.iter().find(|s| !seen.insert(s.name.clone())) {
            return Err(GatewayError::Config(crate::error::ConfigError {
                file: None,
                site: Some(twice.name.clone()),
                key: "name".into(),
                message: "the same site is changed twice in one update".into(),
            }));
        }
        let (sites, fresh_pools) = self.build_sites(&old, upsert)?;
        let removed: Vec<String> = remove
            .into_iter()
            .filter(|name| !seen.contains(name) && old.site(name).is_some())
            .collect();

        // 2. The changed sites' own listeners: bind the new ones first.
        let changed: HashSet<&str> = seen
            .iter()
            .map(String::as_str)
            .chain(removed.iter().map(String::as_str))
            .collect();
        let mut wanted = HashSet::new();
        for site in &sites {
            let name: Arc<str> = Arc::from(site.config.name.as_str());
            wanted.extend(
                site.config
                    .listen
                    .iter()
                    .map(|a| (*a, Role::Site(name.clone()))),
            );
        }
        let bound = bind_missing(&control, &wanted)?;

        // 3. Commit.
        for pool in &fresh_pools {
            pool.enlist();
        }
        let table = old.with_changes(sites, &removed);
        let replaced: Vec<Arc<Pool>> = changed
            .iter()
            .filter_map(|name| {
                let pool = old.site(name)?.pool()?;
                let kept = table
                    .site(name)
                    .and_then(|s| s.pool())
                    .is_some_and(|p| Arc::ptr_eq(p, pool));
                (!kept).then(|| pool.clone())
            })
            .collect();
        self.shared.table.store(Arc::new(table));
        for pool in &replaced {
            pool.supersede();
        }
        for name in &removed {
            self.shared.metrics.forget_site(name);
            let mut deploys = self.deploys.lock().unwrap_or_else(|p| p.into_inner());
            // Only a lock nobody holds or waits for: deploys of one site stay one at a time.
            if deploys.get(name).is_some_and(|l| Arc::strong_count(l) == 1) {
                deploys.remove(name);
            }
        }
        for pool in &fresh_pools {
            spawn_checker(pool, self.shared.shutdown.clone());
        }
        self.commit_listeners(&mut control, bound);
        control.listeners.retain(|key, l| {
            let keep = match &key.1 {
                Role::Site(name) if changed.contains(&**name) => wanted.contains(key),
                _ => true,
            };
            if !keep {
                tracing::info!(address = %l.local, "listener removed by the new configuration");
                l.stop.cancel();
            }
            keep
        });
        Ok(())
    }

    /// Builds `configs` into sites, each keeping the pool of `old`'s site of its name while its
    /// upstreams, balancing and health settings are unchanged; with the pools made new.
    fn build_sites(
        &self,
        old: &RouteTable,
        configs: impl IntoIterator<Item = SiteConfig>,
    ) -> Result<BuiltSites> {
        let mut sites = Vec::new();
        let mut fresh_pools = Vec::new();
        for site_cfg in configs {
            let previous = old.site(&site_cfg.name).map(|s| s.as_ref());
            let (site, fresh) = Site::build(
                site_cfg,
                previous,
                &self.shared.metrics,
                &self.shared.targets,
            )?;
            if let (true, Backend::Proxy(pool)) = (fresh, &site.backend) {
                fresh_pools.push(pool.clone());
            }
            sites.push(Arc::new(site));
        }
        Ok((sites, fresh_pools))
    }

    /// Starts serving on listeners just bound, and records them.
    fn commit_listeners(
        &self,
        control: &mut Control,
        bound: Vec<((SocketAddr, Role), std::net::TcpListener)>,
    ) {
        for (key, listener) in bound {
            let stop = self.shared.shutdown.child_token();
            let local =
                match spawn_accept_loop(self.shared.clone(), listener, key.1.clone(), stop.clone())
                {
                    Ok(local) => local,
                    Err(e) => {
                        tracing::error!(error = %e, "listener not started");
                        continue;
                    }
                };
            tracing::info!(address = %local, role = ?key.1, "listening");
            control.listeners.insert(key, Listening { local, stop });
        }
    }

    /// Health-checks `targets`, swaps them in as the site's upstreams, then waits until requests
    /// in flight on the old targets finish (up to the drain timeout) before returning. If the new
    /// targets never get healthy, returns an error and the old targets keep serving.
    pub async fn deploy(
        &self,
        site: &str,
        targets: Vec<SocketAddr>,
        opts: DeployOptions,
    ) -> Result<DeployReport> {
        // One deploy at a time per site; other sites' deploys (their health checks and drains)
        // go on meanwhile. The swap itself is under the reload lock below.
        let site_lock = self
            .deploys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(site.to_string())
            .or_default()
            .clone();
        let _one_at_a_time = site_lock.lock().await;
        let pool = proxy_pool(&self.shared.table.load(), site)?;
        if targets.is_empty() {
            return Err(GatewayError::NoTargets {
                site: site.to_string(),
            });
        }
        let current = pool.targets();
        let fresh: Vec<SocketAddr> = targets
            .iter()
            .filter(|a| !current.iter().any(|t| t.addr == **a))
            .copied()
            .collect();
        wait_healthy(
            &fresh,
            &pool.check_host,
            pool.health.as_ref(),
            opts.health_timeout,
        )
        .await
        .map_err(|last_error| GatewayError::Unhealthy {
            site: site.to_string(),
            waited: opts.health_timeout,
            last_error,
        })?;

        let (removed, timeouts) = {
            // Under the reload lock, into the pool serving now: a reload during the checks may
            // have replaced the one above, and must not list a target this retires unseen.
            let _control = self.control.lock().unwrap_or_else(|p| p.into_inner());
            let table = self.shared.table.load_full();
            let pool = proxy_pool(&table, site)?;
            // The same objects every pool generation of this site uses for these addresses.
            let new: Vec<Arc<Target>> = targets
                .iter()
                .map(|a| {
                    let t = self.shared.targets.enlist(site, *a);
                    if fresh.contains(a) {
                        // Just checked; an older instance on this port may have left a verdict.
                        t.passed_checks();
                    }
                    t
                })
                .collect();
            let old = pool.swap(new);
            let removed: Vec<Arc<Target>> = old
                .iter()
                .filter(|t| !targets.contains(&t.addr))
                .cloned()
                .collect();
            retire(&removed);
            (removed, table.timeouts)
        };
        tracing::info!(site, new = ?targets, removed = ?removed.iter().map(|t| t.addr).collect::<Vec<_>>(), "deploy swapped targets; draining");
        let drain = opts.drain_timeout.unwrap_or(timeouts.drain);
        let drained = drain_retired(site, &removed, drain).await;
        Ok(DeployReport {
            removed: removed.iter().map(|t| t.addr).collect(),
            drained,
        })
    }

    /// Stops sending `site`'s requests to `targets` (in every pool generation, including one a
    /// reload just replaced) and waits until the requests in flight on them finish, up to the
    /// drain timeout. Returns false if the timeout cut them short. Call it before stopping
    /// instances that a reload took out of routing; [`Gateway::deploy`] does it for the targets
    /// it swaps out.
    pub async fn drain(&self, site: &str, targets: &[SocketAddr]) -> bool {
        let found: Vec<Arc<Target>> = {
            // Ordered with reloads, which list targets again (see `apply`).
            let _control = self.control.lock().unwrap_or_else(|p| p.into_inner());
            let found: Vec<Arc<Target>> = targets
                .iter()
                .filter_map(|a| self.shared.targets.find(site, *a))
                .collect();
            retire(&found);
            found
        };
        let drain = self.shared.table.load().timeouts.drain;
        drain_retired(site, &found, drain).await
    }

    /// Addresses the Host-routed listeners are bound to (useful with port 0).
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(|r| *r == Role::Routed)
    }

    /// Addresses the HTTPS listeners are bound to.
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(|r| *r == Role::Https)
    }

    /// A site's request totals since start (`None` for a site not in the configuration).
    pub fn site_stats(&self, site: &str) -> Option<crate::metrics::SiteStats> {
        self.shared
            .table
            .load()
            .site(site)
            .map(|s| s.metrics.stats())
    }

    /// The sites that served a request since the last call, with their totals: what changed,
    /// so a sampler of traffic never visits the sites that stayed idle. Sites are listed from
    /// the first call on (a gateway nobody samples keeps no list).
    pub fn active_sites(&self) -> Vec<(String, crate::metrics::SiteStats)> {
        let names = self.shared.metrics.take_active();
        let table = self.shared.table.load();
        names
            .into_iter()
            .filter_map(|name| {
                let site = table.site(&name)?;
                // Unlisted first: a request after this lists the site for the next call.
                site.metrics.unlist();
                let stats = site.metrics.stats();
                Some((name, stats))
            })
            .collect()
    }

    /// The certificates served on the HTTPS listeners; install, renew and remove them here.
    pub fn certs(&self) -> Arc<CertStore> {
        self.shared.certs.clone()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.addrs(|r| *r == Role::Admin).first().copied()
    }

    /// Addresses of a site's own listeners.
    pub fn site_addrs(&self, site: &str) -> Vec<SocketAddr> {
        self.addrs(|r| matches!(r, Role::Site(s) if &**s == site))
    }

    fn addrs(&self, pred: impl Fn(&Role) -> bool) -> Vec<SocketAddr> {
        let control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = control
            .listeners
            .iter()
            .filter(|((_, role), _)| pred(role))
            .map(|(_, l)| l.local)
            .collect();
        v.sort();
        v
    }

    /// The site's current upstream targets and whether each is healthy.
    pub fn targets(&self, site: &str) -> Option<Vec<(SocketAddr, bool)>> {
        let table = self.shared.table.load();
        match &table.site(site)?.backend {
            Backend::Proxy(pool) => Some(
                pool.targets()
                    .iter()
                    .map(|t| (t.addr, t.is_healthy()))
                    .collect(),
            ),
            Backend::Static(_) => None,
        }
    }

    /// Adds a metric of the host program's (backups, say) to what `/metrics` serves, named
    /// `wharf_<name>`.
    pub fn register_metric(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.shared.metrics.register(name, help, metric);
    }

    /// Prometheus text, as served on the admin listener.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.encode()
    }

    /// Stops accepting, lets open requests finish (up to the drain timeout), then returns.
    pub async fn shutdown(&self) {
        let drain = self.shared.table.load().timeouts.drain;
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        if tokio::time::timeout(drain, self.shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?drain,
                "shutdown drain timeout reached; closing remaining connections"
            );
        }
    }
}

/// The proxy pool `site` has in `table`.
fn proxy_pool(table: &RouteTable, site: &str) -> Result<Arc<Pool>> {
    let found = table
        .site(site)
        .ok_or_else(|| GatewayError::UnknownSite(site.to_string()))?;
    match &found.backend {
        Backend::Proxy(pool) => Ok(pool.clone()),
        Backend::Static(_) => Err(GatewayError::NotAProxy(site.to_string())),
    }
}

/// Takes `targets` out of every pool generation. Done before a drain counts, so no pool (an
/// older generation included) sends them a new request the drain could miss.
fn retire(targets: &[Arc<Target>]) {
    for t in targets {
        t.retire();
    }
}

/// Waits up to `timeout` until no request is in flight on retired `targets`, then closes their
/// idle connections. Returns whether they drained in time.
async fn drain_retired(site: &str, targets: &[Arc<Target>], timeout: Duration) -> bool {
    let drained = tokio::time::timeout(
        timeout,
        futures_util::future::join_all(targets.iter().map(|t| t.drained())),
    )
    .await
    .is_ok();
    if !drained {
        tracing::warn!(
            site,
            drain = ?timeout,
            "drain timeout reached with requests still in flight on old targets"
        );
    }
    for t in targets {
        t.close_idle();
    }
    drained
}

/// Sites just built, and the pools among them that are new (they need health checkers).
type BuiltSites = (Vec<Arc<Site>>, Vec<Arc<Pool>>);

/// Binds the addresses of `wanted` that have no listener yet; nothing is kept on error.
fn bind_missing<'a>(
    control: &Control,
    wanted: impl IntoIterator<Item = &'a (SocketAddr, Role)>,
) -> Result<Vec<((SocketAddr, Role), std::net::TcpListener)>> {
    let mut bound = Vec::new();
    for key in wanted {
        if !control.listeners.contains_key(key) {
            bound.push((key.clone(), bind(key.0)?));
        }
    }
    Ok(bound)
}

fn wanted_listeners(config: &GatewayConfig) -> Vec<(SocketAddr, Role)> {
    let mut v: Vec<_> = config.listen.iter().map(|a| (*a, Role::Routed)).collect();
    v.extend(config.https.iter().map(|a| (*a, Role::Https)));
    v.extend(config.admin.map(|a| (a, Role::Admin)));
    for site in &config.sites {
        let name: Arc<str> = Arc::from(site.name.as_str());
        v.extend(site.listen.iter().map(|a| (*a, Role::Site(name.clone()))));
    }
    v
}

/// Probes each target until it passes `rise` checks in a row (the site's health settings, or any
/// answer below 500 on `/` without them), or the timeout ends. Used by [`Gateway::deploy`], and by
/// the control plane for instances that are not routed.
pub async fn wait_healthy(
    targets: &[SocketAddr],
    host: &str,
    health: Option<&HealthConfig>,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let (path, strict, rise, every, probe_timeout) = match health {
        Some(h) => (
            h.path.as_str(),
            true,
            h.rise,
            h.interval.min(Duration::from_millis(500)),
            h.timeout,
        ),
        None => (
            "/",
            false,
            1,
            Duration::from_millis(100),
            Duration::from_secs(2),
        ),
    };
    let deadline = Instant::now() + timeout;
    for addr in targets {
        let mut passed = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = probe(
                *addr,
                host,
                path,
                probe_timeout.min(left.max(Duration::from_millis(1))),
                strict,
            )
            .await;
            match result {
                Ok(()) => {
                    passed += 1;
                    if passed >= rise {
                        break;
                    }
                }
                Err(why) => {
                    passed = 0;
                    if Instant::now() >= deadline {
                        return Err(why);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("{addr} passed {passed} of {rise} checks"));
            }
            // Pacing between probes of a starting process, not synchronisation.
            tokio::time::sleep(every).await;
        }
    }
    Ok(())
}

/// Closes upstream connections left idle past their timeout, every 15 s, on every upstream
/// target still held.
fn spawn_idle_sweep(shared: &Arc<Shared>) {
    let shared = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(15));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if shared.shutdown.is_cancelled() {
                return;
            }
            shared.targets.tick_sweep();
            // The upstream targets alone (static sites have none), retired ones included.
            for target in shared.targets.live() {
                target.close_expired();
            }
        }
    });
}
