//! `wharf gateway` as a user runs it: a real process, a real config file, signals.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};
use wharf_testkit::{MockUpstream, get};

struct Running {
    child: Child,
    log: Lines<BufReader<ChildStderr>>,
}

impl Running {
    fn spawn(config: &Path) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["gateway", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("wharf binary starts");
        let log = BufReader::new(child.stderr.take().unwrap()).lines();
        Running { child, log }
    }

    /// Reads the log until a line containing `needle` (the gateway's own readiness signals).
    async fn wait_for(&mut self, needle: &str) -> String {
        let read = async {
            while let Some(line) = self.log.next_line().await.unwrap() {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("wharf exited before logging `{needle}`");
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .unwrap_or_else(|_| panic!("no `{needle}` in the log within 20 s"))
    }

    /// The address the gateway logged it listens on: tests give it port 0, since a port they
    /// picked and freed could be taken by anything else running before the gateway binds it.
    async fn listening(&mut self) -> SocketAddr {
        let line = self.wait_for(" listening address=").await;
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("address="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in `{line}`"))
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wharf-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_file_site_and_key() {
    let dir = temp_dir("check");
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        "[[site]]\nname = \"blog\"\nhosts = [\"blog example\"]\nroot = \".\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["gateway", "--check", "--config"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateway.toml: site \"blog\": `hosts`: `blog example` is not a valid host"),
        "unclear error: {err}"
    );
    std::fs::write(
        &file,
        "[[site]]\nname = \"blog\"\nhosts = [\"blog.test\"]\nroot = \".\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["gateway", "--check", "--config"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok, 1 site(s)"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_on_sighup_and_file_change_refuses_bad_config_and_stops_on_sigterm() {
    let dir = temp_dir("reload");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "static home\n").unwrap();
    let app = MockUpstream::start("app").await;
    // Port 0 stays one listener across reloads: an address already bound is never bound again.
    let base = "[gateway]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[[site]]\nname = \"www\"\nhosts = [\"www.test\"]\nroot = \"www\"\n".to_string();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, &base).unwrap();
    let mut gw = Running::spawn(&file);
    let addr = gw.listening().await;
    gw.wait_for("gateway running").await;
    assert_eq!(
        get(addr, "www.test", "/").await.unwrap().text(),
        "static home\n"
    );
    assert_eq!(get(addr, "app.test", "/").await.unwrap().status, 404);

    // An edited file is picked up by the watcher.
    let with_app = format!(
        "{base}\n[[site]]\nname = \"app\"\nhosts = [\"app.test\"]\nupstreams = [\"{}\"]\n",
        app.addr
    );
    std::fs::write(&file, &with_app).unwrap();
    gw.wait_for("configuration reloaded").await;
    assert_eq!(get(addr, "app.test", "/").await.unwrap().text(), "app");

    // A broken file is refused; everything keeps serving.
    std::fs::write(&file, format!("{with_app}\nlisten_typo = 1\n")).unwrap();
    let refused = gw.wait_for("configuration refused").await;
    assert!(
        refused.contains("gateway.toml"),
        "the error names the file: {refused}"
    );
    assert_eq!(get(addr, "app.test", "/").await.unwrap().text(), "app");

    // An emptied file (as a writer leaves it between truncating and writing) takes no site
    // away.
    std::fs::write(&file, "").unwrap();
    let refused = gw.wait_for("configuration refused").await;
    assert!(refused.contains("has no sites now"), "{refused}");
    assert_eq!(get(addr, "app.test", "/").await.unwrap().text(), "app");

    // SIGHUP reloads too (the file is fixed without the app site now).
    std::fs::write(&file, &base).unwrap();
    gw.wait_for("configuration reloaded").await;
    gw.signal("-HUP");
    gw.wait_for("configuration reloaded").await;
    assert_eq!(get(addr, "app.test", "/").await.unwrap().status, 404);

    gw.signal("-TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), gw.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A log file (stderr redirected, no `NO_COLOR`) gets plain text, not terminal colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_have_no_colour_codes() {
    let dir = temp_dir("plain-log");
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        "[gateway]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[[site]]\nname = \"www\"\nhosts = [\"www.test\"]\nroot = \".\"\n",
    )
    .unwrap();
    let log = dir.join("gateway.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["gateway", "--config"])
        .arg(&file)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wharf_testkit::assert_eventually!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("gateway running"),
        "the gateway logged that it runs"
    );
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().await.unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// After logrotate moved the access log and sent SIGHUP, lines go to a new file at the
/// configured path (they went on into the moved one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_starts_a_new_access_log_after_logrotate_moved_it() {
    let dir = temp_dir("logrotate");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "home\n").unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        "[gateway]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\naccess_log = \"access.log\"\n\n\
         [[site]]\nname = \"www\"\nhosts = [\"www.test\"]\nroot = \"www\"\n",
    )
    .unwrap();
    let mut gw = Running::spawn(&file);
    let addr = gw.listening().await;
    gw.wait_for("gateway running").await;
    let log = dir.join("access.log");
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    };
    get(addr, "www.test", "/first").await.unwrap();
    wharf_testkit::assert_eventually!(lines(&log) == 1, "the first request is logged");

    std::fs::rename(&log, dir.join("access.log.1")).unwrap();
    gw.signal("-HUP");
    gw.wait_for("configuration reloaded").await;
    get(addr, "www.test", "/second").await.unwrap();
    wharf_testkit::assert_eventually!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("/second"),
        "the next request goes to a new access.log"
    );
    assert_eq!(
        lines(&dir.join("access.log.1")),
        1,
        "the moved file keeps its line"
    );
    gw.signal("-TERM");
    let _ = tokio::time::timeout(Duration::from_secs(20), gw.child.wait()).await;
    std::fs::remove_dir_all(dir).unwrap();
}
