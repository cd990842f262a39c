//! The control plane's error type (start-up and internal failures; API errors are `ApiError`).

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] wharf_store::StoreError),
    #[error(transparent)]
    Gateway(#[from] wharf_gateway::GatewayError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
