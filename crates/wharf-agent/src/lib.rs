//! The wharf agent: runs a wharf server's app instances on another machine.
//!
//! The agent enrols once with the one-time token `wharf nodes add` printed and keeps its
//! identity in its data folder ([`AgentConfig::data_dir`]). From then on it keeps one outbound
//! link to the server ([`link`]), reconnecting with backoff, and answers the server's requests
//! ([`serve`]): releases ([`releases`]), instances on the local runtimes ([`node`]), connections
//! and tunnel listeners on its machine ([`tunnel`]). It opens no listening port of its own.
//!
//! Instances outlive the link: when it drops, apps keep running and the server finds them
//! again with `List` once the agent is back. Processes a killed agent left behind are stopped
//! when the next agent starts (the server starts what should run); containers are adopted.
#![forbid(unsafe_code)]

mod error;
mod link;
mod node;
mod releases;
mod serve;
mod tunnel;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::{AgentError, Result};
pub use node::Node;
pub use serve::{Link, OpenStream};
pub use wharf_link::JoinUrl;

/// What `wharf agent` runs with.
#[derive(Clone)]
pub struct AgentConfig {
    /// Identity, releases, volumes, logs and pid files (`/var/lib/wharf-agent`).
    pub data_dir: PathBuf,
    /// Join a server: its URL and the one-time token (never stored, never logged). Only for
    /// an agent that has not joined yet.
    pub join: Option<(JoinUrl, String)>,
    /// The Docker engine (`unix:///path`, `tcp://…`); `None`: `DOCKER_HOST`, then the local
    /// socket. Without an engine, the agent runs processes only.
    pub docker_host: Option<String>,
    /// The sandbox launcher (the wharf binary: `wharf sandbox-exec`); `None`: apps run
    /// unsandboxed.
    pub launcher: Option<PathBuf>,
}

impl std::fmt::Debug for AgentConfig {
    // The token is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("data_dir", &self.data_dir)
            .field("join", &self.join.as_ref().map(|(url, _)| url))
            .field("docker_host", &self.docker_host)
            .field("launcher", &self.launcher)
            .finish()
    }
}

/// Runs the agent until an error stops it (enrolment, data folder): keeps the link to the
/// server up for ever.
pub async fn run(config: AgentConfig) -> Result<()> {
    run_until(config, std::future::pending()).await
}

/// Runs the agent until `stop` resolves, then stops its processes (containers keep running:
/// the engine supervises them and the next agent adopts them).
pub async fn run_until(config: AgentConfig, stop: impl Future<Output = ()>) -> Result<()> {
    node::create_data_dir(&config.data_dir)?;
    let identity = link::identity(&config.data_dir, config.join).await?;
    let node = Arc::new(Node::open_with(
        config.data_dir.clone(),
        config.launcher.clone(),
    )?);
    node.connect_docker(config.docker_host.as_deref(), &identity.node)
        .await;
    tokio::select! {
        never = link::keep_linked(node.clone(), identity, config.docker_host) => match never {},
        () = stop => {}
    }
    tracing::info!("stopping: the agent's processes are stopped, containers keep running");
    node.shutdown().await;
    Ok(())
}
