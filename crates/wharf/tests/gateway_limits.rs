//! `wharf gateway` at the open-file limit, as a user runs it: a real process started through
//! `sh -c 'ulimit ...'`, real sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use wharf_testkit::get;

struct Gateway {
    child: Child,
    /// The address it listens on (it picked a free port itself).
    addr: SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
    /// Lines read by `wait_for` so far.
    seen: Vec<String>,
    accept_failures: Arc<AtomicUsize>,
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
        let accept_failures = Arc::new(AtomicUsize::new(0));
        let failures = accept_failures.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = log.next_line().await {
                if line.contains("accept failed") {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                let _ = tx.send(line);
            }
        });
        let mut gw = Gateway {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
            seen: Vec::new(),
            accept_failures,
        };
        // Port 0 in the config: a port picked by the test and freed before the gateway binds
        // it could be taken by anything else running meanwhile.
        let listening = gw.wait_for(" listening address=").await;
        gw.addr = listening
            .split_whitespace()
            .find_map(|w| w.strip_prefix("address="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in `{listening}`"));
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

fn site_dir(name: &str, gateway_keys: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wharf-limits-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "home\n").unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            "[gateway]\nlisten = [\"127.0.0.1:0\"]\n{gateway_keys}\n\n\
             [[site]]\nname = \"www\"\nhosts = [\"www.test\"]\nroot = \"www\"\n"
        ),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_file_limit_neither_lock_out_clients_nor_stay() {
    // This test holds 1,100 sockets itself.
    wharf_gateway::raise_open_file_limit().unwrap();
    // The header timeout is long enough for the gateway to take every connection it can before
    // the first ones time out, even on a busy machine: it must run out of descriptors.
    let dir = site_dir("idle", "header_timeout = \"10s\"");
    let mut gw = Gateway::start("-n 1024", &dir.join("gateway.toml")).await;
    assert_eq!(gw.open_file_limits(), ("1024".into(), "1024".into()));
    let addr = gw.addr;

    // 1,100 connections that never send a byte: more than the gateway has descriptors for.
    let mut idle = Vec::new();
    for _ in 0..1100 {
        let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .expect("connect within 10 s")
            .unwrap();
        idle.push(s);
    }
    gw.wait_for("accept failed").await;

    // A normal client is still served: once the header timeout closes the idle ones.
    let served = tokio::time::timeout(Duration::from_secs(40), get(addr, "www.test", "/"))
        .await
        .expect("a client was not served within 40 s while 1,100 idle connections were open")
        .unwrap();
    assert_eq!(served.status, 200);
    assert_eq!(served.text(), "home\n");

    // And every idle connection is closed by the gateway.
    let mut still_open = 0;
    for mut s in idle {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if closed.is_err() {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "idle connections still open after 20 s");
    assert_eq!(get(addr, "www.test", "/").await.unwrap().status, 200);

    // Running out of descriptors was said once, not once per accept (a second line a minute
    // later, should the test run that long).
    let failures = gw.accept_failures.load(Ordering::Relaxed);
    assert!(
        (1..=2).contains(&failures),
        "{failures} `accept failed` log lines"
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let dir = site_dir("raise", "");
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
