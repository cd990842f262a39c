//! The crate's one error type: what is wrong with the alert settings.

/// Alert settings that cannot be used, each naming the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The webhook is not an `http(s)://` URL. The message never repeats the whole URL: a
    /// webhook's path often is its secret.
    #[error("webhook: {0}")]
    Webhook(String),
    /// `email.smtp` is not `smtp://host[:port]` or `smtps://host[:port]`.
    #[error("email.smtp: {0}")]
    Smtp(String),
    /// `email.from` or one of `email.to` is not an email address.
    #[error("{field}: {value:?} is not an email address: {source}")]
    Address {
        field: String,
        value: String,
        #[source]
        source: lettre::address::AddressError,
    },
    /// Anything else about the email settings (no recipient, half the credentials).
    #[error("{0}")]
    Email(String),
    /// The TLS client could not be set up (e.g. the system's root certificates).
    #[error("{channel}: TLS setup failed: {source}")]
    Tls {
        channel: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
