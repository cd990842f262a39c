//! The email channel: the alert as a plain-text message through an SMTP server.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::settings::EmailRoute;
use crate::webhook::chain;
use crate::{Alert, NotifyError};

pub(crate) struct Email {
    route: EmailRoute,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

impl Email {
    pub(crate) fn new(route: EmailRoute, timeout: Duration) -> Result<Email, NotifyError> {
        let server = &route.server;
        let tls_error = |e: lettre::transport::smtp::Error| NotifyError::Tls {
            channel: "email",
            source: Box::new(e),
        };
        let tls = TlsParameters::new_rustls(server.host.clone()).map_err(tls_error)?;
        let tls = if server.implicit_tls {
            Tls::Wrapper(tls)
        } else if route.credentials.is_some() {
            // Credentials never travel in the clear: without STARTTLS, nothing is sent.
            Tls::Required(tls)
        } else {
            Tls::Opportunistic(tls)
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host)
            .port(server.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some((user, password)) = &route.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Email {
            transport: builder.build(),
            route,
            timeout,
        })
    }

    pub(crate) fn shown(&self) -> &str {
        &self.route.server.shown
    }

    /// Sends the alert; the error names the server and what went wrong, never the password.
    pub(crate) async fn send(&self, alert: &Alert) -> Result<(), String> {
        let shown = &self.route.server.shown;
        let result = match tokio::time::timeout(self.timeout, self.deliver(alert)).await {
            Ok(result) => result.map_err(|e| format!("email via {shown}: {e}")),
            Err(_) => Err(format!(
                "email via {shown}: no answer within {} s",
                self.timeout.as_secs_f64()
            )),
        };
        result.map_err(|e| self.hide_password(e))
    }

    async fn deliver(&self, alert: &Alert) -> Result<(), String> {
        let mut message = Message::builder()
            .from(self.route.from.clone())
            .subject(alert.subject.replace(['\r', '\n'], " "));
        for to in &self.route.to {
            message = message.to(to.clone());
        }
        let message = message
            .header(ContentType::TEXT_PLAIN)
            .body(alert.email_text())
            .map_err(|e| format!("message not built: {e}"))?;
        let starttls_required = !self.route.server.implicit_tls && self.route.credentials.is_some();
        self.transport.send(message).await.map_err(|e| {
            let said = chain(&e);
            if starttls_required && said.contains("STARTTLS is not supported") {
                "not sent: the server offers no STARTTLS, and the username and password are only \
                 sent encrypted: enable STARTTLS on the server, or use smtps://"
                    .to_owned()
            } else {
                format!("not sent: {said}")
            }
        })?;
        Ok(())
    }

    /// A server may echo what it was sent; the password never leaves in an error.
    fn hide_password(&self, error: String) -> String {
        match &self.route.credentials {
            Some((_, password)) if !password.is_empty() => error.replace(password, "<hidden>"),
            _ => error,
        }
    }
}
