//! The agent's machine: its data folder and the local runtimes that run the server's
//! instances (processes always; Docker once an engine answers).
//!
//! The data folder (0700):
//! - `identity.json`: the agent's key and certificate (wharf-link);
//! - `apps/<app>/releases/<n>/`: releases the server sent; `apps/<app>/volume/`: the app's data;
//! - `logs/<app>/`: its output; `run/<instance>.pid`: the process groups of running instances.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use wharf_docker::{DockerRuntime, Engine};
use wharf_runtime::{InstanceStatus, ProcessRuntime, Runtime};

use crate::{AgentError, Result};

/// How long a connection attempt to the Docker engine may take.
const ENGINE_PATIENCE: Duration = Duration::from_secs(5);
/// How long a `List` waits for one runtime.
const LIST_PATIENCE: Duration = Duration::from_secs(5);

pub struct Node {
    data: PathBuf,
    processes: Arc<ProcessRuntime>,
    /// Whether apps may run as their own users (the agent is root).
    root: bool,
    sandboxed: bool,
    docker: RwLock<Docker>,
    /// Releases received and not started yet, by app: kept by [`Node::prune_releases`] (the
    /// server starts one right after sending it).
    received: std::sync::Mutex<std::collections::HashSet<(String, u32)>>,
}

#[derive(Default)]
struct Docker {
    runtime: Option<Arc<DockerRuntime>>,
    /// Why there is none, once looked for.
    why: Option<String>,
}

/// Creates the data folder, owner only (it holds the agent's key and the apps' data); when
/// apps run as their own users (a root agent), they may pass through it (0711) to their
/// folders, but list nothing and read neither the key nor the logs.
pub(crate) fn create_data_dir(dir: &Path) -> Result<()> {
    create_private(dir, 0o700)
}

fn create_private(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| AgentError::io("cannot create the data folder", dir, e))
}

impl Node {
    /// Opens the data folder with the process runtime only, after stopping the processes a
    /// killed agent left running (the server starts again what should run, so no instance
    /// ever runs twice) and removing half-received releases.
    pub fn open(data: PathBuf) -> Result<Node> {
        Node::open_with(data, None)
    }

    /// [`Node::open`] with the sandbox launcher (the wharf binary), so apps that did not opt
    /// out run sandboxed as on the server.
    pub fn open_with(data: PathBuf, launcher: Option<PathBuf>) -> Result<Node> {
        let root = rustix::process::geteuid().is_root();
        create_private(&data, if root { 0o711 } else { 0o700 })?;
        if root {
            create_private(&data.join("apps"), 0o711)?;
        }
        create_private(&data.join("logs"), 0o700)?;
        let run = data.join("run");
        let mut processes = ProcessRuntime::with_pid_dir(run.clone())
            .map_err(|e| AgentError::io("cannot create the pid folder", &run, e))?
            .with_log_root(data.join("logs"));
        let sandboxed = launcher.is_some();
        if let Some(l) = launcher {
            processes = processes.with_launcher(l);
        }
        let reaped = processes.reap_orphans();
        if reaped > 0 {
            tracing::warn!(
                reaped,
                "stopped app processes a previous agent left running (it was killed); the server starts them again"
            );
        }
        crate::releases::remove_partial(&data.join("apps"));
        Ok(Node {
            data,
            processes: Arc::new(processes),
            root,
            sandboxed,
            received: Default::default(),
            docker: RwLock::default(),
        })
    }

    /// Looks for the Docker engine unless the Docker runtime is already there; containers a
    /// previous agent started (labelled with this node's name) are adopted. Logs the first
    /// failure only.
    pub async fn connect_docker(&self, host: Option<&str>, node: &str) {
        if self.read_docker().runtime.is_some() {
            return;
        }
        let connect = Engine::connect(host, None);
        let engine = match tokio::time::timeout(ENGINE_PATIENCE, connect).await {
            Ok(Ok(engine)) => engine.with_owner(format!("agent-{node}")),
            Ok(Err(e)) => return self.no_docker(e.to_string()),
            Err(_) => {
                return self.no_docker(format!(
                    "the Docker engine did not answer within {} s",
                    ENGINE_PATIENCE.as_secs()
                ));
            }
        };
        let runtime = Arc::new(DockerRuntime::new(Arc::new(engine)));
        match runtime.adopt().await {
            Ok(adopted) => tracing::info!(
                adopted = adopted.len(),
                "Docker runtime available; containers of a previous agent adopted"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "Docker runtime available, but cannot adopt its containers")
            }
        }
        let mut d = self.docker.write().unwrap_or_else(|p| p.into_inner());
        d.runtime = Some(runtime);
        d.why = None;
    }

    fn no_docker(&self, why: String) {
        let mut d = self.docker.write().unwrap_or_else(|p| p.into_inner());
        if d.why.is_none() {
            tracing::info!(error = %why, "no Docker runtime (processes only); looked for again at each link");
        }
        d.why = Some(why);
    }

    fn read_docker(&self) -> std::sync::RwLockReadGuard<'_, Docker> {
        self.docker.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The runtimes this agent offers, by name.
    pub fn runtime_names(&self) -> Vec<String> {
        let mut names = vec!["process".to_string()];
        if self.read_docker().runtime.is_some() {
            names.push("docker".to_string());
        }
        names
    }

    /// The runtime called `name`, or why there is none.
    pub(crate) fn runtime(&self, name: &str) -> Result<Arc<dyn Runtime>> {
        match name {
            "process" => Ok(self.processes.clone()),
            "docker" => {
                let d = self.read_docker();
                match &d.runtime {
                    Some(r) => Ok(r.clone()),
                    None => Err(AgentError::NoRuntime {
                        runtime: name.to_string(),
                        why: d.why.clone(),
                    }),
                }
            }
            _ => Err(AgentError::NoRuntime {
                runtime: name.to_string(),
                why: None,
            }),
        }
    }

    /// The Docker engine the Docker runtime runs containers on, or why there is none.
    pub(crate) fn docker_engine(&self) -> Result<Arc<Engine>> {
        let d = self.read_docker();
        match &d.runtime {
            Some(r) => Ok(r.engine().clone()),
            None => Err(AgentError::NoRuntime {
                runtime: "docker".to_string(),
                why: d.why.clone(),
            }),
        }
    }

    /// What every runtime runs, with its name; a runtime that cannot answer in time
    /// contributes nothing (logged).
    pub(crate) async fn list(&self) -> Vec<(&'static str, InstanceStatus)> {
        let mut all: Vec<(&'static str, Arc<dyn Runtime>)> =
            vec![("process", self.processes.clone())];
        if let Some(d) = self.read_docker().runtime.clone() {
            all.push(("docker", d));
        }
        let mut out = Vec::new();
        for (name, rt) in all {
            match tokio::time::timeout(LIST_PATIENCE, rt.list()).await {
                Ok(Ok(list)) => out.extend(list.into_iter().map(|s| (name, s))),
                Ok(Err(e)) => tracing::warn!(runtime = name, error = %e, "cannot list instances"),
                Err(_) => tracing::warn!(
                    runtime = name,
                    "the runtime did not list its instances in time"
                ),
            }
        }
        out
    }

    /// Stops every process instance (the agent is stopping); containers keep running.
    pub async fn shutdown(&self) {
        self.processes.shutdown().await;
    }

    pub(crate) fn app_dir(&self, app: &str) -> PathBuf {
        self.data.join("apps").join(app)
    }

    pub(crate) fn release_dir(&self, app: &str, release: u32) -> PathBuf {
        self.app_dir(app).join("releases").join(release.to_string())
    }

    /// The app's private tmp (`TMPDIR`, and `HOME` for an app with its own user).
    pub(crate) fn tmp(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("tmp")
    }

    /// Whether apps may run as their own users here (the agent is root).
    pub(crate) fn switches_users(&self) -> bool {
        self.root
    }

    /// Whether apps that did not opt out run in the sandbox.
    pub(crate) fn sandboxes(&self) -> bool {
        self.sandboxed
    }

    /// Gives the app's user its volume and tmp (0700, its own), and lets it pass through its
    /// folder to its code; other apps' users get no further than the folder's name.
    pub(crate) fn give(&self, app: &str, uid: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.app_dir(app);
        create_private(&dir, 0o711)?;
        for d in [self.volume(app), self.tmp(app)] {
            create_private(&d, 0o700)?;
            let owner = Some(rustix::fs::Uid::from_raw(uid));
            let group = Some(rustix::fs::Gid::from_raw(uid));
            rustix::fs::chown(&d, owner, group).map_err(|e| {
                AgentError::io("cannot give a folder to the app's user", &d, e.into())
            })?;
            let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }

    /// Removes the app's release copies that no process instance runs from: an agent keeps
    /// what runs (during a switch, the old release and the new), not every release it got.
    /// The server sends a release again if a rollback needs it.
    pub(crate) async fn prune_releases(&self, app: &str) {
        let Ok(listed) = self.processes.list().await else {
            return;
        };
        let mut used: std::collections::HashSet<u32> = listed
            .iter()
            .filter(|i| i.app == app)
            .filter_map(|i| i.release)
            .collect();
        {
            let mut received = self.received.lock().unwrap_or_else(|p| p.into_inner());
            received.retain(|(a, n)| !(a == app && used.contains(n)));
            used.extend(received.iter().filter(|(a, _)| a == app).map(|(_, n)| *n));
        }
        let dir = self.app_dir(app).join("releases");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            // Only finished copies (numbers): one being received has another name.
            let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if !used.contains(&n) {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => {
                        tracing::info!(app, release = n, "release copy no longer used; removed")
                    }
                    Err(err) => {
                        tracing::warn!(app, release = n, error = %err, "cannot remove an unused release copy")
                    }
                }
            }
        }
    }

    /// A release arrived: it is kept until an instance started from it stops.
    pub(crate) fn received(&self, app: &str, release: u32) {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((app.to_string(), release));
    }

    pub(crate) fn volume(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("volume")
    }

    pub(crate) fn log_dir(&self, app: &str) -> PathBuf {
        self.data.join("logs").join(app)
    }
}
