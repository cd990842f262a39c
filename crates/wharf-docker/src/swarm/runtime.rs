//! [`SwarmRuntime`]: one Swarm service per instance, running all of the app's replicas. Tasks
//! publish the app port in host mode on a node port the engine picks, and the gateway routes
//! to `<node address>:<that port>` of each serving task, as the service's watcher reports them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bollard::errors::Error as BollardError;
use bollard::models::{NetworkCreateRequest, Service, Task, TaskState};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};
use tokio::sync::{broadcast, watch};
use wharf_runtime::{
    BoxFuture, InstanceSpec, InstanceState, InstanceStatus, Result, Runtime, RuntimeError,
};

use super::spec::{self, SWARM_NETWORK};
use super::task::{self, Nodes};
use super::watch::Watched;
use super::{logs, watch as watcher};
use crate::{DockerError, Engine, labels};

/// How long `start` waits for the tasks to run (image pulls included) before giving up.
const START_PATIENCE: Duration = Duration::from_secs(300);
/// How long a service's past output may take to read (`docker service logs` can hang).
const LOGS_PATIENCE: Duration = Duration::from_secs(5);
/// Beyond the stop grace period, how long `stop` waits for the tasks to go.
const STOP_SLACK: Duration = Duration::from_secs(30);

pub struct SwarmRuntime {
    pub(crate) engine: Arc<Engine>,
    /// Watched services, by instance (= service name).
    watched: Arc<Mutex<HashMap<String, Watched>>>,
    /// Live log feeds, by app.
    live: Mutex<HashMap<String, broadcast::Sender<String>>>,
    /// What instances that failed to start wrote, kept since their service is removed (the
    /// reconciler shows it with the failure).
    failed_output: Mutex<HashMap<String, Vec<String>>>,
}

/// Lines kept of an instance that failed to start.
const FAILED_OUTPUT_LINES: usize = 50;

/// A Swarm node, for `wharf nodes`.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub addr: String,
    /// `ready`, `down`, …
    pub state: String,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    pub manager: bool,
    pub tasks: Vec<TaskInfo>,
}

/// A running task of a wharf service.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    pub app: String,
    pub id: String,
    pub state: String,
    pub addr: Option<std::net::SocketAddr>,
}

/// What wharf wrote on one of its services.
struct Meta {
    id: String,
    name: String,
    app: String,
    fingerprint: String,
    release: Option<u32>,
    image: Option<String>,
}

impl Meta {
    /// `None` for a service wharf did not make.
    fn of(s: &Service) -> Option<Meta> {
        let spec = s.spec.as_ref()?;
        let l = spec.labels.as_ref()?;
        let name = spec.name.clone()?;
        // Ours only if the label names this very service.
        if l.get(labels::INSTANCE) != Some(&name) {
            return None;
        }
        Some(Meta {
            id: s.id.clone()?,
            app: l.get(labels::APP)?.clone(),
            fingerprint: l.get(labels::FINGERPRINT).cloned().unwrap_or_default(),
            release: l.get(labels::RELEASE).and_then(|r| r.parse().ok()),
            image: spec
                .task_template
                .as_ref()
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.image.clone()),
            name,
        })
    }
}

fn engine_err(context: impl std::fmt::Display, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Engine(format!("{context}: {e}"))
}

fn not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Engine {
    /// Creates the apps' attachable overlay network (labelled) unless one of that name exists.
    pub(crate) async fn ensure_swarm_network(&self) -> std::result::Result<(), DockerError> {
        if self
            .docker
            .inspect_network(SWARM_NETWORK, None)
            .await
            .is_ok()
        {
            return Ok(());
        }
        let req = NetworkCreateRequest {
            name: SWARM_NETWORK.to_string(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(HashMap::from([(
                labels::MANAGED.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            Err(_)
                if self
                    .docker
                    .inspect_network(SWARM_NETWORK, None)
                    .await
                    .is_ok() =>
            {
                Ok(())
            }
            Err(source) => Err(DockerError::Api {
                context: format!("cannot create the Swarm network {SWARM_NETWORK}"),
                source,
            }),
        }
    }

    /// wharf's services (optionally of one app).
    async fn wharf_services(
        &self,
        app: Option<&str>,
    ) -> std::result::Result<Vec<Meta>, DockerError> {
        let label = match app {
            Some(app) => format!("{}={app}", labels::APP),
            None => labels::INSTANCE.to_string(),
        };
        let mut mine = vec![label];
        mine.extend(self.owner_filter());
        let opts = ListServicesOptions {
            filters: Some(HashMap::from([("label".to_string(), mine)])),
            ..Default::default()
        };
        let services = self
            .docker
            .list_services(Some(opts))
            .await
            .map_err(|source| DockerError::Api {
                context: "cannot list the Swarm's services".into(),
                source,
            })?;
        Ok(services.iter().filter_map(Meta::of).collect())
    }

    async fn swarm_nodes(
        &self,
    ) -> std::result::Result<(Vec<bollard::models::Node>, Nodes), DockerError> {
        let list = self
            .docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|source| DockerError::Api {
                context: "cannot list the Swarm's nodes".into(),
                source,
            })?;
        let nodes = Nodes::from_list(&list);
        Ok((list, nodes))
    }

    async fn tasks(&self, service: Option<&str>) -> std::result::Result<Vec<Task>, DockerError> {
        let opts = ListTasksOptions {
            filters: service.map(|s| HashMap::from([("service".to_string(), vec![s.to_string()])])),
        };
        self.docker
            .list_tasks(Some(opts))
            .await
            .map_err(|source| DockerError::Api {
                context: "cannot list the Swarm's tasks".into(),
                source,
            })
    }
}

impl From<DockerError> for RuntimeError {
    fn from(e: DockerError) -> RuntimeError {
        RuntimeError::Engine(e.to_string())
    }
}

impl SwarmRuntime {
    pub fn new(engine: Arc<Engine>) -> SwarmRuntime {
        SwarmRuntime {
            engine,
            watched: Arc::new(Mutex::new(HashMap::new())),
            live: Mutex::new(HashMap::new()),
            failed_output: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self, app: &str) -> broadcast::Sender<String> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.to_string())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }

    /// Starts watching a service (and following its log) unless it is watched already.
    fn watch(&self, meta: &Meta, past_failures_count: bool) -> watch::Receiver<watcher::Snapshot> {
        let mut map = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = map.get(&meta.name).filter(|w| w.service_id == meta.id) {
            return w.snapshot.clone();
        }
        let docker = self.engine.docker.clone();
        let mut w = watcher::spawn(docker.clone(), meta.id.clone(), past_failures_count);
        w.tasks.push(logs::follow(
            docker,
            meta.id.clone(),
            meta.name.clone(),
            self.live(&meta.app),
        ));
        // A service removed behind wharf's back: forget it, so every `addresses` receiver
        // sees its channel close and the reconciler replaces the instance.
        let mut gone = w.snapshot.clone();
        let map_ref = Arc::downgrade(&self.watched);
        let (name, id) = (meta.name.clone(), meta.id.clone());
        let reaper = tokio::spawn(async move {
            let _ = gone.wait_for(|s| s.gone).await;
            let Some(map) = map_ref.upgrade() else { return };
            let dropped = {
                let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
                match m.get(&name) {
                    Some(w) if w.service_id == id => m.remove(&name),
                    _ => None,
                }
            };
            // Dropped outside the lock: it aborts this very task among others.
            drop(dropped);
        });
        w.tasks.push(reaper.abort_handle());
        let snap = w.snapshot.clone();
        map.insert(meta.name.clone(), w);
        snap
    }

    fn forget(&self, instance: &str) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(instance);
    }

    async fn start_service(&self, spec: InstanceSpec) -> Result<Vec<SocketAddr>> {
        let Some(service) = spec::service_spec(&spec) else {
            return Err(RuntimeError::Engine(format!(
                "instance \"{}\": the swarm runtime runs images only, not processes",
                spec.instance
            )));
        };
        if self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&spec.instance)
        {
            return Err(RuntimeError::AlreadyRunning(spec.instance));
        }
        self.engine.ensure_swarm_network().await?;
        let mut service = service;
        if let Some(l) = service.labels.as_mut() {
            self.engine.own(l);
        }
        let created = match self.engine.docker.create_service(service, None).await {
            Ok(c) => c,
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => return Err(RuntimeError::AlreadyRunning(spec.instance)),
            Err(e) => {
                return Err(engine_err(
                    format!("cannot create the service {}", spec.instance),
                    e,
                ));
            }
        };
        let id = created
            .id
            .ok_or_else(|| RuntimeError::Engine("the engine returned no service id".into()))?;
        let meta = Meta {
            id: id.clone(),
            name: spec.instance.clone(),
            app: spec.app.clone(),
            fingerprint: spec.fingerprint.clone(),
            release: spec.release,
            image: None,
        };
        let mut snap = self.watch(&meta, true);
        let want = spec.replicas.max(1) as usize;
        let waited = tokio::time::timeout(START_PATIENCE, async {
            snap.wait_for(|s| s.ended.is_some() || s.gone || s.serving.len() >= want)
                .await
                .map(|s| s.clone())
        })
        .await;
        let failure = match waited {
            Ok(Ok(s)) if s.ended.is_none() && !s.gone => return Ok(s.serving),
            Ok(Ok(s)) if s.gone => {
                format!("the service {} was removed while it started", spec.instance)
            }
            Ok(Ok(s)) => format!(
                "instance \"{}\" did not start: {}",
                spec.instance,
                s.ended.unwrap_or_default()
            ),
            Ok(Err(_)) => format!("instance \"{}\": its watcher ended", spec.instance),
            Err(_) => {
                let s = snap.borrow();
                format!(
                    "instance \"{}\": {want} tasks did not run within {} s ({} running; {})",
                    spec.instance,
                    START_PATIENCE.as_secs(),
                    s.serving.len(),
                    s.waiting.join(", ")
                )
            }
        };
        // A service that cannot start is not left behind to retry forever; what it wrote is.
        self.forget(&spec.instance);
        // Bounded: the engine's service logs are known to hang, and the service must go anyway.
        let read = tokio::time::timeout(
            LOGS_PATIENCE,
            logs::read(&self.engine.docker, &id, FAILED_OUTPUT_LINES, false),
        )
        .await;
        if let Ok(Ok(read)) = read {
            let mut kept = self.failed_output.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: only the latest failures matter.
            if kept.len() >= 64 {
                kept.clear();
            }
            kept.insert(
                spec.instance.clone(),
                read.into_iter().map(|(_, _, text)| text).collect(),
            );
        }
        if let Err(e) = self.engine.docker.delete_service(&id).await
            && !not_found(&e)
        {
            tracing::warn!(service = %spec.instance, error = %e, "cannot remove a service that failed to start");
        }
        Err(RuntimeError::Engine(failure))
    }

    async fn stop_service(&self, instance: &str) -> Result<()> {
        let service = match self.engine.docker.inspect_service(instance, None).await {
            Ok(s) => s,
            Err(e) if not_found(&e) => {
                self.forget(instance);
                return Err(RuntimeError::UnknownInstance(instance.to_string()));
            }
            Err(e) => {
                return Err(engine_err(
                    format!("cannot inspect the service {instance}"),
                    e,
                ));
            }
        };
        let Some(meta) = Meta::of(&service) else {
            // Someone else's service of that name: never wharf's to remove.
            return Err(RuntimeError::UnknownInstance(instance.to_string()));
        };
        let grace = service
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.stop_grace_period)
            .map_or(Duration::from_secs(10), |n| {
                Duration::from_nanos(u64::try_from(n).unwrap_or(0))
            });
        // Out of routing first, then the tasks get their signal.
        if let Some(w) = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(instance)
        {
            w.addrs_tx.send_replace(Vec::new());
        }
        match self.engine.docker.delete_service(&meta.id).await {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => {
                return Err(engine_err(
                    format!("cannot remove the service {instance}"),
                    e,
                ));
            }
        }
        let deadline = tokio::time::Instant::now() + grace + STOP_SLACK;
        loop {
            // All tasks: filtering by a removed service is refused, while its tasks linger
            // until their containers are gone.
            match self.engine.tasks(None).await {
                Ok(t)
                    if !t
                        .iter()
                        .any(|t| t.service_id.as_deref() == Some(meta.id.as_str())) =>
                {
                    return Ok(());
                }
                Ok(_) | Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(RuntimeError::Engine(format!(
                        "the service {instance} was removed but its tasks did not end within {} s",
                        (grace + STOP_SLACK).as_secs()
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// wharf's services with every task and node, read in one go (`None`: no services).
    async fn services_and_tasks(&self) -> Result<Option<(Vec<Meta>, Vec<Task>, Nodes)>> {
        let services = self.engine.wharf_services(None).await?;
        if services.is_empty() {
            return Ok(None);
        }
        let tasks = self.engine.tasks(None).await?;
        let (_, nodes) = self.engine.swarm_nodes().await?;
        Ok(Some((services, tasks, nodes)))
    }

    async fn list_tasks(&self) -> Result<Vec<InstanceStatus>> {
        let Some((services, tasks, nodes)) = self.services_and_tasks().await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for meta in &services {
            let mut slots: HashMap<i64, Vec<&Task>> = HashMap::new();
            for t in tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(meta.id.as_str()))
            {
                slots.entry(t.slot.unwrap_or(-1)).or_default().push(t);
            }
            let mut slots: Vec<_> = slots.into_iter().collect();
            slots.sort_by_key(|(slot, _)| *slot);
            for (slot, mut ts) in slots {
                // Newest first.
                ts.sort_by_key(|t| std::cmp::Reverse(task::since(t)));
                let current = ts
                    .iter()
                    .find(|t| t.desired_state == Some(TaskState::RUNNING))
                    .unwrap_or(&ts[0]);
                let ended: Vec<String> = ts.iter().filter_map(|t| task::ended(t)).collect();
                let state = match task::state(current) {
                    Some(TaskState::RUNNING) => InstanceState::Running,
                    Some(TaskState::FAILED | TaskState::REJECTED) => InstanceState::Failed,
                    Some(
                        TaskState::COMPLETE
                        | TaskState::SHUTDOWN
                        | TaskState::REMOVE
                        | TaskState::ORPHANED,
                    ) => InstanceState::Stopped,
                    _ => InstanceState::Backoff,
                };
                // A slot whose every task was stopped (a scale-down) is history, not an instance.
                if current.desired_state != Some(TaskState::RUNNING)
                    && state == InstanceState::Stopped
                {
                    continue;
                }
                let mut st =
                    InstanceStatus::new(&meta.app, &format!("{}.{slot}", meta.name), state);
                st.addr = nodes.task_addr(current).filter(|_| task::serving(current));
                st.started_at = task::since(current).filter(|_| state == InstanceState::Running);
                st.restarts = u32::try_from(ended.len()).unwrap_or(u32::MAX);
                st.last_exit = ended.first().cloned();
                st.fingerprint = meta.fingerprint.clone();
                st.release = meta.release;
                st.node = nodes.hostname(current.node_id.as_deref());
                st.id = current.id.clone();
                st.image = meta.image.clone();
                out.push(st);
            }
        }
        Ok(out)
    }

    async fn adopt_services(&self) -> Result<Vec<InstanceStatus>> {
        let Some((services, tasks, nodes)) = self.services_and_tasks().await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for meta in &services {
            self.watch(meta, false);
            let serving: Vec<SocketAddr> = tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(meta.id.as_str()) && task::serving(t))
                .filter_map(|t| nodes.task_addr(t))
                .collect();
            let state = if serving.is_empty() {
                InstanceState::Backoff
            } else {
                InstanceState::Running
            };
            let mut st = InstanceStatus::new(&meta.app, &meta.name, state);
            st.addr = serving.first().copied();
            st.fingerprint = meta.fingerprint.clone();
            st.release = meta.release;
            st.id = Some(meta.id.clone());
            st.image = meta.image.clone();
            out.push(st);
        }
        Ok(out)
    }

    async fn app_logs(&self, app: &str, lines: usize) -> Result<Vec<String>> {
        let services = self.engine.wharf_services(Some(app)).await?;
        let mut all = Vec::new();
        for meta in &services {
            let read = logs::read(&self.engine.docker, &meta.id, lines, true)
                .await
                .map_err(|e| engine_err(format!("cannot read the log of {}", meta.name), e))?;
            for (at, stream, text) in read {
                let at = at.unwrap_or_default();
                let when = task::parse_time(&at).unwrap_or(SystemTime::UNIX_EPOCH);
                all.push((when, logs::line(&at, &meta.name, stream, &text)));
            }
        }
        Ok(logs::merge(all, lines))
    }

    /// The Swarm's nodes with wharf's tasks on each.
    pub async fn nodes(&self) -> std::result::Result<Vec<NodeInfo>, DockerError> {
        let (list, nodes) = self.engine.swarm_nodes().await?;
        let services = self.engine.wharf_services(None).await?;
        let apps: HashMap<&str, &str> = services
            .iter()
            .map(|m| (m.id.as_str(), m.app.as_str()))
            .collect();
        let tasks = if apps.is_empty() {
            Vec::new()
        } else {
            self.engine.tasks(None).await?
        };
        let mut out = Vec::new();
        for n in &list {
            let Some(id) = n.id.clone() else { continue };
            let spec = n.spec.as_ref();
            let tasks = tasks
                .iter()
                .filter(|t| t.node_id.as_deref() == Some(id.as_str()) && task::serving(t))
                .filter_map(|t| {
                    Some(TaskInfo {
                        app: apps.get(t.service_id.as_deref()?)?.to_string(),
                        id: t.id.clone()?,
                        state: task::state(t).map(|s| s.to_string()).unwrap_or_default(),
                        addr: nodes.task_addr(t),
                    })
                })
                .collect();
            out.push(NodeInfo {
                hostname: nodes.hostname(Some(&id)).unwrap_or_default(),
                addr: task::node_addr(n)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                state: n
                    .status
                    .as_ref()
                    .and_then(|s| s.state)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                availability: spec
                    .and_then(|s| s.availability)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                manager: n.manager_status.is_some(),
                tasks,
                id,
            });
        }
        Ok(out)
    }
}

impl Runtime for SwarmRuntime {
    fn name(&self) -> &'static str {
        "swarm"
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Vec<SocketAddr>>> {
        Box::pin(self.start_service(spec))
    }

    fn stop<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.stop_service(instance))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>> {
        Box::pin(self.list_tasks())
    }

    fn adopt(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>> {
        Box::pin(self.adopt_services())
    }

    fn outlives_server(&self) -> bool {
        true
    }

    fn replicates(&self) -> bool {
        true
    }

    fn addresses(&self, instance: &str) -> Option<watch::Receiver<Vec<SocketAddr>>> {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .map(|w| w.addrs.clone())
    }

    fn logs<'a>(&'a self, app: &'a str, lines: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.app_logs(app, lines))
    }

    fn subscribe_logs(&self, app: &str) -> broadcast::Receiver<String> {
        self.live(app).subscribe()
    }

    fn exited<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Option<String>> {
        let rx = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .map(|w| w.exited.clone());
        Box::pin(async move {
            let mut rx = rx?;
            let how: Option<String> = rx.wait_for(Option::is_some).await.ok()?.clone();
            how
        })
    }

    fn recent_output<'a>(&'a self, instance: &'a str, lines: usize) -> BoxFuture<'a, Vec<String>> {
        let kept = self
            .failed_output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .cloned();
        let known = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(instance);
        Box::pin(async move {
            if let Some(kept) = kept {
                return kept[kept.len().saturating_sub(lines)..].to_vec();
            }
            if !known {
                return Vec::new();
            }
            let read = tokio::time::timeout(
                LOGS_PATIENCE,
                logs::read(&self.engine.docker, instance, lines, false),
            )
            .await;
            match read.unwrap_or_else(|_| Ok(Vec::new())) {
                Ok(read) => {
                    let skip = read.len().saturating_sub(lines);
                    read.into_iter()
                        .skip(skip)
                        .map(|(_, _, text)| text)
                        .collect()
                }
                Err(_) => Vec::new(),
            }
        })
    }
}
