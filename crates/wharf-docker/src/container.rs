//! The Docker runtime: each instance is one container, labelled, on the apps' network, with the
//! app's volume bind-mounted at `/data`; the gateway reaches it at its address on that network
//! (no published ports, so no proxy process per container).
//!
//! The engine supervises the containers (restart policy), so they keep running while the
//! server is down; a new server [adopts](Runtime::adopt) them. wharf follows each container's
//! events (to learn of exits and restarts) and log (for live lines and the last output).
//!
//! **Invariant**: only containers wharf created are listed, stopped or adopted: those with a
//! [`labels::INSTANCE`] label naming the container itself ([`is_ours`]). The app label alone
//! is not enough: a container someone runs from a wharf image inherits the image's labels.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
    ContainerStatsResponse, EndpointSettings, HostConfig, Mount, MountType, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ListContainersOptions, RemoveContainerOptions,
    StatsOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use wharf_runtime::{
    BoxFuture, CONTAINER_VOLUME, DEFAULT_CONTAINER_PORT, InstanceSpec, InstanceState,
    InstanceStatus, Result, Runtime, RuntimeError, Workload,
};

use crate::cgroup;
use crate::logs::{self, Recent};
use crate::{Engine, labels};

/// How long `start` waits for an address when the container ended at once (the engine restarts
/// it, and it gets an address again).
const ADDRESS_PATIENCE: Duration = Duration::from_secs(3);
/// The engine's stats answer within its collector's tick (a second); a list never waits longer
/// than this for one container's usage.
const STATS_PATIENCE: Duration = Duration::from_secs(2);
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

pub struct DockerRuntime {
    pub(crate) engine: Arc<Engine>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    instances: Mutex<HashMap<String, Arc<Tracked>>>,
    /// Each app's live log lines.
    live: Mutex<HashMap<String, broadcast::Sender<String>>>,
}

impl Shared {
    fn live(&self, app: &str) -> broadcast::Sender<String> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.entry(app.to_string())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }

    fn tracked(&self, instance: &str) -> Option<Arc<Tracked>> {
        let map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        map.get(instance).cloned()
    }

    fn forget(&self, t: &Arc<Tracked>) {
        t.cancel.cancel();
        let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&t.instance).is_some_and(|m| Arc::ptr_eq(m, t)) {
            map.remove(&t.instance);
        }
    }
}

/// A container this runtime follows.
struct Tracked {
    instance: String,
    id: String,
    port: u16,
    /// Ends its followers.
    cancel: CancellationToken,
    /// Set by `stop`, so the stop's own exit is not reported as a crash.
    stopping: AtomicBool,
    /// How it last ended since wharf started following it; `None` until then.
    exited: watch::Sender<Option<String>>,
    /// Starts seen (the engine's restarts included): the log follower re-attaches on each.
    starts: watch::Sender<u64>,
    /// Where it is reached; an engine restart may give it a new address.
    addrs: watch::Sender<Vec<SocketAddr>>,
    output: Recent,
}

impl DockerRuntime {
    pub fn new(engine: Arc<Engine>) -> DockerRuntime {
        DockerRuntime {
            engine,
            shared: Arc::default(),
        }
    }

    /// The engine it runs containers on (images are looked up and loaded there).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn docker(&self) -> &bollard::Docker {
        &self.engine.docker
    }

    async fn start_instance(&self, spec: InstanceSpec) -> Result<Vec<SocketAddr>> {
        let Workload::Image { image, command } = &spec.workload else {
            return Err(RuntimeError::Engine(format!(
                "the docker runtime runs images, and {} has a command to run as a process: \
                 give it a Dockerfile or an image, or run it with the process runtime",
                spec.app
            )));
        };
        if self.shared.tracked(&spec.instance).is_some() {
            return Err(RuntimeError::AlreadyRunning(spec.instance.clone()));
        }
        let network = self
            .engine
            .ensure_network()
            .await
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        // Absolute, as the engine takes a bind mount's source.
        let volume = std::fs::create_dir_all(&spec.volume)
            .and_then(|()| std::fs::canonicalize(&spec.volume))
            .map_err(|source| RuntimeError::Io {
                context: format!("cannot create the volume {}", spec.volume.display()),
                source,
            })?;
        let port = spec.port.unwrap_or(DEFAULT_CONTAINER_PORT);
        let mut body = create_body(&spec, image, command.as_deref(), port, &volume, &network);
        if let Some(l) = body.labels.as_mut() {
            self.engine.own(l);
        }
        let created = self
            .docker()
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(spec.instance.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| match e {
                BollardError::DockerResponseServerError {
                    status_code: 409, ..
                } => RuntimeError::AlreadyRunning(spec.instance.clone()),
                e => engine_error(&format!("cannot create the container {}", spec.instance), e),
            })?;
        let inspect = match self.inspect(&created.id).await {
            Ok(i) => i,
            Err(e) => {
                // Not yet tracked: left, nothing would ever remove it.
                let _ = self
                    .docker()
                    .remove_container(&created.id, Some(force_remove()))
                    .await;
                return Err(e);
            }
        };
        let since = inspect
            .created
            .as_deref()
            .and_then(logs::nanos)
            .unwrap_or(0);
        // Followed before it starts, so neither its first lines nor a crash at once are missed.
        let tracked = self.track(&spec.app, &spec.instance, &created.id, port, since, None);
        if let Err(e) = self.docker().start_container(&created.id, None).await {
            self.shared.forget(&tracked);
            let _ = self
                .docker()
                .remove_container(&created.id, Some(force_remove()))
                .await;
            return Err(engine_error(
                &format!("cannot start the container {}", spec.instance),
                e,
            ));
        }
        if let Some(addr) = self
            .inspect(&created.id)
            .await
            .ok()
            .and_then(|i| address(&i, &self.engine.network, port))
        {
            tracked.addrs.send_replace(vec![addr]);
            return Ok(vec![addr]);
        }
        // Ended at once: the engine restarts it, with an address again. If it keeps failing,
        // `exited` says how.
        let mut rx = tracked.addrs.subscribe();
        let got = tokio::time::timeout(ADDRESS_PATIENCE, rx.wait_for(|a| !a.is_empty())).await;
        Ok(match got {
            Ok(Ok(addrs)) => addrs.clone(),
            _ => Vec::new(),
        })
    }

    /// Follows a container: its events (exits, restarts, removal) and its log. `since`: engine
    /// time from which events count. `tail`: for a container already running (adopted), how
    /// many past lines to remember as its recent output (not sent to live followers again).
    fn track(
        &self,
        app: &str,
        instance: &str,
        id: &str,
        port: u16,
        since: i128,
        tail: Option<usize>,
    ) -> Arc<Tracked> {
        let tracked = Arc::new(Tracked {
            instance: instance.to_string(),
            id: id.to_string(),
            port,
            cancel: CancellationToken::new(),
            stopping: AtomicBool::new(false),
            exited: watch::channel(None).0,
            starts: watch::channel(0).0,
            addrs: watch::channel(Vec::new()).0,
            output: Recent::default(),
        });
        self.shared
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(instance.to_string(), tracked.clone());
        let live = self.shared.live(app);
        tokio::spawn(follow_events(
            self.engine.clone(),
            self.shared.clone(),
            tracked.clone(),
            since,
        ));
        tokio::spawn(follow_log(
            self.engine.docker.clone(),
            tracked.clone(),
            live,
            tail,
        ));
        tracked
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInspectResponse> {
        self.docker()
            .inspect_container(id, None)
            .await
            .map_err(|e| engine_error(&format!("cannot inspect the container {id}"), e))
    }

    async fn stop_instance(&self, instance: &str) -> Result<()> {
        let tracked = self.shared.tracked(instance);
        let id = match &tracked {
            Some(t) => t.id.clone(),
            // Not followed (e.g. left by an earlier server and not adopted): still ours if
            // labelled.
            None => match self.docker().inspect_container(instance, None).await {
                Ok(i) if is_ours(&labels_of(&i), i.name.as_deref()) => i.id.unwrap_or_default(),
                Ok(_)
                | Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Err(RuntimeError::UnknownInstance(instance.to_string())),
                Err(e) => return Err(engine_error("cannot inspect the container", e)),
            },
        };
        if let Some(t) = &tracked {
            t.stopping.store(true, Ordering::SeqCst);
        }
        // No time given: the engine uses the container's own stop timeout (the stop grace).
        match self
            .docker()
            .stop_container(&id, None::<StopContainerOptions>)
            .await
        {
            // 304: already stopped; 404: already gone.
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => {}
            Err(e) => {
                if let Some(t) = &tracked {
                    t.stopping.store(false, Ordering::SeqCst);
                }
                return Err(engine_error(&format!("cannot stop {instance}"), e));
            }
        }
        if let Some(t) = &tracked {
            self.shared.forget(t);
        }
        match self
            .docker()
            .remove_container(&id, Some(force_remove()))
            .await
        {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(engine_error(&format!("cannot remove {instance}"), e)),
        }
    }

    /// wharf's containers (by label), optionally only those in some states.
    async fn labelled(&self, states: &[&str]) -> Result<Vec<String>> {
        let mut filters = HashMap::from([(
            "label".to_string(),
            vec![labels::APP.to_string(), labels::INSTANCE.to_string()],
        )]);
        if let (Some(owner), Some(l)) = (self.engine.owner_filter(), filters.get_mut("label")) {
            l.push(owner);
        }
        if !states.is_empty() {
            filters.insert(
                "status".to_string(),
                states.iter().map(|s| s.to_string()).collect(),
            );
        }
        let list = self
            .docker()
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| engine_error("cannot list containers", e))?;
        Ok(list
            .into_iter()
            .filter(|c| {
                let name = c.names.as_ref().and_then(|n| n.first()).map(String::as_str);
                is_ours(&c.labels.clone().unwrap_or_default(), name)
            })
            .filter_map(|c| c.id)
            .collect())
    }

    /// The status of each container, with usage, read concurrently.
    async fn statuses(&self, ids: &[String]) -> Vec<InstanceStatus> {
        // Its cgroup files are only this machine's if the engine is.
        let local = self.engine.host.starts_with("unix://");
        let reads = ids.iter().map(|id| async move {
            let inspect = self.docker().inspect_container(id, None).await.ok()?;
            let running = inspect
                .state
                .as_ref()
                .and_then(|s| s.running)
                .unwrap_or(false);
            let mut status = self.status(&inspect);
            if !running {
                return Some(status);
            }
            let here = local
                .then(|| cgroup::usage(Path::new(CGROUP_ROOT), id))
                .flatten();
            let (rss, cpu) = match here {
                Some((rss, cpu)) => (Some(rss), Some(cpu)),
                None => {
                    let options = StatsOptions {
                        stream: false,
                        one_shot: true,
                    };
                    let mut stats = self.docker().stats(id, Some(options));
                    match tokio::time::timeout(STATS_PATIENCE, stats.next()).await {
                        Ok(Some(Ok(s))) => usage(&s),
                        _ => (None, None),
                    }
                }
            };
            status.rss_bytes = rss;
            status.cpu_seconds = cpu;
            Some(status)
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    fn status(&self, inspect: &ContainerInspectResponse) -> InstanceStatus {
        let labels = labels_of(inspect);
        let app = labels.get(labels::APP).cloned().unwrap_or_default();
        let instance = labels.get(labels::INSTANCE).cloned().unwrap_or_else(|| {
            let name = inspect.name.as_deref().unwrap_or_default();
            name.trim_start_matches('/').to_string()
        });
        let state = inspect.state.clone().unwrap_or_default();
        let exit_code = state.exit_code.unwrap_or(0);
        let mapped = match state.status {
            Some(ContainerStateStatusEnum::RUNNING) if state.restarting != Some(true) => {
                InstanceState::Running
            }
            Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::RESTARTING) => {
                InstanceState::Backoff
            }
            // Ended and not restarted: with `unless-stopped` only a stop does that, so a
            // failure status means it was stopped while failing.
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
                if exit_code != 0 =>
            {
                InstanceState::Failed
            }
            _ => InstanceState::Stopped,
        };
        let port = labels
            .get(labels::PORT)
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_CONTAINER_PORT);
        let tracked = self.shared.tracked(&instance);
        let mut s = InstanceStatus::new(&app, &instance, mapped);
        s.addr = address(inspect, &self.engine.network, port);
        s.pid = state
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0);
        s.restarts = inspect
            .restart_count
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0);
        s.started_at = state.started_at.as_deref().and_then(logs::system_time);
        s.last_exit = tracked
            .as_ref()
            .and_then(|t| t.exited.borrow().clone())
            .or_else(|| {
                (mapped != InstanceState::Running
                    && state
                        .finished_at
                        .as_deref()
                        .and_then(logs::system_time)
                        .is_some())
                .then(|| describe(exit_code))
            });
        s.fingerprint = labels.get(labels::FINGERPRINT).cloned().unwrap_or_default();
        s.release = labels.get(labels::RELEASE).and_then(|r| r.parse().ok());
        s.id = inspect.id.clone();
        s.image = inspect.config.as_ref().and_then(|c| c.image.clone());
        s
    }

    async fn adopt_running(&self) -> Result<Vec<InstanceStatus>> {
        let ids = self.labelled(&["running", "restarting"]).await?;
        let mut adopted = Vec::new();
        for id in &ids {
            let Ok(inspect) = self.docker().inspect_container(id, None).await else {
                continue;
            };
            let labels = labels_of(&inspect);
            let (Some(app), Some(instance)) =
                (labels.get(labels::APP), labels.get(labels::INSTANCE))
            else {
                continue;
            };
            if self.shared.tracked(instance).is_none() {
                let port = labels
                    .get(labels::PORT)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(DEFAULT_CONTAINER_PORT);
                // Exits count from its last start: `exited` then tells of this run only.
                let since = inspect
                    .state
                    .as_ref()
                    .and_then(|s| s.started_at.as_deref())
                    .and_then(logs::nanos)
                    .unwrap_or(0);
                let t = self.track(app, instance, id, port, since, Some(logs::KEEP_OUTPUT));
                if let Some(addr) = address(&inspect, &self.engine.network, port) {
                    t.addrs.send_replace(vec![addr]);
                }
            }
            adopted.push(id.clone());
        }
        Ok(self.statuses(&adopted).await)
    }
}

impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Vec<SocketAddr>>> {
        Box::pin(self.start_instance(spec))
    }

    fn stop<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.stop_instance(instance))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>> {
        Box::pin(async move {
            let ids = self.labelled(&[]).await?;
            Ok(self.statuses(&ids).await)
        })
    }

    fn adopt(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>> {
        Box::pin(self.adopt_running())
    }

    fn outlives_server(&self) -> bool {
        true
    }

    fn replicates(&self) -> bool {
        false
    }

    fn addresses(&self, instance: &str) -> Option<watch::Receiver<Vec<SocketAddr>>> {
        self.shared.tracked(instance).map(|t| t.addrs.subscribe())
    }

    fn logs<'a>(&'a self, app: &'a str, lines: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            logs::past(self.docker(), self.engine.owner_filter(), app, lines)
                .await
                .map_err(RuntimeError::Engine)
        })
    }

    fn subscribe_logs(&self, app: &str) -> broadcast::Receiver<String> {
        self.shared.live(app).subscribe()
    }

    fn exited<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Option<String>> {
        let found = self.shared.tracked(instance).map(|t| t.exited.subscribe());
        Box::pin(async move {
            let mut rx = found?;
            let how: Option<String> = rx.wait_for(Option::is_some).await.ok()?.clone();
            how
        })
    }

    fn recent_output<'a>(&'a self, instance: &'a str, lines: usize) -> BoxFuture<'a, Vec<String>> {
        let tracked = self.shared.tracked(instance);
        Box::pin(async move {
            let Some(t) = tracked else {
                return Vec::new();
            };
            // The engine's log has every line once the container is reported ended (its
            // output is drained before the exit event), which the follower may not have read
            // yet; the follower's copy serves when the engine's log cannot be read.
            let n = lines.min(logs::KEEP_OUTPUT);
            let options = logs::options(false, 0, Some(n));
            let mut stream = self.docker().logs(&t.id, Some(options));
            let mut out = Vec::new();
            while let Some(frame) = stream.next().await {
                let Ok(frame) = frame else {
                    return t.output.last(lines);
                };
                out.extend(
                    logs::parse(frame, 0)
                        .into_iter()
                        .map(|l| logs::clip(&l.text)),
                );
            }
            let skip = out.len().saturating_sub(lines);
            out.split_off(skip)
        })
    }
}

/// The container's configuration from the spec.
fn create_body(
    spec: &InstanceSpec,
    image: &str,
    command: Option<&str>,
    port: u16,
    volume: &Path,
    network_id: &str,
) -> ContainerCreateBody {
    let mut env: Vec<String> = spec
        .env
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "PORT" | "HOST" | "WHARF_VOLUME" | "DATA_DIR"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend([
        format!("PORT={port}"),
        "HOST=0.0.0.0".to_string(),
        format!("WHARF_VOLUME={CONTAINER_VOLUME}"),
        format!("DATA_DIR={CONTAINER_VOLUME}"),
    ]);
    let mut labels = HashMap::from([
        (labels::APP.to_string(), spec.app.clone()),
        (labels::INSTANCE.to_string(), spec.instance.clone()),
        (labels::FINGERPRINT.to_string(), spec.fingerprint.clone()),
        (labels::PORT.to_string(), port.to_string()),
    ]);
    if let Some(r) = spec.release {
        labels.insert(labels::RELEASE.to_string(), r.to_string());
    }
    let memory = spec
        .limits
        .memory_bytes
        .map(|m| i64::try_from(m).unwrap_or(i64::MAX));
    let host_config = HostConfig {
        mounts: Some(vec![Mount {
            typ: Some(MountType::BIND),
            source: Some(volume.to_string_lossy().into_owned()),
            target: Some(CONTAINER_VOLUME.to_string()),
            ..Default::default()
        }]),
        memory,
        // No swap beyond the limit: the limit is what the app gets.
        memory_swap: memory,
        nano_cpus: spec.limits.cpu_millis.map(|m| i64::from(m) * 1_000_000),
        readonly_rootfs: Some(spec.container.read_only),
        tmpfs: spec.container.read_only.then(|| {
            HashMap::from([("/tmp".to_string(), "rw,nosuid,nodev,mode=1777".to_string())])
        }),
        // The engine restarts a crashed container itself, with its own backoff (doubling from
        // 100 ms up to a minute), so apps keep running while wharf is down. `unless-stopped`
        // rather than `on-failure:N`: a web app that exits with status 0 is down too, and
        // `unless-stopped` containers also come back after the engine or the machine restarts;
        // wharf sees the restarts (RestartCount) and its health checks judge the app.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        // A small init as PID 1 forwards SIGTERM (`sh -c` as PID 1 would ignore it) and reaps.
        init: Some(true),
        // No set-uid program (sudo, su) gains privileges the container did not start with.
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        // By id: while two networks share the name (engines before API 1.44), a name is
        // ambiguous and the engine refuses to start the container. The engine still files the
        // endpoint under the network's name, where `address` looks.
        network_mode: Some(network_id.to_string()),
        ..Default::default()
    };
    let networking_config = NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network_id.to_string(),
            EndpointSettings {
                // Other apps reach it as http://<app>:<port>/.
                aliases: Some(vec![spec.app.clone()]),
                // Without it the engine resolves the network by name again at each start.
                network_id: Some(network_id.to_string()),
                ..Default::default()
            },
        )])),
    };
    ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(env),
        labels: Some(labels),
        // The command replaces the image's entrypoint and command alike.
        entrypoint: command.map(|c| vec!["/bin/sh".to_string(), "-c".to_string(), c.to_string()]),
        stop_timeout: Some(
            i64::try_from(spec.stop_grace.as_secs_f64().ceil() as u64).unwrap_or(i64::MAX),
        ),
        host_config: Some(host_config),
        networking_config: Some(networking_config),
        ..Default::default()
    }
}

/// Follows a container's events from `since` (engine time): exits, (re)starts and removal.
/// Reconnects if the engine's stream breaks (e.g. the engine restarted).
async fn follow_events(engine: Arc<Engine>, shared: Arc<Shared>, t: Arc<Tracked>, since: i128) {
    let mut since = since;
    loop {
        let filters = HashMap::from([
            ("container".to_string(), vec![t.id.clone()]),
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                vec!["start".into(), "die".into(), "destroy".into()],
            ),
        ]);
        let mut stream = engine.docker.events(Some(EventsOptions {
            since: Some(logs::since_arg(since)),
            until: None,
            filters: Some(filters),
        }));
        loop {
            let event = tokio::select! {
                _ = t.cancel.cancelled() => return,
                e = stream.next() => e,
            };
            let Some(Ok(event)) = event else { break };
            if let Some(n) = event.time_nano {
                since = i128::from(n) + 1;
            }
            let attrs = event.actor.and_then(|a| a.attributes).unwrap_or_default();
            match event.action.as_deref() {
                Some("start") => {
                    let inspect = engine.docker.inspect_container(&t.id, None).await;
                    if let Some(addr) = inspect
                        .ok()
                        .and_then(|i| address(&i, &engine.network, t.port))
                    {
                        t.addrs.send_replace(vec![addr]);
                    }
                    t.starts.send_modify(|n| *n += 1);
                }
                Some("die") if !t.stopping.load(Ordering::SeqCst) => {
                    let code = attrs
                        .get("exitCode")
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(-1);
                    t.addrs.send_replace(Vec::new());
                    t.exited.send_replace(Some(describe(code)));
                }
                Some("destroy") => {
                    shared.forget(&t);
                    return;
                }
                _ => {}
            }
        }
        // The stream broke: try again shortly, from the last event seen.
        tokio::select! {
            _ = t.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Follows a container's log across its restarts: each line goes to the app's live followers
/// and the instance's recent output. With `tail`, the container already ran: its last lines
/// only fill the recent output.
async fn follow_log(
    docker: bollard::Docker,
    t: Arc<Tracked>,
    live: broadcast::Sender<String>,
    tail: Option<usize>,
) {
    // The engine stamp of the last line handled: re-attaching skips what was seen.
    let mut last: i128 = 0;
    if let Some(n) = tail {
        let mut stream = docker.logs(&t.id, Some(logs::options(false, 0, Some(n))));
        while let Some(Ok(frame)) = stream.next().await {
            for line in logs::parse(frame, last) {
                last = line.at;
                t.output.push(&line.text);
            }
        }
    }
    let mut starts = t.starts.subscribe();
    loop {
        starts.mark_unchanged();
        let since = i64::try_from(last.div_euclid(1_000_000_000)).unwrap_or(0);
        let mut stream = docker.logs(&t.id, Some(logs::options(true, since, None)));
        loop {
            let frame = tokio::select! {
                _ = t.cancel.cancelled() => return,
                f = stream.next() => f,
            };
            let Some(Ok(frame)) = frame else { break };
            for line in logs::parse(frame, last) {
                // The engine's `since` is in whole seconds: lines already handled come again.
                if line.at <= last && last != 0 {
                    continue;
                }
                last = line.at;
                t.output.push(&line.text);
                let _ = live.send(format!("{}\n", line.format(&t.instance)));
            }
        }
        // The log ends when the container stops; the next start (an engine restart) resumes.
        tokio::select! {
            _ = t.cancel.cancelled() => return,
            changed = starts.changed() => if changed.is_err() { return },
        }
    }
}

/// Where the gateway reaches it: its address on the apps' network and the app's port.
fn address(inspect: &ContainerInspectResponse, network: &str, port: u16) -> Option<SocketAddr> {
    let ip = inspect
        .network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .get(network)?
        .ip_address
        .as_deref()?
        .parse::<IpAddr>()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Whether wharf created this container: its instance label names the container itself (the
/// engine's name has a leading `/`), and it is no Swarm task (those are the Swarm runtime's).
pub(crate) fn is_ours(labels: &HashMap<String, String>, name: Option<&str>) -> bool {
    let named = name.map(|n| n.trim_start_matches('/'));
    labels.contains_key(labels::APP)
        && labels.get(labels::INSTANCE).map(String::as_str) == named
        && named.is_some()
        && !labels.contains_key("com.docker.swarm.task.id")
}

fn labels_of(inspect: &ContainerInspectResponse) -> HashMap<String, String> {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

/// Memory in use without the page cache (as `docker stats` shows it), and CPU time.
fn usage(stats: &ContainerStatsResponse) -> (Option<u64>, Option<f64>) {
    let rss = stats.memory_stats.as_ref().and_then(|m| {
        let usage = m.usage?;
        let inactive = m.stats.as_ref().and_then(|s| {
            // cgroup v1 names it total_inactive_file; v2 inactive_file.
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
                .copied()
        });
        Some(usage.saturating_sub(inactive.filter(|i| *i < usage).unwrap_or(0)))
    });
    let cpu = stats
        .cpu_stats
        .as_ref()
        .and_then(|c| c.cpu_usage.as_ref())
        .and_then(|u| u.total_usage)
        .map(|ns| ns as f64 / 1e9);
    (rss, cpu)
}

fn describe(code: i64) -> String {
    format!("exited with status {code}")
}

fn force_remove() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        ..Default::default()
    }
}

fn engine_error(context: &str, e: BollardError) -> RuntimeError {
    let why = match e {
        BollardError::DockerResponseServerError { message, .. } => message,
        e => e.to_string(),
    };
    RuntimeError::Engine(format!("{context}: {}", why.trim()))
}
