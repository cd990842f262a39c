//! The Swarm runtime: each app is one Swarm service whose tasks publish in host mode; the
//! gateway routes to each running task's node address and port, following task changes.

use std::sync::Arc;

use crate::{DockerError, Engine};

pub struct SwarmRuntime {
    pub(crate) engine: Arc<Engine>,
}

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

impl SwarmRuntime {
    pub fn new(engine: Arc<Engine>) -> SwarmRuntime {
        SwarmRuntime { engine }
    }

    /// The Swarm's nodes with wharf's tasks on each.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, DockerError> {
        todo!("swarm helper")
    }
}
