//! Alerts: a backup failed, a schedule went stale, things recovered. A [`Notifier`] sends each
//! [`Alert`] to the channels of its [`Settings`]: a webhook (the alert as JSON, POSTed over
//! HTTP or HTTPS) and email (through an SMTP server, STARTTLS or SMTPS). Each channel is tried
//! on its own and reports a [`Delivery`], so an alert that could not be sent shows as such.
//!
//! Secrets stay out of errors: a webhook's URL is shown as `scheme://host:port` only (its path
//! is often its token), and the SMTP password never appears in an error or in `Debug`.
#![forbid(unsafe_code)]

mod alert;
mod email;
mod error;
mod notifier;
mod settings;
mod webhook;

pub use alert::{Alert, AlertKind};
pub use error::NotifyError;
pub use notifier::{Delivery, Notifier, TIMEOUT};
pub use settings::{EmailSettings, Settings};
