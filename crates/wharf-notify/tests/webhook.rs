//! The webhook channel against real loopback servers: what arrives, and what an error answer,
//! a refused connection, a silent server and an untrusted certificate give.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wharf_notify::{Alert, AlertKind, Delivery, Notifier, Settings};

/// What the hook server saw of one request.
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// A loopback HTTP server answering every request with `status` and `said`, reporting each
/// request it receives.
async fn hook_server(status: StatusCode, said: &'static str) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let seen = Seen {
                            method: req.method().to_string(),
                            path: req.uri().to_string(),
                            content_type: req
                                .headers()
                                .get(http::header::CONTENT_TYPE)
                                .map(|v| v.to_str().unwrap().to_owned()),
                            body: req.into_body().collect().await.unwrap().to_bytes().to_vec(),
                        };
                        let _ = tx.send(seen).await;
                        let mut response = Response::new(Full::new(Bytes::from(said)));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn alert() -> Alert {
    Alert {
        kind: AlertKind::Failure,
        subject: "backup of app db1 failed".into(),
        body: "pg_dump exited with status 1".into(),
        target: "db1".into(),
        at: 1_700_000_000,
    }
}

fn webhook(url: String) -> Notifier {
    Notifier::new(Settings {
        webhook: Some(url),
        email: None,
    })
    .unwrap()
}

fn only(deliveries: Vec<Delivery>) -> Delivery {
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let delivery = deliveries.into_iter().next().unwrap();
    assert_eq!(delivery.channel, "webhook");
    delivery
}

#[tokio::test]
async fn the_alert_arrives_as_json() {
    let (addr, mut seen) = hook_server(StatusCode::NO_CONTENT, "").await;
    let notifier = webhook(format!("http://{addr}/hooks/T0/secret?channel=ops"));
    assert!(notifier.is_configured());

    let delivery = only(notifier.send(&alert()).await);
    assert_eq!(
        delivery,
        Delivery {
            channel: "webhook".into(),
            ok: true,
            error: None
        }
    );

    let request = seen.recv().await.expect("the hook received nothing");
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/T0/secret?channel=ops");
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "kind": "failure",
            "subject": "backup of app db1 failed",
            "body": "pg_dump exited with status 1",
            "target": "db1",
            "at": 1_700_000_000,
            "text": "backup of app db1 failed\npg_dump exited with status 1",
        })
    );
    assert!(
        seen.try_recv().is_err(),
        "the alert was sent more than once"
    );
}

#[tokio::test]
async fn an_error_answer_is_not_a_delivery_and_names_the_status() {
    let (addr, mut seen) = hook_server(StatusCode::INTERNAL_SERVER_ERROR, "invalid_payload").await;
    let delivery = only(
        webhook(format!("http://{addr}/hooks/T0/secret"))
            .send(&alert())
            .await,
    );
    assert!(!delivery.ok);
    let error = delivery.error.expect("no error said");
    assert!(error.contains("500"), "{error}");
    assert!(
        error.contains("invalid_payload"),
        "the service's reason is missing: {error}"
    );
    assert!(
        error.contains(&format!("http://{addr}")),
        "the server is not named: {error}"
    );
    assert!(
        !error.contains("secret"),
        "the webhook's path (its token) leaked: {error}"
    );
    assert!(seen.recv().await.is_some());
}

#[tokio::test]
async fn an_unreachable_webhook_is_not_a_delivery() {
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let delivery = only(webhook(format!("http://{addr}/hook")).send(&alert()).await);
    assert!(!delivery.ok);
    let error = delivery.error.unwrap();
    assert!(error.contains(&format!("http://{addr}")), "{error}");
    assert!(error.to_lowercase().contains("refused"), "{error}");
}

#[tokio::test]
async fn a_silent_webhook_gives_up_after_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and keeps the connection open without ever answering.
    let held = tokio::spawn(async move {
        let (_stream, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
    });
    let notifier = Notifier::with_timeout(
        Settings {
            webhook: Some(format!("http://{addr}/hook")),
            email: None,
        },
        Duration::from_millis(300),
    )
    .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), notifier.send(&alert()))
        .await
        .expect("send did not give up");
    let delivery = only(delivery);
    assert!(!delivery.ok);
    assert!(delivery.error.unwrap().contains("no answer within 0.3 s"));
    held.abort();
}

#[tokio::test]
async fn an_https_webhook_with_an_untrusted_certificate_is_not_a_delivery() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.cert.der().clone()],
        tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
            cert.signing_key.serialize_der().into(),
        ),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut handshakes) = mpsc::channel(1);
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = tx.send(acceptor.accept(stream).await.is_ok()).await;
    });

    let delivery = only(
        webhook(format!("https://localhost:{port}/hook"))
            .send(&alert())
            .await,
    );
    assert!(!delivery.ok);
    let error = delivery.error.unwrap();
    assert!(
        error.contains(&format!("https://localhost:{port}")),
        "{error}"
    );
    assert!(error.contains("certificate"), "{error}");
    // The client did speak TLS (the server saw a handshake, which it refused to complete).
    assert_eq!(handshakes.recv().await, Some(false));
}
