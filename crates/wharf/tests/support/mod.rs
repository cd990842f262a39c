//! Shared by the end-to-end tests: a real `wharf server` process driven through the real CLI.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod docker;
pub mod links;
pub mod pebble;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wharf_testkit::get;

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("wharf-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct ServerProc {
    pub child: Child,
    /// Reads the server's log after "ready" to its end, so a full pipe never stalls it.
    log: tokio::task::JoinHandle<()>,
    pub api: String,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub token: String,
    /// Where agents connect (the link), when on.
    pub link: Option<SocketAddr>,
    /// The server's log lines up to "ready".
    pub startup_log: Vec<String>,
    /// Its log lines after "ready", as they come.
    pub logged: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A port nothing listens on, from below the kernel's ephemeral range: tests restart servers
/// on the same ports, and a port from that range could be taken in between as the source port
/// of any outgoing connection or by another `bind(0)`.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    // Ports 10000.. up to the range; each test process starts at its own place in it.
    let (base, span): (u32, u32) = (10_000, low.saturating_sub(10_000));
    if span < 1000 {
        return std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let start = u64::from(std::process::id()) * 7919;
    for _ in 0..span {
        let next = u64::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = (u64::from(base) + (start + next) % u64::from(span)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {base} and {low}");
}

impl ServerProc {
    /// Starts `wharf server` and waits for its "ready" log line.
    pub async fn start(data: &Path, http_port: u16) -> ServerProc {
        Self::start_with(data, http_port, free_port(), &[]).await
    }

    /// Starts `wharf server` with these HTTP(S) ports and extra environment (flags).
    pub async fn start_with(
        data: &Path,
        http_port: u16,
        https_port: u16,
        env: &[(&str, String)],
    ) -> ServerProc {
        Self::launch(data, http_port, https_port, env, None, &[], &[]).await
    }

    /// Starts `wharf server ARGS…` (e.g. `--docker-host URL`) with extra environment.
    pub async fn start_args(
        data: &Path,
        http_port: u16,
        args: &[&str],
        env: &[(&str, String)],
    ) -> ServerProc {
        Self::launch(data, http_port, free_port(), env, None, &[], args).await
    }

    /// Starts `wharf server` as the user `uid` (`None`: as this process's user).
    pub async fn start_as(data: &Path, http_port: u16, uid: Option<u32>) -> ServerProc {
        Self::launch(data, http_port, free_port(), &[], uid, &[], &[]).await
    }

    /// Starts `wharf server` through a wrapper command (e.g. `setpriv …`), which ends with
    /// the arguments that precede the program it runs.
    pub async fn start_wrapped(data: &Path, http_port: u16, wrapper: &[&str]) -> ServerProc {
        Self::launch(data, http_port, free_port(), &[], None, wrapper, &[]).await
    }

    async fn launch(
        data: &Path,
        http_port: u16,
        https_port: u16,
        env: &[(&str, String)],
        uid: Option<u32>,
        wrapper: &[&str],
        args: &[&str],
    ) -> ServerProc {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_wharf"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_wharf")),
        };
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        let mut child = command
            .arg("server")
            .args(args)
            // A relative data folder, as in the README: apps must still get absolute paths.
            .current_dir(data.parent().unwrap())
            .env("WHARF_DATA", data.file_name().unwrap())
            .env("WHARF_API", "127.0.0.1:0")
            .env("WHARF_HTTP", format!("127.0.0.1:{http_port}"))
            .env("WHARF_ADMIN", "127.0.0.1:0")
            .env("WHARF_HTTPS", format!("127.0.0.1:{https_port}"))
            .env("WHARF_HEALTH_TIMEOUT", "5s")
            // Tests run side by side: no fixed port (a test of links gives its own).
            .env("WHARF_LINK", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("WHARF_LOG_FORMAT", "json")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("wharf server starts");
        let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut startup_log = Vec::new();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = log.next_line().await.unwrap() {
                if line.contains("wharf server ready") {
                    return Some(line);
                }
                startup_log.push(line);
            }
            None
        })
        .await
        .expect("wharf server ready within 30 s");
        // How it ended (an exit code, or the signal that killed it) and what it said.
        let Some(ready) = ready else {
            let status = child.wait().await;
            panic!(
                "wharf server exited before it was ready ({status:?}); its log:\n{}",
                startup_log.join("\n")
            );
        };
        let fields: serde_json::Value = serde_json::from_str(&ready).unwrap();
        let api = fields["fields"]["api"].as_str().unwrap().to_string();
        let http = fields["fields"]["http"].as_str().unwrap().parse().unwrap();
        let link = fields["fields"]["link"]
            .as_str()
            .and_then(|l| l.parse().ok());
        let token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        let logged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = logged.clone();
        ServerProc {
            child,
            log: tokio::spawn(async move {
                while let Ok(Some(line)) = log.next_line().await {
                    keep.lock().unwrap().push(line);
                }
            }),
            logged,
            api,
            http,
            https: SocketAddr::from(([127, 0, 0, 1], https_port)),
            token,
            link,
            startup_log,
        }
    }

    /// Runs the CLI against this server; returns (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .env("WHARF_URL", format!("http://{}", self.api))
            .env("WHARF_TOKEN", &self.token)
            .env("NO_COLOR", "1")
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the CLI with its stdout a pipe whose reader is already gone (`wharf … | head -1`
    /// ended), so its first write fails (EPIPE) whatever the output's size.
    pub fn closed_stdout(&self, args: &[&str]) -> std::process::Output {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .env("WHARF_URL", format!("http://{}", self.api))
            .env("WHARF_TOKEN", &self.token)
            .env("RUST_BACKTRACE", "1")
            .stdout(writer)
            .output()
            .unwrap()
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.cli(args).await;
        assert!(ok, "wharf {args:?} failed:\n{out}\n{err}");
        out
    }

    /// Runs the CLI with `input` on its stdin, within 60 s; returns (exit code, stdout, stderr).
    pub async fn cli_input(&self, args: &[&str], input: &str) -> (i32, String, String) {
        use tokio::io::AsyncWriteExt;
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .env("WHARF_URL", format!("http://{}", self.api))
            .env("WHARF_TOKEN", &self.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("wharf {args:?} ends within 60 s"))
            .unwrap();
        (
            out.status.code().expect("exited"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `wharf run ARGS…` given `stdin` (else end of file): (exit code, stdout, stderr).
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let args: Vec<&str> = std::iter::once("run").chain(args.iter().copied()).collect();
        self.cli_input(&args, stdin.unwrap_or_default()).await
    }

    /// The app's operations of `kind`, as `wharf ops APP --json` lists them.
    pub async fn ops_of(&self, app: &str, kind: &str) -> Vec<serde_json::Value> {
        let ops: serde_json::Value =
            serde_json::from_str(&self.ok(&["ops", app, "--json"]).await).unwrap();
        ops.as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == kind)
            .cloned()
            .collect()
    }

    pub async fn app_json(&self, app: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["apps", "show", app, "--json"]).await).unwrap()
    }

    /// `kill -9`: no chance to clean up, as in a power cut or an OOM kill.
    pub async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// A CLI command left running (e.g. a deploy), its stdout piped.
    pub fn spawn_cli(&self, args: &[&str]) -> tokio::process::Child {
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .env("WHARF_URL", format!("http://{}", self.api))
            .env("WHARF_TOKEN", &self.token)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    pub async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "clean exit: {status}");
        // The log ends with the server.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.log).await;
    }
}

/// Lets apps write `path`, a folder (or file) outside the data folder: run by root, wharf runs
/// each app as its own user, who may not write what the test made (as any server's admin
/// would give an app's own folder to it).
pub fn open_to_apps(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Fails (never skips) when `tool` is not installed, saying which Debian package has it.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is missing: install it with `apt-get install -y {package}`"
    );
}

pub fn require_python() {
    require_tool("python3", "python3");
}

pub async fn page(addr: SocketAddr, host: &str) -> Option<String> {
    match get(addr, host, "/").await {
        Ok(r) if r.status == 200 => Some(r.text()),
        _ => None,
    }
}

/// A git work tree with a bare clone the server fetches from.
pub struct Repo {
    pub work: std::path::PathBuf,
    pub bare: std::path::PathBuf,
}

pub fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs (apt-get install -y git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Repo {
    pub fn new(root: &Path, name: &str, files: &[(&str, &str)]) -> Repo {
        let work = root.join(format!("{name}-src"));
        let bare = root.join(format!("{name}.git"));
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["config", "user.email", "dev@example.test"]);
        git(&work, &["config", "user.name", "dev"]);
        let repo = Repo { work, bare };
        repo.commit(files, "first");
        git(
            root,
            &[
                "clone",
                "-q",
                "--bare",
                repo.work.to_str().unwrap(),
                repo.bare.to_str().unwrap(),
            ],
        );
        repo
    }

    pub fn commit(&self, files: &[(&str, &str)], message: &str) {
        for (path, body) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        if self.bare.exists() {
            git(
                &self.work,
                &["push", "-q", self.bare.to_str().unwrap(), "main"],
            );
        }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }
}

/// True while a live `sleep` runs in `dir` (or below): a build or an app of this test's own
/// data folder, never another test's `sleep` or an unrelated process with the same arguments.
pub fn sleep_in(dir: &Path) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let proc = e.path();
        let sleeping =
            std::fs::read_to_string(proc.join("comm")).is_ok_and(|c| c.trim() == "sleep");
        // A zombie (killed, not yet waited for) runs nothing any more.
        let live = std::fs::read_to_string(proc.join("stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X']))
        });
        // The folder may be gone by now: the kernel then adds " (deleted)" to the link.
        let cwd = std::fs::read_link(proc.join("cwd")).map(|c| {
            let c = c.to_string_lossy().into_owned();
            PathBuf::from(c.strip_suffix(" (deleted)").unwrap_or(&c))
        });
        sleeping && live && cwd.is_ok_and(|cwd| cwd.starts_with(dir))
    })
}
