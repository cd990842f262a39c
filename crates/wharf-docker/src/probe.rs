//! What an engine can do, asked once at start.

use crate::Engine;

impl Engine {
    /// `Ok` when the engine is a Swarm manager (it can run services); otherwise why not.
    pub async fn swarm_manager(&self) -> Result<(), String> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| format!("cannot ask the engine about its Swarm: {e}"))?;
        match info.swarm.and_then(|s| s.control_available) {
            Some(true) => Ok(()),
            _ => Err(format!(
                "the Docker engine at {} is not a Swarm manager (`docker swarm init` makes one)",
                self.host
            )),
        }
    }
}
