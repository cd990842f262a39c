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
    /// (then it is used as it is: it may be the user's own).
    ///
    /// Engines before API 1.44 accept two networks of the same name, and a name that matches
    /// two makes every container creation on it fail ("ambiguous"). Creations are serialized
    /// here; servers that create one at the same moment all keep the oldest and remove the
    /// others they labelled, and so does a server that finds such twins left behind. Oldest,
    /// not smallest id: the first creator may look before the second network exists, so only
    /// the later creators can be relied on to see both, and they must give way.
    pub async fn ensure_network(&self) -> Result<(), DockerError> {
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
            self.docker
                .create_network(req)
                .await
                .map_err(|source| DockerError::Api {
                    context: format!("cannot create the network {}", self.network),
                    source,
                })?;
            named = self.networks_named().await?;
        }
        named.sort_by(|a, b| {
            (created_key(&a.created), &a.id).cmp(&(created_key(&b.created), &b.id))
        });
        for twin in named.iter().skip(1).filter(|n| n.managed) {
            // One with containers stays (the engine refuses); another server may have removed
            // it already.
            let _ = self.docker.remove_network(&twin.id).await;
        }
        Ok(())
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
                    created: n.created.unwrap_or_default(),
                    managed,
                })
            })
            .collect())
    }
}

/// A network named like the apps' network.
struct Named {
    id: String,
    /// RFC 3339 in UTC, as the engine writes it.
    created: String,
    /// Labelled by a wharf server, so a twin wharf may remove.
    managed: bool,
}

/// A creation time that sorts as a string: the engine drops a fraction's trailing zeros
/// ("…:19.8153185Z"), so the fraction is padded to nine digits.
fn created_key(created: &str) -> String {
    let t = created.trim_end_matches('Z');
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    format!("{secs}.{frac:0<9}")
}

#[cfg(test)]
mod tests {
    use super::created_key;

    #[test]
    fn creation_times_sort_whatever_their_fractions_length() {
        // The engine writes 19.815318560 as "19.81531856".
        let later = created_key("2026-11-27T11:06:19.81531856Z");
        let earlier = created_key("2026-11-27T11:06:19.8153185Z");
        assert!(earlier < later);
        assert!(created_key("2026-11-27T11:06:19Z") < earlier);
        assert!(later < created_key("2026-11-27T11:06:20.1Z"));
    }
}
