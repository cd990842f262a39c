//! Crash safety: `wharf server` is killed with SIGKILL in the middle of a deploy (during the
//! build, and while the new release is starting, after its backup), then started again on the
//! same data. One release always serves, the interrupted one is marked failed with a reason, no
//! half-built release folder is left, the operations log says what happened, and SQLite's
//! integrity check passes.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{Repo, ServerProc, TempDir, free_port, page, require_python, sleep_in};
use tokio::io::{AsyncBufReadExt, BufReader};
use wharf_testkit::assert_eventually;

const APP: &str = "import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open('version').read().strip().encode()
        self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((os.environ['HOST'], int(os.environ['PORT'])), H).serve_forever()
";

/// A health-check deadline far longer than any kill below takes to land, so the kill always
/// finds the release still going live (the harness's default 5 s could run out first on a
/// loaded machine and fail the switch the ordinary way).
fn patient() -> [(&'static str, String); 1] {
    [("WHARF_HEALTH_TIMEOUT", "120s".to_string())]
}

/// Starts a deploy and kills the server once the deploy has printed `marker` and `ready` holds
/// (e.g. the build's process runs: the line that announces it comes before it starts).
async fn kill_during_deploy(server: ServerProc, marker: &str, ready: impl Fn() -> bool) {
    let mut deploy = server.spawn_cli(&["deploy", "api"]);
    let mut lines = BufReader::new(deploy.stdout.take().unwrap()).lines();
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(marker) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "the deploy never printed {marker:?}");
    assert_eventually!(ready(), "the deploy got where the server is to be killed");
    server.kill9().await;
    let _ = deploy.wait().await;
}

/// Commits v2 with a build that takes long, and kills the server while it runs.
async fn kill_during_a_slow_build(server: ServerProc, repo: &Repo, data: &std::path::Path) {
    repo.commit(
        &[
            ("version", "v2"),
            (
                "wharf.toml",
                "build = \"sleep 43\"\nrun = \"exec python3 app.py\"\n",
            ),
        ],
        "slow build",
    );
    let building = data.join("apps/api/releases/2");
    kill_during_deploy(server, "$ sleep 43", || sleep_in(&building)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_comes_back_with_one_release_serving() {
    let (site, server) = Site::serving_v1("crash").await;
    let (data, repo, http) = (&site.data, &site.repo, server.http);

    // 1. Killed during the build.
    kill_during_a_slow_build(server, repo, data).await;
    let server = site.restart().await;
    // Apps come back in the background after the server is up.
    assert_eventually!(
        page(http, "api.localhost").await.as_deref() == Some("v1"),
        "v1 serves after the restart"
    );
    let releases = server.ok(&["releases", "api"]).await;
    assert!(
        releases
            .lines()
            .any(|l| l.starts_with('2') && l.contains("failed") && l.contains("interrupted")),
        "{releases}"
    );
    assert!(
        !data.join("apps/api/releases/2").exists(),
        "a half-built release was left"
    );

    // 2. Killed after the backup, while the new release is starting (it takes 30 s to listen).
    repo.commit(
        &[
            ("version", "v3"),
            ("wharf.toml", "run = \"sleep 30; exec python3 app.py\"\n"),
        ],
        "slow start",
    );
    kill_during_deploy(server, "starting the new release", || true).await;
    let server = site.restart().await;
    assert_eventually!(
        page(http, "api.localhost").await.as_deref() == Some("v1"),
        "the previous release serves again"
    );
    let releases = server.ok(&["releases", "api"]).await;
    assert!(
        releases
            .lines()
            .any(|l| l.starts_with('3') && l.contains("failed")),
        "{releases}"
    );
    assert!(
        releases
            .lines()
            .any(|l| l.starts_with('1') && l.contains("active")),
        "{releases}"
    );
    let ops = server.ok(&["ops", "api"]).await;
    assert!(
        ops.contains("release 3 was going live when the server stopped; release 1 serves again"),
        "{ops}"
    );
    assert!(ops.contains("interrupted"), "{ops}");

    // The app was not lost, and the next deploy works.
    repo.commit(
        &[
            ("version", "v4"),
            ("wharf.toml", "run = \"exec python3 app.py\"\n"),
        ],
        "fixed",
    );
    server.ok(&["deploy", "api"]).await;
    assert_eq!(page(http, "api.localhost").await.as_deref(), Some("v4"));
    server.stop().await;

    let db = rusqlite::Connection::open(data.join("wharf.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

const ENV_APP: &str = "import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (open('version').read().strip() + ' ' + os.environ.get('MODE', '')).encode()
        self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((os.environ['HOST'], int(os.environ['PORT'])), H).serve_forever()
";

/// An app `api` from a git repository, its release 1 serving "v1", on a server that waits long
/// for health (`patient`) so each kill lands where the test means it to.
struct Site {
    /// Removed with the site.
    _tmp: TempDir,
    data: PathBuf,
    ports: (u16, u16),
    repo: Repo,
}

impl Site {
    async fn serving_v1(name: &str) -> (Site, ServerProc) {
        require_python();
        let tmp = TempDir::new(name);
        let repo = Repo::new(
            &tmp.0,
            "api",
            &[
                ("app.py", APP),
                ("version", "v1"),
                ("Procfile", "web: exec python3 app.py\n"),
            ],
        );
        let site = Site {
            data: tmp.0.join("data"),
            ports: (free_port(), free_port()),
            repo,
            _tmp: tmp,
        };
        let server = site.restart().await;
        server
            .ok(&["apps", "create", "api", "--git", &site.repo.url()])
            .await;
        server.ok(&["deploy", "api"]).await;
        assert_eq!(
            page(server.http, "api.localhost").await.as_deref(),
            Some("v1")
        );
        (site, server)
    }

    /// Starts (again) a server on the same data and ports.
    async fn restart(&self) -> ServerProc {
        ServerProc::start_with(&self.data, self.ports.0, self.ports.1, &patient()).await
    }
}

/// A rollback also restores the env the old release ran with; a server killed half-way must
/// come back with the release AND the env that were live before the rollback began, not a
/// mix of the two, and the rollback's target must stay available to roll back to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_cut_short_puts_back_the_release_and_its_env() {
    require_python();
    let tmp = TempDir::new("crash-rollback");
    let data = tmp.0.join("data");
    let (http_port, https_port) = (free_port(), free_port());
    // A marker file in the app's volume makes the next start slow, so the kill lands while
    // the old release is starting with its restored env.
    let run =
        "run = \"if [ -e \\\"$WHARF_VOLUME/slow\\\" ]; then sleep 37; fi; exec python3 app.py\"\n";
    let repo = Repo::new(
        &tmp.0,
        "api",
        &[("app.py", ENV_APP), ("version", "v1"), ("wharf.toml", run)],
    );
    let server = ServerProc::start_with(&data, http_port, https_port, &patient()).await;
    let http = server.http;
    server
        .ok(&["apps", "create", "api", "--git", &repo.url()])
        .await;
    server.ok(&["env", "set", "api", "MODE=one"]).await;
    server.ok(&["deploy", "api"]).await;
    assert_eq!(page(http, "api.localhost").await.as_deref(), Some("v1 one"));
    repo.commit(&[("version", "v2")], "v2");
    server.ok(&["env", "set", "api", "MODE=two"]).await;
    server.ok(&["deploy", "api"]).await;
    assert_eventually!(
        page(http, "api.localhost").await.as_deref() == Some("v2 two"),
        "release 2 serves with MODE=two"
    );

    let slow = data.join("volumes/api/slow");
    std::fs::write(&slow, "").unwrap();
    let mut rollback = server.spawn_cli(&["rollback", "api", "1"]);
    assert_eventually!(
        sleep_in(&data.join("apps/api/releases/1")),
        "release 1 is starting for the rollback"
    );
    server.kill9().await;
    let _ = rollback.wait().await;
    std::fs::remove_file(&slow).unwrap();

    let server = ServerProc::start_with(&data, http_port, https_port, &patient()).await;
    assert_eventually!(
        page(http, "api.localhost").await.as_deref() == Some("v2 two"),
        "release 2 serves again with the env it had (MODE=two)"
    );
    let ops = server.ok(&["ops", "api"]).await;
    assert!(
        ops.contains("release 1 was going live when the server stopped; release 2 serves again, with the env and settings it had before"),
        "{ops}"
    );
    // Release 1 was not broken, only interrupted: it can still be rolled back to.
    server.ok(&["rollback", "api", "1"]).await;
    assert_eq!(page(http, "api.localhost").await.as_deref(), Some("v1 one"));
    server.stop().await;
}

/// A build running when the server is killed is stopped when it starts again (as app
/// instances are), and what the deploy left half done goes: the release's folder, and a
/// partial backup (planted here: a kill while a backup is written leaves one like it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_cut_short_by_a_kill_is_stopped_and_cleared_at_the_next_start() {
    let (site, server) = Site::serving_v1("crash-build").await;
    let (data, repo, http) = (&site.data, &site.repo, server.http);

    kill_during_a_slow_build(server, repo, data).await;
    let building = data.join("apps/api/releases/2");
    assert!(sleep_in(&building), "the build outlived the server");
    let partial = data.join("backups/api/before-2-1.tar.tmp");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, "half an archive").unwrap();

    let server = site.restart().await;
    // Killed before the server says it is ready; a few seconds for the kill to land, far
    // less than the build has left to run.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleep_in(&building) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!sleep_in(&building), "the killed server's build still runs");
    let releases = data.join("apps/api/releases");
    let left: Vec<String> = std::fs::read_dir(&releases)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["1"], "only the ready release's folder stays");
    assert!(!partial.exists(), "the partial backup was left");
    assert_eventually!(
        page(http, "api.localhost").await.as_deref() == Some("v1"),
        "v1 serves after the restart"
    );
    server.stop().await;
}
