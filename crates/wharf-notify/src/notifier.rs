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

/// Sends alerts to the channels of its [`Settings`].
pub struct Notifier {
    webhook: Option<Webhook>,
    email: Option<Email>,
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
