#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached or refused the API version.
    #[error("the Docker engine at {host} is not reachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("{context}: {source}")]
    Api {
        context: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{0}")]
    Other(String),
}
