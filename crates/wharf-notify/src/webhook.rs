//! The webhook channel: the alert's JSON POSTed to a URL; any 2xx answer counts as delivered.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::settings::WebhookUrl;
use crate::{Alert, NotifyError};

/// How much of an error answer's body is quoted in the delivery error (services such as Slack
/// say what is wrong there, e.g. `invalid_payload`).
const QUOTED_BODY: usize = 200;

pub(crate) struct Webhook {
    url: WebhookUrl,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Webhook {
    pub(crate) fn new(url: WebhookUrl, timeout: Duration) -> Result<Webhook, NotifyError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
            .map_err(|e| NotifyError::Tls {
                channel: "webhook",
                source: Box::new(e),
            })?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // No idle connections kept: alerts are rare, and a kept socket would outlive its use.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(https);
        Ok(Webhook {
            url,
            client,
            timeout,
        })
    }

    pub(crate) fn shown(&self) -> &str {
        &self.url.shown
    }

    /// Sends the alert; the error names the server (never the URL's path) and what went wrong.
    pub(crate) async fn send(&self, alert: &Alert) -> Result<(), String> {
        let shown = &self.url.shown;
        match tokio::time::timeout(self.timeout, self.post(alert)).await {
            Ok(result) => result.map_err(|e| format!("webhook {shown}: {e}")),
            Err(_) => Err(format!(
                "webhook {shown}: no answer within {} s",
                self.timeout.as_secs_f64()
            )),
        }
    }

    async fn post(&self, alert: &Alert) -> Result<(), String> {
        let body = serde_json::to_vec(&alert.to_json()).map_err(|e| e.to_string())?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("wharf/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("not sent: {}", chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Best effort: the status alone is the error if the body cannot be read.
        let said = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| quote(&b.to_bytes()))
            .unwrap_or_default();
        Err(format!("answered {status}{said}"))
    }
}

/// `: <the start of the body>` for a text body, else nothing.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let mut cut: String = text.chars().take(QUOTED_BODY).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!(": {}", cut.replace(['\r', '\n'], " "))
}

/// An error and its causes, `a: b: c`: the client's own message alone ("client error
/// (Connect)") does not say what happened.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}
