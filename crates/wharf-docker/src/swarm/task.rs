//! Reading Swarm tasks and nodes: where a task is reached (its node's address and the node port
//! its host-mode publication got), whether it serves, how it ended.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use bollard::models::{EndpointPortConfigPublishModeEnum, Node, Task, TaskState};

/// What wharf needs to know of the Swarm's nodes, by node id.
#[derive(Clone, Debug, Default)]
pub(crate) struct Nodes {
    pub(crate) by_id: HashMap<String, NodeRef>,
}

#[derive(Clone, Debug)]
pub(crate) struct NodeRef {
    pub(crate) hostname: String,
    pub(crate) addr: Option<IpAddr>,
}

impl Nodes {
    pub(crate) fn from_list(nodes: &[Node]) -> Nodes {
        let by_id = nodes
            .iter()
            .filter_map(|n| {
                let id = n.id.clone()?;
                let hostname = n
                    .description
                    .as_ref()
                    .and_then(|d| d.hostname.clone())
                    .unwrap_or_default();
                Some((
                    id,
                    NodeRef {
                        hostname,
                        addr: node_addr(n),
                    },
                ))
            })
            .collect();
        Nodes { by_id }
    }

    /// Where `task` is reached, once it runs on a known node with a published port.
    pub(crate) fn task_addr(&self, task: &Task) -> Option<SocketAddr> {
        let ip = self.by_id.get(task.node_id.as_deref()?)?.addr?;
        Some(SocketAddr::new(ip, published_port(task)?))
    }

    pub(crate) fn hostname(&self, node_id: Option<&str>) -> Option<String> {
        node_id
            .and_then(|id| self.by_id.get(id))
            .map(|n| n.hostname.clone())
    }
}

/// A node's address: `Status.Addr`, except where an engine reports `0.0.0.0` for a manager
/// (then its manager address, without the port).
pub(crate) fn node_addr(node: &Node) -> Option<IpAddr> {
    let status = node
        .status
        .as_ref()
        .and_then(|s| s.addr.as_deref())
        .and_then(|a| a.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_unspecified());
    status.or_else(|| {
        let addr = node.manager_status.as_ref()?.addr.as_deref()?;
        addr.parse::<SocketAddr>().ok().map(|s| s.ip())
    })
}

/// The node port the task's app port was published on (host mode).
pub(crate) fn published_port(task: &Task) -> Option<u16> {
    let ports = task.status.as_ref()?.port_status.as_ref()?.ports.as_ref()?;
    ports
        .iter()
        .filter(|p| p.publish_mode == Some(EndpointPortConfigPublishModeEnum::HOST))
        .find_map(|p| u16::try_from(p.published_port?).ok().filter(|p| *p != 0))
}

pub(crate) fn state(task: &Task) -> Option<TaskState> {
    task.status.as_ref()?.state
}

/// Runs and is meant to keep running: the only tasks the gateway may route to. A task the
/// orchestrator is about to stop (a node drain, a scale-down) has its desired state changed
/// first, so it leaves the list before its container gets the signal.
pub(crate) fn serving(task: &Task) -> bool {
    state(task) == Some(TaskState::RUNNING) && task.desired_state == Some(TaskState::RUNNING)
}

/// How the task ended, if it ended on its own (failed, exited, or refused by every node) rather
/// than being stopped by the orchestrator.
pub(crate) fn ended(task: &Task) -> Option<String> {
    let st = task.status.as_ref()?;
    let what = match st.state? {
        TaskState::FAILED => "failed",
        TaskState::REJECTED => "was rejected",
        TaskState::COMPLETE => "exited",
        _ => return None,
    };
    let code = st.container_status.as_ref().and_then(|c| c.exit_code);
    let detail = st
        .err
        .as_deref()
        .filter(|e| !e.is_empty())
        .or(st.message.as_deref().filter(|m| !m.is_empty()))
        // "task: non-zero exit (3)" says no more than the status.
        .filter(|d| code.is_none() || !d.starts_with("task: non-zero exit"));
    let mut msg = format!("task {} {what}", task_name(task));
    if let Some(code) = code.filter(|c| *c != 0 || what == "exited") {
        msg.push_str(&format!(" with status {code}"));
    }
    if let Some(d) = detail {
        msg.push_str(&format!(": {d}"));
    }
    Some(msg)
}

/// Why a task is not running yet, e.g. "pending: no suitable node".
pub(crate) fn waiting_for(task: &Task) -> String {
    let st = task.status.as_ref();
    let state = st
        .and_then(|s| s.state)
        .map_or("unknown".to_string(), |s| s.to_string());
    match st.and_then(|s| s.err.as_deref().or(s.message.as_deref())) {
        Some(m) if !m.is_empty() => format!("{state}: {m}"),
        _ => state,
    }
}

/// `<service>.<slot>`, the name `docker service ps` shows.
pub(crate) fn task_name(task: &Task) -> String {
    let service = task
        .spec
        .as_ref()
        .and_then(|s| s.container_spec.as_ref())
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(crate::labels::INSTANCE).cloned())
        .or_else(|| task.service_id.clone())
        .unwrap_or_default();
    match task.slot {
        Some(slot) => format!("{service}.{slot}"),
        None => format!("{service}.{}", task.node_id.as_deref().unwrap_or("?")),
    }
}

/// The time of the task's last state change.
pub(crate) fn since(task: &Task) -> Option<SystemTime> {
    parse_time(task.status.as_ref()?.timestamp.as_deref()?)
}

/// An engine time stamp (RFC 3339, nanoseconds).
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(SystemTime::from(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EndpointPortConfig, PortStatus, TaskStatus};

    fn task(state: TaskState, desired: TaskState, port: Option<i64>) -> Task {
        Task {
            node_id: Some("n1".into()),
            slot: Some(2),
            service_id: Some("svc".into()),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                port_status: Some(PortStatus {
                    ports: Some(vec![EndpointPortConfig {
                        published_port: port,
                        publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                        ..Default::default()
                    }]),
                }),
                err: Some("No such image: x".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_task_serves_only_while_running_and_meant_to() {
        assert!(serving(&task(
            TaskState::RUNNING,
            TaskState::RUNNING,
            Some(1)
        )));
        assert!(!serving(&task(
            TaskState::RUNNING,
            TaskState::SHUTDOWN,
            Some(1)
        )));
        assert!(!serving(&task(
            TaskState::STARTING,
            TaskState::RUNNING,
            Some(1)
        )));
    }

    #[test]
    fn the_address_is_the_node_and_its_published_port() {
        let nodes = Nodes {
            by_id: HashMap::from([(
                "n1".to_string(),
                NodeRef {
                    hostname: "a".into(),
                    addr: Some("198.18.0.12".parse().unwrap()),
                },
            )]),
        };
        let t = task(TaskState::RUNNING, TaskState::RUNNING, Some(30001));
        assert_eq!(
            nodes.task_addr(&t),
            Some("198.18.0.12:30001".parse().unwrap())
        );
        assert_eq!(
            nodes.task_addr(&task(TaskState::RUNNING, TaskState::RUNNING, Some(0))),
            None
        );
    }

    #[test]
    fn an_ended_task_says_why() {
        let t = task(TaskState::REJECTED, TaskState::SHUTDOWN, None);
        assert_eq!(
            ended(&t).unwrap(),
            "task svc.2 was rejected: No such image: x"
        );
        assert_eq!(
            ended(&task(TaskState::SHUTDOWN, TaskState::SHUTDOWN, None)),
            None
        );
    }

    #[test]
    fn engine_time_stamps_parse() {
        let t = parse_time("2024-05-01T12:00:00.123456789Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_714_564_800);
    }
}
