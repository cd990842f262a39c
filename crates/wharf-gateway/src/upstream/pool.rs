//! A site's upstream targets. The target list is swapped whole (deploys); each target tracks its
//! health and in-flight requests so a swapped-out target can be drained.
//!
//! A target is one object per site and address for as long as anything uses it ([`Targets`]):
//! a reload that rebuilds a site's pool, and every deploy, get the same `Target` back, so a
//! request counted on it by any pool generation is seen by the drain that follows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use super::conn::IdleConns;
use crate::config::{Balance, HealthConfig};

/// How long a target that refused a connection stays out when no active check will bring it back.
const PASSIVE_EJECT: Duration = Duration::from_secs(10);

pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    healthy: AtomicBool,
    inflight: AtomicUsize,
    /// Consecutive active-check results, for rise/fall.
    successes: AtomicU32,
    failures: AtomicU32,
    /// Milliseconds since `epoch` before which a passively ejected target is not tried.
    ejected_until: AtomicU64,
    epoch: Instant,
    idle: Notify,
    /// Set when a deploy swapped this target out: no pool generation sends it a new request,
    /// until a deploy or reload lists it again.
    retired: AtomicBool,
    /// Keep-alive connections waiting for the next request: hyper's (requests with bodies,
    /// upgrades) and the gateway's own (bodiless requests, see `h1`).
    pub(crate) conns: IdleConns<super::conn::Sender>,
    pub(crate) raw: IdleConns<super::h1::Conn>,
}

impl Target {
    fn new(addr: SocketAddr, sweeps: &Arc<AtomicU32>) -> Target {
        Target {
            addr,
            healthy: AtomicBool::new(true),
            inflight: AtomicUsize::new(0),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch: Instant::now(),
            idle: Notify::new(),
            retired: AtomicBool::new(false),
            conns: IdleConns::new(sweeps.clone()),
            raw: IdleConns::new(sweeps.clone()),
        }
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Takes the target out of every pool generation before a drain. SeqCst pairs with
    /// `pick`: either the drain sees a request counted, or that request sees the retirement
    /// and goes elsewhere.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// After its drain: the instance is about to stop, so its idle connections go now.
    pub(crate) fn close_idle(&self) {
        self.conns.close_all();
        self.raw.close_all();
    }

    /// Closes the connections idle past their timeout (the gateway's periodic sweep).
    pub(crate) fn close_expired(&self) {
        self.conns.close_expired();
        self.raw.close_expired();
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn available(&self, active_checks: bool) -> bool {
        self.is_healthy()
            || (!active_checks && self.now_ms() >= self.ejected_until.load(Ordering::Relaxed))
    }

    /// A connection to this target failed: take it out now. Active checks (if any) bring it
    /// back; otherwise it is retried after a cool-down.
    pub(crate) fn eject(&self) {
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(target_addr = %self.addr, "upstream refused a connection; taken out of rotation");
        }
        self.successes.store(0, Ordering::Relaxed);
        self.ejected_until.store(
            self.now_ms() + PASSIVE_EJECT.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    /// A deploy's health checks just passed: in rotation, whatever an earlier instance on the
    /// same address left behind.
    pub(crate) fn passed_checks(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.ejected_until.store(0, Ordering::Relaxed);
        self.healthy.store(true, Ordering::Relaxed);
    }

    /// A request succeeded (used to end a passive ejection without active checks).
    pub(crate) fn mark_ok(&self) {
        if !self.healthy.load(Ordering::Relaxed) {
            self.healthy.store(true, Ordering::Relaxed);
        }
    }

    /// Records one active check result and applies the rise/fall thresholds.
    pub(crate) fn record_check(&self, ok: bool, health: &HealthConfig) {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= health.rise && !self.healthy.swap(true, Ordering::Relaxed) {
                tracing::info!(target_addr = %self.addr, "upstream passed its health checks; back in rotation");
            }
        } else {
            self.successes.store(0, Ordering::Relaxed);
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= health.fall && self.healthy.swap(false, Ordering::Relaxed) {
                tracing::warn!(target_addr = %self.addr, "upstream failed its health checks; taken out of rotation");
            }
        }
    }

    /// Resolves once no request is in flight on this target.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.inflight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Every target the gateway's pools and guards hold, by site and address. Pools of every
/// generation and deploys take their targets from here, so one instance of a site has one
/// in-flight count, one drain notification and one set of connections. Only weak references are
/// kept: a target no pool or request holds any more is gone.
#[derive(Default)]
pub(crate) struct Targets {
    map: Mutex<TargetMap>,
    /// Idle-connection sweeps so far: the idle stacks' coarse clock (see `conn::IdleConns`).
    sweeps: Arc<AtomicU32>,
}

#[derive(Default)]
struct TargetMap {
    by_key: HashMap<(String, SocketAddr), Weak<Target>>,
    /// Entries after the last sweep of dead ones: the next sweep waits until the map doubled,
    /// so sweeping costs O(1) per new target however many sites there are.
    swept_at: usize,
}

impl Targets {
    /// The site's target for `addr`, listed again (no longer retired) since the caller is about
    /// to put it in a pool's list.
    pub(crate) fn enlist(&self, site: &str, addr: SocketAddr) -> Arc<Target> {
        let target = self.get(site, addr);
        target.retired.store(false, Ordering::SeqCst);
        target
    }

    /// The site's target for `addr`, made if nothing holds one; retired or not as it was.
    fn get(&self, site: &str, addr: SocketAddr) -> Arc<Target> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = (site.to_string(), addr);
        match map.by_key.get(&key).and_then(Weak::upgrade) {
            Some(t) => t,
            None => {
                if map.by_key.len() >= 2 * map.swept_at.max(16) {
                    map.by_key.retain(|_, t| t.strong_count() > 0);
                    map.swept_at = map.by_key.len();
                }
                let t = Arc::new(Target::new(addr, &self.sweeps));
                map.by_key.insert(key, Arc::downgrade(&t));
                t
            }
        }
    }

    /// Counts a sweep of idle connections, before it closes those it finds expired.
    pub(crate) fn tick_sweep(&self) {
        self.sweeps.fetch_add(1, Ordering::Relaxed);
    }

    /// Every target something still holds, whatever its site.
    pub(crate) fn live(&self) -> Vec<Arc<Target>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.by_key.values().filter_map(Weak::upgrade).collect()
    }

    /// The site's target for `addr`, if anything still holds it.
    pub(crate) fn find(&self, site: &str, addr: SocketAddr) -> Option<Arc<Target>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.by_key
            .get(&(site.to_string(), addr))
            .and_then(Weak::upgrade)
    }
}

/// A pool's target list as loaded by a request.
type Listed = arc_swap::Guard<Arc<Vec<Arc<Target>>>>;

/// Counts one in-flight request on a target for as long as it lives.
pub(crate) struct TargetGuard(pub(crate) Arc<Target>);

impl Drop for TargetGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

pub(crate) struct Pool {
    targets: ArcSwap<Vec<Arc<Target>>>,
    /// The upstreams the config asked for; a reload keeps this pool (health, deploys) while they match.
    pub(crate) configured: Vec<SocketAddr>,
    pub(crate) balance: Balance,
    pub(crate) health: Option<HealthConfig>,
    /// Host header for health checks.
    pub(crate) check_host: String,
    next: AtomicUsize,
    /// Set when a reload replaced this pool; its health checker then stops.
    superseded: AtomicBool,
}

impl Pool {
    pub(crate) fn new(
        registry: &Targets,
        site: &str,
        configured: Vec<SocketAddr>,
        balance: Balance,
        health: Option<HealthConfig>,
        check_host: String,
    ) -> Pool {
        // Not listed again yet: the reload building this pool may still be refused.
        let targets = configured.iter().map(|a| registry.get(site, *a)).collect();
        Pool {
            targets: ArcSwap::from_pointee(targets),
            configured,
            balance,
            health,
            check_host,
            next: AtomicUsize::new(0),
            superseded: AtomicBool::new(false),
        }
    }

    /// A reload put this new pool in service: its targets are listed again, retired or not.
    pub(crate) fn enlist(&self) {
        for t in self.targets.load().iter() {
            t.retired.store(false, Ordering::SeqCst);
        }
    }

    pub(crate) fn supersede(&self) {
        self.superseded.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Relaxed)
    }

    pub(crate) fn targets(&self) -> Arc<Vec<Arc<Target>>> {
        self.targets.load_full()
    }

    /// Replaces the target list; returns the previous one so the caller can drain it.
    pub(crate) fn swap(&self, new: Vec<Arc<Target>>) -> Arc<Vec<Arc<Target>>> {
        self.targets.swap(Arc::new(new))
    }

    /// Picks an available target by the site's balancing rule, skipping `skip` (a target that
    /// just failed) and retired targets (a pool of an older generation may still list them),
    /// and counts the request on it.
    pub(crate) fn pick(&self, skip: Option<SocketAddr>) -> Option<TargetGuard> {
        self.pick_from(self.targets.load(), skip)
    }

    /// [`Pool::pick`] starting from `targets`, a list loaded earlier.
    fn pick_from(&self, mut targets: Listed, skip: Option<SocketAddr>) -> Option<TargetGuard> {
        loop {
            if let Some(guard) = self.pick_in(&targets, skip) {
                return Some(guard);
            }
            // A deploy retires the targets it swapped out only after swapping in the new ones:
            // a list with a target retired since it was loaded has a newer one in place, which
            // must be tried before answering that nothing is available.
            if !targets.iter().any(|t| t.is_retired()) {
                return None;
            }
            let now = self.targets.load();
            if Arc::ptr_eq(&now, &targets) {
                return None;
            }
            targets = now;
        }
    }

    fn pick_in(&self, targets: &[Arc<Target>], skip: Option<SocketAddr>) -> Option<TargetGuard> {
        let n = targets.len();
        let active = self.health.is_some();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let choose = |ok: &dyn Fn(&Arc<Target>) -> bool| {
            let candidates = (0..n).map(|i| &targets[(start + i) % n]);
            match self.balance {
                Balance::RoundRobin => candidates.into_iter().find(|t| ok(t)),
                Balance::LeastConn => candidates.filter(|t| ok(t)).min_by_key(|t| t.inflight()),
            }
        };
        loop {
            let usable = |t: &Arc<Target>| Some(t.addr) != skip && !t.is_retired();
            let chosen = choose(&|t| usable(t) && t.available(active))
                // Passive ejection only steers traffic to the other targets: when every one is
                // out (a lone app restarting after a crash), trying beats a certain error, as
                // nginx does. Active checks, when configured, are the judge and are not overruled.
                .or_else(|| (!active).then(|| choose(&usable)).flatten())?;
            chosen.inflight.fetch_add(1, Ordering::SeqCst);
            let guard = TargetGuard(chosen.clone());
            // A deploy may have retired it between the choice and the count; its drain may
            // then have missed this request, so it must not be sent there. The next round
            // skips it.
            if !chosen.is_retired() {
                return Some(guard);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: Balance) -> Pool {
        let addrs = (1..=3)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        Pool::new(&Targets::default(), "t", addrs, balance, None, "t".into())
    }

    #[test]
    fn round_robin_cycles_and_skips_ejected() {
        let p = pool(Balance::RoundRobin);
        let ports: Vec<u16> = (0..6)
            .map(|_| p.pick(None).unwrap().0.addr.port())
            .collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
        p.targets()[1].eject();
        let ports: Vec<u16> = (0..4)
            .map(|_| p.pick(None).unwrap().0.addr.port())
            .collect();
        assert!(!ports.contains(&2), "{ports:?}");
    }

    #[test]
    fn least_conn_prefers_idle_targets() {
        let p = pool(Balance::LeastConn);
        let a = p.pick(None).unwrap();
        let b = p.pick(None).unwrap();
        let c = p.pick(None).unwrap();
        let busy = [a.0.addr, b.0.addr, c.0.addr];
        assert_eq!(
            busy.iter().collect::<std::collections::HashSet<_>>().len(),
            3
        );
        drop(b);
        let free = busy[1];
        for _ in 0..3 {
            let g = p.pick(None).unwrap();
            assert_eq!(g.0.addr, free);
        }
    }

    #[test]
    fn all_passively_ejected_are_still_tried_but_not_against_active_checks() {
        let lone = Pool::new(
            &Targets::default(),
            "t",
            vec![SocketAddr::from(([127, 0, 0, 1], 1))],
            Balance::RoundRobin,
            None,
            "t".into(),
        );
        lone.targets()[0].eject();
        assert!(lone.pick(None).is_some(), "a lone ejected target is tried");
        assert!(lone.pick(Some(lone.targets()[0].addr)).is_none());

        let checked = Pool::new(
            &Targets::default(),
            "t",
            vec![SocketAddr::from(([127, 0, 0, 1], 1))],
            Balance::RoundRobin,
            Some(HealthConfig {
                path: "/".into(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                rise: 1,
                fall: 1,
            }),
            "t".into(),
        );
        checked.targets()[0].eject();
        assert!(checked.pick(None).is_none(), "active checks decide");
    }

    #[test]
    fn pool_generations_share_targets_and_skip_retired_ones() {
        let registry = Targets::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let b = SocketAddr::from(([127, 0, 0, 1], 2));
        let old = Pool::new(
            &registry,
            "s",
            vec![a],
            Balance::RoundRobin,
            None,
            "t".into(),
        );
        let new = Pool::new(
            &registry,
            "s",
            vec![a, b],
            Balance::RoundRobin,
            None,
            "t".into(),
        );
        let held = old.pick(None).unwrap();
        assert!(
            Arc::ptr_eq(&held.0, &new.targets()[0]),
            "one target per site and address"
        );
        assert_eq!(
            new.targets()[0].inflight(),
            1,
            "counted for every generation"
        );
        let other = Pool::new(
            &registry,
            "other",
            vec![a],
            Balance::RoundRobin,
            None,
            "t".into(),
        );
        assert_eq!(other.targets()[0].inflight(), 0, "sites count apart");

        new.targets()[0].retire();
        assert!(
            old.pick(None).is_none(),
            "no generation sends to a retired target"
        );
        for _ in 0..3 {
            assert_eq!(new.pick(None).unwrap().0.addr, b);
        }
        assert_eq!(
            registry.enlist("s", a).inflight(),
            1,
            "listing again keeps the count"
        );
        assert_eq!(
            old.pick(None).unwrap().0.addr,
            a,
            "listed again: back in service"
        );
        drop(held);
    }

    #[test]
    fn a_new_pool_lists_a_retired_target_again_only_once_enlisted() {
        let registry = Targets::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let serving = Pool::new(
            &registry,
            "s",
            vec![a],
            Balance::RoundRobin,
            None,
            "t".into(),
        );
        serving.targets()[0].retire();
        // Built by a reload that may still be refused.
        let built = Pool::new(
            &registry,
            "s",
            vec![a],
            Balance::RoundRobin,
            None,
            "t".into(),
        );
        assert!(built.pick(None).is_none(), "still retired");
        built.enlist();
        assert_eq!(
            built.pick(None).unwrap().0.addr,
            a,
            "in service once enlisted"
        );
    }

    #[test]
    fn a_pick_that_loaded_the_list_before_a_deploy_swapped_it_gets_the_new_target() {
        let registry = Targets::default();
        let (a, b) = (
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 2)),
        );
        let pool = Pool::new(
            &registry,
            "s",
            vec![a],
            Balance::RoundRobin,
            None,
            "t".into(),
        );
        let loaded = pool.targets.load();
        // The deploy: swap, then retire what was swapped out.
        for t in pool.swap(vec![registry.enlist("s", b)]).iter() {
            t.retire();
        }
        assert_eq!(pool.pick_from(loaded, None).unwrap().0.addr, b);
    }

    #[test]
    fn guards_count_inflight() {
        let p = pool(Balance::RoundRobin);
        let g = p.pick(None).unwrap();
        let t = g.0.clone();
        assert_eq!(t.inflight(), 1);
        drop(g);
        assert_eq!(t.inflight(), 0);
    }
}
