//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver + fantoccini). Log in, create an app, deploy it from a local git repository and
//! watch the build stream, see it live, deploy a change, see its traffic graphed, roll back with
//! one click, read its logs;
//! a request with a wrong CSRF token and one without a session are refused; the traffic graphs
//! survive a restart of the server.
//!
//! With `WHARF_SCREENSHOTS=DIR` set, it also saves the overview and app pages at desktop and
//! phone widths there (how docs/screenshots/ is made).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use fantoccini::Locator;
use http_body_util::Full;
use support::browser::{browser, click, fill, shoot, text_until};
use support::{Repo, ServerProc, TempDir, free_port, page, require_python};
use wharf_testkit::get;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_create_deploy_roll_back_and_read_logs_in_chromium() {
    require_python();
    let tmp = TempDir::new("dashboard");
    let repo = Repo::new(
        &tmp.0,
        "web",
        &[
            ("index.html", "version one"),
            (
                "Procfile",
                "web: exec python3 -m http.server $PORT --bind $HOST\n",
            ),
        ],
    );
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let base = format!("http://{}", server.api);
    let driver = browser(&tmp.0.join("chromium")).await;
    let b = &driver.browser;

    // No session: pages send you to the login form.
    b.goto(&format!("{base}/apps/web")).await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/login"));
    fill(b, "#token", "not-a-token").await;
    click(b, "form[action='/login'] button").await;
    text_until(b, ".flash.err", |t| t.contains("not valid")).await;

    // Log in with the admin token.
    fill(b, "#token", &server.token).await;
    click(b, "form[action='/login'] button").await;
    text_until(b, "h1", |t| t == "Apps").await;

    // Create an app pointing at the repository.
    fill(b, "input[name=name]", "web").await;
    fill(b, "input[name=git_url]", &repo.url()).await;
    click(b, "form[action='/apps'] button").await;
    text_until(b, "h1", |t| t.starts_with("web")).await;

    // Deploy: the build streams into the page, then it is live.
    click(b, "form[data-deploy] button").await;
    let done = text_until(b, "#deploy-status", |t| {
        t.starts_with('✓') || t.starts_with('✗')
    })
    .await;
    assert!(done.starts_with("✓ release 1"), "{done}");
    let log = b
        .find(Locator::Css("#deploy-log"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(log.contains("detected a procfile app"), "{log}");
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("version one")
    );

    // A change, deployed the same way.
    repo.commit(&[("index.html", "version two")], "two");
    // The log stays on screen after success; the page as it is now is one reload away.
    b.refresh().await.unwrap();
    text_until(b, "h1", |t| t.contains("running")).await;
    click(b, "form[data-deploy] button").await;
    let done = text_until(b, "#deploy-status", |t| {
        t.starts_with('✓') || t.starts_with('✗')
    })
    .await;
    assert!(done.starts_with("✓ release 2"), "{done}");
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("version two")
    );

    // Traffic through the gateway shows on the app's graphs once sampled (every 5 s).
    let mut seen = false;
    for _ in 0..150 {
        page(server.http, "web.localhost").await;
        if traffic_seen(&server).await {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "no traffic sampled within 15 s");

    // The app's logs show the requests it served; the graphs show the traffic.
    b.goto(&format!("{base}/apps/web")).await.unwrap();
    text_until(b, "#app-logs", |t| t.contains("GET / HTTP")).await;
    let chart = b
        .find(Locator::Css("figure.chart svg"))
        .await
        .unwrap()
        .attr("aria-label")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(chart.starts_with("Requests: now"), "{chart}");
    assert!(
        !chart.contains("peak 0.00 "),
        "the graph shows the traffic the API sampled: {chart}"
    );

    // Logs follow live: new requests show up without reloading the page.
    let logged = |t: &str| t.matches("GET /live-").count();
    let mut followed = false;
    for i in 0..100 {
        let _ = get(server.http, "web.localhost", &format!("/live-{i}")).await;
        let text = b
            .find(Locator::Css("#app-logs"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if logged(&text) > 0 {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(followed, "new log lines never reached the open page");
    shoot(b, "app").await;

    // One click rolls back.
    click(b, "button[aria-label='Roll back to release 1']").await;
    text_until(b, ".flash", |t| t.contains("rolled back to release 1")).await;
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("version one")
    );

    b.goto(&format!("{base}/")).await.unwrap();
    text_until(b, "td", |t| t.contains("web")).await;
    shoot(b, "overview").await;

    // A change with a wrong CSRF token is refused, from inside the logged-in page.
    let status = b
        .execute(
            "return fetch('/apps/web/restart', {method: 'POST', body: new URLSearchParams({csrf: 'wrong'})}).then(r => r.status)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(403));
    // And without a session at all.
    let req = http::Request::post("/apps/web/restart")
        .header("host", server.api.to_string())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(bytes::Bytes::from("csrf=anything")))
        .unwrap();
    let r = wharf_testkit::request(server.api.parse().unwrap(), req)
        .await
        .unwrap();
    assert_eq!(r.status, 403);

    // Log out ends the session.
    click(b, "form[action='/logout'] button").await;
    b.goto(&format!("{base}/")).await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/login"));

    driver.browser.clone().close().await.unwrap();
    server.stop().await;

    // The traffic graphs survive a restart: the history was written when the server stopped,
    // and is there at once when it starts again, before any new request.
    let data = tmp.0.join("data");
    assert!(data.join("traffic.json").exists());
    let server = ServerProc::start(&data, free_port()).await;
    assert!(
        traffic_seen(&server).await,
        "the graphs came back empty after a restart"
    );
    server.stop().await;
}

/// Whether the app's traffic graph, from the API, shows any request.
async fn traffic_seen(server: &ServerProc) -> bool {
    let api: SocketAddr = server.api.parse().unwrap();
    let req = http::Request::get("/api/v1/apps/web/traffic")
        .header("host", server.api.to_string())
        .header("authorization", format!("Bearer {}", server.token))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let t: serde_json::Value =
        serde_json::from_slice(&wharf_testkit::request(api, req).await.unwrap().body).unwrap();
    t["points"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["requests_per_second"].as_f64().unwrap() > 0.0)
}
