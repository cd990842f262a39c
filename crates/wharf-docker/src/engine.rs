//! The connection to one Docker engine.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::NetworkCreateRequest;

use crate::{DockerError, labels};

/// Engine calls that take long (image builds and pushes) are bounded by this, not by bollard's
/// two-minute default.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// The network apps join unless told otherwise.
pub const DEFAULT_NETWORK: &str = "wharf";

/// A Docker engine: bollard's client with the negotiated API version, the user-defined
/// network apps join, and the registry Swarm images are pushed to.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    /// Where it was reached, for messages.
    pub(crate) host: String,
    /// The network containers join (default `wharf`); apps reach each other there by name.
    pub(crate) network: String,
    /// `HOST[:PORT]` of the registry images are pushed to for Swarm (`--registry`).
    pub(crate) registry: Option<String>,
}

impl Engine {
    /// Connects to `host` (`unix:///path`, `tcp://…`, `http://…`), else `DOCKER_HOST`, else the
    /// local socket, and negotiates the API version. Fails when the engine does not answer.
    pub async fn connect(
        host: Option<&str>,
        registry: Option<String>,
    ) -> Result<Engine, DockerError> {
        let host = host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let unreachable = |reason: String| DockerError::Unreachable {
            host: host.clone(),
            reason,
        };
        let docker = Docker::connect_with_host(&host)
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(REQUEST_TIMEOUT);
        // Down to what the engine speaks (Debian's docker.io: 1.41); the stubs are newer.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Engine {
            docker,
            host,
            network: DEFAULT_NETWORK.to_string(),
            registry,
        })
    }

    /// Where the engine was reached.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    /// The engine's API version in use, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Creates the apps' network (a labelled bridge) unless a network of that name exists
    /// (then it is used as it is: it may be the user's own).
    pub async fn ensure_network(&self) -> Result<(), DockerError> {
        if self
            .docker
            .inspect_network(&self.network, None)
            .await
            .is_ok()
        {
            return Ok(());
        }
        let req = NetworkCreateRequest {
            name: self.network.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(labels::MANAGED.to_string(), "true".to_string())])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            // Created meanwhile by a concurrent call.
            Err(_) if self.docker.inspect_network(&self.network, None).await.is_ok() => Ok(()),
            Err(source) => Err(DockerError::Api {
                context: format!("cannot create the network {}", self.network),
                source,
            }),
        }
    }
}
