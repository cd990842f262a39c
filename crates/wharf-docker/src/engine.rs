//! The connection to one Docker engine.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::ListNetworksOptions;

use crate::{DockerError, labels};

/// Engine calls that take long (image builds and pushes) are bounded by this, not by bollard's
/// two-minute default.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// Serializes [`Engine::ensure_network`] in this process (see there).
static NETWORK_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    /// This server's id ([`labels::OWNER`]); `None` (tests) owns whatever is unlabelled too.
    pub(crate) owner: Option<String>,
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
            owner: None,
        })
    }

    /// Containers join `network` instead of [`DEFAULT_NETWORK`].
    pub fn with_network(mut self, network: String) -> Engine {
        self.network = network;
        self
    }

    /// Labels what this engine handle creates with `owner`, and lists only what carries it.
    pub fn with_owner(mut self, owner: String) -> Engine {
        self.owner = Some(owner);
        self
    }

    /// The label filter (`wharf.owner=<id>`) that keeps listings to this server's objects.
    pub(crate) fn owner_filter(&self) -> Option<String> {
        self.owner
            .as_ref()
            .map(|o| format!("{}={o}", labels::OWNER))
    }

    /// Adds the owner label to labels of something this server creates.
    pub(crate) fn own(&self, labels: &mut HashMap<String, String>) {
        if let Some(o) = &self.owner {
            labels.insert(labels::OWNER.to_string(), o.clone());
        }
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
    /// (then it is used: it may be the user's own), and returns the id of the one to use.
    ///
    /// Engines before API 1.44 accept two networks of the same name, and a name that matches
    /// two makes every container start on it fail ("ambiguous"), so containers join by this
    /// id. Creations are serialized within this process. Servers that create one at the same
    /// moment, and a server that finds such twins left behind, all keep the oldest (the
    /// engine's creation time, then the id: one order for every server) and remove the others
    /// they labelled. An engine refuses to remove a network containers are on; such twins are
    /// logged and tried again at the next start.
    pub async fn ensure_network(&self) -> Result<String, DockerError> {
        let _one_at_a_time = NETWORK_LOCK.lock().await;
        let mut named = self.networks_named().await?;
        if named.is_empty() {
            let req = NetworkCreateRequest {
                name: self.network.clone(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([(
                    labels::MANAGED.to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            };
            let created = self.docker.create_network(req).await;
            named = self.networks_named().await?;
            // Newer engines refuse a second network of a name: another server's is as good.
            if let Err(source) = created
                && named.is_empty()
            {
                return Err(DockerError::Api {
                    context: format!("cannot create the network {}", self.network),
                    source,
                });
            }
        }
        named.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        for twin in named.iter().skip(1).filter(|n| n.managed) {
            if let Err(e) = self.docker.remove_network(&twin.id).await {
                tracing::warn!(
                    network = %self.network,
                    id = %twin.id,
                    error = %e,
                    "two networks have this name (containers that join it by name fail as \
                     ambiguous); this one could not be removed (remove it, or move its containers)"
                );
            }
        }
        match named.into_iter().next() {
            Some(keep) => Ok(keep.id),
            // Removed by someone else between the create and the list.
            None => Err(DockerError::Other(format!(
                "the network {} vanished as it was created; try again",
                self.network
            ))),
        }
    }

    /// The networks named exactly like the apps' network.
    async fn networks_named(&self) -> Result<Vec<Named>, DockerError> {
        let filters = HashMap::from([("name".to_string(), vec![self.network.clone()])]);
        let list = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|source| DockerError::Api {
                context: "cannot list networks".into(),
                source,
            })?;
        // The engine's name filter also matches parts of names.
        Ok(list
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(self.network.as_str()))
            .filter_map(|n| {
                let managed = n
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(labels::MANAGED));
                Some(Named {
                    id: n.id?,
                    // Unknown times sort last, so a missing date cannot make a network the keeper.
                    created: n
                        .created
                        .as_deref()
                        .and_then(crate::logs::nanos)
                        .unwrap_or(i128::MAX),
                    managed,
                })
            })
            .collect())
    }
}

/// A network named like the apps' network.
struct Named {
    id: String,
    /// The engine's creation time, in nanoseconds since the epoch.
    created: i128,
    /// Labelled by a wharf server, so a twin wharf may remove.
    managed: bool,
}
