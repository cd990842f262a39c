//! wharf's control plane: the REST API, the reconciler that turns desired state into running
//! instances and routes, and the operations log. [`Server`] wires it to a store, a runtime and
//! a gateway; the `wharf server` command is a thin wrapper around it.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod backups;
mod databases;
mod deploy;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod nodes;
mod oneoff;
mod oplog;
mod paths;
mod public_url;
mod reconciler;
mod runtimes;
mod sandbox;
mod traffic;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use wharf_gateway::Gateway;
use wharf_gateway::config::GatewayConfig;
use wharf_store::{ReleaseStatus, Store};

pub use backups::{BackupSettings, Clock};
pub use error::ControlError;
use oplog::OpLog;
use paths::DataDir;
pub use paths::{create_data_dir, server_id};
pub use public_url::PublicUrl;
use reconciler::{Reconciler, Routing};
pub use runtimes::{EngineSettings, Runtimes};
pub use users::drop_inherited_capabilities;

/// Everything `wharf server` needs to know.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// The REST API.
    pub api: SocketAddr,
    /// The gateway's Host-routed listeners.
    pub http: Vec<SocketAddr>,
    /// The gateway's HTTPS listeners (certificates by SNI).
    pub https: Vec<SocketAddr>,
    /// The domain whose certificate answers a client that names no host (no SNI).
    pub default_sni: Option<String>,
    /// ACME settings for domains with `--tls acme`.
    pub acme: Option<wharf_tls::AcmeSettings>,
    /// Retry spacing of failed certificate orders.
    pub renew: wharf_tls::RenewPolicy,
    /// The gateway's admin listener (`/metrics`, `/healthz`).
    pub admin: Option<SocketAddr>,
    /// Apps answer at `<app>.<base_domain>`.
    pub base_domain: String,
    /// How long new instances have to pass their health check before a change is given up.
    pub health_timeout: std::time::Duration,
    /// The sandbox launcher, i.e. the wharf binary (`wharf sandbox-exec`); `None` runs apps and
    /// builds unsandboxed. The process runtime must be given the same launcher.
    pub sandbox_launcher: Option<PathBuf>,
    /// The Docker engine to look for again in the background while the runtimes given to
    /// [`Server::start`] have none (it may start after wharf).
    pub engine: Option<EngineSettings>,
    /// Where agents on other machines connect (`None`: no link, apps run here only).
    pub link: Option<SocketAddr>,
    /// `HOST:PORT` agents reach the link at, printed in join commands (default: the link's
    /// address, or this machine's host name when it listens on every address).
    pub link_public: Option<String>,
    /// The backup repository, its off-site copy and the alerts.
    pub backups: BackupSettings,
    /// Where git hosts reach this server's webhooks (`None`: `http://wharf.<base_domain>` on
    /// the gateway's port).
    pub public_url: Option<PublicUrl>,
}

/// State shared by API handlers.
pub(crate) struct Control {
    pub(crate) store: Arc<Store>,
    pub(crate) reconciler: Arc<Reconciler>,
    pub(crate) runtimes: Runtimes,
    pub(crate) data: DataDir,
    pub(crate) started: Instant,
    pub(crate) deploys: deploy::Deploys,
    pub(crate) certs: Arc<wharf_tls::CertManager>,
    pub(crate) traffic: traffic::Traffic,
    pub(crate) databases: Arc<databases::Databases>,
    pub(crate) backups: Arc<backups::Backups>,
    /// Cancelled when the server begins to stop: what a request keeps running (a one-off
    /// command) ends then, so the API's graceful stop does not wait for it.
    pub(crate) stopping: CancellationToken,
}

/// A running control plane with its gateway and runtime.
pub struct Server {
    control: Arc<Control>,
    gateway: Gateway,
    api_addr: SocketAddr,
    stop_api: CancellationToken,
    stop_background: CancellationToken,
    api_task: tokio::task::JoinHandle<()>,
    new_token_file: Option<PathBuf>,
    link_addr: Option<SocketAddr>,
}

impl Server {
    /// Opens the store, starts the gateway and the API, then brings every app back up in the
    /// background (the API answers meanwhile).
    pub async fn start(config: ServerConfig, runtimes: Runtimes) -> Result<Server, ControlError> {
        let io = |source| ControlError::Io {
            context: format!(
                "cannot create the data folder {}",
                config.data_dir.display()
            ),
            source,
        };
        paths::create_data_dir(&config.data_dir).map_err(io)?;
        // Absolute, because apps run in other folders and get volume paths from it.
        let data = DataDir::new(std::fs::canonicalize(&config.data_dir).map_err(io)?);
        let app_users = users::AppUsers::detect(data.root());
        match app_users.note() {
            None => tracing::info!("apps run as their own users"),
            Some(why) => tracing::warn!("apps run as wharf's own user: {why}"),
        }
        let fixed = data
            .make_private(app_users.on())
            .map_err(|source| ControlError::Io {
                context: format!(
                    "cannot make the data folder {} private (owner only)",
                    data.root().display()
                ),
                source,
            })?;
        if !fixed.is_empty() {
            // Said once: the next start finds nothing to change.
            tracing::warn!(
                changed = %fixed.join(", "),
                "parts of the data folder were readable by other users; now private (0700 / 0711, files 0600)"
            );
        }
        if config.sandbox_launcher.is_some()
            && let Some(warning) = sandbox::data_folder_warning(&data)
        {
            tracing::warn!("the sandbox is on, {warning}");
        }
        let store = Arc::new(Store::open(&data.db())?);
        let interrupted =
            store.fail_interrupted_operations()? + store.fail_interrupted_releases()?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "operations left running by the previous server are marked failed"
            );
        }
        recover(&store, &data)?;
        let new_token_file = auth::ensure_admin_token(&store, &data)?;

        let gateway = Gateway::start(GatewayConfig {
            listen: config.http.clone(),
            https: config.https.clone(),
            default_sni: config.default_sni.clone(),
            admin: config.admin,
            ..Default::default()
        })?;
        let certs = wharf_tls::CertManager::new(
            gateway.certs(),
            data.certs(),
            config.acme.clone(),
            config.renew,
        );
        let public_port = gateway.listen_addrs().first().map_or(80, |a| a.port());
        let routing = Routing {
            public_port,
            hooks: config
                .public_url
                .clone()
                .unwrap_or_else(|| PublicUrl::default_for(&config.base_domain, public_port)),
            base_domain: config.base_domain.clone(),
            health_timeout: config.health_timeout,
            launcher: config.sandbox_launcher.clone(),
        };
        // The link, before anything runs: the reconciler places apps on its nodes.
        let link = match config.link {
            Some(addr) => {
                let authority =
                    wharf_link::Authority::load_or_create(&data.link()).map_err(|e| {
                        ControlError::Io {
                            context: "cannot load the link's certificate authority".into(),
                            source: std::io::Error::other(e.to_string()),
                        }
                    })?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ControlError::Io {
                        context: format!("cannot listen on {addr} for agents' links (--link)"),
                        source,
                    })?;
                let bound = listener.local_addr().map_err(|source| ControlError::Io {
                    context: "cannot read the link's address".into(),
                    source,
                })?;
                let public = config
                    .link_public
                    .clone()
                    .unwrap_or_else(|| nodes::default_public(bound));
                let hub = nodes::Hub::new(store.clone(), authority, public);
                runtimes.set_hub(hub.clone());
                Some((hub, listener, bound))
            }
            None => None,
        };
        let databases = Arc::new(databases::Databases::new(
            store.clone(),
            data.clone(),
            app_users.clone(),
            config.sandbox_launcher.clone(),
            runtimes
                .get(&runtimes::Placement::here(
                    wharf_store::RuntimeKind::Process,
                ))
                .map_err(|e| ControlError::Io {
                    context: "no process runtime for databases".into(),
                    source: std::io::Error::other(e),
                })?,
        ));
        let reconciler = Reconciler::new(
            store.clone(),
            runtimes.clone(),
            gateway.clone(),
            data.clone(),
            routing,
            certs.clone(),
            app_users,
        );
        let backups = Arc::new(
            backups::Backups::new(
                &config.backups,
                store.clone(),
                data.clone(),
                databases.clone(),
                reconciler.clone(),
            )
            .map_err(|e| ControlError::Io {
                context: "backups".into(),
                source: std::io::Error::other(e),
            })?,
        );
        gateway.register_metric(
            "backup_freshness",
            "Each backup schedule's freshness: 0 ok, 1 warn, 2 crit",
            backups.metrics().level.clone(),
        );
        gateway.register_metric(
            "backup_newest_verified_timestamp_seconds",
            "When each schedule's newest verified backup was taken",
            backups.metrics().newest_verified.clone(),
        );
        let traffic = traffic::Traffic::load(&data.traffic(), unix_now()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the traffic graphs start empty");
            traffic::Traffic::default()
        });
        let stop_background = CancellationToken::new();
        let control = Arc::new(Control {
            store,
            reconciler,
            runtimes,
            data,
            started: Instant::now(),
            deploys: Default::default(),
            certs: certs.clone(),
            traffic,
            databases,
            backups,
            stopping: stop_background.clone(),
        });
        control.databases.start_all().await;
        backups::spawn_scheduler(control.backups.clone(), stop_background.clone());
        certs.spawn(stop_background.clone());
        spawn_cert_log(&control);
        spawn_traffic_sampler(&control, gateway.clone(), stop_background.clone());

        let listener = tokio::net::TcpListener::bind(config.api)
            .await
            .map_err(|source| ControlError::Io {
                context: format!("cannot listen on {} for the API", config.api),
                source,
            })?;
        let api_addr = listener.local_addr().map_err(|source| ControlError::Io {
            context: "cannot read the API address".into(),
            source,
        })?;
        let stop_api = CancellationToken::new();
        // The dashboard calls the API like any client, on this same listener.
        let mut loopback = api_addr;
        if loopback.ip().is_unspecified() {
            loopback.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let app = api::router(control.clone())
            .merge(wharf_dashboard::router(format!("http://{loopback}")));
        if let Err(e) = control.reconciler.route_hooks(loopback) {
            tracing::warn!(error = %e, "webhooks are not reachable through the gateway");
        }
        let stop = stop_api.clone();
        let api_task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the API server stopped");
            }
        });

        let link_addr = link.as_ref().map(|(_, _, a)| *a);
        if let Some((hub, listener, bound)) = link {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            hub.on_arrival(tx);
            let c = control.clone();
            tokio::spawn(async move {
                while let Some(node) = rx.recv().await {
                    let c = c.clone();
                    tokio::spawn(async move {
                        let op = OpLog::begin(&c.store, None, "node", oplog::SYSTEM);
                        let result = c.reconciler.node_arrived(&node, &op).await;
                        op.finish(&result);
                    });
                }
            });
            hub.tunnels.start(&hub).await;
            tokio::spawn(hub.serve(listener, stop_background.clone()));
            tracing::info!(link = %bound, "agents' link listening");
        }

        if let Some(settings) = config.engine.clone()
            && !control.runtimes.has_engine()
        {
            spawn_engine_search(control.clone(), settings, stop_background.clone());
        }

        let boot = control.clone();
        tokio::spawn(async move {
            let op = OpLog::begin(&boot.store, None, "boot", oplog::SYSTEM);
            let result = boot.reconciler.reconcile_all(&op).await;
            op.finish(&result);
            match result {
                Ok(m) => tracing::info!("{m}"),
                Err(e) => tracing::error!(error = %e, "some apps did not start"),
            }
        });

        Ok(Server {
            control,
            gateway,
            api_addr,
            stop_api,
            stop_background,
            api_task,
            new_token_file,
            link_addr,
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Where agents connect, when the link is on.
    pub fn link_addr(&self) -> Option<SocketAddr> {
        self.link_addr
    }

    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.gateway.listen_addrs()
    }

    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.gateway.https_addrs()
    }

    /// Set when this start created the first admin token.
    pub fn new_token_file(&self) -> Option<&std::path::Path> {
        self.new_token_file.as_deref()
    }

    /// Stops the API, then the gateway (no new requests; open ones finish, up to the drain
    /// timeout), then every app instance, so no request in flight is cut by its app stopping.
    pub async fn shutdown(self) {
        self.stop_api.cancel();
        self.stop_background.cancel();
        save_traffic(&self.control);
        let _ = self.api_task.await;
        self.gateway.shutdown().await;
        self.control.reconciler.stop_everything().await;
        // A backup or restore in progress finishes first (up to a minute): stopping its
        // database under it would fail it for no reason.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            self.control.backups.quiesce(),
        )
        .await;
        self.control.databases.stop_all().await;
    }
}

/// Puts back what a killed server left half done: a release switch that did not finish returns
/// to the previous release (so one of them always serves); builds still running, folders of
/// releases that are not ready and partial backups go.
fn recover(store: &Arc<Store>, data: &DataDir) -> Result<(), ControlError> {
    for switch in store.interrupted_switches()? {
        let app = &switch.app;
        let op = OpLog::begin(store, Some(app), "recover", oplog::SYSTEM);
        // The env first: the switch stays open until it is undone below, so a server killed
        // in between does all of this again.
        let restored = switch
            .config
            .as_deref()
            .map(|config| deploy::restore_config(store, app, config));
        let mut message = match (switch.going_live, switch.previous) {
            (Some(n), previous) if Some(n) != previous => {
                // A rollback's target was a good release before: it stays one to go back to.
                let (status, note) = match restored {
                    Some(_) => (ReleaseStatus::Ready, None),
                    None => (
                        ReleaseStatus::Failed,
                        Some("interrupted: the server stopped while this release was going live"),
                    ),
                };
                store.undo_switch(app, n, previous, status, note)?;
                match previous {
                    Some(p) => format!(
                        "release {n} was going live when the server stopped; release {p} serves again"
                    ),
                    None => format!(
                        "release {n} was going live when the server stopped; it is marked failed"
                    ),
                }
            }
            _ => {
                store.finish_switch(app)?;
                "a rollback was under way when the server stopped; it was undone".into()
            }
        };
        match restored {
            Some(Ok(_)) => message.push_str(", with the env and settings it had before"),
            Some(Err(e)) => {
                tracing::error!(%app, error = %e, "could not restore the config saved before a rollback");
                message.push_str(&format!(
                    "; its previous env and settings could not be restored: {e}"
                ));
            }
            None => {}
        }
        tracing::warn!(%app, "{message}");
        op.ok("switch", &message);
        op.finish(&Ok(message));
    }
    deploy::leftovers::clear(store, data)?;
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Samples the traffic of the sites that served something, every few seconds, until `stop`;
/// writes the history to the data folder every minute.
fn spawn_traffic_sampler(control: &Arc<Control>, gateway: Gateway, stop: CancellationToken) {
    const SAVE_EVERY: u32 = 12;
    let control = control.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(traffic::INTERVAL);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            control.traffic.sample(unix_now(), gateway.active_sites());
            ticks += 1;
            if ticks.is_multiple_of(SAVE_EVERY) {
                let c = control.clone();
                let _ = tokio::task::spawn_blocking(move || save_traffic(&c)).await;
            }
        }
    });
}

/// Writes the traffic history (a failure costs only the graphs after a restart).
fn save_traffic(control: &Control) {
    if let Err(e) = control.traffic.save(&control.data.traffic()) {
        tracing::warn!(error = %e, "could not save the traffic history");
    }
}

/// Every certificate attempt becomes an operation of the app owning the host.
fn spawn_cert_log(control: &Arc<Control>) {
    let mut events = control.certs.subscribe();
    let control = control.clone();
    tokio::spawn(async move {
        loop {
            let (name, attempt) = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            let host = reconciler::host_of_cert(&name);
            let app = control.store.domain_owner(&host).ok().flatten();
            let op = OpLog::begin(&control.store, app.as_deref(), "certificate", oplog::SYSTEM);
            let message = format!("{host}: {}", attempt.message);
            if attempt.ok {
                op.ok("certificate", &message);
                op.finish(&Ok(message));
            } else {
                op.failed("certificate", &message);
                op.finish(&Err(message));
            }
        }
    });
}

#[cfg(test)]
mod tests;

/// Looks for the Docker engine every few seconds until it answers, then brings the container
/// apps up (after the boot reconcile, which found their runtime missing).
fn spawn_engine_search(control: Arc<Control>, settings: EngineSettings, stop: CancellationToken) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
            if control.runtimes.connect(&settings).await {
                break;
            }
        }
        let op = OpLog::begin(&control.store, None, "containers", oplog::SYSTEM);
        op.ok("engine", "the Docker engine answers");
        let result = control.reconciler.containers_arrived(&op).await;
        op.finish(&result);
        match result {
            Ok(m) => tracing::info!("{m}"),
            Err(e) => tracing::error!(error = %e, "some container apps did not start"),
        }
    });
}
