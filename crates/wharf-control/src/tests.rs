//! In-process API tests (axum `oneshot`) with a runtime that runs nothing: input validation,
//! auth and the API description. Real processes are exercised end to end in `crates/wharf/tests`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use wharf_runtime::{BoxFuture, InstanceSpec, InstanceStatus, Runtime};
use wharf_store::AppKind;

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
        hooks: crate::PublicUrl::default_for("localhost", gateway.listen_addrs()[0].port()),
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
        stopping: Default::default(),
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

impl Harness {
    /// A GET with the admin token: status, headers and JSON body.
    async fn get_full(&self, uri: &str) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let req = Request::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.token))
            .body(Body::empty())
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    /// Follows `rel="next"` links from `uri`; every name seen, and the first page's total.
    async fn walk_names(&self, uri: &str) -> (Vec<String>, Option<u64>) {
        let mut names = Vec::new();
        let mut total = None;
        let mut next = Some(uri.to_string());
        let mut pages = 0;
        while let Some(uri) = next.take() {
            pages += 1;
            assert!(pages < 1000, "the walk ends");
            let (status, headers, body) = self.get_full(&uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            if pages == 1 {
                total = headers
                    .get("x-total-count")
                    .map(|v| v.to_str().unwrap().parse().unwrap());
            }
            for a in body.as_array().unwrap() {
                names.push(a["name"].as_str().unwrap().to_string());
            }
            next = headers.get("link").and_then(|l| {
                l.to_str().unwrap().split(", ").find_map(|part| {
                    let (target, rel) = part.strip_prefix('<')?.split_once(">; ")?;
                    (rel == "rel=\"next\"").then(|| target.to_string())
                })
            });
        }
        (names, total)
    }
}

fn bulk_apps(store: &Store, n: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..n)
        .map(|i| format!("site-{:04}", (i * 7919) % n))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let kind = if i % 4 == 0 {
            AppKind::Static
        } else {
            AppKind::Process
        };
        store
            .create_app(
                name,
                kind,
                &Default::default(),
                &[format!("{name}.example.test")],
                &BTreeMap::new(),
            )
            .unwrap();
    }
    names.sort();
    names
}

#[tokio::test]
async fn app_pages_linked_by_the_link_header_list_every_app_once() {
    let h = harness("pages");
    let names = bulk_apps(&h.store, 300);
    let (seen, total) = h.walk_names("/api/v1/apps?limit=37").await;
    assert_eq!(seen, names, "every app once, in name order");
    assert_eq!(total, Some(300));
    // Without a limit: the default page of 100, and a next link.
    let (_, headers, body) = h.get_full("/api/v1/apps").await;
    assert_eq!(body.as_array().unwrap().len(), 100);
    let link = headers.get("link").unwrap().to_str().unwrap();
    assert_eq!(
        link,
        "</api/v1/apps?limit=100&after=site-0099>; rel=\"next\""
    );
    // From the middle, both neighbours are announced; walking back comes to the start.
    let (_, headers, body) = h.get_full("/api/v1/apps?limit=2&after=site-0001").await;
    assert_eq!(body[0]["name"], "site-0002");
    let link = headers.get("link").unwrap().to_str().unwrap();
    assert!(
        link.contains("</api/v1/apps?limit=2&before=site-0002>; rel=\"prev\""),
        "{link}"
    );
    let (_, headers, body) = h.get_full("/api/v1/apps?limit=2&before=site-0002").await;
    assert_eq!(body[0]["name"], "site-0000");
    assert_eq!(body[1]["name"], "site-0001");
    assert!(
        !headers
            .get("link")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("prev"),
        "the first page has no previous one"
    );
    // The last page has no next link.
    let (_, headers, body) = h.get_full("/api/v1/apps?limit=5&after=site-0295").await;
    assert_eq!(body.as_array().unwrap().len(), 4);
    assert!(
        !headers
            .get("link")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("next")
    );

    let (status, _, body) = h.get_full("/api/v1/apps?limit=1001").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("1000"), "{body}");
    let (status, _, body) = h.get_full("/api/v1/apps?limit=ten").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = h.get_full("/api/v1/apps?state=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("running"),
        "{body}"
    );
}

#[tokio::test]
async fn app_filters_select_by_prefix_name_part_kind_and_state() {
    let h = harness("filters");
    let names = bulk_apps(&h.store, 200);
    // Process apps with nothing to run show `no-command`; static ones `static`.
    let statics: Vec<String> = names
        .iter()
        .filter(|n| h.store.app(n).unwrap().kind == AppKind::Static)
        .cloned()
        .collect();
    assert_eq!(statics.len(), 50);
    let (seen, total) = h.walk_names("/api/v1/apps?limit=7&kind=static").await;
    assert_eq!((seen, total), (statics.clone(), Some(50)));
    let (seen, total) = h.walk_names("/api/v1/apps?limit=7&state=static").await;
    assert_eq!(
        seen, statics,
        "state filters while scanning, every page full but the last"
    );
    assert_eq!(total, None, "no total for a state filter");
    let (seen, _) = h.walk_names("/api/v1/apps?limit=30&state=no-command").await;
    assert_eq!(seen.len(), 150);
    let (seen, total) = h.walk_names("/api/v1/apps?limit=3&prefix=site-01").await;
    let expected: Vec<String> = (100..200).map(|i| format!("site-{i:04}")).collect();
    assert_eq!((seen, total), (expected, Some(100)));
    // `q` is a part of the name, in any case (the dashboard's search).
    let (seen, total) = h.walk_names("/api/v1/apps?q=E-019").await;
    let expected: Vec<String> = (190..200).map(|i| format!("site-{i:04}")).collect();
    assert_eq!((seen, total), (expected, Some(10)));
    let (seen, total) = h.walk_names("/api/v1/apps?prefix=nothing").await;
    assert_eq!((seen.len(), total), (0, Some(0)));
    // Status counts the apps; `apps=false` leaves the list out.
    let (status, _, body) = h.get_full("/api/v1/status?apps=false").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["app_count"], 200);
    assert_eq!(body["apps"], serde_json::json!([]));
}

#[tokio::test]
async fn operations_and_releases_page_newest_first() {
    let h = harness("op-pages");
    for i in 0..45 {
        let op = h
            .store
            .begin_operation(Some(if i % 2 == 0 { "a" } else { "b" }), "deploy", "system")
            .unwrap();
        h.store
            .finish_operation(op, wharf_store::OpStatus::Succeeded, "ok")
            .unwrap();
    }
    let mut ids = Vec::new();
    let mut next = Some("/api/v1/operations?limit=10&app=a".to_string());
    while let Some(uri) = next.take() {
        let (status, headers, body) = h.get_full(&uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["x-total-count"], "23");
        for o in body.as_array().unwrap() {
            assert_eq!(o["app"], "a");
            ids.push(o["id"].as_i64().unwrap());
        }
        next = headers.get("link").map(|l| {
            let l = l.to_str().unwrap();
            l[1..l.find('>').unwrap()].to_string()
        });
    }
    assert_eq!(ids.len(), 23);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let (status, _, _) = h.get_full("/api/v1/operations?status=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    bulk_apps(&h.store, 1);
    for _ in 0..5 {
        h.store.begin_release("site-0000", "git x main").unwrap();
    }
    let (_, headers, body) = h
        .get_full("/api/v1/apps/site-0000/releases?limit=2&before=5")
        .await;
    let numbers: Vec<u64> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [4, 3]);
    assert_eq!(headers["x-total-count"], "5");
    assert_eq!(
        headers["link"],
        "</api/v1/apps/site-0000/releases?limit=2&before=3>; rel=\"next\""
    );
}

#[tokio::test]
async fn a_new_app_whose_default_host_another_app_has_is_refused() {
    let h = harness("default-host");
    h.store
        .create_app(
            "a",
            AppKind::Static,
            &Default::default(),
            &["b.localhost".into()],
            &BTreeMap::new(),
        )
        .unwrap();
    let (status, body) = h
        .authed(
            "POST",
            "/api/v1/apps",
            Some(r#"{"name":"b","kind":"static"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"a\""),
        "{body}"
    );
    // A domain that is another app's default host is refused too.
    let (status, body) = h
        .authed(
            "POST",
            "/api/v1/apps/a/domains",
            Some(r#"{"host":"a.localhost"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

/// The dashboard as `wharf server` serves it: beside the API on one real loopback listener,
/// calling the API over it. Requests to the dashboard go straight to the router.
async fn serve_with_dashboard(h: &Harness) -> axum::Router {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h
        .router
        .clone()
        .merge(wharf_dashboard::router(format!("http://{addr}")));
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });
    app
}

async fn dashboard_get(app: &axum::Router, uri: &str, cookie: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .uri(uri)
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn the_dashboard_finds_one_app_among_thousands_and_pages_through_them() {
    let h = harness("dash-pages");
    let names = bulk_apps(&h.store, 2000);
    let app = serve_with_dashboard(&h).await;
    let login = Request::builder()
        .method("POST")
        .uri("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={}", h.token)))
        .unwrap();
    let resp = app.clone().oneshot(login).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // The first page: 50 apps, a search box, a next link and no previous one.
    let (status, page) = dashboard_get(&app, "/", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("2000 apps"), "{page}");
    assert!(page.contains(r#"name="q""#), "a search box");
    assert_eq!(page.matches(r#"<a href="/apps/"#).count(), 50);
    assert!(page.contains(&format!(r#"href="/apps/{}""#, names[49])));
    assert!(!page.contains(&format!(r#"href="/apps/{}""#, names[50])));
    assert!(
        page.contains(r#"rel="next" href="/?after=site%2D0049""#),
        "{page}"
    );
    assert!(!page.contains(r#"rel="prev""#));

    // Searching one app by name finds it on the first page, alone.
    let (status, page) = dashboard_get(&app, "/?q=site-1234", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(r#"href="/apps/site-1234""#), "{page}");
    assert_eq!(page.matches(r#"<a href="/apps/"#).count(), 1);
    assert!(page.contains("1 of 2000 apps match"), "{page}");
    assert!(!page.contains(r#"rel="next""#));

    // A search with many matches pages too, keeping the search in its links.
    let (_, page) = dashboard_get(&app, "/?q=site-1&after=site-1049", &cookie).await;
    assert!(page.contains(r#"href="/apps/site-1050""#), "{page}");
    assert!(page.contains("1000 of 2000 apps match"), "{page}");
    assert!(
        page.contains(r#"rel="prev" href="/?q=site%2D1&amp;before=site%2D1050""#),
        "{page}"
    );
    assert!(
        page.contains(r#"rel="next" href="/?q=site%2D1&amp;after=site%2D1099""#),
        "{page}"
    );
    let (_, page) = dashboard_get(&app, "/?q=site-1&before=site-1050", &cookie).await;
    assert!(page.contains(r#"href="/apps/site-1000""#), "{page}");
    assert!(page.contains(r#"href="/apps/site-1049""#), "{page}");
    assert!(!page.contains(r#"href="/apps/site-1050""#), "{page}");

    // The operations list pages as well.
    for i in 0..120 {
        h.store
            .begin_operation(Some(&names[i % 3]), "restart", "system")
            .unwrap();
    }
    let (status, page) = dashboard_get(&app, "/operations", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page.matches("<tr><td>").count(), 100, "{page}");
    let older = page
        .split(r#"rel="next" href=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("an Older link")
        .to_string();
    let (_, page) = dashboard_get(&app, &older, &cookie).await;
    assert_eq!(page.matches("<tr><td>").count(), 20, "{page}");
    assert!(!page.contains(r#"rel="next""#));
}

/// Makes user `name` with `role` (on `app`, or everywhere) and a token of theirs; returns it.
async fn user_token(h: &Harness, name: &str, role: &str, app: Option<&str>) -> String {
    let body = match app {
        Some(a) => format!(r#"{{"name":"{name}","role":"{role}","app":"{a}"}}"#),
        None => format!(r#"{{"name":"{name}","role":"{role}"}}"#),
    };
    let (status, user) = h.authed("POST", "/api/v1/users", Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (status, made) = h
        .authed(
            "POST",
            "/api/v1/tokens",
            Some(&format!(r#"{{"name":"t1","user":"{name}"}}"#)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_viewer_is_refused_every_write_and_a_deployer_its_own_apps_only() {
    let h = harness("roles");
    for app in ["blog", "shop"] {
        let (s, b) = h
            .authed(
                "POST",
                "/api/v1/apps",
                Some(&format!(r#"{{"name":"{app}","kind":"static"}}"#)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let viewer = user_token(&h, "vic", "viewer", None).await;
    let deployer = user_token(&h, "dee", "deployer", Some("blog")).await;

    let writes: &[(&str, &str, Option<&str>)] = &[
        (
            "POST",
            "/api/v1/apps",
            Some(r#"{"name":"new","kind":"static"}"#),
        ),
        ("PATCH", "/api/v1/apps/blog", Some(r#"{"replicas":2}"#)),
        ("DELETE", "/api/v1/apps/blog", None),
        (
            "POST",
            "/api/v1/apps/blog/env",
            Some(r#"{"set":{"A":"1"}}"#),
        ),
        (
            "POST",
            "/api/v1/apps/blog/domains",
            Some(r#"{"host":"a.example"}"#),
        ),
        ("POST", "/api/v1/apps/blog/deploy", Some("{}")),
        ("POST", "/api/v1/apps/blog/restart", None),
        ("POST", "/api/v1/apps/blog/rollback", None),
        ("POST", "/api/v1/apps/blog/webhook", None),
        ("POST", "/api/v1/users", Some(r#"{"name":"eve"}"#)),
        (
            "PUT",
            "/api/v1/users/dee/roles",
            Some(r#"{"role":"admin"}"#),
        ),
        ("DELETE", "/api/v1/users/dee", None),
        (
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"x","user":"admin"}"#),
        ),
        ("DELETE", "/api/v1/tokens/admin?user=admin", None),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"n1"}"#)),
        (
            "POST",
            "/api/v1/databases",
            Some(r#"{"name":"pg","engine":"postgres"}"#),
        ),
        ("POST", "/api/v1/backups", Some(r#"{"target":"blog"}"#)),
    ];
    for (method, uri, body) in writes {
        let (s, b) = h.call(method, uri, *body, Some(&viewer)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "viewer {method} {uri}: {b}");
        assert_eq!(b["error"], "forbidden");
        assert!(b["message"].as_str().unwrap().contains(" role"), "{b}");
    }
    for uri in [
        "/api/v1/apps",
        "/api/v1/apps/blog",
        "/api/v1/operations",
        "/api/v1/users",
    ] {
        let (s, b) = h.call("GET", uri, None, Some(&viewer)).await;
        assert_eq!(s, StatusCode::OK, "viewer GET {uri}: {b}");
    }
    let (s, apps) = h.call("GET", "/api/v1/apps", None, Some(&viewer)).await;
    assert_eq!((s, apps.as_array().unwrap().len()), (StatusCode::OK, 2));

    // The deployer: its app only, listed alone, and no user management.
    let (s, b) = h
        .call(
            "POST",
            "/api/v1/apps/blog/env",
            Some(r#"{"set":{"A":"1"}}"#),
            Some(&deployer),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["operation"]["actor"], "dee", "{b}");
    let (s, b) = h
        .call(
            "POST",
            "/api/v1/apps/shop/env",
            Some(r#"{"set":{"A":"1"}}"#),
            Some(&deployer),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("deployer role on app shop"),
        "{b}"
    );
    let (_, apps) = h.call("GET", "/api/v1/apps", None, Some(&deployer)).await;
    let names: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blog"]);
    for (method, uri, body) in [
        ("POST", "/api/v1/users", Some(r#"{"name":"eve"}"#)),
        ("GET", "/api/v1/tokens?user=admin", None),
        ("DELETE", "/api/v1/tokens/t1?user=vic", None),
        ("GET", "/api/v1/apps/shop", None),
    ] {
        let (s, b) = h.call(method, uri, body, Some(&deployer)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "deployer {method} {uri}: {b}");
    }
    // Settings that reach past the app, to the server's disk with its rights, are an admin's:
    // a static root on the data folder would serve the admin token.
    let root = h._dir.0.display().to_string();
    for (method, uri, body) in [
        (
            "PATCH",
            "/api/v1/apps/blog",
            format!(r#"{{"root":"{root}"}}"#),
        ),
        (
            "PATCH",
            "/api/v1/apps/blog",
            r#"{"sandbox":false}"#.to_string(),
        ),
        (
            "PATCH",
            "/api/v1/apps/blog",
            format!(r#"{{"git_url":"{root}/git/shop.git"}}"#),
        ),
        (
            "POST",
            "/api/v1/apps/blog/deploy",
            r#"{"git":"file:///srv/other"}"#.to_string(),
        ),
    ] {
        let (s, b) = h.call(method, uri, Some(&body), Some(&deployer)).await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "deployer {method} {uri} {body}: {b}"
        );
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains("needs the admin role"),
            "{b}"
        );
    }
    let (s, b) = h
        .call(
            "PATCH",
            "/api/v1/apps/blog",
            Some(r#"{"git_url":"https://example.com/blog.git"}"#),
            Some(&deployer),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a repository on the network is the deployer's: {b}"
    );

    // Its own tokens it manages itself.
    let (s, mine) = h.call("GET", "/api/v1/tokens", None, Some(&deployer)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert!(mine[0].get("token").is_none(), "values are never listed");

    // The operations log names who did what.
    let (_, ops) = h.authed("GET", "/api/v1/operations", None).await;
    let actors: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["dee", "dee", "admin", "admin"], "{ops}");
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_a_password_login_makes_one() {
    let h = harness("revoke");
    let viewer = user_token(&h, "vic", "viewer", None).await;
    assert_eq!(
        h.call("GET", "/api/v1/apps", None, Some(&viewer)).await.0,
        StatusCode::OK
    );
    let (s, _) = h.authed("DELETE", "/api/v1/tokens/t1?user=vic", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        h.call("GET", "/api/v1/apps", None, Some(&viewer)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A password: a wrong one is refused the same way as an unknown user.
    let (s, _) = h
        .authed(
            "PUT",
            "/api/v1/users/vic/password",
            Some(r#"{"password":"correct horse"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for body in [
        r#"{"user":"vic","password":"wrong horse"}"#,
        r#"{"user":"nobody","password":"correct horse"}"#,
    ] {
        let (s, b) = h.call("POST", "/api/v1/login", Some(body), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        assert_eq!(b["message"], "wrong user name or password");
    }
    let (s, made) = h
        .call(
            "POST",
            "/api/v1/login",
            Some(r#"{"user":"vic","password":"correct horse"}"#),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let session = made["token"].as_str().unwrap().to_string();
    assert!(made["expires_at"].as_i64().is_some());
    assert_eq!(
        h.call("GET", "/api/v1/apps", None, Some(&session)).await.0,
        StatusCode::OK
    );
    // What outlasts a session asks for the password again, so a stolen session cookie cannot
    // mint a lasting token or take the password over.
    let session_expires = made["expires_at"].as_i64().unwrap();
    for body in [
        r#"{"name":"forever"}"#,
        r#"{"name":"forever","password":"wrong horse"}"#,
    ] {
        let (s, b) = h
            .call("POST", "/api/v1/tokens", Some(body), Some(&session))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    }
    let (s, b) = h
        .call(
            "PUT",
            "/api/v1/users/vic/password",
            Some(r#"{"password":"stolen horse"}"#),
            Some(&session),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = h
        .call(
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"ci","password":"correct horse"}"#),
            Some(&session),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // ... and never outlasts the token that made it.
    let expires = b["expires_at"].as_i64().expect("it expires");
    assert!(expires <= session_expires, "{b}");
    let ci = b["token"].as_str().unwrap().to_string();
    let (s, b) = h
        .call(
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"ci2"}"#),
            Some(&ci),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(b["expires_at"].as_i64().unwrap() <= expires, "{b}");
    for name in ["ci", "ci2"] {
        let (s, _) = h
            .authed("DELETE", &format!("/api/v1/tokens/{name}?user=vic"), None)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    // A new password ends the sessions the old one opened.
    let (s, _) = h
        .authed(
            "PUT",
            "/api/v1/users/vic/password",
            Some(r#"{"password":"another horse"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        h.call("GET", "/api/v1/apps", None, Some(&session)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, made) = h
        .call(
            "POST",
            "/api/v1/login",
            Some(r#"{"user":"vic","password":"another horse"}"#),
            None,
        )
        .await;
    let session = made["token"].as_str().unwrap().to_string();
    let (s, _) = h.call("POST", "/api/v1/logout", None, Some(&session)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        h.call("GET", "/api/v1/apps", None, Some(&session)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The last admin stays.
    let (s, b) = h.authed("DELETE", "/api/v1/users/admin", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
}

/// The dashboard acts with the session's token: a viewer who logged in with a password is
/// refused a change with the API's reason on the page, and logging out revokes the token.
#[tokio::test]
async fn a_viewers_dashboard_session_is_refused_changes_with_the_reason_shown() {
    let h = harness("dash-roles");
    let (s, _) = h
        .authed(
            "POST",
            "/api/v1/apps",
            Some(r#"{"name":"blog","kind":"static"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = h
        .authed(
            "POST",
            "/api/v1/users",
            Some(r#"{"name":"vic","role":"viewer","password":"correct horse"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let app = serve_with_dashboard(&h).await;
    let form = |uri: &str, body: String, cookie: &str| {
        Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body(Body::from(body))
            .unwrap()
    };
    let resp = app
        .clone()
        .oneshot(form("/login", "user=vic&password=wrong+horse".into(), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .clone()
        .oneshot(form("/login", "user=vic&password=correct+horse".into(), ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, page) = dashboard_get(&app, "/apps/blog", &cookie).await;
    assert_eq!(status, StatusCode::OK, "a viewer reads");
    let csrf = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let resp = app
        .clone()
        .oneshot(form(
            "/apps/blog/env",
            format!("csrf={csrf}&name=A&value=1"),
            &cookie,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let to = resp.headers()["location"].to_str().unwrap().to_string();
    let (_, page) = dashboard_get(&app, &to, &cookie).await;
    assert!(
        page.contains("this needs the deployer role on app blog"),
        "the refusal is shown: {page}"
    );
    assert!(h.store.app("blog").unwrap().env_names.is_empty());
    // The Users page lists the viewer's own session token.
    let (status, page) = dashboard_get(&app, "/users", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("session-"), "{page}");
    // Logging out revokes the password session's token.
    assert_eq!(h.store.tokens(Some("vic")).unwrap().len(), 1);
    let resp = app
        .clone()
        .oneshot(form("/logout", format!("csrf={csrf}"), &cookie))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(h.store.tokens(Some("vic")).unwrap().is_empty());
}

/// Logs in to the dashboard with `token`; returns the session cookie.
async fn dashboard_login(app: &axum::Router, token: &str) -> String {
    let login = Request::builder()
        .method("POST")
        .uri("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap();
    let resp = app.clone().oneshot(login).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// A failed app is red with its reason on the overview and its page; a static app shows as a
/// static site with no restart, instances or terminal.
#[tokio::test]
async fn the_dashboard_shows_failures_in_red_with_why_and_static_apps_as_static() {
    let h = harness("dash-states");
    let app = serve_with_dashboard(&h).await;
    let cookie = dashboard_login(&app, &h.token).await;
    // It cannot start (run as root here, or nothing listens where the test runtime says it
    // started): the create fails, and the app with it.
    let (status, body) = h
        .authed(
            "POST",
            "/api/v1/apps",
            Some(r#"{"name":"broken","settings":{"run":"./serve"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = h
        .authed(
            "POST",
            "/api/v1/apps",
            Some(r#"{"name":"docs","kind":"static"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (_, page) = dashboard_get(&app, "/", &cookie).await;
    let row = page
        .split(r#"href="/apps/broken""#)
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("a row for the broken app");
    assert!(row.contains(r#"class="state failed""#), "{row}");
    assert!(
        row.contains(r#"class="bad reason""#),
        "no reason beside it: {row}"
    );

    let (_, page) = dashboard_get(&app, "/apps/broken", &cookie).await;
    assert!(
        page.contains(r#"<pre class="failure" role="alert">"#),
        "{page}"
    );
    assert!(page.contains(r#"href="/apps/broken/terminal""#), "{page}");
    assert!(page.contains(r#"action="/apps/broken/restart""#), "{page}");

    let (_, page) = dashboard_get(&app, "/apps/docs", &cookie).await;
    assert!(page.contains("static site"), "{page}");
    for absent in [
        r#"action="/apps/docs/restart""#,
        r#"href="/apps/docs/terminal""#,
        "<h2>Instances</h2>",
    ] {
        assert!(!page.contains(absent), "a static app shows {absent}");
    }
}
