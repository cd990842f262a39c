//! Deploys end to end: real git repositories (bare, over file://), the real server and CLI, real
//! builds and app processes; rollback, broken builds, archives, webhooks, and 20 deploys under
//! load with zero failed requests.

mod support;

use std::process::Command as StdCommand;

use support::{Repo, ServerProc, TempDir, free_port, page, require_python, sleep_in};
use wharf_testkit::{Load, assert_eventually, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_site_deploy_change_rollback_and_broken_build() {
    let tmp = TempDir::new("deploy-static");
    let repo = Repo::new(&tmp.0, "site", &[("index.html", "v1")]);
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let http = server.http;
    server
        .ok(&["apps", "create", "site", "--git", &repo.url()])
        .await;

    let out = server.ok(&["deploy", "site"]).await;
    assert!(
        out.contains("detected a static app") && out.contains("release 1"),
        "{out}"
    );
    assert_eq!(page(http, "site.localhost").await.as_deref(), Some("v1"));

    repo.commit(&[("index.html", "v2")], "second");
    let out = server.ok(&["deploy", "site"]).await;
    assert!(
        out.contains("release 2") && out.contains("backup:"),
        "{out}"
    );
    assert_eq!(page(http, "site.localhost").await.as_deref(), Some("v2"));

    // A broken build: the old release keeps serving and the user is told why.
    repo.commit(
        &[(
            "wharf.toml",
            "build = \"echo compiling; exit 7\"\nstatic = \".\"\n",
        )],
        "broken",
    );
    let (ok, out, err) = server.cli(&["deploy", "site"]).await;
    assert!(!ok, "a failed deploy exits non-zero");
    assert!(
        out.contains("compiling"),
        "build output streams to the terminal:\n{out}"
    );
    assert!(
        err.contains("the build failed (exit status 7)") && err.contains("release 2 keeps serving"),
        "{err}"
    );
    assert_eq!(page(http, "site.localhost").await.as_deref(), Some("v2"));
    let releases_dir = tmp.0.join("data/apps/site/releases");
    assert!(
        !releases_dir.join("3").exists() && !releases_dir.join("3.tmp").exists(),
        "no half-written release"
    );

    // A bad ref and an unreachable repository fail clearly too.
    let (ok, _, err) = server
        .cli(&["deploy", "site", "--ref", "no-such-branch"])
        .await;
    assert!(!ok && err.contains("cannot fetch no-such-branch"), "{err}");
    let (ok, _, err) = server
        .cli(&["deploy", "site", "--git", "file:///nowhere/x.git"])
        .await;
    assert!(!ok && err.contains("cannot fetch"), "{err}");

    let releases = server.ok(&["releases", "site"]).await;
    assert!(
        releases.contains("active") && releases.contains("failed"),
        "{releases}"
    );

    let out = server.ok(&["rollback", "site"]).await;
    assert!(out.contains("rolled back to release 1"), "{out}");
    assert_eq!(page(http, "site.localhost").await.as_deref(), Some("v1"));
    server.stop().await;
}

/// Releases that never went live (a failed backup, a failed build) are failed, not left ready,
/// and never push the last good release out of the kept ones: a rollback returns to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deploys_never_take_the_place_of_the_release_to_roll_back_to() {
    let tmp = TempDir::new("deploy-failed-keep");
    let repo = Repo::new(&tmp.0, "site", &[("index.html", "v1")]);
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    let http = server.http;
    server
        .ok(&[
            "apps",
            "create",
            "site",
            "--git",
            &repo.url(),
            "--keep-releases",
            "2",
        ])
        .await;
    server.ok(&["deploy", "site"]).await;

    // The backup cannot be written (its folder is a file): release 2 fails, and goes.
    repo.commit(&[("index.html", "v2")], "second");
    let backups = data.join("backups/site");
    std::fs::remove_dir_all(&backups).unwrap();
    std::fs::write(&backups, "in the way").unwrap();
    let (ok, _, err) = server.cli(&["deploy", "site"]).await;
    assert!(!ok && err.contains("pre-deploy backup failed"), "{err}");
    assert!(
        !data.join("apps/site/releases/2").exists(),
        "no release left to pick"
    );
    std::fs::remove_file(&backups).unwrap();

    // A broken build: release 3 fails too.
    repo.commit(
        &[("wharf.toml", "build = \"exit 7\"\nstatic = \".\"\n")],
        "broken",
    );
    assert!(!server.cli(&["deploy", "site"]).await.0);
    repo.commit(
        &[("wharf.toml", "static = \".\"\n"), ("index.html", "v4")],
        "fixed",
    );
    let out = server.ok(&["deploy", "site"]).await;
    assert!(out.contains("release 4"), "{out}");
    assert_eq!(page(http, "site.localhost").await.as_deref(), Some("v4"));

    let out = server.ok(&["rollback", "site"]).await;
    assert!(out.contains("rolled back to release 1"), "{out}");
    assert_eq!(page(http, "site.localhost").await.as_deref(), Some("v1"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_app_from_a_procfile_with_env_rollback_and_a_crashing_release() {
    require_python();
    let tmp = TempDir::new("deploy-process");
    let app = [
        "import http.server, os",
        "class H(http.server.BaseHTTPRequestHandler):",
        "    def do_GET(self):",
        "        body = (open('version').read().strip() + ' ' + os.environ.get('GREETING', '-') + os.environ.get('PUNCT', '')).encode()",
        "        self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)",
        "    def log_message(self, *a): pass",
        "http.server.ThreadingHTTPServer((os.environ['HOST'], int(os.environ['PORT'])), H).serve_forever()",
        "",
    ]
    .join("\n");
    let app = app.as_str();
    let repo = Repo::new(
        &tmp.0,
        "api",
        &[
            ("app.py", app),
            ("version", "v1"),
            ("Procfile", "web: exec python3 app.py\n"),
        ],
    );
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let http = server.http;
    server
        .ok(&["apps", "create", "api", "--env", "GREETING=hello"])
        .await;
    let out = server.ok(&["deploy", "api", "--git", &repo.url()]).await;
    assert!(out.contains("detected a procfile app"), "{out}");
    assert_eq!(
        page(http, "api.localhost").await.as_deref(),
        Some("v1 hello")
    );

    // Env defaults from a manifest apply, under the app's own env.
    repo.commit(
        &[
            ("version", "v2"),
            (
                "wharf.toml",
                "run = \"exec python3 app.py\"\n[env]\nPUNCT = \"!\"\nGREETING = \"default\"\n",
            ),
        ],
        "v2",
    );
    server.ok(&["env", "set", "api", "GREETING=bonjour"]).await;
    server.ok(&["deploy", "api", "--git", &repo.url()]).await;
    assert_eq!(
        page(http, "api.localhost").await.as_deref(),
        Some("v2 bonjour!")
    );

    // A release that crashes on start never takes traffic.
    repo.commit(&[("wharf.toml", "run = \"exit 3\"\n")], "crash");
    let (ok, _, err) = server.cli(&["deploy", "api", "--git", &repo.url()]).await;
    assert!(
        !ok && err.contains("did not go live") && err.contains("release 2 keeps serving"),
        "{err}"
    );
    assert_eq!(
        page(http, "api.localhost").await.as_deref(),
        Some("v2 bonjour!")
    );

    // Rollback brings back release 1 with the config it ran with.
    let out = server.ok(&["rollback", "api", "1"]).await;
    assert!(out.contains("restored the config of release 1"), "{out}");
    assert_eq!(
        page(http, "api.localhost").await.as_deref(),
        Some("v1 hello")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_deploys_under_load_fail_no_request() {
    require_python();
    let tmp = TempDir::new("deploy-load");
    let repo = Repo::new(
        &tmp.0,
        "web",
        &[
            ("index.html", "ok"),
            (
                "Procfile",
                "web: exec python3 -m http.server $PORT --bind $HOST\n",
            ),
        ],
    );
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    server
        .ok(&["apps", "create", "web", "--git", &repo.url()])
        .await;
    server.ok(&["deploy", "web"]).await;
    let load = Load::start(server.http, "web.localhost", "/", 4, 200_000);
    load.until_sent(50).await;
    for i in 0..20 {
        repo.commit(&[("version.txt", &i.to_string())], &format!("change {i}"));
        server.ok(&["deploy", "web"]).await;
    }
    let report = load.finish().await;
    assert_eq!(
        report.failed, 0,
        "failed requests during 20 deploys: {:?}",
        report.failures
    );
    assert!(
        report.ok > 100,
        "the load really ran: {} requests",
        report.ok
    );
    let releases = server.ok(&["releases", "web"]).await;
    assert_eq!(
        releases.lines().count(),
        1 + 5,
        "only the last 5 releases are kept:\n{releases}"
    );
    server.stop().await;
}

/// The control plane's deploy is: start the new instance, swap it in and drain the old one,
/// reload the routes (a new pool), stop the old instance. Slow requests are always in flight,
/// so some start on the new instance while the old one drains, and are still running when the
/// next deploy swaps that instance out: it must wait for them before stopping it. Taking the
/// app down, or stopping the server, waits for its requests in flight the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_back_to_back_deploys_never_cut_a_slow_request() {
    require_python();
    const SLOW_CLIENTS: u64 = 4;
    let tmp = TempDir::new("deploy-slow");
    let app = [
        "import http.server, os, time",
        "class H(http.server.BaseHTTPRequestHandler):",
        "    protocol_version = 'HTTP/1.1'",
        "    def do_GET(self):",
        "        if self.path == '/slow':",
        "            with open(os.environ['MARKS'], 'a') as f: f.write('started\\n')",
        "            time.sleep(1.5)",
        "        body = b'done'",
        "        self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)",
        "    def log_message(self, *a): pass",
        "http.server.ThreadingHTTPServer((os.environ['HOST'], int(os.environ['PORT'])), H).serve_forever()",
        "",
    ]
    .join("\n");
    let repo = Repo::new(
        &tmp.0,
        "slow",
        &[
            ("app.py", app.as_str()),
            ("Procfile", "web: exec python3 app.py\n"),
        ],
    );
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let http = server.http;
    // In the app's volume: the one place of the data folder its sandbox lets it write.
    let marks = tmp.0.join("data/volumes/slow/marks");
    let marks_env = format!("MARKS={}", marks.display());
    server
        .ok(&[
            "apps",
            "create",
            "slow",
            "--git",
            &repo.url(),
            "--env",
            &marks_env,
        ])
        .await;
    server.ok(&["deploy", "slow"]).await;

    // Clients that each keep one slow request in flight, started a fraction of its length
    // apart so that one always starts during a deploy's drain.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for k in 0..SLOW_CLIENTS {
        let stop = stop.clone();
        clients.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(k * 1500 / SLOW_CLIENTS)).await;
            let (mut ok, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match get(http, "slow.localhost", "/slow").await {
                    Ok(r) if r.status == 200 && r.text() == "done" => ok += 1,
                    Ok(r) => failures.push(r.status.to_string()),
                    Err(e) => failures.push(format!("{e:?}")),
                }
            }
            (ok, failures)
        });
    }
    for i in 0..20 {
        repo.commit(&[("version.txt", &i.to_string())], &format!("change {i}"));
        server.ok(&["deploy", "slow"]).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failures) = (0, Vec::new());
    while let Some(r) = clients.join_next().await {
        let (n, f) = r.unwrap();
        ok += n;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} slow requests failed during 20 deploys ({ok} answered): {failures:?}",
        failures.len()
    );
    assert!(ok >= 20, "the slow requests really ran: {ok}");

    let started = || {
        std::fs::read_to_string(&marks)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = started();
    let last = tokio::spawn(async move { get(http, "slow.localhost", "/slow").await });
    assert_eventually!(started() > before, "the last slow request reached the app");
    server
        .ok(&["apps", "set", "slow", "--availability", "disabled"])
        .await;
    let last = last.await.unwrap().expect("answered");
    assert_eq!(
        (last.status.as_u16(), last.text().as_str()),
        (200, "done"),
        "a request in flight when the app was disabled"
    );

    // Stopping the server lets a request in flight finish before the app stops.
    server
        .ok(&["apps", "set", "slow", "--availability", "enabled"])
        .await;
    let before = started();
    let last = tokio::spawn(async move { get(http, "slow.localhost", "/slow").await });
    assert_eventually!(started() > before, "a slow request reached the app");
    server.stop().await;
    let last = last.await.unwrap().expect("answered");
    assert_eq!(
        (last.status.as_u16(), last.text().as_str()),
        (200, "done"),
        "a request in flight when the server stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_and_dir_deploys() {
    let tmp = TempDir::new("deploy-archive");
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    server.ok(&["apps", "create", "pages"]).await;
    let dir = tmp.0.join("pages");
    std::fs::create_dir_all(dir.join("node_modules/x")).unwrap();
    std::fs::write(dir.join("index.html"), "from a folder").unwrap();
    std::fs::write(dir.join("secret.key"), "do not ship").unwrap();
    std::fs::write(dir.join(".gitignore"), "node_modules\n").unwrap();
    std::fs::write(dir.join(".wharfignore"), "secret.key\n").unwrap();
    std::fs::write(dir.join("node_modules/x/big.js"), "x").unwrap();
    server
        .ok(&["deploy", "pages", "--dir", dir.to_str().unwrap()])
        .await;
    assert_eq!(
        page(server.http, "pages.localhost").await.as_deref(),
        Some("from a folder")
    );
    let live = tmp.0.join("data/apps/pages/releases/1");
    assert!(
        !live.join("secret.key").exists() && !live.join("node_modules").exists(),
        "ignored files stay home"
    );
    assert_eq!(
        get(server.http, "pages.localhost", "/secret.key")
            .await
            .unwrap()
            .status,
        404
    );

    // An archive with a `..` entry is refused whole.
    let evil = tmp.0.join("evil.tar.gz");
    let status = StdCommand::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && mkdir -p a && echo x > a/f && tar -czf {} --transform 's,^a/f,../escaped,' a/f",
            tmp.0.display(),
            evil.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let (ok, _, err) = server
        .cli(&["deploy", "pages", "--archive", evil.to_str().unwrap()])
        .await;
    assert!(!ok && err.contains("refused"), "{err}");
    assert!(!tmp.0.join("data/apps/pages/releases/escaped").exists());
    assert_eq!(
        page(server.http, "pages.localhost").await.as_deref(),
        Some("from a folder")
    );
    server.stop().await;
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Sends a webhook as a git host does: to the public URL, i.e. through the gateway with the
/// public host name, never to the API's loopback address.
async fn hook(
    server: &ServerProc,
    app: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    let mut req = http::Request::post(format!("/hooks/{app}"))
        .header("host", format!("wharf.localhost:{}", server.http.port()))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let reply = wharf_testkit::request(
        server.http,
        req.body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap(),
    )
    .await
    .unwrap();
    (reply.status.as_u16(), reply.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_from_github_gitea_and_gitlab() {
    let tmp = TempDir::new("deploy-hooks");
    let repo = Repo::new(&tmp.0, "site", &[("index.html", "v1")]);
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    server
        .ok(&[
            "apps",
            "create",
            "site",
            "--git",
            &repo.url(),
            "--branch",
            "main",
        ])
        .await;
    let hook_info: serde_json::Value =
        serde_json::from_str(&server.ok(&["hooks", "enable", "site", "--json"]).await).unwrap();
    let secret = hook_info["secret"].as_str().unwrap().to_string();
    assert_eq!(
        hook_info["url"],
        format!("http://wharf.localhost:{}/hooks/site", server.http.port()),
        "the URL printed is the public one, not the API's loopback address"
    );
    // Only /hooks/ of the API is public: the rest of it is not reachable through the gateway.
    let api_via_gateway = wharf_testkit::get(
        server.http,
        &format!("wharf.localhost:{}", server.http.port()),
        "/api/v1/apps",
    )
    .await
    .unwrap();
    assert_eq!(api_via_gateway.status, 404);
    let releases = || async { server.ok(&["releases", "site", "--json"]).await };
    let count = |json: String| {
        serde_json::from_str::<Vec<serde_json::Value>>(&json)
            .unwrap()
            .len()
    };

    let push = r#"{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000"}"#;
    let other = r#"{"ref":"refs/heads/feature"}"#;
    let gh = |body: &str, secret: &str| {
        vec![
            ("x-github-event", "push".to_string()),
            (
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(secret, body.as_bytes())),
            ),
        ]
    };
    let gitea = |body: &str, secret: &str| {
        vec![
            ("x-gitea-event", "push".to_string()),
            ("x-gitea-signature", hmac_hex(secret, body.as_bytes())),
        ]
    };
    let gitlab = |secret: &str| {
        vec![
            ("x-gitlab-event", "Push Hook".to_string()),
            ("x-gitlab-token", secret.to_string()),
        ]
    };

    // Wrong signatures: 401 and nothing deployed, for each provider; none at all: 401 too.
    for headers in [
        gh(push, "wrong"),
        gitea(push, "wrong"),
        gitlab("wrong"),
        vec![],
    ] {
        let (status, text) = hook(&server, "site", &headers, push).await;
        assert_eq!(status, 401, "{headers:?}: {text}");
    }
    assert_eq!(
        count(releases().await),
        0,
        "nothing deployed by a bad signature"
    );

    // Ping and other branches are answered without deploying.
    let (status, text) = hook(
        &server,
        "site",
        &[
            ("x-github-event", "ping".to_string()),
            gh("{}", &secret)[1].clone(),
        ],
        "{}",
    )
    .await;
    assert_eq!((status, text.contains("pong")), (200, true));
    let (status, text) = hook(&server, "site", &gh(other, &secret), other).await;
    assert_eq!(status, 202);
    assert!(text.contains("ignored"), "{text}");
    assert_eq!(count(releases().await), 0);

    // A correctly signed push deploys, for each provider in turn.
    for (n, headers) in [gh(push, &secret), gitea(push, &secret), gitlab(&secret)]
        .into_iter()
        .enumerate()
    {
        repo.commit(&[("index.html", &format!("v{}", n + 2))], "change");
        let (status, text) = hook(&server, "site", &headers, push).await;
        assert_eq!(status, 202, "{text}");
        let want = format!("v{}", n + 2);
        wharf_testkit::assert_eventually!(
            page(server.http, "site.localhost").await.as_deref() == Some(want.as_str()),
            "push {n} deployed"
        );
    }
    assert_eq!(count(releases().await), 3);
    // The operations log says a webhook did them (the last one is recorded as finished just
    // after it went live).
    wharf_testkit::assert_eventually!(
        server
            .ok(&["ops", "site"])
            .await
            .matches("deploy [succeeded] by hook")
            .count()
            == 3,
        "three deploys by hook"
    );

    // A secret the user chooses: never echoed, the old one stops working, a short one refused.
    let (ok, _, err) = server
        .cli(&["hooks", "enable", "site", "--secret", "short"])
        .await;
    assert!(!ok && err.contains("at least 16 characters"), "{err}");
    let chosen = "a-secret-my-git-host-has-1234";
    let said = server
        .ok(&["hooks", "enable", "site", "--secret", chosen])
        .await;
    assert!(
        !said.contains(chosen),
        "the chosen secret is not echoed: {said}"
    );
    assert!(said.contains("/hooks/site"), "{said}");
    let (status, _) = hook(&server, "site", &gh(other, &secret), other).await;
    assert_eq!(status, 401, "the replaced secret is refused");
    let (status, text) = hook(&server, "site", &gh(other, chosen), other).await;
    assert_eq!(status, 202, "{text}");

    // Disabled: every push refused, nothing deployed.
    let said = server.ok(&["hooks", "disable", "site"]).await;
    assert!(said.contains("webhooks off"), "{said}");
    let (status, text) = hook(&server, "site", &gh(push, chosen), push).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("not enabled"), "{text}");
    assert_eq!(count(releases().await), 3);
    server.stop().await;
}

/// A push a git host announces while a deploy runs waits for it, then goes live (it was
/// refused before, seen only in the operations log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_push_during_a_deploy_goes_live_after_it() {
    let tmp = TempDir::new("deploy-hook-queue");
    // The first release's build waits for a file the test makes.
    let repo = Repo::new(
        &tmp.0,
        "site",
        &[
            ("index.html", "v1"),
            (
                "wharf.toml",
                "build = \"until [ -e go ]; do sleep 0.05; done\"\nstatic = \".\"\n",
            ),
        ],
    );
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    server
        .ok(&["apps", "create", "site", "--git", &repo.url()])
        .await;
    let hook_info: serde_json::Value =
        serde_json::from_str(&server.ok(&["hooks", "enable", "site", "--json"]).await).unwrap();
    let secret = hook_info["secret"].as_str().unwrap().to_string();

    let mut first = server.spawn_cli(&["deploy", "site"]);
    let building = data.join("apps/site/releases/1");
    assert_eventually!(
        building.join("index.html").exists(),
        "release 1 is building"
    );
    repo.commit(
        &[("index.html", "v2"), ("wharf.toml", "static = \".\"\n")],
        "v2",
    );
    let push = r#"{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000"}"#;
    let signed = vec![
        ("x-github-event", "push".to_string()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(&secret, push.as_bytes())),
        ),
    ];
    let (status, text) = hook(&server, "site", &signed, push).await;
    assert_eq!(status, 202, "{text}");
    std::fs::write(building.join("go"), "").unwrap();
    assert!(first.wait().await.unwrap().success(), "the first deploy");
    assert_eventually!(
        page(server.http, "site.localhost").await.as_deref() == Some("v2"),
        "the push that came during the first deploy is live after it"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_push_over_smart_http_deploys_the_pushed_branch() {
    let tmp = TempDir::new("deploy-push");
    let repo = Repo::new(&tmp.0, "site", &[("index.html", "pushed v1")]);
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    server.ok(&["apps", "create", "site"]).await;
    let push = |token: &str| {
        let url = format!("http://wharf:{token}@{}/git/site.git", server.api);
        StdCommand::new("git")
            .args(["push", "-q", &url, "main"])
            .current_dir(&repo.work)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap()
    };
    let refused = push("not-a-token");
    assert!(!refused.status.success(), "a wrong token cannot push");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401")
            || String::from_utf8_lossy(&refused.stderr).contains("Authentication failed")
    );

    // Without -q, as people push: the deploy streams back as `remote:` lines and the push
    // returns once the release is live.
    let pushed = StdCommand::new("git")
        .args([
            "push",
            &format!("http://wharf:{}@{}/git/site.git", server.token, server.api),
            "main",
        ])
        .current_dir(&repo.work)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&pushed.stderr);
    assert!(pushed.status.success(), "git push: {said}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("remote: ") && l.contains("live at")),
        "the deploy's output reaches the pusher: {said}"
    );
    assert_eq!(
        page(server.http, "site.localhost").await.as_deref(),
        Some("pushed v1"),
        "live when git push returns"
    );

    repo.commit(&[("index.html", "pushed v2")], "v2");
    assert!(push(&server.token).status.success());
    wharf_testkit::assert_eventually!(
        page(server.http, "site.localhost").await.as_deref() == Some("pushed v2"),
        "the second push is deployed"
    );
    let releases = server.ok(&["releases", "site"]).await;
    assert!(
        releases.contains("site@") && releases.lines().count() == 3,
        "{releases}"
    );
    server.stop().await;
}

/// A private repository's token in its URL never reaches git's command line, which any user
/// of the machine can read; the deploy still authenticates with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_token_stays_off_gits_command_line() {
    let tmp = TempDir::new("deploy-token");
    let repo = Repo::new(&tmp.0, "site", &[("index.html", "private v1")]);
    // git as the server finds it: the real one, each command line written down first.
    let bin = tmp.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let seen = tmp.0.join("git-argv.log");
    let real = String::from_utf8(
        StdCommand::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrapper = bin.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec {} \"$@\"\n",
            seen.display(),
            real.trim()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let server = ServerProc::start_with(
        &tmp.0.join("data"),
        free_port(),
        free_port(),
        &[("PATH", path)],
    )
    .await;
    // wharf's own push endpoint is the private repository: it takes a token as the password.
    server.ok(&["apps", "create", "site"]).await;
    let private = format!("http://wharf:{}@{}/git/site.git", server.token, server.api);
    let pushed = StdCommand::new("git")
        .args(["push", "-q", &private, "main"])
        .current_dir(&repo.work)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{pushed:?}");

    server.ok(&["apps", "create", "copy"]).await;
    server.ok(&["apps", "set", "copy", "--git", &private]).await;
    let said = server.ok(&["deploy", "copy"]).await;
    assert!(said.contains("live at"), "{said}");
    assert_eq!(
        page(server.http, "copy.localhost").await.as_deref(),
        Some("private v1")
    );
    let argv = std::fs::read_to_string(&seen).unwrap();
    assert!(argv.contains("fetch"), "the wrapper saw the fetch: {argv}");
    assert!(
        !argv.contains(&server.token),
        "the token was on git's command line: {argv}"
    );
    server.stop().await;
}

/// A deploy whose app dies at start leaves the app saying why, until a deploy succeeds: as
/// `failed` when nothing else runs (a first deploy), as "last change failed" while the previous
/// release keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_that_dies_at_start_is_shown_on_the_app_until_one_succeeds() {
    require_python();
    let tmp = TempDir::new("deploy-dies");
    let crash = "web: echo 'boom: CONFIG is missing' >&2; exit 3\n";
    let serve = "web: exec python3 -m http.server --bind $HOST $PORT\n";
    let repo = Repo::new(&tmp.0, "svc", &[("Procfile", crash), ("index.html", "up")]);
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    server
        .ok(&["apps", "create", "svc", "--git", &repo.url()])
        .await;

    let (ok, out, err) = server.cli(&["deploy", "svc"]).await;
    assert!(!ok, "the deploy fails:\n{out}\n{err}");
    let app = server.app_json("svc").await;
    assert_eq!(app["state"], "failed", "{app}");
    let failure = app["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("boom: CONFIG is missing"), "{app}");

    repo.commit(&[("Procfile", serve)], "serve");
    server.ok(&["deploy", "svc"]).await;
    assert_eq!(
        page(server.http, "svc.localhost").await.as_deref(),
        Some("up")
    );
    let app = server.app_json("svc").await;
    assert_eq!(app["state"], "running", "{app}");
    assert!(app["failure"].is_null(), "a deploy succeeded: {app}");

    repo.commit(&[("Procfile", crash)], "crash again");
    let (ok, out, err) = server.cli(&["deploy", "svc"]).await;
    assert!(!ok, "the deploy fails:\n{out}\n{err}");
    assert_eq!(
        page(server.http, "svc.localhost").await.as_deref(),
        Some("up")
    );
    let shown = server.ok(&["apps", "show", "svc"]).await;
    assert!(shown.contains("svc (process, enabled): running"), "{shown}");
    assert!(shown.contains("last change failed:"), "{shown}");
    assert!(shown.contains("boom: CONFIG is missing"), "{shown}");
    server.stop().await;
}

/// A build that leaves something running in the background (a daemon, a watcher started by a
/// tool) ends with its command: the deploy finishes instead of waiting on the output the
/// leftover holds open, and nothing of the build keeps running in the release folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_leaves_a_process_behind_still_finishes() {
    let tmp = TempDir::new("deploy-bg-build");
    let data = tmp.0.join("data");
    let repo = Repo::new(
        &tmp.0,
        "bg",
        &[
            ("index.html", "built site"),
            (
                "wharf.toml",
                "build = \"sleep 300 & echo built\"\nstatic = \".\"\n",
            ),
        ],
    );
    let server = ServerProc::start(&data, free_port()).await;
    server
        .ok(&["apps", "create", "bg", "--git", &repo.url()])
        .await;
    let deploy = server.cli(&["deploy", "bg"]);
    let (ok, out, err) = tokio::time::timeout(std::time::Duration::from_secs(120), deploy)
        .await
        .expect("the deploy finishes long before the leftover's 300 s");
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        page(server.http, "bg.localhost").await.as_deref(),
        Some("built site")
    );
    assert!(
        !sleep_in(&data.join("apps/bg/releases/1")),
        "the build's leftover still runs"
    );
    server.stop().await;
}
