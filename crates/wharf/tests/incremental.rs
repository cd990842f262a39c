//! Changes cost the change: creating, changing and deleting one app leaves every other app's
//! route, health state and upstream connections as they were (`wharf server` end to end).

mod support;

use support::{ServerProc, TempDir, free_port, open_to_apps, page, require_python};
use wharf_testkit::{assert_eventually, get};

/// Counts the connections that carried a request other than a health check, and answers
/// `/health` with 503 while a file `sick` is in the app's working folder.
const APP: &str = r#"
import http.server, os
conns = set()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/health":
            code, body = (503, "sick") if os.path.exists("sick") else (200, "ok")
        else:
            conns.add(id(self))
            code, body = 200, "%s %d" % (os.environ["NAME"], len(conns))
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

async fn create(server: &ServerProc, name: &str, code: &std::path::Path) {
    server
        .ok(&[
            "apps",
            "create",
            name,
            "--run",
            "exec python3 app.py",
            "--workdir",
            code.to_str().unwrap(),
            "--health-path",
            "/health",
            "--env",
            &format!("NAME={name}"),
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_one_app_leaves_the_others_routes_health_and_connections_untouched() {
    require_python();
    let tmp = TempDir::new("incremental");
    open_to_apps(&tmp.0);
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let http = server.http;
    let folder = |name: &str| {
        let dir = tmp.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.py"), APP).unwrap();
        open_to_apps(&dir);
        dir
    };
    let (steady, sick, other) = (folder("steady"), folder("sick"), folder("other"));
    create(&server, "steady", &steady).await;
    create(&server, "sick", &sick).await;
    server.ok(&["apps", "create", "docs", "--static"]).await;

    // `steady` answers over one kept-alive connection from the gateway.
    assert_eq!(
        page(http, "steady.localhost").await.as_deref(),
        Some("steady 1")
    );
    assert_eq!(
        page(http, "steady.localhost").await.as_deref(),
        Some("steady 1")
    );
    // `sick` fails its health checks: the gateway stops sending it requests.
    std::fs::write(sick.join("sick"), "").unwrap();
    open_to_apps(&sick.join("sick"));
    assert_eventually!(
        get(http, "sick.localhost", "/")
            .await
            .is_ok_and(|r| r.status == 503),
        "the gateway finds `sick` unhealthy"
    );

    // Another app comes, changes (env, domain, stop, start) and goes.
    let check_others = || async {
        assert_eq!(
            page(http, "steady.localhost").await.as_deref(),
            Some("steady 1"),
            "steady's upstream connection was dropped or its route changed"
        );
        let r = get(http, "sick.localhost", "/").await.unwrap();
        assert_eq!(
            r.status, 503,
            "sick's health verdict was forgotten (a rebuilt pool starts healthy)"
        );
        assert!(
            get(http, "docs.localhost", "/")
                .await
                .unwrap()
                .text()
                .contains("no content yet"),
            "the static app's route changed"
        );
    };
    create(&server, "other", &other).await;
    assert_eq!(
        page(http, "other.localhost").await.as_deref(),
        Some("other 1")
    );
    check_others().await;
    server.ok(&["env", "set", "other", "NAME=changed"]).await;
    assert_eq!(
        page(http, "other.localhost").await.as_deref(),
        Some("changed 1")
    );
    check_others().await;
    server
        .ok(&["domains", "add", "other", "other.example.test"])
        .await;
    assert_eq!(
        page(http, "other.example.test").await.as_deref(),
        Some("changed 1")
    );
    check_others().await;
    server.ok(&["apps", "stop", "other"]).await;
    check_others().await;
    server.ok(&["apps", "start", "other"]).await;
    check_others().await;
    server.ok(&["apps", "delete", "other", "--yes"]).await;
    assert_eq!(
        get(http, "other.localhost", "/").await.unwrap().status,
        404,
        "a deleted app's route is gone"
    );
    check_others().await;

    // `sick` recovers through its own health checks, which never restarted.
    std::fs::remove_file(sick.join("sick")).unwrap();
    assert_eventually!(
        page(http, "sick.localhost").await.as_deref() == Some("sick 1"),
        "sick serves again once healthy"
    );
    server.stop().await;
}
