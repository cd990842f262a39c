//! `wharf server` end to end, as a user drives it: a real server process, the real CLI, real app
//! processes behind the real gateway, state in a real SQLite file.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use support::{ServerProc, TempDir, free_port, page, require_python};
use wharf_testkit::{assert_eventually, get};

/// A tiny app: writes $GREETING into its page, then serves the folder on $PORT. It works in
/// its volume, the folder it may write to in its sandbox.
fn app_command() -> String {
    "cd \"$WHARF_VOLUME\" && printf '%s' \"$GREETING\" > index.html && printf '%s' \"$WHARF_VOLUME\" > volume.txt \
         && exec python3 -m http.server \"$PORT\" --bind \"$HOST\""
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_run_restart_follow_routes_and_come_back_after_a_server_restart() {
    require_python();
    let tmp = TempDir::new("lifecycle");
    let data = tmp.0.join("data");
    let port = free_port();
    let server = ServerProc::start(&data, port).await;
    let http = server.http;

    // Create: the app becomes reachable through the gateway by Host.
    let out = server
        .ok(&[
            "apps",
            "create",
            "blog",
            "--run",
            &app_command(),
            "--env",
            "GREETING=hello",
        ])
        .await;
    assert!(out.contains("live at http://blog.localhost"), "{out}");
    assert_eq!(page(http, "blog.localhost").await.as_deref(), Some("hello"));
    let volume = get(http, "blog.localhost", "/volume.txt")
        .await
        .unwrap()
        .text();
    let expected = std::fs::canonicalize(&data).unwrap().join("volumes/blog");
    assert_eq!(
        volume,
        expected.display().to_string(),
        "the app gets its volume as an absolute path"
    );
    assert!(expected.is_dir());

    // Env change: new instances with the new value, the route swapped to them.
    server.ok(&["env", "set", "blog", "GREETING=bonjour"]).await;
    assert_eq!(
        page(http, "blog.localhost").await.as_deref(),
        Some("bonjour")
    );
    let env_list = server.ok(&["env", "list", "blog"]).await;
    assert!(
        env_list.contains("GREETING") && !env_list.contains("bonjour"),
        "values stay hidden: {env_list}"
    );

    // Kill the app: the runtime restarts it and the site answers again.
    let app = server.app_json("blog").await;
    let pid = app["instances"][0]["pid"].as_u64().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eventually!(
        server.app_json("blog").await["instances"][0]["restarts"].as_u64() == Some(1),
        "the killed app is restarted"
    );
    assert_eventually!(
        page(http, "blog.localhost").await.as_deref() == Some("bonjour"),
        "serves again after the crash"
    );

    // Host names: routing follows.
    server
        .ok(&["domains", "add", "blog", "blog.example.test"])
        .await;
    assert_eq!(
        page(http, "blog.example.test").await.as_deref(),
        Some("bonjour")
    );
    // Removed however it is spelled, as when it was added.
    server
        .ok(&["domains", "remove", "blog", "Blog.Example.Test."])
        .await;
    assert_eq!(
        get(http, "blog.example.test", "/").await.unwrap().status,
        404
    );

    // Not served: no traffic, but the app keeps running.
    server
        .ok(&["apps", "set", "blog", "--availability", "not-served"])
        .await;
    assert_eq!(get(http, "blog.localhost", "/").await.unwrap().status, 404);
    assert_eq!(
        server.app_json("blog").await["instances"][0]["state"],
        "running"
    );
    server
        .ok(&["apps", "set", "blog", "--availability", "enabled"])
        .await;
    assert_eq!(
        page(http, "blog.localhost").await.as_deref(),
        Some("bonjour")
    );

    // Logs and the operations log tell what happened.
    let logs = server.ok(&["logs", "blog", "-n", "50"]).await;
    assert!(
        logs.contains("GET / HTTP/1.1"),
        "app output is in its log:\n{logs}"
    );
    let ops = server.ok(&["ops", "blog"]).await;
    assert!(ops.contains("create") && ops.contains("env"), "{ops}");

    // Without a token the API says 401.
    let api: SocketAddr = server.api.parse().unwrap();
    assert_eq!(
        get(api, "localhost", "/api/v1/apps").await.unwrap().status,
        401
    );

    // A server restart brings the app back.
    server.stop().await;
    assert!(
        get(http, "blog.localhost", "/").await.is_err(),
        "gateway is down with the server"
    );
    let server = ServerProc::start(&data, port).await;
    assert_eventually!(
        page(http, "blog.localhost").await.as_deref() == Some("bonjour"),
        "app back after restart"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_apps_and_cli_errors() {
    let tmp = TempDir::new("static");
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    let out = server.ok(&["apps", "create", "docs", "--static"]).await;
    assert!(out.contains("live at"), "{out}");
    let r = get(server.http, "docs.localhost", "/").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("no content yet"), "{}", r.text());

    // Bad input: a clear message from the server, exit status non-zero, nothing stored.
    let (ok, _, err) = server.cli(&["apps", "create", "Bad Name"]).await;
    assert!(!ok);
    assert!(err.contains("not a valid app name"), "{err}");
    let (ok, _, err) = server.cli(&["domains", "add", "docs", "a||b.test"]).await;
    assert!(!ok && err.contains("not a valid host"), "{err}");
    let (ok, _, err) = server
        .cli(&["domains", "add", "docs", "intranet", "--tls", "acme"])
        .await;
    assert!(!ok && err.contains("single label"), "{err}");
    let (ok, _, err) = server.cli(&["apps", "create", "docs", "--static"]).await;
    assert!(!ok && err.contains("already exists"), "{err}");
    let list = server.ok(&["apps", "list"]).await;
    assert_eq!(
        list.lines().filter(|l| l.starts_with("docs")).count(),
        1,
        "{list}"
    );
    assert!(!list.contains("Bad"), "{list}");
    // A size past what the store holds is refused by name, not a server failure.
    let (ok, _, err) = server
        .cli(&["apps", "set", "docs", "--max-body", "9000000000GB"])
        .await;
    assert!(
        !ok && err.contains("`max_body`") && err.contains("too large"),
        "{err}"
    );
    // The saved repository can be forgotten again.
    server
        .ok(&[
            "apps",
            "set",
            "docs",
            "--git",
            "https://git.example/docs.git",
        ])
        .await;
    assert_eq!(
        server.app_json("docs").await["git_url"],
        "https://git.example/docs.git"
    );
    server.ok(&["apps", "set", "docs", "--git", "none"]).await;
    assert!(server.app_json("docs").await["git_url"].is_null());

    // A process app whose command never listens is reported, not left half-live.
    let (ok, out, err) = server
        .cli(&["apps", "create", "broken", "--run", "exit 3"])
        .await;
    assert!(!ok, "a failed start exits non-zero:\n{out}\n{err}");
    assert!(
        format!("{out}{err}").contains("broken exited with status 3 before it became healthy"),
        "{out}\n{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_list_filters_and_limits() {
    let tmp = TempDir::new("list-filters");
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    for name in ["docs", "docs-api", "shop"] {
        server.ok(&["apps", "create", name, "--static"]).await;
    }
    let names = |out: &str| -> Vec<String> {
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let all = server.ok(&["apps", "list"]).await;
    assert!(all.starts_with("NAME"), "{all}");
    assert_eq!(names(&all), ["docs", "docs-api", "shop"], "{all}");
    let docs = server.ok(&["apps", "list", "--prefix", "docs"]).await;
    assert_eq!(names(&docs), ["docs", "docs-api"], "{docs}");
    let first = server.ok(&["apps", "list", "--limit", "1"]).await;
    assert_eq!(names(&first), ["docs"], "{first}");
    let none = server.ok(&["apps", "list", "--kind", "process"]).await;
    assert!(none.contains("no apps match"), "{none}");
    let statics = server
        .ok(&["apps", "list", "--state", "static", "--json"])
        .await;
    let statics: serde_json::Value = serde_json::from_str(&statics).unwrap();
    assert_eq!(statics.as_array().unwrap().len(), 3, "{statics}");
    let (ok, _, err) = server.cli(&["apps", "list", "--limit", "5000"]).await;
    assert!(!ok && err.contains("1 to 1000"), "{err}");

    // Completions as bash does them, with the script `wharf completions bash` prints: app names
    // come from the server, filtered by what is typed; verbs still complete.
    assert_eq!(
        complete(&server, &["deploy", "do"]).await,
        ["docs", "docs-api"]
    );
    assert_eq!(complete(&server, &["env", "set", "s"]).await, ["shop"]);
    let offered = complete(&server, &["apps", "restart", ""]).await;
    let apps: Vec<&String> = offered.iter().filter(|w| !w.starts_with('-')).collect();
    assert_eq!(apps, ["docs", "docs-api", "shop"], "{offered:?}");
    assert!(
        complete(&server, &["rel"])
            .await
            .contains(&"releases".to_string())
    );
    server.stop().await;
}

/// What bash offers after `wharf WORDS…<TAB>`, the last word being the one typed so far.
async fn complete(server: &ServerProc, words: &[&str]) -> Vec<String> {
    support::require_tool("bash", "bash");
    let bin = Path::new(env!("CARGO_BIN_EXE_wharf"));
    let script = format!(
        r#"source <(wharf completions bash)
COMP_WORDS=(wharf {words}); COMP_CWORD={n}; COMP_TYPE=9
_clap_complete_wharf wharf "${{COMP_WORDS[$COMP_CWORD]}}" "${{COMP_WORDS[$COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        n = words.len(),
    );
    let out = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("WHARF_URL", format!("http://{}", server.api))
        .env("WHARF_TOKEN", &server.token)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_no_duplicate_apps_behind() {
    require_python();
    let tmp = TempDir::new("kill9");
    let data = tmp.0.join("data");
    let port = free_port();
    let mut server = ServerProc::start(&data, port).await;
    server
        .ok(&[
            "apps",
            "create",
            "blog",
            "--run",
            &app_command(),
            "--env",
            "GREETING=one",
        ])
        .await;
    let old_pid = server.app_json("blog").await["instances"][0]["pid"]
        .as_u64()
        .unwrap();

    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    assert!(
        Path::new(&format!("/proc/{old_pid}")).exists(),
        "the app outlives a killed server"
    );

    let server = ServerProc::start(&data, port).await;
    assert_eventually!(
        page(server.http, "blog.localhost").await.as_deref() == Some("one"),
        "app back"
    );
    let stat = std::fs::read_to_string(format!("/proc/{old_pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the old instance was stopped: {stat}"
    );
    let new_pid = server.app_json("blog").await["instances"][0]["pid"]
        .as_u64()
        .unwrap();
    assert_ne!(new_pid, old_pid);
    server.stop().await;
}

/// An app that dies at start fails its change at once, not at the health timeout, with its own
/// last words in the error, the operations log and its status; a previous version keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_crashes_at_start_fails_at_once_with_its_output() {
    require_python();
    let tmp = TempDir::new("crash-at-start");
    let data = tmp.0.join("data");
    // A health timeout far longer than the test may take: only the exit can end the wait.
    let server = ServerProc::start_with(
        &data,
        free_port(),
        free_port(),
        &[("WHARF_HEALTH_TIMEOUT", "300s".to_string())],
    )
    .await;
    let create = server.cli(&[
        "apps",
        "create",
        "crashy",
        "--run",
        "echo 'starting crashy'; echo 'error: DATABASE_URL is not set' >&2; exit 1",
    ]);
    let (ok, out, err) = tokio::time::timeout(std::time::Duration::from_secs(120), create)
        .await
        .expect("the failure is reported long before the 300 s health timeout");
    assert!(!ok, "a failed start exits non-zero:\n{out}\n{err}");
    assert!(
        err.contains("crashy exited with status 1 before it became healthy"),
        "{err}"
    );
    assert!(err.contains("error: DATABASE_URL is not set"), "{err}");
    assert!(err.contains("starting crashy"), "{err}");
    assert!(
        !format!("{out}{err}").contains("keep serving"),
        "nothing was serving before:\n{out}\n{err}"
    );

    let app = server.app_json("crashy").await;
    assert_eq!(app["state"], "failed", "{app}");
    let failure = app["failure"].as_str().unwrap();
    assert!(failure.contains("DATABASE_URL is not set"), "{failure}");
    let shown = server.ok(&["apps", "show", "crashy"]).await;
    assert!(
        shown.contains("crashy (process, enabled): failed"),
        "{shown}"
    );
    assert!(shown.contains("DATABASE_URL is not set"), "{shown}");
    let ops = server.ok(&["ops", "crashy"]).await;
    assert!(ops.contains("DATABASE_URL is not set"), "{ops}");
    // The dashboard's app page: a red `failed` badge and the reason.
    let api: SocketAddr = server.api.parse().unwrap();
    let login = http::Request::post("/login")
        .header("host", server.api.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(format!(
            "token={}",
            server.token
        ))))
        .unwrap();
    let answer = wharf_testkit::request(api, login).await.unwrap();
    let cookie = answer
        .header("set-cookie")
        .expect("logged in")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let app_page = http::Request::get("/apps/crashy")
        .header("host", server.api.as_str())
        .header("cookie", cookie)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let html = wharf_testkit::request(api, app_page).await.unwrap().text();
    assert!(html.contains(r#"class="state failed""#), "{html}");
    assert!(html.contains("DATABASE_URL is not set"), "{html}");

    // A running app whose new version crashes: the error says the old one keeps serving, and
    // it does.
    let cmd = format!(
        "if [ \"$MODE\" = broken ]; then echo 'MODE=broken is not supported'; exit 2; fi; {}",
        app_command()
    );
    server
        .ok(&[
            "apps",
            "create",
            "blog",
            "--run",
            &cmd,
            "--env",
            "GREETING=up",
        ])
        .await;
    let (ok, out, err) = server.cli(&["env", "set", "blog", "MODE=broken"]).await;
    assert!(!ok, "{out}\n{err}");
    assert!(
        err.contains(
            "exited with status 2 before it became healthy, the previous instances keep serving"
        ),
        "{err}"
    );
    assert!(err.contains("MODE=broken is not supported"), "{err}");
    assert_eq!(
        page(server.http, "blog.localhost").await.as_deref(),
        Some("up")
    );
    let blog = server.app_json("blog").await;
    assert_eq!(blog["state"], "running", "{blog}");
    server.stop().await;
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The database holds env values in clear: the data folder and the database files are the
/// server user's alone, on a new install and, once fixed at start, on an older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("private");
    let data = tmp.0.join("data");
    let files = ["wharf.db", "wharf.db-wal", "wharf.db-shm", "admin.token"];
    // Run by root, apps get their own users and may pass through (not list) the folder.
    let folder_mode = if std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        0o711
    } else {
        0o700
    };
    let server = ServerProc::start(&data, free_port()).await;
    server
        .ok(&[
            "apps",
            "create",
            "web",
            "--static",
            "--env",
            "API_KEY=s3cret",
        ])
        .await;
    assert_eq!(mode(&data), folder_mode, "data folder");
    for f in files {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    for dir in ["certs", "run", "backups", "logs", "cache", "git"] {
        assert_eq!(mode(&data.join(dir)), 0o700, "{dir}");
    }
    assert!(
        !server
            .startup_log
            .iter()
            .any(|l| l.contains("readable by other users")),
        "nothing to fix on a new install"
    );
    server.stop().await;

    // An install from before: world-readable folder and files.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in files {
        let path = data.join(f);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let server = ServerProc::start(&data, free_port()).await;
    let said: Vec<&String> = server
        .startup_log
        .iter()
        .filter(|l| l.contains("readable by other users"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {:?}", server.startup_log);
    assert!(said[0].contains("wharf.db (was 0644)"), "{}", said[0]);
    assert_eq!(mode(&data), folder_mode, "data folder");
    for f in files {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    server.stop().await;
}

/// `wharf … | head` closes stdout early: the CLI ends quietly, no panic, no backtrace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_the_cli_quietly() {
    let tmp = TempDir::new("pipe");
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    server.ok(&["apps", "create", "docs", "--static"]).await;
    // Every verb that prints, as `wharf … | head -1` would end it.
    for args in [
        &["--help"][..],
        &["--version"][..],
        &["apps", "--help"][..],
        &["completions", "zsh"][..],
        &["completions", "bash"][..],
        &["status"][..],
        &["status", "docs"][..],
        &["ops"][..],
        &["apps", "list"][..],
        &["apps", "show", "docs"][..],
        &["env", "list", "docs"][..],
        &["domains", "list", "docs"][..],
        &["logs", "docs"][..],
        &["releases", "docs"][..],
        &["certs"][..],
        &["nodes"][..],
        &["tunnels"][..],
        &["db", "list"][..],
        &["backups", "list"][..],
        &["backups", "schedule", "list"][..],
        &["backups", "alerts"][..],
        &["backups", "repo"][..],
        &["apps", "create", "more", "--static"][..],
        &["env", "set", "more", "A=1"][..],
        &["apps", "restart", "more"][..],
        &["hooks", "enable", "more"][..],
        &["hooks", "disable", "more"][..],
    ] {
        let out = server.closed_stdout(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "wharf {args:?}: {stderr}");
        assert!(stderr.is_empty(), "wharf {args:?} said: {stderr}");
    }
    server.stop().await;
}

/// Deleting an app removes its hosts' certificates and keys (a host that comes back gets a new
/// key); its volume is kept, and a new app of the same name says it uses it; `--purge` removes
/// volume, logs and code too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_certificates_and_purge_removes_everything() {
    let tmp = TempDir::new("purge");
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    let host = "shop.example.test";
    let key = data.join("certs").join(host).join("key.pem");
    let volume = data.join("volumes/shop");
    server.ok(&["apps", "create", "shop", "--static"]).await;
    server
        .ok(&["domains", "add", "shop", host, "--tls", "self-signed"])
        .await;
    let first_key = std::fs::read_to_string(&key).unwrap();
    std::fs::write(volume.join("orders.db"), "orders").unwrap();

    let (ok, _, err) = server.cli(&["apps", "delete", "shop"]).await;
    assert!(!ok && err.contains("--yes"), "{err}");
    let out = server.ok(&["apps", "delete", "shop", "--yes"]).await;
    assert!(out.contains("volume and logs are kept"), "{out}");
    assert!(!key.exists(), "the certificate's key went with the app");
    assert!(volume.join("orders.db").exists(), "the volume is kept");

    let out = server.ok(&["apps", "create", "shop", "--static"]).await;
    assert!(
        out.contains(&format!(
            "uses the volume {}",
            std::fs::canonicalize(&volume).unwrap().display()
        )) && out.contains("kept from an earlier app"),
        "{out}"
    );
    server
        .ok(&["domains", "add", "shop", host, "--tls", "self-signed"])
        .await;
    assert_ne!(
        std::fs::read_to_string(&key).unwrap(),
        first_key,
        "a host that comes back gets a new key"
    );

    let out = server
        .ok(&["apps", "delete", "shop", "--purge", "--yes"])
        .await;
    assert!(out.contains("removed"), "{out}");
    for gone in [
        volume.clone(),
        data.join("logs/shop"),
        data.join("apps/shop"),
        data.join("certs").join(host),
    ] {
        assert!(!gone.exists(), "{} is left after --purge", gone.display());
    }
    let out = server.ok(&["apps", "create", "shop", "--static"]).await;
    assert!(!out.contains("kept from an earlier app"), "{out}");
    server.stop().await;
}

/// Flags that would only fail later (every default host a 404, every join command refused)
/// stop the server before it starts, naming the flag; nothing is created.
#[test]
fn server_flags_that_cannot_work_are_refused_at_start() {
    let tmp = TempDir::new("bad-flags");
    let data = tmp.0.join("data");
    for (flag, value, says) in [
        ("--base-domain", "my site.example", "not a valid host"),
        (
            "--link-public",
            "example.com",
            "the port after the host is missing",
        ),
        (
            "--link-public",
            "example.com:0",
            "not a number from 1 to 65535",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["server", "--data"])
            .arg(&data)
            .args([flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} was taken");
        assert!(
            err.contains(flag) && err.contains(says),
            "{flag} {value}: {err}"
        );
        assert!(!data.exists(), "{flag} {value} left a data folder");
    }
    // An "off-site" copy into the repository itself is no copy.
    let repo = tmp.0.join("repo");
    let repo = repo.to_str().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["server", "--data"])
        .arg(&data)
        .args(["--backup-repo", repo, "--backup-copy", repo])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the same repository twice was taken");
    assert!(
        err.contains("--backup-copy is the repository itself"),
        "{err}"
    );
}

/// `wharf login` keeps the URL and token for later commands, readable by the user alone; a
/// login file that cannot be read is named, not silently replaced by the local defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_kept_privately_and_a_broken_one_is_named() {
    let tmp = TempDir::new("login");
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let config = tmp.0.join("config");
    let bare = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        c.args(args)
            .env_remove("WHARF_URL")
            .env_remove("WHARF_TOKEN")
            .env("XDG_CONFIG_HOME", &config)
            .env("WHARF_DATA", tmp.0.join("elsewhere"))
            .env("NO_COLOR", "1");
        c
    };
    let url = format!("http://{}", server.api);
    let out = bare(&["login", "--url", &url])
        .env("WHARF_TOKEN", &server.token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let file = config.join("wharf/cli.toml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the login file is the user's alone");

    server.ok(&["apps", "create", "kept", "--static"]).await;
    let out = bare(&["apps", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listed.contains("kept"), "{out:?}");

    std::fs::write(&file, "url = \"http://").unwrap();
    let out = bare(&["apps", "list"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains(&*file.to_string_lossy()) && err.contains("wharf login"),
        "{err}"
    );
    server.stop().await;
}
