//! A site's upstream targets. The target list is swapped whole (deploys); each target tracks its
//! health and in-flight requests so a swapped-out target can be drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
    /// Keep-alive connections waiting for the next request.
    pub(crate) conns: IdleConns,
}

impl Target {
    pub(crate) fn new(addr: SocketAddr, healthy: bool) -> Arc<Target> {
        Arc::new(Target {
            addr,
            healthy: AtomicBool::new(healthy),
            inflight: AtomicUsize::new(0),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch: Instant::now(),
            idle: Notify::new(),
            conns: IdleConns::default(),
        })
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
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
}

impl Pool {
    pub(crate) fn new(
        configured: Vec<SocketAddr>,
        balance: Balance,
        health: Option<HealthConfig>,
        check_host: String,
    ) -> Pool {
        let targets = configured.iter().map(|a| Target::new(*a, true)).collect();
        Pool {
            targets: ArcSwap::from_pointee(targets),
            configured,
            balance,
            health,
            check_host,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn targets(&self) -> Arc<Vec<Arc<Target>>> {
        self.targets.load_full()
    }

    /// Replaces the target list; returns the previous one so the caller can drain it.
    pub(crate) fn swap(&self, new: Vec<Arc<Target>>) -> Arc<Vec<Arc<Target>>> {
        self.targets.swap(Arc::new(new))
    }

    /// Picks an available target by the site's balancing rule, skipping `skip` (a target that
    /// just failed), and counts the request on it.
    pub(crate) fn pick(&self, skip: Option<SocketAddr>) -> Option<TargetGuard> {
        let targets = self.targets.load();
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
        let chosen = choose(&|t| Some(t.addr) != skip && t.available(active))
            // Passive ejection only steers traffic to the other targets: when every one is out
            // (a lone app restarting after a crash), trying beats a certain error, as nginx does.
            // Active checks, when configured, are the judge and are not overruled.
            .or_else(|| {
                (!active)
                    .then(|| choose(&|t| Some(t.addr) != skip))
                    .flatten()
            })?;
        chosen.inflight.fetch_add(1, Ordering::AcqRel);
        Some(TargetGuard(chosen.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: Balance) -> Pool {
        let addrs = (1..=3)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        Pool::new(addrs, balance, None, "t".into())
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
            vec![SocketAddr::from(([127, 0, 0, 1], 1))],
            Balance::RoundRobin,
            None,
            "t".into(),
        );
        lone.targets()[0].eject();
        assert!(lone.pick(None).is_some(), "a lone ejected target is tried");
        assert!(lone.pick(Some(lone.targets()[0].addr)).is_none());

        let checked = Pool::new(
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
    fn guards_count_inflight() {
        let p = pool(Balance::RoundRobin);
        let g = p.pick(None).unwrap();
        let t = g.0.clone();
        assert_eq!(t.inflight(), 1);
        drop(g);
        assert_eq!(t.inflight(), 0);
    }
}
