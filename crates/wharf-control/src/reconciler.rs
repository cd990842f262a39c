//! The reconciler turns desired state (the store) into running instances (the runtime) and
//! routes (the gateway). It is the only writer of the gateway's configuration.
//!
//! For one app: desired instances are compared with what runs by a fingerprint of everything
//! that needs a restart (command, folder, env, limits, replicas). When they differ it starts the
//! new instances on fresh ports, lets the gateway health-check and swap them in (`deploy`: old
//! requests drain first), then stops the old ones; instances a reload took out of routing are
//! drained with `Gateway::drain` before they stop. If the new instances never get healthy they
//! are stopped and the old ones keep serving. Route-only changes (hosts, availability) just
//! rebuild the route table.
//!
//! The health wait is raced against the runtime's exit signal: once every new instance has
//! ended (e.g. it crashes at start), the change fails at once with the app's last output, instead
//! of at the health timeout. An app whose last change failed and that has nothing running is
//! `failed`, with the reason ([`Reconciler::failure`]).
//!
//! Changes are one at a time per app (a lock per app, held through health checks), so a slow
//! app never holds up another app's change. What runs is recorded in `runs`, a short-held lock
//! that route building also takes, so route tables are built and swapped in the order the
//! changes happened. Instances come from the app's runtime ([`crate::runtimes::Runtimes`]):
//! the reconciler never assumes they are local processes; addresses come from the runtime.
//!
//! At start-up, instances that outlived the previous server (containers) are adopted: those
//! whose fingerprint matches what the app wants keep running untouched; the others are treated
//! as the app's current instances, so the usual switch replaces them without downtime;
//! instances of apps that no longer exist are stopped.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest;

use wharf_gateway::config::{
    BackendConfig, Balance, HealthConfig, HostPattern, HttpsPolicy, ProxyConfig, SiteConfig,
    StaticConfig,
};
use wharf_gateway::{DeployOptions, Gateway, GatewayError, SiteChanges};
use wharf_runtime::{ContainerOptions, InstanceSpec, Isolation, Limits, RestartPolicy, Workload};
use wharf_store::{
    App, AppFilter, AppKind, Availability, NameCursor, RuntimeKind, Store, StoreError, Tls,
};
use wharf_tls::{CertManager, CertSource, WantedCert};

use crate::oplog::OpLog;
use crate::paths::DataDir;
use crate::runtimes::{Placement, Runtimes};
use crate::users::AppUsers;

const STOP_GRACE: Duration = Duration::from_secs(10);
/// Apps read (and routed) at a time when every app is reconciled.
const BOOT_PAGE: u32 = 500;
/// How soon moved replicas that were not healthy in time are tried again.
const RETARGET_RETRY: Duration = Duration::from_secs(5);
/// Lines of an app's own output quoted when it ends before it is healthy.
const OUTPUT_LINES: usize = 20;

/// The gateway site serving the public URL's `/hooks/`: a name no app can have (app names are
/// DNS labels).
pub(crate) const HOOKS_SITE: &str = "wharf:hooks";

/// Listener settings the route table is built around.
#[derive(Clone, Debug)]
pub(crate) struct Routing {
    /// The port the first listener really got, for the URLs shown to users.
    pub(crate) public_port: u16,
    pub(crate) base_domain: String,
    /// Where git hosts send push webhooks; the gateway serves its `/hooks/` from the API.
    pub(crate) hooks: crate::PublicUrl,
    /// How long new instances have to pass their health check.
    pub(crate) health_timeout: Duration,
    /// The sandbox launcher; `None`: apps and builds run unsandboxed.
    pub(crate) launcher: Option<std::path::PathBuf>,
}

#[derive(Clone, Debug)]
struct Instance {
    name: String,
    /// Where the gateway reaches it (one per replica for runtimes that replicate).
    addrs: Vec<SocketAddr>,
    runtime: Placement,
}

#[derive(Clone, Debug, Default)]
struct AppRun {
    /// Empty: nothing runs.
    fingerprint: String,
    instances: Vec<Instance>,
}

impl AppRun {
    fn addrs(&self) -> Vec<SocketAddr> {
        self.instances
            .iter()
            .flat_map(|i| i.addrs.iter().copied())
            .collect()
    }
}

pub(crate) struct Reconciler {
    /// Itself, for the tasks that follow replicas a runtime moves.
    me: std::sync::Weak<Reconciler>,
    store: Arc<Store>,
    runtimes: Runtimes,
    gateway: Gateway,
    data: DataDir,
    routing: Routing,
    certs: Arc<CertManager>,
    /// Whether apps run as their own users.
    users: AppUsers,
    /// What runs, per app. Held only briefly, and while a route table is built and swapped,
    /// so tables are swapped in the order of the changes they carry.
    runs: Mutex<HashMap<String, AppRun>>,
    /// One lock per app: its changes run one at a time, other apps' alongside.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Why an app's last change failed, until a change succeeds or nothing should run.
    failures: Mutex<HashMap<String, String>>,
    /// Which app wants which certificate, so a change touches only its own app's.
    cert_owners: Mutex<CertOwners>,
}

/// A held change lock of one app. Its entry in the map goes once nobody holds or waits for
/// it, so apps that come and go leave no lock behind.
struct AppLock<'a> {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    lock: Arc<tokio::sync::Mutex<()>>,
    app: String,
    locks: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Drop for AppLock<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map's and this one's: nobody else holds it or waits for it (a waiter took its
        // clone from the map under this same lock).
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.app);
        }
    }
}

/// The certificates each app wants, and the app each certificate belongs to.
#[derive(Default)]
struct CertOwners {
    by_app: HashMap<String, Vec<String>>,
    owner: HashMap<String, String>,
}

impl CertOwners {
    /// Records that `app` now wants `certs`; returns those it wanted before and no app wants
    /// now (a host another app took over meanwhile stays that app's).
    fn set(&mut self, app: &str, certs: Vec<String>) -> Vec<String> {
        for cert in &certs {
            self.owner.insert(cert.clone(), app.to_string());
        }
        let before = if certs.is_empty() {
            self.by_app.remove(app)
        } else {
            self.by_app.insert(app.to_string(), certs.clone())
        };
        let mut gone = Vec::new();
        for cert in before.unwrap_or_default() {
            if !certs.contains(&cert) && self.owner.get(&cert).is_some_and(|o| o == app) {
                self.owner.remove(&cert);
                gone.push(cert);
            }
        }
        gone
    }
}

/// Why new instances were not taken into service.
enum NotReady {
    /// Still running but not answering (or answering badly) when time ran out.
    Unhealthy(String),
    /// Every new instance ended before it was healthy.
    Exited(String),
}

impl Reconciler {
    pub(crate) fn new(
        store: Arc<Store>,
        runtimes: Runtimes,
        gateway: Gateway,
        data: DataDir,
        routing: Routing,
        certs: Arc<CertManager>,
        users: AppUsers,
    ) -> Arc<Reconciler> {
        Arc::new_cyclic(|me| Reconciler {
            me: me.clone(),
            store,
            runtimes,
            gateway,
            data,
            routing,
            certs,
            users,
            runs: Default::default(),
            locks: Default::default(),
            failures: Default::default(),
            cert_owners: Default::default(),
        })
    }

    /// Why the app's last change failed, if it did (cleared by the next one that succeeds).
    pub(crate) fn failure(&self, app: &str) -> Option<String> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .cloned()
    }

    fn set_failure(&self, app: &str, why: Option<&str>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match why {
            Some(w) => failures.insert(app.to_string(), w.to_string()),
            None => failures.remove(app),
        };
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, AppRun>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The app's change lock, held for a whole change.
    async fn lock_app(&self, app: &str) -> AppLock<'_> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.to_string())
            .or_default()
            .clone();
        AppLock {
            guard: Some(lock.clone().lock_owned().await),
            lock,
            app: app.to_string(),
            locks: &self.locks,
        }
    }

    pub(crate) fn users(&self) -> &AppUsers {
        &self.users
    }

    /// The app's user, its folders made its own (`None` when per-app users are off).
    pub(crate) fn app_user(&self, app: &str) -> Result<Option<wharf_runtime::AppUser>, String> {
        self.users.prepare(&self.store, &self.data, app)
    }

    pub(crate) fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Where the gateway really listens.
    pub(crate) fn gateway_addrs(&self) -> Vec<SocketAddr> {
        self.gateway.listen_addrs()
    }

    /// The default host of an app: `<app>.<base-domain>`.
    /// The sandbox launcher apps and builds are started through, if any.
    pub(crate) fn launcher(&self) -> Option<&std::path::Path> {
        self.routing.launcher.as_deref()
    }

    pub(crate) fn default_host(&self, app: &str) -> String {
        format!("{app}.{}", self.routing.base_domain)
    }

    /// Brings one app to its desired state. `force` restarts its instances even if nothing
    /// changed. Returns the user-facing outcome.
    pub(crate) async fn reconcile(
        &self,
        name: &str,
        force: bool,
        op: &OpLog,
    ) -> Result<String, String> {
        let _app = self.lock_app(name).await;
        let result = self.reconcile_locked(name, force, op).await;
        match &result {
            Err(why) => self.set_failure(name, Some(why)),
            Ok(_) => self.set_failure(name, None),
        }
        result
    }

    /// Brings the app back in line after a failed change was undone in the store (its
    /// previous release put back). Not a change of its own: the failure stays on record, so
    /// the app shows why its last deploy or rollback failed.
    pub(crate) async fn restore(&self, name: &str, op: &OpLog) -> Result<String, String> {
        let _app = self.lock_app(name).await;
        self.reconcile_locked(name, false, op).await
    }

    async fn reconcile_locked(
        &self,
        name: &str,
        force: bool,
        op: &OpLog,
    ) -> Result<String, String> {
        let app = match self.store.app(name) {
            Ok(a) => Some(a),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(format!("cannot read the app: {e}")),
        };
        // Its certificates whatever becomes of the change: an app that cannot start still
        // gets (and renews) the certificates its domains want.
        self.apply_certs(name, app.as_ref());
        let desired = match &app {
            Some(a) => self.desired(a)?,
            None => None,
        };
        let current = self.lock_runs().get(name).cloned().unwrap_or_default();
        let wanted_count = desired.as_ref().map_or(0, |d| d.specs.len());
        let changed = force
            || desired.as_ref().map_or("", |d| d.fingerprint.as_str()) != current.fingerprint
            || wanted_count != current.instances.len();

        if !changed {
            self.route(name, op)?;
            op.ok("route", "routes updated");
            return Ok(outcome(app.as_ref(), &self.url(name)));
        }

        let Some(desired) = desired.filter(|d| !d.specs.is_empty()) else {
            // Nothing should run: take the route away first, then stop. A route table that
            // cannot be built still stops them: they are no longer recorded anywhere.
            self.lock_runs().remove(name);
            let routed = self.route(name, op);
            if routed.is_ok() {
                op.ok("route", "routes updated");
            }
            self.drain(name, &current.instances).await;
            self.stop_all(&current.instances, op).await;
            routed?;
            return Ok(outcome(app.as_ref(), &self.url(name)));
        };
        let app = app.expect("desired instances imply an app");

        // 1. Start the new instances.
        let runtime = self.runtimes.get(&desired.runtime)?;
        let mut started = Vec::new();
        for spec in desired.specs {
            let instance = spec.instance.clone();
            let addrs = match runtime.start(spec).await {
                Ok(addrs) if !addrs.is_empty() => addrs,
                Ok(_) => {
                    // It exists but cannot be reached (a container that ended at once).
                    let inst = Instance {
                        name: instance.clone(),
                        addrs: Vec::new(),
                        runtime: desired.runtime.clone(),
                    };
                    let msg = format!(
                        "{name} could not start: {instance} has no address. {}",
                        self.last_output(std::slice::from_ref(&inst)).await
                    );
                    op.failed("start", &msg);
                    started.push(inst);
                    self.stop_all(&started, op).await;
                    return Err(msg);
                }
                Err(e) => {
                    let msg = format!("{name} could not start: {e}");
                    op.failed("start", &msg);
                    self.stop_all(&started, op).await;
                    return Err(msg);
                }
            };
            op.ok("start", format!("started {instance} on {}", list(&addrs)));
            started.push(Instance {
                name: instance,
                addrs,
                runtime: desired.runtime.clone(),
            });
        }
        let addrs: Vec<SocketAddr> = started.iter().flat_map(|i| i.addrs.clone()).collect();

        // 2. Health: until the new instances answer, or until every one of them has ended.
        let check = health(self.effective(&app).health_path.as_deref());
        let host = self.default_host(name);
        let checked = tokio::select! {
            // A crash after the check passed is the supervisor's to handle, not a failed change.
            biased;
            healthy = wharf_gateway::wait_healthy(
                &addrs,
                &host,
                check.as_ref(),
                self.routing.health_timeout,
            ) => healthy.map_err(NotReady::Unhealthy),
            ended = self.all_ended(&started) => Err(NotReady::Exited(ended)),
        };

        // 3. Swap them in (served apps).
        let served = app.availability == Availability::Enabled;
        let checked = match checked {
            Ok(()) if served => self.swap(name, addrs).await.map_err(NotReady::Unhealthy),
            other => other,
        };
        if let Err(why) = checked {
            let keep = if current.instances.is_empty() {
                ""
            } else {
                ", the previous instances keep serving"
            };
            let msg = match why {
                NotReady::Unhealthy(why) => format!("{name} did not become healthy{keep}: {why}"),
                NotReady::Exited(how) => format!(
                    "{name} {how} before it became healthy{keep}. {}",
                    self.last_output(&started).await
                ),
            };
            op.failed("health", &msg);
            self.stop_all(&started, op).await;
            {
                let mut runs = self.lock_runs();
                if current.instances.is_empty() {
                    runs.remove(name);
                } else {
                    runs.insert(name.to_string(), current);
                }
            }
            let _ = self.apply_routes(name);
            return Err(msg);
        }
        op.ok(
            "health",
            format!("{} healthy", plural(started.len(), "instance")),
        );

        // 4. Record, route, and stop what ran before.
        self.lock_runs().insert(
            name.to_string(),
            AppRun {
                fingerprint: desired.fingerprint,
                instances: started.clone(),
            },
        );
        // Followed from now on: a new instance lost while the old ones stop is replaced.
        self.follow(name, &started);
        // The gateway serves the new instances already; a table that cannot be rebuilt now
        // must not leave the old ones running unrecorded.
        let routed = self.route(name, op);
        if routed.is_ok() {
            op.ok(
                "route",
                if served {
                    "traffic switched to the new instances"
                } else {
                    "not served: no route"
                },
            );
        }
        if !served {
            // A served app's deploy drained them already (a second wait would only repeat a
            // timeout); an app taken out of routing has had no deploy.
            self.drain(name, &current.instances).await;
        }
        self.stop_all(&current.instances, op).await;
        routed?;
        Ok(outcome(Some(&app), &self.url(name)))
    }

    /// For instances whose runtime moves replicas by itself (Swarm), follows their addresses:
    /// each change goes through the gateway's switch (new addresses health-checked before they
    /// get requests, addresses that went away drained), under the app's lock.
    fn follow(&self, name: &str, instances: &[Instance]) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        for inst in instances {
            let Some(mut rx) = self
                .runtimes
                .get(&inst.runtime)
                .ok()
                .and_then(|r| r.addresses(&inst.name))
            else {
                if inst.runtime.node.is_some() {
                    // A node's instance is always followed; one its node already forgot (the
                    // link dropped and came back without it) is replaced.
                    let (me, name, instance) = (me.clone(), name.to_string(), inst.name.clone());
                    tokio::spawn(async move { me.heal(&name, &instance).await });
                }
                continue;
            };
            let (me, name, instance) = (me.clone(), name.to_string(), inst.name.clone());
            let remote = inst.runtime.node.is_some();
            tokio::spawn(async move {
                // The current addresses first: an adopted service is recorded with one.
                loop {
                    let addrs = rx.borrow_and_update().clone();
                    // None running on a Swarm (a node lost): keep what was routed; the
                    // gateway's passive checks and retries do better than an empty pool. A
                    // wharf node that is unreachable is taken out of routing at once.
                    let mut applied = true;
                    if !addrs.is_empty() || remote {
                        // Taking a node's instances out of routing waits for no change: a
                        // deploy holds the app's lock through health checks and drains, and
                        // the node must leave routing within 2 s. Only the route table is
                        // touched (under its own short lock); no instance starts or stops.
                        let _app = if addrs.is_empty() {
                            None
                        } else {
                            Some(me.lock_app(&name).await)
                        };
                        match me.retarget(&name, &instance, addrs).await {
                            None => break,
                            Some(done) => applied = done,
                        }
                    }
                    if applied {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    } else {
                        // Not healthy in time: try again a little later, or on the next move.
                        tokio::select! {
                            changed = rx.changed() => if changed.is_err() { break },
                            _ = tokio::time::sleep(RETARGET_RETRY) => {}
                        }
                    }
                }
                // The runtime forgot the instance. Stopped by a change: it is no longer the
                // app's, nothing to do. Gone behind wharf's back (a container removed by hand,
                // a service deleted): the app is short of it, so replace it.
                me.heal(&name, &instance).await;
            });
        }
    }

    /// Replaces an instance that vanished while it was still the app's.
    async fn heal(&self, name: &str, instance: &str) {
        {
            let _app = self.lock_app(name).await;
            let mut runs = self.lock_runs();
            let Some(run) = runs.get_mut(name) else {
                return;
            };
            let before = run.instances.len();
            run.instances.retain(|i| i.name != instance);
            if run.instances.len() == before {
                return;
            }
        }
        tracing::warn!(
            app = name,
            instance,
            "an instance vanished; starting a new one"
        );
        let op = OpLog::begin(&self.store, Some(name), "heal", crate::oplog::SYSTEM);
        op.ok("vanished", format!("{instance} is gone"));
        let result = self.reconcile(name, false, &op).await;
        op.finish(&result);
    }

    /// Moves an instance's traffic to `addrs`; false once the instance is no longer the app's.
    /// `None` once the instance is no longer the app's; `Some(false)` when the new addresses
    /// did not get healthy in time (worth trying again).
    async fn retarget(&self, name: &str, instance: &str, addrs: Vec<SocketAddr>) -> Option<bool> {
        let all = {
            let mut runs = self.lock_runs();
            let run = runs.get_mut(name)?;
            let inst = run.instances.iter_mut().find(|i| i.name == instance)?;
            if inst.addrs == addrs {
                return Some(true);
            }
            let mut next = run.clone();
            if let Some(i) = next.instances.iter_mut().find(|i| i.name == instance) {
                i.addrs = addrs.clone();
            }
            next.addrs()
        };
        tracing::info!(app = name, instance, addrs = %list(&addrs), "replicas moved; switching traffic");
        let served = self
            .store
            .app(name)
            .is_ok_and(|a| a.availability == Availability::Enabled);
        // An app out of routing has no site to switch: its new addresses are only recorded.
        // No address left (a node unreachable): the route table below empties the pool, and
        // the app answers 503 until an instance is back.
        if served
            && !all.is_empty()
            && let Err(e) = self.swap(name, all).await
        {
            tracing::warn!(app = name, error = %e, "replicas moved but the new ones are not healthy yet; traffic stays");
            return Some(false);
        }
        if let Some(inst) = self
            .lock_runs()
            .get_mut(name)
            .and_then(|r| r.instances.iter_mut().find(|i| i.name == instance))
        {
            inst.addrs = addrs;
        }
        if let Err(e) = self.apply_routes(name) {
            tracing::warn!(app = name, error = %e, "routes not updated");
        }
        Some(true)
    }

    /// Lets the gateway check the new (healthy) instances once more and swap them in. The site
    /// must exist first; a new app gets an empty pool (503) for the moment this takes.
    async fn swap(&self, name: &str, addrs: Vec<SocketAddr>) -> Result<(), String> {
        self.lock_runs().entry(name.to_string()).or_default();
        self.apply_routes(name)?;
        let opts = DeployOptions {
            health_timeout: self.routing.health_timeout,
            drain_timeout: None,
        };
        match self.gateway.deploy(name, addrs, opts).await {
            Ok(_) => Ok(()),
            // The gateway's own wording speaks of targets; the caller says what keeps serving.
            Err(GatewayError::Unhealthy { last_error, .. }) => Err(last_error),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Resolves once every instance has ended at least once, with how the first one ended.
    async fn all_ended(&self, instances: &[Instance]) -> String {
        let ends = futures_util::future::join_all(instances.iter().map(|i| async {
            match self.runtimes.get(&i.runtime) {
                Ok(rt) => rt.exited(&i.name).await,
                Err(_) => None,
            }
        }))
        .await;
        ends.into_iter()
            .flatten()
            .next()
            .unwrap_or_else(|| "stopped".to_string())
    }

    /// The app's last words, from its first instance, for an error message.
    async fn last_output(&self, instances: &[Instance]) -> String {
        let lines = match instances
            .first()
            .and_then(|i| Some((i, self.runtimes.get(&i.runtime).ok()?)))
        {
            Some((i, rt)) => rt.recent_output(&i.name, OUTPUT_LINES).await,
            None => Vec::new(),
        };
        if lines.is_empty() {
            return "It wrote nothing on stdout or stderr.".to_string();
        }
        let mut out = format!("Its last {}:", plural(lines.len(), "line"));
        for l in lines {
            out.push_str("\n  ");
            out.push_str(&l);
        }
        out
    }

    /// The container runtimes arrived after start-up (the engine answered late): adopt what
    /// they run and bring the container apps up.
    pub(crate) async fn containers_arrived(&self, op: &OpLog) -> Result<String, String> {
        self.adopt(op).await;
        self.reconcile_where(|a| a.runtime.runs_images(), "container app", op)
            .await
    }

    /// Reconciles every app `which` selects; says how many are ready, or what failed. Apps
    /// with nothing to run and nothing running (static sites, stopped apps) only need their
    /// routes: they are routed first, a page of apps per change of the route table; the others
    /// are then reconciled one by one. Apps are read a page at a time, so the memory this
    /// takes does not grow with the number of apps.
    async fn reconcile_where(
        &self,
        which: impl Fn(&App) -> bool,
        what: &str,
        op: &OpLog,
    ) -> Result<String, String> {
        let mut failed = Vec::new();
        let mut busy = Vec::new();
        let mut routed = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .apps_page(&AppFilter::default(), cursor(after.as_deref()), BOOT_PAGE)
                .map_err(|e| e.to_string())?;
            let mut quiet = Vec::new();
            for app in page.iter().filter(|a| which(a)) {
                let running = self.lock_runs().contains_key(&app.name);
                match self.desired(app) {
                    Ok(None) if !running => quiet.push(app.name.clone()),
                    _ => busy.push(app.name.clone()),
                }
            }
            if !quiet.is_empty() {
                routed += quiet.len();
                if let Err(e) = self.route_many(after.as_deref(), &quiet) {
                    failed.push(e);
                }
            }
            match page.last() {
                Some(last) if page.len() == BOOT_PAGE as usize => after = Some(last.name.clone()),
                _ => break,
            }
        }
        if routed > 0 {
            op.ok(
                "route",
                format!("{} routed", plural(routed, "app with nothing to start")),
            );
        }
        for name in &busy {
            if let Err(e) = self.reconcile(name, false, op).await {
                failed.push(e);
            }
        }
        let n = routed + busy.len();
        if failed.is_empty() {
            Ok(format!("{} ready", plural(n, what)))
        } else {
            Err(failed.join("; "))
        }
    }

    /// Routes `names`, apps with nothing running from the page of apps after `after`, in one
    /// change of the route table (the page read again under `runs`, so a change that came
    /// meanwhile is not undone). Should one of them be refused, each is routed on its own, so
    /// only that one is left out.
    fn route_many(&self, after: Option<&str>, names: &[String]) -> Result<(), String> {
        let together = {
            let runs = self.lock_runs();
            let wanted: std::collections::HashSet<&str> =
                names.iter().map(String::as_str).collect();
            // Twice the page: apps created meanwhile push names out of a page of the same
            // length; any still missing (or deleted meanwhile) are read one by one.
            let page = self
                .store
                .apps_page(&AppFilter::default(), cursor(after), BOOT_PAGE * 2)
                .map_err(|e| format!("cannot read apps: {e}"))?;
            let mut apps: Vec<Option<App>> = page
                .into_iter()
                .filter(|a| wanted.contains(a.name.as_str()))
                .map(Some)
                .collect();
            let found: std::collections::HashSet<String> =
                apps.iter().flatten().map(|a| a.name.clone()).collect();
            for name in names.iter().filter(|n| !found.contains(*n)) {
                match self.store.app(name) {
                    Ok(a) => apps.push(Some(a)),
                    Err(StoreError::NotFound { .. }) => apps.push(None),
                    Err(e) => return Err(format!("cannot read the app {name}: {e}")),
                }
            }
            let mut changes = SiteChanges::default();
            for name in names.iter().filter(|n| !found.contains(*n)) {
                if !apps.iter().flatten().any(|a| &a.name == name) {
                    changes.remove.push(name.clone());
                    self.apply_certs(name, None);
                }
            }
            for app in apps.iter().flatten() {
                match self.site_config(app, runs.get(&app.name)) {
                    Some(site) => changes.upsert.push(site),
                    None => changes.remove.push(app.name.clone()),
                }
                self.apply_certs(&app.name, Some(app));
            }
            self.gateway.update(changes)
        };
        if together.is_ok() {
            for name in names {
                self.set_failure(name, None);
            }
            return Ok(());
        }
        let mut failed = Vec::new();
        for name in names {
            match self.apply_routes(name) {
                Ok(()) => self.set_failure(name, None),
                Err(e) => {
                    let why = format!("{name}: {e}");
                    self.set_failure(name, Some(&why));
                    failed.push(why);
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// Every app, e.g. after the server started.
    pub(crate) async fn reconcile_all(&self, op: &OpLog) -> Result<String, String> {
        self.adopt(op).await;
        // Apps placed on nodes come up when their node connects (`node_arrived`), which first
        // adopts what runs there: started here, before that, they would be started twice.
        self.reconcile_where(|a| a.node.is_none(), "app", op).await
    }

    /// Takes over the instances that outlived the previous server (containers), before the
    /// first reconcile: matching ones keep running untouched; the others become the app's
    /// current instances, so its reconcile replaces them without downtime; those of apps that
    /// are gone (or moved to another runtime) are stopped.
    async fn adopt(&self, op: &OpLog) {
        self.adopt_from(self.runtimes.lasting(), op).await;
    }

    /// A node's link came up (after start-up, or back after it was lost): adopt what it runs
    /// that the server does not know, then bring up the apps placed on it.
    pub(crate) async fn node_arrived(&self, node: &str, op: &OpLog) -> Result<String, String> {
        let runtimes = self
            .runtimes
            .lasting()
            .into_iter()
            .filter(|(p, _)| p.node.as_deref() == Some(node))
            .collect();
        self.adopt_from(runtimes, op).await;
        self.reconcile_where(|a| a.node.as_deref() == Some(node), "app", op)
            .await
            .map(|ready| format!("node {node}: {ready}"))
    }

    async fn adopt_from(
        &self,
        lasting: Vec<(Placement, Arc<dyn wharf_runtime::Runtime>)>,
        op: &OpLog,
    ) {
        // Per app: (instance, its fingerprint).
        let mut found: BTreeMap<String, Vec<(Instance, String)>> = BTreeMap::new();
        for (kind, rt) in lasting {
            let adopted = match rt.adopt().await {
                Ok(a) => a,
                Err(e) => {
                    op.failed("adopt", format!("cannot list {kind} instances: {e}"));
                    continue;
                }
            };
            for status in adopted {
                let inst = Instance {
                    name: status.instance.clone(),
                    addrs: status.addr.into_iter().collect(),
                    runtime: kind.clone(),
                };
                found
                    .entry(status.app.clone())
                    .or_default()
                    .push((inst, status.fingerprint));
            }
        }
        for (name, instances) in found {
            // Under the app's lock, with the store read now: the API answers meanwhile, and
            // an app created or changed since the listing must not lose what it started.
            let _app = self.lock_app(&name).await;
            let app = match self.store.app(&name) {
                Ok(a) => Some(a),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => {
                    op.failed("adopt", format!("cannot read {name}: {e}"));
                    continue;
                }
            };
            let (keep, stop): (Vec<_>, Vec<_>) = {
                let mut runs = self.lock_runs();
                let known: Vec<String> = runs
                    .get(&name)
                    .map(|r| r.instances.iter().map(|i| i.name.clone()).collect())
                    .unwrap_or_default();
                let fresh: Vec<(Instance, String)> = instances
                    .into_iter()
                    .filter(|(i, _)| !known.contains(&i.name))
                    .collect();
                match &app {
                    // A change ran since start-up: what it did not start is not serving.
                    _ if !known.is_empty() => (Vec::new(), fresh),
                    // Gone: stop.
                    None => (Vec::new(), fresh),
                    Some(app) => {
                        let run = runs.entry(name.clone()).or_default();
                        for (inst, fp) in &fresh {
                            // Kept as they are only when all match and run where the app
                            // wants to run (a switch of runtime cut short is finished by the
                            // reconcile): an empty fingerprint matches nothing.
                            if run.instances.is_empty() && inst.runtime == Placement::of(app) {
                                run.fingerprint = fp.clone();
                            } else if run.fingerprint != *fp || inst.runtime != Placement::of(app) {
                                run.fingerprint.clear();
                            }
                            run.instances.push(inst.clone());
                        }
                        (fresh, Vec::new())
                    }
                }
            };
            let keep: Vec<Instance> = keep.into_iter().map(|(i, _)| i).collect();
            let stop: Vec<Instance> = stop.into_iter().map(|(i, _)| i).collect();
            if !keep.is_empty() {
                op.ok(
                    "adopt",
                    format!("{name}: {} still running", plural(keep.len(), "instance")),
                );
                self.follow(&name, &keep);
            }
            if !stop.is_empty() {
                self.stop_all(&stop, op).await;
            }
        }
    }

    /// Stops every instance that ends with the server (processes); containers keep running
    /// and are adopted by the next start.
    pub(crate) async fn stop_everything(&self) {
        let runs: Vec<AppRun> = self.lock_runs().drain().map(|(_, r)| r).collect();
        for i in runs.into_iter().flat_map(|r| r.instances) {
            if let Ok(rt) = self.runtimes.get(&i.runtime)
                && !rt.outlives_server()
            {
                let _ = rt.stop(&i.name).await;
            }
        }
    }

    /// Waits until requests in flight on `instances` finish (up to the gateway's drain
    /// timeout), whichever route table sent them, so stopping them cuts nothing.
    async fn drain(&self, name: &str, instances: &[Instance]) {
        let addrs: Vec<SocketAddr> = instances.iter().flat_map(|i| i.addrs.clone()).collect();
        if !self.gateway.drain(name, &addrs).await {
            tracing::warn!(
                app = name,
                "drain timeout reached; stopping instances with requests in flight"
            );
        }
    }

    async fn stop_all(&self, instances: &[Instance], op: &OpLog) {
        for i in instances {
            let stopped = match self.runtimes.get(&i.runtime) {
                Ok(rt) => rt.stop(&i.name).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match stopped {
                Ok(()) => op.ok("stop", format!("stopped {}", i.name)),
                Err(e) => op.failed("stop", format!("could not stop {}: {e}", i.name)),
            }
        }
    }

    fn url(&self, app: &str) -> String {
        let port = self.routing.public_port;
        let host = self.default_host(app);
        if port == 80 {
            format!("http://{host}")
        } else {
            format!("http://{host}:{port}")
        }
    }

    /// Where a git host posts `app`'s push events.
    pub(crate) fn hook_url(&self, app: &str) -> String {
        self.routing.hooks.hook(app)
    }

    /// Serves the public URL's `/hooks/` from the API at `api` (its loopback address), so
    /// webhooks arrive through the gateway like any request, TLS included, and nothing else of
    /// the API is exposed. An HTTPS public URL gets its certificate from ACME.
    pub(crate) fn route_hooks(&self, api: SocketAddr) -> Result<(), String> {
        let host = self.routing.hooks.host().to_string();
        let wanted = if self.routing.hooks.https() {
            vec![WantedCert {
                name: cert_name(&host),
                hosts: vec![host.clone()],
                source: CertSource::Acme,
            }]
        } else {
            Vec::new()
        };
        {
            let mut owners = self.cert_owners.lock().unwrap_or_else(|p| p.into_inner());
            owners.set(HOOKS_SITE, wanted.iter().map(|w| w.name.clone()).collect());
        }
        for (cert, problem) in self.certs.change(Vec::new(), wanted) {
            tracing::warn!(certificate = %cert, error = %problem, "certificate not installed");
        }
        let site = SiteConfig {
            name: HOOKS_SITE.into(),
            hosts: vec![HostPattern::Exact(host)],
            path: "/hooks".into(),
            backend: BackendConfig::Proxy(ProxyConfig {
                upstreams: vec![api],
                balance: Balance::RoundRobin,
                health: None,
                strip_prefix: false,
            }),
            listen: Vec::new(),
            // The API's own limit for a request body.
            max_body: 1 << 20,
            allow: Vec::new(),
            access_log: true,
            cert: None,
            // Git hosts do not follow a redirect of a POST: a webhook is answered where it is
            // sent, even when a certificate (a wildcard, say) covers the host.
            https: HttpsPolicy {
                redirect: false,
                hsts: None,
            },
        };
        self.gateway
            .update(SiteChanges {
                upsert: vec![site],
                remove: Vec::new(),
            })
            .map_err(|e| format!("the webhook route was refused: {e}"))
    }

    /// Public URL of an app, for API views.
    pub(crate) fn app_url(&self, app: &str) -> String {
        self.url(app)
    }

    /// `apply_routes`, recording a failure in the operation.
    fn route(&self, name: &str, op: &OpLog) -> Result<(), String> {
        self.apply_routes(name)
            .inspect_err(|e| op.failed("route", e))
    }

    /// Builds `name`'s site from the store and what runs (or takes it out), with the
    /// certificates its domains want, and hands the gateway that one change: every other
    /// app's route, pool, health state and connections stay as they are. Holds `runs`
    /// throughout, so two changes are applied in the order they were built.
    fn apply_routes(&self, name: &str) -> Result<(), String> {
        let runs = self.lock_runs();
        let app = match self.store.app(name) {
            Ok(a) => Some(a),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(format!("cannot read the app: {e}")),
        };
        let site = app
            .as_ref()
            .and_then(|a| self.site_config(a, runs.get(name)));
        // Certificates first, so a new domain's redirect only starts once its certificate is
        // installed (the gateway redirects only hosts a certificate covers).
        self.apply_certs(name, app.as_ref());
        let changes = match site {
            Some(site) => SiteChanges {
                upsert: vec![site],
                remove: Vec::new(),
            },
            None => SiteChanges {
                upsert: Vec::new(),
                remove: vec![name.to_string()],
            },
        };
        self.gateway
            .update(changes)
            .map_err(|e| format!("routes not updated: {e}"))
    }

    /// The site an app is served as, if it is served now.
    fn site_config(&self, app: &App, run: Option<&AppRun>) -> Option<SiteConfig> {
        if app.availability != Availability::Enabled {
            return None;
        }
        let eff = self.effective(app);
        let backend = match (&eff.static_root, run) {
            (Some(root), _) => {
                if !root.is_dir() {
                    // Not an error of the change: the app simply has nothing to serve yet.
                    tracing::warn!(app = %app.name, root = %root.display(), "static folder missing; not served");
                    return None;
                }
                BackendConfig::Static(StaticConfig {
                    root: root.clone(),
                    index: vec!["index.html".into()],
                    not_found: None,
                    // Deployed code is not trusted to link outside its folder.
                    follow_links_outside_root: false,
                })
            }
            (None, Some(run)) => BackendConfig::Proxy(ProxyConfig {
                upstreams: run.addrs(),
                balance: Balance::RoundRobin,
                health: health(eff.health_path.as_deref()),
                strip_prefix: false,
            }),
            (None, None) => return None,
        };
        let mut hosts = vec![HostPattern::Exact(self.default_host(&app.name))];
        hosts.extend(
            app.domains
                .iter()
                .filter_map(|d| HostPattern::parse(d).ok()),
        );
        Some(SiteConfig {
            name: app.name.clone(),
            hosts,
            path: "/".into(),
            backend,
            listen: Vec::new(),
            max_body: app.max_body.unwrap_or(10 << 20),
            allow: Vec::new(),
            access_log: true,
            cert: None,
            https: HttpsPolicy {
                redirect: true,
                hsts: app.hsts_seconds.map(Duration::from_secs),
            },
        })
    }

    /// Makes the certificates `name`'s domains want installed, and drops those it no longer
    /// wants (unless another app took the host over meanwhile). Touches only this app's.
    fn apply_certs(&self, name: &str, app: Option<&App>) {
        let wanted = app.map_or_else(Vec::new, |a| self.wanted_certs(std::slice::from_ref(a)));
        let gone = {
            let mut owners = self.cert_owners.lock().unwrap_or_else(|p| p.into_inner());
            owners.set(name, wanted.iter().map(|w| w.name.clone()).collect())
        };
        if wanted.is_empty() && gone.is_empty() {
            return;
        }
        for (cert, problem) in self.certs.change(gone, wanted) {
            tracing::warn!(certificate = %cert, error = %problem, "certificate not installed");
        }
    }

    /// One certificate per domain with a TLS source, named by its host.
    fn wanted_certs(&self, apps: &[App]) -> Vec<WantedCert> {
        let mut wanted = Vec::new();
        for app in apps {
            for (host, tls) in &app.tls {
                let name = cert_name(host);
                let source = match tls {
                    Tls::None => continue,
                    Tls::Acme => CertSource::Acme,
                    Tls::SelfSigned => CertSource::SelfSigned,
                    Tls::Manual => {
                        let dir = self.data.certs().join(&name);
                        CertSource::Manual {
                            cert: dir.join("cert.pem"),
                            key: dir.join("key.pem"),
                        }
                    }
                };
                wanted.push(WantedCert {
                    name,
                    hosts: vec![host.clone()],
                    source,
                });
            }
        }
        wanted
    }

    pub(crate) fn static_root(&self, app: &App) -> std::path::PathBuf {
        app.root
            .as_ref()
            .map_or_else(|| self.data.public_dir(&app.name), Into::into)
    }

    /// What an app runs: its active release's command and folder if it has one, else its own.
    fn effective(&self, app: &App) -> Effective {
        let release = app
            .release
            .and_then(|n| self.store.release(&app.name, n).ok());
        let own_static = (app.kind == AppKind::Static).then(|| self.static_root(app));
        match release {
            Some(r) => {
                let dir = self.data.release(&app.name, r.number);
                let run = r.run.clone().or_else(|| app.run.clone());
                let static_root = match (&run, &r.static_dir) {
                    (None, Some(d)) => Some(dir.join(d)),
                    _ => own_static,
                };
                Effective {
                    run,
                    image: r.image.clone(),
                    workdir: dir,
                    static_root,
                    health_path: r.health_path.clone().or_else(|| app.health_path.clone()),
                    // Written by the pipeline from a validated manifest; unreadable means none.
                    env_defaults: serde_json::from_str(&r.env_defaults).unwrap_or_default(),
                }
            }
            None => Effective {
                run: app.run.clone(),
                image: None,
                workdir: app
                    .workdir
                    .as_ref()
                    .map_or_else(|| self.data.app_dir(&app.name), Into::into),
                static_root: own_static,
                health_path: app.health_path.clone(),
                env_defaults: BTreeMap::new(),
            },
        }
    }

    fn desired(&self, app: &App) -> Result<Option<Desired>, String> {
        let eff = self.effective(app);
        let runnable = eff.static_root.is_none() && app.availability != Availability::Disabled;
        if !runnable {
            return Ok(None);
        }
        // An app gets its user (and its folders become its own) once it has something to run
        // (or build: the pipeline asks too). A static site is served by the gateway and needs
        // none, so ten thousand sites do not use up the 4,336 uids of the range.
        let user = self.app_user(&app.name)?;
        if app.runtime.runs_images() {
            return self.desired_containers(app, eff);
        }
        let Some(run) = eff.run.as_ref() else {
            return Ok(None);
        };
        if app.node.is_some() {
            return self.desired_on_node(app, &eff, run, user);
        }
        if let Some(why) = self.users.refusal() {
            return Err(format!("{} cannot start: {why}", app.name));
        }
        let mut env = self.env(app, &eff)?;
        let workdir = eff.workdir;
        crate::deploy::add_tool_paths(&workdir, &mut env);
        if user.is_some() && !env.contains_key("HOME") {
            // The app's user has no passwd entry, so no home: tools that keep files under
            // `HOME` (npm's logs, caches) use the app's private tmp, never the volume (backed
            // up) nor the build cache (which the next build trusts).
            env.insert(
                "HOME".to_string(),
                self.data.tmp(&app.name).display().to_string(),
            );
        }
        let limits = limits(app);
        // `sandbox::prepare` below points TMPDIR at the app's tmp for sandboxed instances.
        let sandboxed = app.sandbox && self.launcher().is_some();
        let workload = Workload::Process {
            command: run.clone(),
            workdir: workdir.clone(),
        };
        // The sandbox setting is part of what runs: switching it restarts the app.
        let fingerprint = fingerprint(&(
            "process",
            &workload_key(&workload),
            &env,
            limits.memory_bytes,
            limits.cpu_millis,
            app.replicas,
            sandboxed,
            app.stop_grace_ms,
        ));
        let mut specs = Vec::new();
        for _ in 0..app.replicas {
            // Chosen here rather than by the runtime: the sandbox only lets it bind this port.
            let port = wharf_runtime::free_port().map_err(|e| format!("no free port: {e}"))?;
            let sandbox =
                crate::sandbox::instance_policy(self.launcher(), &self.data, app, &workdir, port);
            crate::sandbox::prepare(sandbox.as_ref(), self.data.tmp(&app.name), &mut env)
                .map_err(|e| format!("cannot prepare the sandbox's folders: {e}"))?;
            specs.push(InstanceSpec {
                port: Some(port),
                env: env.clone(),
                isolation: Isolation { user, sandbox },
                ..self.spec(app, &fingerprint, workload.clone())
            });
        }
        Ok(Some(Desired {
            fingerprint,
            runtime: Placement::here(RuntimeKind::Process),
            specs,
        }))
    }

    /// A process app placed on a node: its agent runs it in its copy of the release's folder
    /// (sent over the link), on a port it picks, as the app's user and in the sandbox as here
    /// (the agent applies them to its own folders).
    fn desired_on_node(
        &self,
        app: &App,
        eff: &Effective,
        run: &str,
        user: Option<wharf_runtime::AppUser>,
    ) -> Result<Option<Desired>, String> {
        let mut env = self.env(app, eff)?;
        // The node reaches its copy of the folder at this same path (see `proto::Spec`), so
        // the build's tools are found there as here.
        crate::deploy::add_tool_paths(&eff.workdir, &mut env);
        let workload = Workload::Process {
            command: run.to_string(),
            workdir: eff.workdir.clone(),
        };
        let limits = limits(app);
        let fingerprint = fingerprint(&(
            "process",
            app.node.as_deref(),
            &workload_key(&workload),
            &env,
            limits.memory_bytes,
            limits.cpu_millis,
            app.replicas,
            app.stop_grace_ms,
            user.map(|u| u.uid),
            app.sandbox,
        ));
        // The node builds the sandbox's policy for its own folders: here it only says "on".
        let isolation = Isolation {
            user,
            sandbox: app.sandbox.then(wharf_runtime::SandboxPolicy::default),
        };
        let specs = (0..app.replicas)
            .map(|_| InstanceSpec {
                env: env.clone(),
                isolation: isolation.clone(),
                ..self.spec(app, &fingerprint, workload.clone())
            })
            .collect();
        Ok(Some(Desired {
            fingerprint,
            runtime: Placement::of(app),
            specs,
        }))
    }

    /// Containers: the release's image, one container per replica (Docker) or one service
    /// with all replicas (Swarm).
    fn desired_containers(&self, app: &App, eff: Effective) -> Result<Option<Desired>, String> {
        let image = match (&eff.image, app.release) {
            (Some(image), _) => image.clone(),
            // Nothing deployed yet: nothing to run (the outcome says how to deploy).
            (None, None) => return Ok(None),
            (None, Some(n)) => {
                return Err(format!(
                    "release {n} of {} has no image (it was built for the process runtime): deploy again",
                    app.name
                ));
            }
        };
        let runtime = self.runtimes.get(&Placement::of(app))?;
        let env = self.env(app, &eff)?;
        let workload = Workload::Image {
            image,
            command: eff.run.clone(),
        };
        let limits = limits(app);
        let fingerprint = fingerprint(&(
            app.runtime.as_str(),
            &workload_key(&workload),
            &env,
            limits.memory_bytes,
            limits.cpu_millis,
            app.replicas,
            app.port,
            app.read_only,
            &app.constraints,
            app.stop_grace_ms,
        ));
        let base = InstanceSpec {
            env,
            port: app.port,
            container: ContainerOptions {
                read_only: app.read_only,
                constraints: app.constraints.clone(),
            },
            ..self.spec(app, &fingerprint, workload)
        };
        let specs = if runtime.replicates() {
            vec![InstanceSpec {
                replicas: app.replicas,
                ..base
            }]
        } else {
            (0..app.replicas)
                .map(|_| InstanceSpec {
                    instance: instance_name(&app.name),
                    ..base.clone()
                })
                .collect()
        };
        Ok(Some(Desired {
            fingerprint,
            runtime: Placement::of(app),
            specs,
        }))
    }

    /// Where and how a one-off command (`wharf run`) of a process app runs: as its instances
    /// do (the active release's folder, the same env, user and sandbox), minus a port. `None`
    /// when the app has nothing deployed and no folder of its own.
    pub(crate) fn one_off(&self, app: &App) -> Result<Option<OneOff>, String> {
        if app.release.is_none() && app.workdir.is_none() {
            return Ok(None);
        }
        let eff = self.effective(app);
        let user = self.app_user(&app.name)?;
        if let Some(why) = self.users.refusal() {
            return Err(format!("{} cannot run commands: {why}", app.name));
        }
        let mut env = self.env(app, &eff)?;
        crate::deploy::add_tool_paths(&eff.workdir, &mut env);
        let volume = self.data.volume(&app.name).display().to_string();
        env.insert("WHARF_VOLUME".into(), volume.clone());
        env.insert("DATA_DIR".into(), volume);
        if user.is_some() && !env.contains_key("HOME") {
            // As for instances: the app's user has no home, its private tmp stands in.
            env.insert(
                "HOME".to_string(),
                self.data.tmp(&app.name).display().to_string(),
            );
        }
        let sandbox = crate::sandbox::run_policy(self.launcher(), &self.data, app, &eff.workdir);
        crate::sandbox::prepare(sandbox.as_ref(), self.data.tmp(&app.name), &mut env)
            .map_err(|e| format!("cannot prepare the sandbox's folders: {e}"))?;
        Ok(Some(OneOff {
            workdir: eff.workdir,
            env,
            isolation: Isolation { user, sandbox },
        }))
    }

    /// The env an app's instances get (secrets included: for masking, never for showing).
    pub(crate) fn app_env(&self, app: &App) -> Result<BTreeMap<String, String>, String> {
        self.env(app, &self.effective(app))
    }

    /// The manifest's env defaults with the app's own env laid over them.
    fn env(&self, app: &App, eff: &Effective) -> Result<BTreeMap<String, String>, String> {
        let mut env = eff.env_defaults.clone();
        env.extend(
            self.store
                .env(&app.name)
                .map_err(|e| format!("cannot read env: {e}"))?,
        );
        Ok(env)
    }

    /// What every instance of the app shares.
    fn spec(&self, app: &App, fingerprint: &str, workload: Workload) -> InstanceSpec {
        InstanceSpec {
            app: app.name.clone(),
            instance: instance_name(&app.name),
            release: app.release,
            fingerprint: fingerprint.to_string(),
            workload,
            env: BTreeMap::new(),
            port: None,
            replicas: 1,
            volume: self.data.volume(&app.name),
            log_dir: self.data.logs(&app.name),
            limits: limits(app),
            restart: RestartPolicy::default(),
            stop_grace: stop_grace(app),
            isolation: Isolation::default(),
            container: ContainerOptions::default(),
        }
    }
}

/// How a one-off command of an app runs (see [`Reconciler::one_off`]).
pub(crate) struct OneOff {
    pub(crate) workdir: std::path::PathBuf,
    /// Secrets included: given to the command only, never logged.
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) isolation: Isolation,
}

/// An app's command, folder and health path once its active release is taken into account.
struct Effective {
    run: Option<String>,
    /// The release's image (container runtimes).
    image: Option<String>,
    workdir: std::path::PathBuf,
    /// Set when the gateway serves files instead of a process.
    static_root: Option<std::path::PathBuf>,
    health_path: Option<String>,
    /// From the release's manifest; the app's own env is laid over them.
    env_defaults: BTreeMap<String, String>,
}

struct Desired {
    fingerprint: String,
    runtime: Placement,
    specs: Vec<InstanceSpec>,
}

fn stop_grace(app: &App) -> Duration {
    app.stop_grace_ms.map_or(STOP_GRACE, Duration::from_millis)
}

fn limits(app: &App) -> Limits {
    Limits {
        memory_bytes: app.memory_bytes,
        cpu_millis: app.cpu_millis,
    }
}

/// A name no earlier instance had, in this run of the server or a previous one (containers
/// outlive it): `<app>-<6 hex digits>`.
fn instance_name(app: &str) -> String {
    format!("{app}-{}", hex::encode(rand::random::<[u8; 3]>()))
}

fn workload_key(w: &Workload) -> String {
    match w {
        Workload::Process { command, workdir } => format!("{command}\0{}", workdir.display()),
        Workload::Image { image, command } => {
            format!("{image}\0{}", command.as_deref().unwrap_or(""))
        }
    }
}

/// A digest of everything whose change needs new instances. Stable across builds and
/// versions of wharf (SHA-256 of the JSON form), because containers keep it as a label and
/// the next server compares it to adopt them.
fn fingerprint(what: &impl serde::Serialize) -> String {
    let json = serde_json::to_vec(what).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&json)[..16])
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn health(path: Option<&str>) -> Option<HealthConfig> {
    path.map(|path| HealthConfig {
        path: path.to_string(),
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 1,
        fall: 2,
    })
}

/// The page of apps after `after` (from the first without).
fn cursor(after: Option<&str>) -> NameCursor<'_> {
    after.map_or(NameCursor::Start, NameCursor::After)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn outcome(app: Option<&App>, url: &str) -> String {
    match app {
        None => "app removed".into(),
        Some(a) => match (a.availability, a.kind, a.run.is_some()) {
            (Availability::Disabled, ..) => format!("{} is disabled: nothing runs", a.name),
            (Availability::NotServed, ..) => format!("{} runs but is not served", a.name),
            (_, AppKind::Process, _) if a.release.is_none() && a.runtime.runs_images() => format!(
                "{} has nothing to run yet: deploy code with a Dockerfile (`wharf deploy {}`) or an image (`wharf deploy {} --image REF`)",
                a.name, a.name, a.name
            ),
            (_, AppKind::Process, false) if a.release.is_none() => format!(
                "{} has nothing to run yet: deploy code with `wharf deploy {}`, or set a command with `wharf apps set {} --run CMD`",
                a.name, a.name, a.name
            ),
            _ => format!("{} is live at {url}", a.name),
        },
    }
}

/// A certificate's name (and folder) for a host: the host itself, `*` spelled `_wildcard`.
pub(crate) fn cert_name(host: &str) -> String {
    host.replace('*', "_wildcard")
}

pub(crate) fn host_of_cert(name: &str) -> String {
    name.replace("_wildcard", "*")
}
