//! One watcher per service: polls the manager's task list for the service and publishes the
//! addresses of the tasks that serve, the first task that ended on its own, and (for `start`)
//! why the others are not running yet. The engine's event stream has no task events (API 1.41),
//! so polling it is.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{ListNodesOptions, ListTasksOptions};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::task::{self, Nodes};

/// How often the task list is read. A task leaves the addresses within this much of its
/// desired state changing (the engine signals it right after), so the app's own shutdown grace
/// should be longer (`stop_grace`, 10 s by default).
const POLL: Duration = Duration::from_millis(250);
/// Node addresses rarely change; re-read them this often (and whenever a task is on a node not
/// seen yet).
const NODES_EVERY: Duration = Duration::from_secs(10);
/// Whether the service still exists is checked this often (a removed service has no tasks,
/// which alone does not tell it apart from one scaled to zero).
const EXISTS_EVERY: Duration = Duration::from_secs(2);

/// What a watcher saw at its last poll.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    /// Tasks running and meant to (addresses the gateway may use).
    pub(crate) serving: Vec<SocketAddr>,
    /// The first task that ended on its own since the watcher started.
    pub(crate) ended: Option<String>,
    /// Why the tasks meant to run do not run yet ("pending: no suitable node …").
    pub(crate) waiting: Vec<String>,
    /// The service no longer exists.
    pub(crate) gone: bool,
}

/// A watched service.
pub(crate) struct Watched {
    pub(crate) service_id: String,
    pub(crate) addrs: watch::Receiver<Vec<SocketAddr>>,
    /// Lets `stop` take the tasks out of routing before it removes the service.
    pub(crate) addrs_tx: watch::Sender<Vec<SocketAddr>>,
    pub(crate) exited: watch::Receiver<Option<String>>,
    pub(crate) snapshot: watch::Receiver<Snapshot>,
    pub(crate) tasks: Vec<AbortHandle>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts watching `service_id`. With `past_failures_count` false (adoption), tasks that had
/// already ended before the first poll are not reported by `exited`.
pub(crate) fn spawn(docker: Docker, service_id: String, past_failures_count: bool) -> Watched {
    let (addrs_tx, addrs) = watch::channel(Vec::new());
    let (exited_tx, exited) = watch::channel(None);
    let (snap_tx, snapshot) = watch::channel(Snapshot::default());
    let poller = Poller {
        docker,
        service_id: service_id.clone(),
        addrs: addrs_tx.clone(),
        exited: exited_tx,
        snapshot: snap_tx,
        past_failures_count,
    };
    let handle = tokio::spawn(poller.run());
    Watched {
        service_id,
        addrs,
        addrs_tx,
        exited,
        snapshot,
        tasks: vec![handle.abort_handle()],
    }
}

struct Poller {
    docker: Docker,
    service_id: String,
    addrs: watch::Sender<Vec<SocketAddr>>,
    exited: watch::Sender<Option<String>>,
    snapshot: watch::Sender<Snapshot>,
    past_failures_count: bool,
}

impl Poller {
    async fn run(self) {
        let filters = ListTasksOptions {
            filters: Some(
                [("service".to_string(), vec![self.service_id.clone()])]
                    .into_iter()
                    .collect(),
            ),
        };
        let mut nodes: Arc<Nodes> = Arc::default();
        let mut nodes_at: Option<Instant> = None;
        let mut exists_at = Instant::now();
        let mut seen_ended: HashSet<String> = HashSet::new();
        let mut first = true;
        let mut warned = false;
        loop {
            let tasks = match self.docker.list_tasks(Some(filters.clone())).await {
                Ok(t) => {
                    warned = false;
                    t
                }
                // The service was removed (a filter on it is refused).
                Err(e) if is_404(&e) => {
                    self.addrs.send_replace(Vec::new());
                    self.snapshot.send_modify(|s| {
                        s.serving.clear();
                        s.gone = true;
                    });
                    return;
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(service = %self.service_id, error = %e, "cannot read the service's tasks");
                        warned = true;
                    }
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let unknown_node = tasks.iter().any(|t| {
                t.node_id
                    .as_deref()
                    .is_some_and(|n| nodes.by_id.get(n).is_none_or(|n| n.addr.is_none()))
            });
            if (unknown_node || nodes_at.is_none_or(|at| at.elapsed() >= NODES_EVERY))
                && let Ok(list) = self.docker.list_nodes(None::<ListNodesOptions>).await
            {
                nodes = Arc::new(Nodes::from_list(&list));
                nodes_at = Some(Instant::now());
            }

            let mut serving: Vec<SocketAddr> = tasks
                .iter()
                .filter(|t| task::serving(t))
                .filter_map(|t| nodes.task_addr(t))
                .collect();
            serving.sort();
            serving.dedup();
            self.addrs.send_if_modified(|a| {
                let changed = *a != serving;
                if changed {
                    tracing::debug!(service = %self.service_id, addrs = ?serving, "task addresses changed");
                    *a = serving.clone();
                }
                changed
            });

            // Oldest first, so `exited` reports the first failure.
            let mut ended: Vec<_> = tasks
                .iter()
                .filter_map(|t| Some((t.id.clone()?, task::since(t), task::ended(t)?)))
                .collect();
            ended.sort_by_key(|(_, at, _)| *at);
            for (id, _, how) in ended {
                if seen_ended.insert(id) && (self.past_failures_count || !first) {
                    self.exited.send_if_modified(|e| {
                        let first_one = e.is_none();
                        if first_one {
                            *e = Some(how.clone());
                        }
                        first_one
                    });
                }
            }
            let waiting = tasks
                .iter()
                .filter(|t| {
                    t.desired_state == Some(bollard::models::TaskState::RUNNING)
                        && !task::serving(t)
                })
                .map(task::waiting_for)
                .collect();

            let mut gone = false;
            if tasks.is_empty() || exists_at.elapsed() >= EXISTS_EVERY {
                exists_at = Instant::now();
                gone = self
                    .docker
                    .inspect_service(&self.service_id, None)
                    .await
                    .is_err_and(|e| is_404(&e));
            }
            self.snapshot.send_replace(Snapshot {
                serving,
                ended: self.exited.borrow().clone(),
                waiting,
                gone,
            });
            if gone {
                self.addrs.send_if_modified(|a| {
                    let changed = !a.is_empty();
                    a.clear();
                    changed
                });
                return;
            }
            first = false;
            tokio::time::sleep(POLL).await;
        }
    }
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
