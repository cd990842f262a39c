//! The notifier: every configured channel tried for each alert, independently.

use std::time::Duration;

use crate::email::Email;
use crate::settings::{EmailRoute, WebhookUrl};
use crate::webhook::Webhook;
use crate::{Alert, NotifyError, Settings};

/// How long a channel may take to deliver one alert.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What became of an alert on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `webhook` or `email`.
    pub channel: String,
    pub ok: bool,
    /// Why it was not delivered, naming the server; never a password or a webhook's path.
    pub error: Option<String>,
}

impl Delivery {
    fn of(channel: &str, result: Result<(), String>) -> Delivery {
        Delivery {
            channel: channel.to_owned(),
            ok: result.is_ok(),
            error: result.err(),
        }
    }
}

/// Sends alerts to the channels of its [`Settings`]. Cheap to share (`Arc<Notifier>`) between
/// tasks.
pub struct Notifier {
    webhook: Option<Webhook>,
    email: Option<Email>,
}

// By hand: shows where alerts go, without the webhook's path or the SMTP password.
impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("webhook", &self.webhook.as_ref().map(Webhook::shown))
            .field("email", &self.email.as_ref().map(Email::shown))
            .finish()
    }
}

impl Notifier {
    /// Validates the settings and prepares each channel, with the default [`TIMEOUT`].
    pub fn new(settings: Settings) -> Result<Notifier, NotifyError> {
        Notifier::with_timeout(settings, TIMEOUT)
    }

    /// As [`Notifier::new`], each channel giving up after `timeout`.
    pub fn with_timeout(settings: Settings, timeout: Duration) -> Result<Notifier, NotifyError> {
        let webhook = match &settings.webhook {
            Some(url) => Some(Webhook::new(WebhookUrl::parse(url)?, timeout)?),
            None => None,
        };
        let email = match &settings.email {
            Some(email) => Some(Email::new(EmailRoute::parse(email)?, timeout)?),
            None => None,
        };
        Ok(Notifier { webhook, email })
    }

    /// Whether any channel is set up.
    pub fn is_configured(&self) -> bool {
        self.webhook.is_some() || self.email.is_some()
    }

    /// Sends the alert on every channel at once, each on its own: one failing does not stop
    /// the others. One [`Delivery`] per configured channel, webhook first.
    pub async fn send(&self, alert: &Alert) -> Vec<Delivery> {
        let webhook = async {
            match &self.webhook {
                Some(webhook) => Some(Delivery::of("webhook", webhook.send(alert).await)),
                None => None,
            }
        };
        let email = async {
            match &self.email {
                Some(email) => Some(Delivery::of("email", email.send(alert).await)),
                None => None,
            }
        };
        let (webhook, email) = tokio::join!(webhook, email);
        webhook.into_iter().chain(email).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmailSettings;

    #[test]
    fn nothing_configured_sends_nothing() {
        let notifier = Notifier::new(Settings::default()).unwrap();
        assert!(!notifier.is_configured());
        let deliveries = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(notifier.send(&Alert {
                kind: crate::AlertKind::Recovery,
                subject: "s".into(),
                body: String::new(),
                target: "t".into(),
                at: 0,
            }));
        assert!(deliveries.is_empty());
    }

    #[test]
    fn invalid_settings_build_no_notifier() {
        let error = Notifier::new(Settings {
            webhook: Some("ftp://example.com/x".into()),
            email: None,
        })
        .unwrap_err();
        assert!(error.to_string().starts_with("webhook:"), "{error}");
    }

    #[test]
    fn debug_shows_where_alerts_go_but_no_secret() {
        let notifier = Notifier::new(Settings {
            webhook: Some("https://hooks.example.com/T0/B0/token".into()),
            email: Some(EmailSettings {
                smtp: "smtps://mail.example.com".into(),
                from: "a@example.com".into(),
                to: vec!["b@example.com".into()],
                username: Some("alerts".into()),
                password: Some("hunter2".into()),
            }),
        })
        .unwrap();
        let shown = format!("{notifier:?}");
        assert!(shown.contains("https://hooks.example.com"), "{shown}");
        assert!(shown.contains("smtps://mail.example.com:465"), "{shown}");
        assert!(
            !shown.contains("token") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    /// The control plane keeps one notifier in an `Arc` and sends from spawned tasks.
    #[test]
    fn shareable_between_tasks() {
        fn shared<T: Send + Sync>(_: &T) {}
        fn spawnable<F: std::future::Future + Send>(_: F) {}
        let notifier = Notifier::new(Settings::default()).unwrap();
        shared(&notifier);
        let alert = Alert {
            kind: crate::AlertKind::Failure,
            subject: String::new(),
            body: String::new(),
            target: String::new(),
            at: 0,
        };
        spawnable(notifier.send(&alert));
    }
}
