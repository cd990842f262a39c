//! The runtimes apps run on, by kind: the process runtime always; the Docker and Swarm
//! runtimes once an engine answers (otherwise, why not, for error messages). An engine that
//! is not there at start (dockerd starting after wharf at boot) is looked for again in the
//! background ([`Runtimes::connect`]); when it answers, the container apps are adopted and
//! brought up then.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use wharf_docker::{DockerRuntime, Engine, SwarmRuntime};
use wharf_runtime::{InstanceStatus, Runtime};
use wharf_store::RuntimeKind;

use crate::nodes::Hub;
use crate::nodes::remote::RemoteRuntime;

/// How long an API view waits for a runtime's list of instances.
const LIST_PATIENCE: Duration = Duration::from_secs(5);
/// How long a connection attempt to the engine may take.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

/// Where the container runtimes' engine is.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// `unix:///path` or `tcp://HOST:PORT`; `None`: `DOCKER_HOST`, then the local socket.
    pub host: Option<String>,
    /// `HOST[:PORT]` Swarm images are pushed to.
    pub registry: Option<String>,
    /// This server's id, on everything it creates ([`crate::server_id`]).
    pub owner: String,
}

#[derive(Clone)]
pub struct Runtimes {
    process: Arc<dyn Runtime>,
    containers: Arc<RwLock<Containers>>,
    /// Other machines, once the server's link is up.
    hub: Arc<RwLock<Option<Arc<Hub>>>>,
}

/// Where an app's instances run: a runtime kind, here or on a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Placement {
    pub(crate) kind: RuntimeKind,
    pub(crate) node: Option<String>,
}

impl Placement {
    pub(crate) fn of(app: &wharf_store::App) -> Placement {
        Placement {
            kind: app.runtime,
            node: app.node.clone(),
        }
    }

    pub(crate) fn here(kind: RuntimeKind) -> Placement {
        Placement { kind, node: None }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            None => write!(f, "{}", self.kind),
            Some(n) => write!(f, "{} on node {n}", self.kind),
        }
    }
}

#[derive(Clone)]
struct Containers {
    /// The engine container apps' images are built by (and pushed from, for Swarm).
    engine: Option<Arc<Engine>>,
    docker: Option<Arc<dyn Runtime>>,
    /// Concrete, for `wharf nodes` as well as apps.
    swarm: Option<Arc<SwarmRuntime>>,
    /// Why the container runtimes are missing (no engine answered, not a Swarm manager…).
    docker_note: Option<String>,
    swarm_note: Option<String>,
}

impl Runtimes {
    /// Only processes.
    pub fn process(process: Arc<dyn Runtime>) -> Runtimes {
        let none = Some("no Docker engine was configured".to_string());
        Runtimes {
            process,
            containers: Arc::new(RwLock::new(Containers {
                engine: None,
                docker: None,
                swarm: None,
                docker_note: none.clone(),
                swarm_note: none,
            })),
            hub: Arc::new(RwLock::new(None)),
        }
    }

    /// Adds the Docker runtime on `engine`, and the Swarm runtime when the engine manages a
    /// Swarm (`swarm`: `Err` says why not); or, when no engine answered, says why.
    fn attach(&self, engine: Result<Arc<Engine>, String>, swarm: Result<(), String>) {
        let mut c = self.containers.write().unwrap_or_else(|p| p.into_inner());
        match engine {
            Ok(engine) => {
                let docker: Arc<dyn Runtime> = Arc::new(DockerRuntime::new(engine.clone()));
                (c.docker, c.docker_note) = (Some(docker), None);
                match swarm {
                    Ok(()) => {
                        let s = Arc::new(SwarmRuntime::new(engine.clone()));
                        (c.swarm, c.swarm_note) = (Some(s), None);
                    }
                    Err(why) => c.swarm_note = Some(why),
                }
                c.engine = Some(engine);
            }
            Err(why) => {
                c.docker_note = Some(why.clone());
                c.swarm_note = Some(why);
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Containers> {
        self.containers.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the container runtimes are there.
    pub fn has_engine(&self) -> bool {
        self.read().engine.is_some()
    }

    /// Connects to the engine (within a few seconds) and adds the container runtimes; or
    /// records why not. Returns whether an engine answered.
    pub async fn connect(&self, settings: &EngineSettings) -> bool {
        let connect = Engine::connect(settings.host.as_deref(), settings.registry.clone());
        let engine = match tokio::time::timeout(CONNECT_PATIENCE, connect).await {
            Ok(Ok(engine)) => engine.with_owner(settings.owner.clone()),
            Ok(Err(e)) => {
                self.attach(Err(e.to_string()), Err(String::new()));
                return false;
            }
            Err(_) => {
                let why = format!(
                    "the Docker engine did not answer within {} s",
                    CONNECT_PATIENCE.as_secs()
                );
                self.attach(Err(why), Err(String::new()));
                return false;
            }
        };
        let swarm = engine.swarm_manager().await;
        tracing::info!(
            engine = engine.host(),
            api = %engine.api_version(),
            swarm = swarm.is_ok(),
            "container runtimes available"
        );
        self.attach(Ok(Arc::new(engine)), swarm);
        true
    }

    /// Why there is no engine, if there is none.
    pub fn engine_note(&self) -> Option<String> {
        self.read().docker_note.clone()
    }

    /// The Docker engine, or why there is none.
    pub(crate) fn engine(&self) -> Result<Arc<Engine>, String> {
        let c = self.read();
        c.engine.clone().ok_or_else(|| {
            format!(
                "no Docker engine: {}",
                c.docker_note.as_deref().unwrap_or("unknown reason")
            )
        })
    }

    /// The Swarm runtime, or why there is none.
    pub(crate) fn swarm(&self) -> Result<Arc<SwarmRuntime>, String> {
        let c = self.read();
        c.swarm.clone().ok_or_else(|| {
            format!(
                "no Swarm: {}",
                c.swarm_note.as_deref().unwrap_or("unknown reason")
            )
        })
    }

    pub(crate) fn set_hub(&self, hub: Arc<Hub>) {
        *self.hub.write().unwrap_or_else(|p| p.into_inner()) = Some(hub);
    }

    pub(crate) fn hub(&self) -> Option<Arc<Hub>> {
        self.hub.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The runtime of a placement, or an error saying why it is not available.
    pub(crate) fn get(&self, at: &Placement) -> Result<Arc<dyn Runtime>, String> {
        let kind = at.kind;
        if let Some(node) = &at.node {
            let hub = self
                .hub()
                .ok_or_else(|| "the server's link is off: no node can run apps".to_string())?;
            if kind == RuntimeKind::Swarm {
                return Err("a Swarm app runs on the Swarm's nodes, not on a wharf node".into());
            }
            return Ok(Arc::new(RemoteRuntime {
                node: hub.node(node),
                kind,
                engine: self.read().engine.clone(),
            }));
        }
        let c = self.read();
        let (rt, note) = match kind {
            RuntimeKind::Process => return Ok(self.process.clone()),
            RuntimeKind::Docker => (c.docker.clone(), &c.docker_note),
            RuntimeKind::Swarm => (
                c.swarm.clone().map(|s| s as Arc<dyn Runtime>),
                &c.swarm_note,
            ),
        };
        rt.ok_or_else(|| {
            format!(
                "the {kind} runtime is not available: {}",
                note.as_deref().unwrap_or("unknown reason")
            )
        })
    }

    /// Every available runtime with its placement: this machine's, then those of the
    /// connected nodes.
    pub(crate) fn all(&self) -> Vec<(Placement, Arc<dyn Runtime>)> {
        let c = self.read();
        let mut all = vec![(Placement::here(RuntimeKind::Process), self.process.clone())];
        all.extend(
            c.docker
                .clone()
                .map(|r| (Placement::here(RuntimeKind::Docker), r)),
        );
        all.extend(
            c.swarm
                .clone()
                .map(|r| (Placement::here(RuntimeKind::Swarm), r as Arc<dyn Runtime>)),
        );
        let engine = c.engine.clone();
        drop(c);
        if let Some(hub) = self.hub() {
            for node in hub.connected() {
                all.extend(node_runtimes(&node, engine.clone()));
            }
        }
        all
    }

    /// The runtimes whose instances outlive the server (adopted at start).
    pub(crate) fn lasting(&self) -> Vec<(Placement, Arc<dyn Runtime>)> {
        self.all()
            .into_iter()
            .filter(|(_, r)| r.outlives_server())
            .collect()
    }

    /// What every runtime runs, asked concurrently; a runtime that cannot answer (engine
    /// gone) contributes nothing and is logged.
    pub(crate) async fn list(&self) -> Vec<(Placement, InstanceStatus)> {
        let all = self.all();
        // An engine that stopped answering must not hold up every API view.
        let lists = futures_util::future::join_all(
            all.iter()
                .map(|(_, r)| tokio::time::timeout(LIST_PATIENCE, r.list())),
        )
        .await;
        let mut out = Vec::new();
        for ((kind, _), list) in all.iter().zip(lists) {
            match list {
                Ok(Ok(l)) => out.extend(l.into_iter().map(|s| (kind.clone(), s))),
                Ok(Err(e)) => tracing::warn!(runtime = %kind, error = %e, "cannot list instances"),
                Err(_) => {
                    tracing::warn!(runtime = %kind, "the runtime did not list its instances in time")
                }
            }
        }
        out
    }
}

/// The runtimes a node's agent has (process always; Docker when its engine answers).
/// `engine` is this server's, which gives a node the images it lacks.
pub(crate) fn node_runtimes(
    node: &Arc<crate::nodes::Node>,
    engine: Option<Arc<Engine>>,
) -> Vec<(Placement, Arc<dyn Runtime>)> {
    let info = node.info();
    [RuntimeKind::Process, RuntimeKind::Docker]
        .into_iter()
        .filter(|k| *k == RuntimeKind::Process || info.runtimes.iter().any(|r| r == k.as_str()))
        .map(|kind| {
            let rt: Arc<dyn Runtime> = Arc::new(RemoteRuntime {
                node: node.clone(),
                kind,
                engine: engine.clone(),
            });
            (
                Placement {
                    kind,
                    node: Some(node.name.clone()),
                },
                rt,
            )
        })
        .collect()
}
