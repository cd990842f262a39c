//! The runtimes apps run on, by kind: the process runtime always; the Docker and Swarm
//! runtimes when an engine answered at start (otherwise, why not, for error messages).

use std::sync::Arc;

use wharf_docker::{DockerRuntime, Engine, SwarmRuntime};
use wharf_runtime::{InstanceStatus, Runtime};
use wharf_store::RuntimeKind;

/// How long an API view waits for a runtime's list of instances.
const LIST_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct Runtimes {
    process: Arc<dyn Runtime>,
    /// The engine container apps' images are built by (and pushed from, for Swarm).
    engine: Option<Arc<Engine>>,
    /// For `wharf nodes`.
    swarm_nodes: Option<Arc<SwarmRuntime>>,
    docker: Option<Arc<dyn Runtime>>,
    swarm: Option<Arc<dyn Runtime>>,
    /// Why the container runtimes are missing (no engine answered, not a Swarm manager…).
    docker_note: Option<String>,
    swarm_note: Option<String>,
}

impl Runtimes {
    /// Only processes.
    pub fn process(process: Arc<dyn Runtime>) -> Runtimes {
        Runtimes {
            process,
            engine: None,
            swarm_nodes: None,
            docker: None,
            swarm: None,
            docker_note: Some("no Docker engine was configured".into()),
            swarm_note: Some("no Docker engine was configured".into()),
        }
    }

    /// Adds the Docker runtime on `engine`, and the Swarm runtime when the engine manages a
    /// Swarm (`swarm`: `Err` says why not); or, when no engine answered, says why.
    pub fn with_engine(
        mut self,
        engine: Result<Arc<Engine>, String>,
        swarm: Result<(), String>,
    ) -> Runtimes {
        match engine {
            Ok(engine) => {
                let docker: Arc<dyn Runtime> = Arc::new(DockerRuntime::new(engine.clone()));
                (self.docker, self.docker_note) = (Some(docker), None);
                match swarm {
                    Ok(()) => {
                        let s = Arc::new(SwarmRuntime::new(engine.clone()));
                        self.swarm_nodes = Some(s.clone());
                        (self.swarm, self.swarm_note) = (Some(s as Arc<dyn Runtime>), None);
                    }
                    Err(why) => self.swarm_note = Some(why),
                }
                self.engine = Some(engine);
            }
            Err(why) => {
                self.docker_note = Some(why.clone());
                self.swarm_note = Some(why);
            }
        }
        self
    }

    /// The Docker engine, or why there is none.
    pub(crate) fn engine(&self) -> Result<&Arc<Engine>, String> {
        self.engine.as_ref().ok_or_else(|| {
            format!(
                "no Docker engine: {}",
                self.docker_note.as_deref().unwrap_or("unknown reason")
            )
        })
    }

    /// The Swarm runtime, or why there is none.
    pub(crate) fn swarm(&self) -> Result<&Arc<SwarmRuntime>, String> {
        self.swarm_nodes.as_ref().ok_or_else(|| {
            format!(
                "no Swarm: {}",
                self.swarm_note.as_deref().unwrap_or("unknown reason")
            )
        })
    }

    /// The runtime of `kind`, or an error saying why it is not available.
    pub(crate) fn get(&self, kind: RuntimeKind) -> Result<&Arc<dyn Runtime>, String> {
        let (rt, note) = match kind {
            RuntimeKind::Process => return Ok(&self.process),
            RuntimeKind::Docker => (&self.docker, &self.docker_note),
            RuntimeKind::Swarm => (&self.swarm, &self.swarm_note),
        };
        rt.as_ref().ok_or_else(|| {
            format!(
                "the {kind} runtime is not available: {}",
                note.as_deref().unwrap_or("unknown reason")
            )
        })
    }

    /// Every available runtime with its kind.
    pub(crate) fn all(&self) -> Vec<(RuntimeKind, &Arc<dyn Runtime>)> {
        let mut all = vec![(RuntimeKind::Process, &self.process)];
        all.extend(self.docker.as_ref().map(|r| (RuntimeKind::Docker, r)));
        all.extend(self.swarm.as_ref().map(|r| (RuntimeKind::Swarm, r)));
        all
    }

    /// The runtimes whose instances outlive the server (adopted at start).
    pub(crate) fn lasting(&self) -> Vec<(RuntimeKind, &Arc<dyn Runtime>)> {
        self.all()
            .into_iter()
            .filter(|(_, r)| r.outlives_server())
            .collect()
    }

    /// What every runtime runs, asked concurrently; a runtime that cannot answer (engine
    /// gone) contributes nothing and is logged.
    pub(crate) async fn list(&self) -> Vec<(RuntimeKind, InstanceStatus)> {
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
                Ok(Ok(l)) => out.extend(l.into_iter().map(|s| (*kind, s))),
                Ok(Err(e)) => tracing::warn!(runtime = %kind, error = %e, "cannot list instances"),
                Err(_) => {
                    tracing::warn!(runtime = %kind, "the runtime did not list its instances in time")
                }
            }
        }
        out
    }
}
