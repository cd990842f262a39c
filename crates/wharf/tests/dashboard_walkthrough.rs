//! The dashboard as a control surface, walked in Chromium as a new user would: log in, create an
//! app, deploy it from a local git repository and watch the build (the log stays on screen),
//! open an old release's build log, change the run command and memory limit in the settings
//! form and see them applied (it keeps serving; a new instance runs), see a failed build in red
//! with its error, see a static app shown as one, and delete the app with its volume. On every page visited, at desktop (1280 px) and phone (390 px) widths, no table
//! header wraps inside a word.
//!
//! With `WHARF_SCREENSHOTS=DIR` set, each step is saved as
//! `DIR/walkthrough-NN-step-{desktop,phone}.png` (how docs/screenshots/ is made).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use fantoccini::{Client, Locator};
use support::browser::{browser, click, fill, headers_whole, shoot, shoot_at, text_until};
use support::{Repo, ServerProc, TempDir, free_port, page, require_python};

/// Every table header whole at both widths, then the screenshots of this step (scrolled to
/// `anchor`, when given).
async fn step(b: &Client, page: &str, shot: &str, anchor: Option<&str>) {
    headers_whole(b, page).await;
    shoot_at(b, shot, anchor).await;
}

async fn text_of(b: &Client, css: &str) -> String {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
        .text()
        .await
        .unwrap()
}

/// The pid of the app's one instance, from the API.
async fn pid(server: &ServerProc) -> Option<u64> {
    server.app_json("web").await["instances"][0]["pid"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_walks_the_whole_dashboard_in_chromium() {
    require_python();
    let tmp = TempDir::new("walkthrough");
    // No Procfile: the release runs the app's own run command (set in the dashboard), so a new
    // command there changes what serves. `v2/` is what the second command serves.
    let repo = Repo::new(
        &tmp.0,
        "web",
        &[
            ("index.html", "version one"),
            ("v2/index.html", "served by the new run command"),
        ],
    );
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    let base = format!("http://{}", server.api);
    let driver = browser(&tmp.0.join("chromium")).await;
    let b = &driver.browser;

    // 1. Log in as a user with a password, made by the admin token's holder (an admin: the
    // app's repository is a folder on this machine, which only admins may name).
    let admin = wharf_client::Client::new(
        &format!("http://{}", server.api),
        Some(server.token.clone()),
    )
    .unwrap();
    admin
        .create_user(&wharf_client::dto::CreateUser {
            name: "ada".into(),
            password: Some("walk the whole dashboard".into()),
            role: Some("admin".into()),
            app: None,
        })
        .await
        .unwrap();
    b.goto(&format!("{base}/login")).await.unwrap();
    shoot(b, "walkthrough-01-login").await;
    fill(b, "#user", "ada").await;
    fill(b, "#password", "walk the whole dashboard").await;
    click(b, "form[action='/login'] button").await;
    text_until(b, "h1", |t| t == "Apps").await;

    // 2. Create an app, with its repository and run command.
    fill(b, "input[name=name]", "web").await;
    fill(b, "input[name=git_url]", &repo.url()).await;
    fill(
        b,
        "form[action='/apps'] input[name=run]",
        "exec python3 -m http.server $PORT --bind $HOST",
    )
    .await;
    step(
        b,
        "the overview",
        "walkthrough-02-create",
        Some("form[action='/apps']"),
    )
    .await;
    click(b, "form[action='/apps'] button").await;
    text_until(b, "h1", |t| t.starts_with("web")).await;

    // 3. Deploy and watch the log; it stays on screen after success, with a link to the
    // release's page. A mark on the window tells whether the page was reloaded since.
    b.execute("window.stayed = true", vec![]).await.unwrap();
    click(b, "form[data-deploy] button").await;
    let done = text_until(b, "#deploy-status", |t| {
        t.starts_with('✓') || t.starts_with('✗')
    })
    .await;
    assert!(done.starts_with("✓ release 1"), "{done}");
    // Longer than the reload delay the page used to have: still the same page, log and all.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stayed = b.execute("return window.stayed === true", vec![]).await;
    assert_eq!(
        stayed.unwrap(),
        serde_json::json!(true),
        "the page reloaded"
    );
    let log = text_of(b, "#deploy-log").await;
    assert!(log.contains("release 1 of web"), "{log}");
    assert!(
        text_of(b, "#deploy-status")
            .await
            .starts_with("✓ release 1")
    );
    let link = b
        .find(Locator::Css("#deploy-release"))
        .await
        .expect("a link to the release's page")
        .attr("href")
        .await
        .unwrap();
    assert_eq!(link.as_deref(), Some("/apps/web/releases/1"));
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("version one")
    );
    step(
        b,
        "the app page after a deploy",
        "walkthrough-03-deploy",
        Some("#deploy-status"),
    )
    .await;

    // 4. Deploy again, then open release 1's kept build log from the releases table.
    repo.commit(&[("index.html", "version two")], "two");
    click(b, "form[data-deploy] button").await;
    let done = text_until(b, "#deploy-status", |t| {
        t.starts_with('✓') || t.starts_with('✗')
    })
    .await;
    assert!(done.starts_with("✓ release 2"), "{done}");
    b.refresh().await.unwrap();
    click(b, "a[aria-label='Release 1']").await;
    text_until(b, "h1", |t| t.starts_with("Release 1")).await;
    assert!(
        b.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/apps/web/releases/1")
    );
    let build_log = text_of(b, "#build-log").await;
    assert!(build_log.contains("release 1 of web"), "{build_log}");
    step(b, "the release page", "walkthrough-04-release", None).await;

    // 5. Change the run command and memory limit in the settings form: applied, a new
    // instance runs the new command, and the app serves throughout.
    b.goto(&format!("{base}/apps/web")).await.unwrap();
    let old_pid = pid(&server).await.expect("an instance runs");
    let serving = Arc::new(AtomicBool::new(true));
    let failures = Arc::new(AtomicU32::new(0));
    let requests = Arc::new(AtomicU32::new(0));
    let watcher = {
        let (serving, failures, requests) = (serving.clone(), failures.clone(), requests.clone());
        let http = server.http;
        tokio::spawn(async move {
            while serving.load(Ordering::SeqCst) && requests.load(Ordering::SeqCst) < 2000 {
                if page(http, "web.localhost").await.is_none() {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                requests.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    fill(
        b,
        "#settings input[name=run]",
        "exec python3 -m http.server $PORT --bind $HOST --directory v2",
    )
    .await;
    fill(b, "#settings input[name=memory]", "256MB").await;
    click(b, "#settings button[type=submit]").await;
    let msg = text_until(b, ".flash", |t| !t.is_empty()).await;
    assert!(
        b.find(Locator::Css(".flash.ok")).await.is_ok(),
        "the settings were refused: {msg}"
    );
    serving.store(false, Ordering::SeqCst);
    watcher.await.unwrap();
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("served by the new run command")
    );
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed while the settings were applied (of {})",
        requests.load(Ordering::SeqCst)
    );
    let new_pid = pid(&server).await.expect("an instance runs");
    assert_ne!(new_pid, old_pid, "no new instance runs the new command");
    // The form and the instance list show what now runs.
    let run = b
        .find(Locator::Css("#settings input[name=run]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(run.ends_with("--directory v2"), "{run}");
    let memory = b
        .find(Locator::Css("#settings input[name=memory]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(memory.as_deref(), Some("256MB"));
    let instances = text_of(b, "table.instances").await;
    assert!(instances.contains(&new_pid.to_string()), "{instances}");
    assert!(instances.contains("running"), "{instances}");
    step(
        b,
        "the app page after a settings change",
        "walkthrough-05-settings",
        Some("#settings"),
    )
    .await;

    // 6. A build that fails: the log stays with the error, its release is red with the
    // reason in the table and on its page, and the app keeps serving what it served.
    repo.commit(
        &[(
            "wharf.toml",
            "build = \"echo 'error[E0308]: mismatched types' >&2; exit 1\"\nstatic = \".\"\n",
        )],
        "broken",
    );
    click(b, "form[data-deploy] button").await;
    let done = text_until(b, "#deploy-status", |t| {
        t.starts_with('✓') || t.starts_with('✗')
    })
    .await;
    assert!(done.starts_with('✗'), "{done}");
    assert!(b.find(Locator::Css("#deploy-status.err")).await.is_ok());
    assert!(text_of(b, "#deploy-log").await.contains("mismatched types"));
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("served by the new run command")
    );
    click(b, "#deploy-release").await;
    text_until(b, "h1", |t| t.starts_with("Release 3")).await;
    let badge = b.find(Locator::Css("h1 .state")).await.unwrap();
    assert_eq!(badge.text().await.unwrap(), "failed");
    let red = b
        .execute(
            "return getComputedStyle(document.querySelector('h1 .state')).color",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(red, serde_json::json!("rgb(180, 35, 24)"), "failed is red");
    assert!(text_of(b, "#build-log").await.contains("mismatched types"));
    assert!(b.find(Locator::Css("pre.failure")).await.is_ok());
    step(
        b,
        "a failed release's page",
        "walkthrough-06-failed-build",
        None,
    )
    .await;
    b.goto(&format!("{base}/apps/web")).await.unwrap();
    let row = text_of(b, "a[aria-label='Release 3']").await;
    assert_eq!(row, "#3");

    // 7. The terminal: `echo hi` typed into xterm.js runs in the app's release and its output
    // comes back with the exit status.
    click(b, "a[href='/apps/web/terminal']").await;
    for _ in 0..300 {
        if b.find(Locator::Css("#terminal[data-state='open']"))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys = b
        .find(Locator::Css("#terminal .xterm-helper-textarea"))
        .await
        .expect("xterm.js takes the keys");
    keys.send_keys("echo hi\n").await.unwrap();
    let screen = text_until(b, "#terminal .xterm-rows", |t| {
        t.contains("[exit status 0]")
    })
    .await;
    assert!(
        screen.lines().any(|l| l.trim() == "hi"),
        "the command's output is on screen: {screen}"
    );
    step(b, "the terminal", "walkthrough-07-terminal", None).await;
    b.goto(&format!("{base}/operations")).await.unwrap();
    text_until(b, "table", |t| t.contains("run")).await;
    b.goto(&format!("{base}/apps/web")).await.unwrap();

    // The other pages, checked as they are with an app and its operations.
    b.goto(&format!("{base}/operations")).await.unwrap();
    text_until(b, "h1", |t| t == "Operations").await;
    let ops = text_of(b, "table").await;
    assert!(ops.contains("deploy") && ops.contains("update"), "{ops}");
    assert!(
        ops.lines()
            .any(|l| l.contains("deploy") && l.contains("ada")),
        "the operations name who did them: {ops}"
    );
    let app_link = b
        .find(Locator::Css("table td a[href='/apps/web']"))
        .await
        .expect("operations link to their app");
    drop(app_link);
    step(b, "the operations page", "walkthrough-08-operations", None).await;
    // With a backup and a schedule, so the backups page has its tables.
    server.ok(&["backups", "run", "web"]).await;
    server
        .ok(&["backups", "schedule", "add", "web", "--keep", "hourly=2"])
        .await;
    b.goto(&format!("{base}/backups")).await.unwrap();
    text_until(b, "h1", |t| t.starts_with("Backups")).await;
    let tables = b.find_all(Locator::Css("table")).await.unwrap();
    assert_eq!(tables.len(), 2, "schedules and latest backups");
    step(b, "the backups page", "walkthrough-09-backups", None).await;
    // The Users page: the user's own tokens, in a table like the others.
    b.goto(&format!("{base}/users")).await.unwrap();
    text_until(b, "h1", |t| t == "Users and tokens").await;
    let tokens = text_of(b, "table").await;
    assert!(
        tokens.contains("session-"),
        "the login's session token: {tokens}"
    );
    step(b, "the users page", "walkthrough-12-users", None).await;

    // A static site shows as one: no restart, instances or terminal.
    b.goto(&format!("{base}/")).await.unwrap();
    fill(b, "input[name=name]", "site").await;
    b.find(Locator::Css("select[name=kind]"))
        .await
        .unwrap()
        .select_by_value("static")
        .await
        .unwrap();
    click(b, "form[action='/apps'] button").await;
    text_until(b, "h1", |t| t.starts_with("site")).await;
    assert_eq!(text_of(b, "dd .state.static").await, "static site");
    for absent in [
        "form[action='/apps/site/restart']",
        "a[href='/apps/site/terminal']",
        "table.instances",
    ] {
        assert!(
            b.find(Locator::Css(absent)).await.is_err(),
            "a static app shows {absent}"
        );
    }
    step(b, "a static app's page", "walkthrough-10-static", None).await;

    // 8. Delete the app: the typed name must match; purge removes its volume too.
    b.goto(&format!("{base}/apps/web")).await.unwrap();
    assert!(data.join("volumes/web").exists());
    fill(b, "#delete input[name=confirm]", "wrong").await;
    // The browser's own check refuses a name that does not match; without it, the server does.
    let status = b
        .execute(
            "const f = document.querySelector('#delete form'); \
             return fetch(f.action, {method: 'POST', body: new URLSearchParams(new FormData(f))}) \
               .then(r => r.url)",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        status
            .as_str()
            .unwrap_or_default()
            .contains("err=Not%20deleted"),
        "{status}"
    );
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("served by the new run command")
    );
    fill(b, "#delete input[name=confirm]", "web").await;
    click(b, "#delete input[name=purge]").await;
    click(b, "#delete button[type=submit]").await;
    let msg = text_until(b, ".flash", |t| t.contains("web deleted")).await;
    assert!(b.find(Locator::Css(".flash.ok")).await.is_ok(), "{msg}");
    assert_eq!(b.current_url().await.unwrap().path(), "/");
    assert!(
        b.find(Locator::Css("a[href='/apps/web']")).await.is_err(),
        "the deleted app is still listed"
    );
    assert!(
        !data.join("volumes/web").exists(),
        "the volume was not purged"
    );
    assert_eq!(page(server.http, "web.localhost").await, None);
    step(
        b,
        "the overview after the delete",
        "walkthrough-11-deleted",
        None,
    )
    .await;

    driver.browser.clone().close().await.unwrap();
    server.stop().await;
}
