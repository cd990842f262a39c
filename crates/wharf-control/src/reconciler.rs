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

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wharf_gateway::config::{
    BackendConfig, Balance, GatewayConfig, HealthConfig, HostPattern, HttpsPolicy, ProxyConfig,
    SiteConfig, StaticConfig,
};
use wharf_gateway::{DeployOptions, Gateway, GatewayError};
use wharf_runtime::{InstanceSpec, Isolation, Limits, RestartPolicy, Runtime};
use wharf_store::{App, AppKind, Availability, Store, StoreError, Tls};
use wharf_tls::{CertManager, CertSource, WantedCert};

use crate::oplog::OpLog;
use crate::paths::DataDir;
use crate::users::AppUsers;

const STOP_GRACE: Duration = Duration::from_secs(10);
/// Lines of an app's own output quoted when it ends before it is healthy.
const OUTPUT_LINES: usize = 20;

/// Listener settings the route table is built around.
#[derive(Clone, Debug)]
pub(crate) struct Routing {
    /// As configured (the gateway keys its listeners by these, port 0 included).
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) https: Vec<SocketAddr>,
    pub(crate) admin: Option<SocketAddr>,
    /// The port the first listener really got, for the URLs shown to users.
    pub(crate) public_port: u16,
    pub(crate) base_domain: String,
    /// How long new instances have to pass their health check.
    pub(crate) health_timeout: Duration,
    /// The sandbox launcher; `None`: apps and builds run unsandboxed.
    pub(crate) launcher: Option<std::path::PathBuf>,
}

#[derive(Clone, Debug)]
struct Instance {
    name: String,
    addr: SocketAddr,
}

#[derive(Clone, Debug, Default)]
struct AppRun {
    fingerprint: u64,
    instances: Vec<Instance>,
}

pub(crate) struct Reconciler {
    store: Arc<Store>,
    runtime: Arc<dyn Runtime>,
    gateway: Gateway,
    data: DataDir,
    routing: Routing,
    certs: Arc<CertManager>,
    /// Whether apps run as their own users.
    users: AppUsers,
    /// What runs, per app. The lock also makes reconciles one at a time, so two changes never
    /// interleave their starts and swaps.
    runs: tokio::sync::Mutex<HashMap<String, AppRun>>,
    /// Why an app's last change failed, until a change succeeds or nothing should run.
    failures: Mutex<HashMap<String, String>>,
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
        runtime: Arc<dyn Runtime>,
        gateway: Gateway,
        data: DataDir,
        routing: Routing,
        certs: Arc<CertManager>,
        users: AppUsers,
    ) -> Reconciler {
        Reconciler {
            store,
            runtime,
            gateway,
            data,
            routing,
            certs,
            users,
            runs: Default::default(),
            failures: Default::default(),
        }
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
        let mut runs = self.runs.lock().await;
        let result = self.reconcile_locked(&mut runs, name, force, op).await;
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
        let mut runs = self.runs.lock().await;
        self.reconcile_locked(&mut runs, name, false, op).await
    }

    async fn reconcile_locked(
        &self,
        runs: &mut HashMap<String, AppRun>,
        name: &str,
        force: bool,
        op: &OpLog,
    ) -> Result<String, String> {
        let app = match self.store.app(name) {
            Ok(a) => Some(a),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(format!("cannot read the app: {e}")),
        };
        let desired = match &app {
            Some(a) => self.desired(a)?,
            None => None,
        };
        let current = runs.get(name).cloned().unwrap_or_default();
        let wanted_count = desired.as_ref().map_or(0, |d| d.specs.len());
        let changed = force
            || desired.as_ref().map_or(0, |d| d.fingerprint) != current.fingerprint
            || wanted_count != current.instances.len();

        if !changed {
            self.route(runs, op)?;
            op.ok("route", "routes updated");
            return Ok(outcome(app.as_ref(), &self.url(name)));
        }

        let Some(desired) = desired.filter(|d| !d.specs.is_empty()) else {
            // Nothing should run: take the route away first, then stop.
            runs.remove(name);
            self.route(runs, op)?;
            op.ok("route", "routes updated");
            self.drain(name, &current.instances).await;
            self.stop_all(&current.instances, op).await;
            return Ok(outcome(app.as_ref(), &self.url(name)));
        };
        let app = app.expect("desired instances imply an app");

        // 1. Start the new instances.
        let mut started = Vec::new();
        for spec in desired.specs {
            let (instance, addr) = (spec.instance.clone(), SocketAddr::new(spec.host, spec.port));
            if let Err(e) = self.runtime.start(spec).await {
                let msg = format!("{name} could not start: {e}");
                op.failed("start", &msg);
                self.stop_all(&started, op).await;
                return Err(msg);
            }
            op.ok("start", format!("started {instance} on {addr}"));
            started.push(Instance {
                name: instance,
                addr,
            });
        }
        let addrs: Vec<SocketAddr> = started.iter().map(|i| i.addr).collect();

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
            Ok(()) if served => self
                .swap(runs, name, addrs)
                .await
                .map_err(NotReady::Unhealthy),
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
                    self.last_output(&started)
                ),
            };
            op.failed("health", &msg);
            self.stop_all(&started, op).await;
            if current.instances.is_empty() {
                runs.remove(name);
            } else {
                runs.insert(name.to_string(), current);
            }
            let _ = self.apply_routes(runs);
            return Err(msg);
        }
        op.ok(
            "health",
            format!("{} healthy", plural(started.len(), "instance")),
        );

        // 4. Record, route, and stop what ran before.
        runs.insert(
            name.to_string(),
            AppRun {
                fingerprint: desired.fingerprint,
                instances: started,
            },
        );
        self.route(runs, op)?;
        op.ok(
            "route",
            if served {
                "traffic switched to the new instances"
            } else {
                "not served: no route"
            },
        );
        if !served {
            // A served app's deploy drained them already (a second wait would only repeat a
            // timeout); an app taken out of routing has had no deploy.
            self.drain(name, &current.instances).await;
        }
        self.stop_all(&current.instances, op).await;
        Ok(outcome(Some(&app), &self.url(name)))
    }

    /// Lets the gateway check the new (healthy) instances once more and swap them in. The site
    /// must exist first; a new app gets an empty pool (503) for the moment this takes.
    async fn swap(
        &self,
        runs: &mut HashMap<String, AppRun>,
        name: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<(), String> {
        runs.entry(name.to_string()).or_default();
        self.apply_routes(runs)?;
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
        let ends =
            futures_util::future::join_all(instances.iter().map(|i| self.runtime.exited(&i.name)))
                .await;
        ends.into_iter()
            .flatten()
            .next()
            .unwrap_or_else(|| "stopped".to_string())
    }

    /// The app's last words, from its first instance, for an error message.
    fn last_output(&self, instances: &[Instance]) -> String {
        let lines = instances
            .first()
            .map(|i| self.runtime.recent_output(&i.name, OUTPUT_LINES))
            .unwrap_or_default();
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

    /// Every app, e.g. after the server started.
    pub(crate) async fn reconcile_all(&self, op: &OpLog) -> Result<String, String> {
        let apps = self.store.apps().map_err(|e| e.to_string())?;
        let mut failed = Vec::new();
        for app in &apps {
            if let Err(e) = self.reconcile(&app.name, false, op).await {
                failed.push(e);
            }
        }
        if failed.is_empty() {
            Ok(format!("{} ready", plural(apps.len(), "app")))
        } else {
            Err(failed.join("; "))
        }
    }

    /// Stops every instance (server shutdown).
    pub(crate) async fn stop_everything(&self) {
        let mut runs = self.runs.lock().await;
        for (_, run) in runs.drain() {
            for i in run.instances {
                let _ = self.runtime.stop(&i.name).await;
            }
        }
    }

    /// Waits until requests in flight on `instances` finish (up to the gateway's drain
    /// timeout), whichever route table sent them, so stopping them cuts nothing.
    async fn drain(&self, name: &str, instances: &[Instance]) {
        let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
        if !self.gateway.drain(name, &addrs).await {
            tracing::warn!(
                app = name,
                "drain timeout reached; stopping instances with requests in flight"
            );
        }
    }

    async fn stop_all(&self, instances: &[Instance], op: &OpLog) {
        for i in instances {
            match self.runtime.stop(&i.name).await {
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

    /// Public URL of an app, for API views.
    pub(crate) fn app_url(&self, app: &str) -> String {
        self.url(app)
    }

    /// `apply_routes`, recording a failure in the operation.
    fn route(&self, runs: &HashMap<String, AppRun>, op: &OpLog) -> Result<(), String> {
        self.apply_routes(runs)
            .inspect_err(|e| op.failed("route", e))
    }

    /// Builds the gateway configuration from the store and what runs, and swaps it in.
    fn apply_routes(&self, runs: &HashMap<String, AppRun>) -> Result<(), String> {
        let apps = self
            .store
            .apps()
            .map_err(|e| format!("cannot read apps: {e}"))?;
        let mut sites = Vec::new();
        for app in apps
            .iter()
            .filter(|a| a.availability == Availability::Enabled)
        {
            let eff = self.effective(app);
            let backend = match (&eff.static_root, runs.get(&app.name)) {
                (Some(root), _) => {
                    if !root.is_dir() {
                        // One app's missing folder must not block every other route.
                        tracing::warn!(app = %app.name, root = %root.display(), "static folder missing; not served");
                        continue;
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
                    upstreams: run.instances.iter().map(|i| i.addr).collect(),
                    balance: Balance::RoundRobin,
                    health: health(eff.health_path.as_deref()),
                    strip_prefix: false,
                }),
                (None, None) => continue,
            };
            let mut hosts = vec![HostPattern::Exact(self.default_host(&app.name))];
            hosts.extend(
                app.domains
                    .iter()
                    .filter_map(|d| HostPattern::parse(d).ok()),
            );
            sites.push(SiteConfig {
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
            });
        }
        // Certificates first, so a new domain's redirect only starts once its certificate is
        // installed (the gateway redirects only hosts a certificate covers).
        for (name, problem) in self.certs.apply(self.wanted_certs(&apps)) {
            tracing::warn!(certificate = %name, error = %problem, "certificate not installed");
        }
        let config = GatewayConfig {
            listen: self.routing.listen.clone(),
            https: self.routing.https.clone(),
            admin: self.routing.admin,
            sites,
            ..Default::default()
        };
        self.gateway
            .reload(config)
            .map_err(|e| format!("routes not updated: {e}"))
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
                    workdir: dir,
                    static_root,
                    health_path: r.health_path.clone().or_else(|| app.health_path.clone()),
                    // Written by the pipeline from a validated manifest; unreadable means none.
                    env_defaults: serde_json::from_str(&r.env_defaults).unwrap_or_default(),
                }
            }
            None => Effective {
                run: app.run.clone(),
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
        // Every app, even one with nothing to run: this is also where the folders of an
        // install from before per-app users become the apps' own.
        let user = self.app_user(&app.name)?;
        let eff = self.effective(app);
        let runnable = eff.static_root.is_none() && app.availability != Availability::Disabled;
        let Some(run) = eff.run.as_ref().filter(|_| runnable) else {
            return Ok(None);
        };
        if let Some(why) = self.users.refusal() {
            return Err(format!("{} cannot start: {why}", app.name));
        }
        let mut env = eff.env_defaults;
        env.extend(
            self.store
                .env(&app.name)
                .map_err(|e| format!("cannot read env: {e}"))?,
        );
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
        let limits = Limits {
            memory_bytes: app.memory_bytes,
            cpu_millis: app.cpu_millis,
        };
        // `sandbox::prepare` below points TMPDIR at the app's tmp for sandboxed instances.
        let sandboxed = app.sandbox && self.launcher().is_some();
        // The sandbox setting is part of what runs: switching it restarts the app.
        let fingerprint = fingerprint(run, &workdir, &env, &limits, app.replicas, sandboxed);
        let mut specs = Vec::new();
        for _ in 0..app.replicas {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            let sandbox =
                crate::sandbox::instance_policy(self.launcher(), &self.data, app, &workdir, port);
            crate::sandbox::prepare(sandbox.as_ref(), self.data.tmp(&app.name), &mut env)
                .map_err(|e| format!("cannot prepare the sandbox's folders: {e}"))?;
            specs.push(InstanceSpec {
                app: app.name.clone(),
                instance: format!("{}-{port}", app.name),
                command: run.clone(),
                workdir: workdir.clone(),
                env: env.clone(),
                host: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
                volume: self.data.volume(&app.name),
                log_dir: self.data.logs(&app.name),
                limits: limits.clone(),
                restart: RestartPolicy::default(),
                stop_grace: STOP_GRACE,
                isolation: Isolation { user, sandbox },
            });
        }
        Ok(Some(Desired { fingerprint, specs }))
    }
}

/// An app's command, folder and health path once its active release is taken into account.
struct Effective {
    run: Option<String>,
    workdir: std::path::PathBuf,
    /// Set when the gateway serves files instead of a process.
    static_root: Option<std::path::PathBuf>,
    health_path: Option<String>,
    /// From the release's manifest; the app's own env is laid over them.
    env_defaults: BTreeMap<String, String>,
}

struct Desired {
    fingerprint: u64,
    specs: Vec<InstanceSpec>,
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

fn fingerprint(
    run: &str,
    workdir: &std::path::Path,
    env: &BTreeMap<String, String>,
    limits: &Limits,
    replicas: u32,
    sandboxed: bool,
) -> u64 {
    let mut h = DefaultHasher::new();
    (
        run,
        workdir,
        env,
        limits.memory_bytes,
        limits.cpu_millis,
        replicas,
        sandboxed,
    )
        .hash(&mut h);
    // Zero means "nothing runs"; keep real fingerprints away from it.
    h.finish().max(1)
}

/// A port the OS considers free now. The instance binds it moments later; a clash shows up as
/// a failed health check and the old instances keep serving.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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
