//! `wharf gateway` at the open-file limit, as a user runs it: a real process started through
//! `sh -c 'ulimit ...'`, real sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

struct Gateway {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Lines read by `wait_for` so far.
    seen: Vec<String>,
}

impl Gateway {
    /// Starts `wharf gateway` under `ulimit` (e.g. `-n 1024`) and waits until it serves.
    async fn start(ulimit: &str, config: &Path) -> Gateway {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit {ulimit} && exec \"$0\" gateway --config \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_wharf"))
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("wharf binary starts");
        let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = log.next_line().await {
                let _ = tx.send(line);
            }
        });
        let mut gw = Gateway {
            child,
            lines,
            seen: Vec::new(),
        };
        gw.wait_for("gateway running").await;
        gw
    }

    async fn wait_for(&mut self, needle: &str) -> String {
        let read = async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line.clone());
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

    /// (soft, hard) open-file limits of the running process.
    fn open_file_limits(&self) -> (String, String) {
        let pid = self.child.id().unwrap();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let mut cols = line["Max open files".len()..].split_whitespace();
        (
            cols.next().unwrap().to_string(),
            cols.next().unwrap().to_string(),
        )
    }
}

fn site_dir(name: &str, gateway_keys: &str) -> (PathBuf, SocketAddr) {
    let dir = std::env::temp_dir().join(format!("wharf-limits-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "home\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            "[gateway]\nlisten = [\"{addr}\"]\n{gateway_keys}\n\n\
             [[site]]\nname = \"www\"\nhosts = [\"www.test\"]\nroot = \"www\"\n"
        ),
    )
    .unwrap();
    (dir, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let (dir, _addr) = site_dir("raise", "");
    let gw = Gateway::start("-S -n 256", &dir.join("gateway.toml")).await;
    let (soft, hard) = gw.open_file_limits();
    assert_eq!(soft, hard, "soft limit {soft}, hard limit {hard}");
    assert_ne!(soft, "256");
    // Said once, at start.
    let said: Vec<_> = gw
        .seen
        .iter()
        .filter(|l| l.contains("open-file limit raised from 256 to"))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", gw.seen);
    let _ = std::fs::remove_dir_all(&dir);
}
