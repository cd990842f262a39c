//! In-process API tests (axum `oneshot`) with a runtime that runs nothing: input validation,
//! auth and the API description. Real processes are exercised end to end in `crates/wharf/tests`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use wharf_runtime::{BoxFuture, InstanceSpec, InstanceStatus, Runtime};

use super::*;

/// Remembers what it was asked to run; runs nothing.
#[derive(Default)]
struct NoRuntime {
    started: Mutex<Vec<String>>,
}

impl Runtime for NoRuntime {
    fn name(&self) -> &'static str {
        "none"
    }
    fn start(
        &self,
        spec: InstanceSpec,
    ) -> BoxFuture<'_, wharf_runtime::Result<Vec<std::net::SocketAddr>>> {
        self.started.lock().unwrap().push(spec.instance);
        // Nothing listens there: the health check decides.
        Box::pin(async { Ok(vec!["127.0.0.1:9".parse().unwrap()]) })
    }
    fn stop<'a>(&'a self, _: &'a str) -> BoxFuture<'a, wharf_runtime::Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn list(&self) -> BoxFuture<'_, wharf_runtime::Result<Vec<InstanceStatus>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn logs<'a>(
        &'a self,
        _: &'a str,
        _: usize,
    ) -> BoxFuture<'a, wharf_runtime::Result<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn subscribe_logs(&self, _: &str) -> tokio::sync::broadcast::Receiver<String> {
        tokio::sync::broadcast::channel(1).1
    }
    fn exited<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Option<String>> {
        // Nothing runs, so nothing ends either: the health check decides.
        Box::pin(std::future::pending())
    }
    fn recent_output<'a>(&'a self, _: &'a str, _: usize) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { Vec::new() })
    }
}

struct Harness {
    router: axum::Router,
    token: String,
    store: Arc<Store>,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn harness(name: &str) -> Harness {
    let dir = std::env::temp_dir().join(format!("wharf-control-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = DataDir::new(dir.clone());
    let store = Arc::new(Store::open(&data.db()).unwrap());
    let token_file = auth::ensure_admin_token(&store, &data).unwrap().unwrap();
    let token = std::fs::read_to_string(token_file)
        .unwrap()
        .trim()
        .to_string();
    let gateway = Gateway::start(GatewayConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..Default::default()
    })
    .unwrap();
    let certs =
        wharf_tls::CertManager::new(gateway.certs(), data.certs(), None, Default::default());
    let routing = Routing {
        public_port: gateway.listen_addrs()[0].port(),
        base_domain: "localhost".into(),
        health_timeout: std::time::Duration::from_secs(2),
        launcher: None,
    };
    let runtime: Arc<dyn Runtime> = Arc::new(NoRuntime::default());
    let runtimes = Runtimes::process(runtime.clone());
    let users = crate::users::AppUsers::off("unit tests run apps as themselves".into());
    let databases = Arc::new(crate::databases::Databases::new(
        store.clone(),
        data.clone(),
        users.clone(),
        None,
        runtime,
    ));
    let reconciler = Reconciler::new(
        store.clone(),
        runtimes.clone(),
        gateway,
        data.clone(),
        routing,
        certs.clone(),
        users,
    );
    let backups = Arc::new(
        crate::backups::Backups::new(
            &Default::default(),
            store.clone(),
            data.clone(),
            databases.clone(),
            reconciler.clone(),
        )
        .unwrap(),
    );
    let control = Arc::new(Control {
        store: store.clone(),
        reconciler,
        runtimes,
        data,
        started: Instant::now(),
        deploys: Default::default(),
        certs,
        traffic: Default::default(),
        databases,
        backups,
    });
    Harness {
        router: api::router(control),
        token,
        store,
        _dir: TempDir(dir),
    }
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(
            String::from_utf8_lossy(&bytes).into(),
        ));
        (status, json)
    }

    async fn authed(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let token = self.token.clone();
        self.call(method, uri, body, Some(&token)).await
    }
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let h = harness("auth");
    for token in [None, Some("wrong"), Some("")] {
        let (status, body) = h.call("GET", "/api/v1/apps", None, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "unauthorized");
        assert!(body["message"].as_str().unwrap().contains("admin.token"));
    }
    let (status, _) = h.authed("GET", "/api/v1/apps", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// The `Authorization` scheme is case-insensitive (RFC 9110); HTTP Basic (what git sends) opens
/// `git push` only, not the API.
#[tokio::test]
async fn bearer_in_any_case_opens_the_api_and_basic_does_not() {
    use base64::Engine;
    let h = harness("schemes");
    let get = |auth: String| {
        let req = Request::builder()
            .uri("/api/v1/apps")
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap();
        let router = h.router.clone();
        async move { router.oneshot(req).await.unwrap().status() }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let status = get(format!("{scheme} {}", h.token)).await;
        assert_eq!(status, StatusCode::OK, "{scheme}");
    }
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("git:{}", h.token));
    assert_eq!(
        get(format!("Basic {pair}")).await,
        StatusCode::UNAUTHORIZED,
        "Basic is for git push only"
    );
    assert_eq!(
        get(format!("Bearer{}", h.token)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn invalid_input_is_refused_with_a_clear_message_and_nothing_is_stored() {
    let h = harness("invalid");
    let big = format!(
        r#"{{"name":"big","env":{{"A":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let cases: Vec<(&str, &str, String, StatusCode, &str)> = vec![
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"Bad_Name"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid app name",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"-x"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid app name",
        ),
        (
            "POST",
            "/api/v1/apps",
            format!(r#"{{"name":"{}"}}"#, "a".repeat(64)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid app name",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","domains":["a b.test"]}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid host",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","domains":["a`b.test"]}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid host",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","domains":["a||b.test"]}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid host",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","domains":["*"]}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "every host",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","env":{"1X":"v"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid variable name",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","env":{"PORT":"1"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "set by wharf",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","settings":{"memory":"lots"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`memory`",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","settings":{"workdir":"relative"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "absolute path",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","settings":{"replicas":1000}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`replicas`",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","kind":"vm"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`kind`",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","colour":"red"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `colour`",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","settings":{"bogus":1}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `bogus`",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","settings":{"runtime":"podman"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown runtime `podman`: use process, docker or swarm",
        ),
        (
            // The harness has no engine: the app could never start, so it is not saved.
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","settings":{"runtime":"docker"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the docker runtime is not available",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","settings":{"constraints":["zone-a"]}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`zone-a` is not a placement constraint",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","settings":{"stop_grace":"soon"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`stop_grace`",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","kind":"static","settings":{"runtime":"docker"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "only process apps run on docker or swarm",
        ),
        (
            "POST",
            "/api/v1/apps",
            r#"{"name":"ok","#.into(),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "POST",
            "/api/v1/apps",
            "not json".into(),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "POST",
            "/api/v1/apps",
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 1 MiB",
        ),
        (
            "GET",
            "/api/v1/apps/nope",
            String::new(),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "GET",
            "/api/v1/nothing-here",
            String::new(),
            StatusCode::NOT_FOUND,
            "openapi.json",
        ),
    ];
    for (method, uri, body, want, says) in cases {
        let body = (!body.is_empty()).then_some(body.as_str());
        let (status, json) = h.authed(method, uri, body).await;
        assert_eq!(
            status,
            want,
            "{method} {uri} {:?}: {json}",
            body.map(|b| &b[..b.len().min(80)])
        );
        assert!(json["error"].is_string(), "error code present: {json}");
        assert!(
            json["message"].as_str().unwrap().contains(says),
            "message for {:?} should say `{says}`: {json}",
            body.map(|b| &b[..b.len().min(80)])
        );
    }
    assert!(h.store.apps().unwrap().is_empty(), "nothing stored");
    assert!(
        h.store.operations(None, 10).unwrap().is_empty(),
        "no operation recorded"
    );
}

#[tokio::test]
async fn create_static_app_then_conflicts_are_409() {
    let h = harness("conflict");
    let (status, body) = h
        .authed(
            "POST",
            "/api/v1/apps",
            Some(r#"{"name":"site","kind":"static","domains":["www.example.test"]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["app"]["url"].as_str().unwrap().split(':').next(),
        Some("http")
    );
    assert_eq!(body["operation"]["status"], "succeeded", "{body}");
    let (status, body) = h
        .authed(
            "POST",
            "/api/v1/apps",
            Some(r#"{"name":"site","kind":"static"}"#),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let (status, body) = h
        .authed(
            "POST",
            "/api/v1/apps",
            Some(r#"{"name":"other","domains":["www.example.test"]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = h
        .authed(
            "POST",
            "/api/v1/apps/site/domains",
            Some(r#"{"host":"site.localhost"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(h.store.apps().unwrap().len(), 1);
}

#[tokio::test]
async fn env_values_never_come_back() {
    let h = harness("env");
    let (status, body) = h
        .authed(
            "POST",
            "/api/v1/apps",
            Some(r#"{"name":"api","env":{"SECRET":"hunter2"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(!body.to_string().contains("hunter2"));
    let (_, body) = h
        .authed(
            "POST",
            "/api/v1/apps/api/env",
            Some(r#"{"set":{"TOKEN":"s3cr3t"}}"#),
        )
        .await;
    assert!(!body.to_string().contains("s3cr3t"), "{body}");
    assert_eq!(body["app"]["env"], serde_json::json!(["SECRET", "TOKEN"]));
    let (_, ops) = h.authed("GET", "/api/v1/operations?app=api", None).await;
    assert!(!ops.to_string().contains("s3cr3t") && !ops.to_string().contains("hunter2"));
    let env: BTreeMap<String, String> = h.store.env("api").unwrap();
    assert_eq!(env["TOKEN"], "s3cr3t");

    // A value of the wrong type is refused without being quoted back.
    for (uri, body) in [
        ("/api/v1/apps", r#"{"name":"num","env":{"PIN":987654321}}"#),
        ("/api/v1/apps/api/env", r#"{"set":{"PIN":987654321}}"#),
        ("/api/v1/apps/api/env", r#"{"set":{"PIN":true}}"#),
    ] {
        let (status, body) = h.authed("POST", uri, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("PIN"), "names the variable: {message}");
        assert!(message.contains("expected a string"), "{message}");
        assert!(
            !message.contains("987654321") && !message.contains("true"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let spec = api::openapi::spec();
    let paths = spec["paths"].as_object().unwrap();
    let src = include_str!("api/mod.rs");
    for line in src
        .lines()
        .filter(|l| l.trim_start().starts_with(".route(\""))
    {
        let path = line.split('"').nth(1).unwrap();
        assert!(
            paths.contains_key(path),
            "route {path} is not documented in openapi.rs"
        );
    }
    let h = harness("openapi");
    let (status, body) = h.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["openapi"], "3.1.0");
}
