//! The Docker runtime: each instance is one container, labelled, on the apps' network, with the
//! app's volume bind-mounted at `/data`; the gateway reaches it at its address on that network.

use std::sync::Arc;

use crate::Engine;

pub struct DockerRuntime {
    pub(crate) engine: Arc<Engine>,
}

impl DockerRuntime {
    pub fn new(engine: Arc<Engine>) -> DockerRuntime {
        DockerRuntime { engine }
    }
}
