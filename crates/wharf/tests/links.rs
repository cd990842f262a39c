//! Machines joined by links, end to end: the server in the root network namespace, each agent
//! (`wharf agent`) in a namespace of its own on a bridge (`wharf_testkit::netns::Bed`, in
//! 198.18.0.0/15), apps placed on them served through the server's gateway, a tunnel carrying
//! Postgres between two machines. Needs root, iproute2, tcpdump, python3 and PostgreSQL.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::links::{invite, node};
use support::{ServerProc, TempDir, free_port, require_python, require_tool};
use wharf_testkit::get;
use wharf_testkit::{Bed, contains};

/// Polls `$cond` every 20 ms until it holds, failing after `$within`.
macro_rules! within {
    ($within:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = Instant::now() + $within;
        while !$cond {
            assert!(Instant::now() < deadline, "not true within {:?}: {}", $within, format!($($msg)+));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

/// Serves `$GREETING` from the volume, like server_e2e's app; also echoes nothing else.
fn app_command() -> String {
    "cd \"$WHARF_VOLUME\" && printf '%s' \"$GREETING\" > index.html \
         && exec python3 -m http.server \"$PORT\" --bind \"$HOST\""
        .to_string()
}

fn bed(machines: usize) -> Bed {
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("ss", "iproute2"),
    ] {
        require_tool(tool, package);
    }
    Bed::new(machines).unwrap_or_else(|e| panic!("cannot make the network test bed: {e}"))
}

/// `wharf server` with its link on the bed's bridge.
async fn server(tmp: &TempDir, bed: &Bed) -> ServerProc {
    let link = format!("{}:{}", bed.host_ip(), free_port());
    server_at(tmp, &link, free_port()).await
}

async fn server_at(tmp: &TempDir, link: &str, http_port: u16) -> ServerProc {
    ServerProc::start_args(&tmp.0.join("data"), http_port, &["--link", link], &[]).await
}

/// A running `wharf agent` in machine `i`.
struct Agent {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Agent {
    fn start(bed: &Bed, i: usize, data: &Path, join: Option<(&str, &str)>) -> Agent {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension("log");
        let mut cmd = bed.command(i, env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("agent").arg("--data").arg(data);
        if let Some((url, token)) = join {
            cmd.args(["--join", url, "--token", token]);
        }
        cmd.env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        Agent {
            child: cmd.spawn().expect("wharf agent starts"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

async fn node_state(server: &ServerProc, name: &str) -> Option<String> {
    node(server, name)
        .await
        .and_then(|n| n["state"].as_str().map(str::to_string))
}

async fn wait_connected(server: &ServerProc, name: &str, agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while node_state(server, name).await.as_deref() != Some("connected") {
        assert!(
            Instant::now() < deadline,
            "node {name} did not connect within 20 s; agent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Processes in machine `i` whose command line contains `needle`.
fn processes_in(bed: &Bed, i: usize, needle: &str) -> usize {
    pids_in(bed, i, needle).len()
}

fn pids_in(bed: &Bed, i: usize, needle: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", &bed.ns(i)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| contains(&c, needle.as_bytes()))
                .unwrap_or(false)
        })
        .map(str::to_string)
        .collect()
}

async fn status_code(http: std::net::SocketAddr, host: &str) -> Option<u16> {
    get(http, host, "/").await.ok().map(|r| r.status.as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_serve_their_apps_and_a_killed_one_takes_only_its_own_app_down() {
    require_python();
    let bed = bed(2);
    let tmp = TempDir::new("links-two");
    let server = server(&tmp, &bed).await;
    let http = server.http;

    let mut agents = Vec::new();
    for i in 0..2 {
        let name = format!("n{i}");
        let (url, token) = invite(&server, &name, &[]).await;
        let agent = Agent::start(
            &bed,
            i,
            &tmp.0.join(format!("agent{i}")),
            Some((&url, &token)),
        );
        wait_connected(&server, &name, &agent).await;
        agents.push(agent);
    }
    for i in 0..2 {
        let greeting = format!("GREETING=served by n{i}");
        server
            .ok(&[
                "apps",
                "create",
                &format!("web{i}"),
                "--run",
                &app_command(),
                "--env",
                &greeting,
                "--node",
                &format!("n{i}"),
            ])
            .await;
    }
    for i in 0..2 {
        let host = format!("web{i}.localhost");
        let r = get(http, &host, "/").await.unwrap();
        assert_eq!(
            r.text(),
            format!("served by n{i}"),
            "web{i} is served from its node"
        );
        assert_eq!(
            processes_in(&bed, i, "http.server"),
            1,
            "one instance on n{i}"
        );
    }
    // As on the server: each app as its own user, in the sandbox; the agent's key is its own.
    for i in 0..2 {
        let pid = &pids_in(&bed, i, "http.server")[0];
        let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid: u32 = proc_status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse().ok())
            .unwrap();
        assert!(
            (61184..=65519).contains(&uid),
            "web{i} runs as its own user on n{i}, not as {uid}"
        );
        assert!(
            proc_status.contains("NoNewPrivs:\t1"),
            "web{i} runs sandboxed on n{i}"
        );
        let key = tmp.0.join(format!("agent{i}/identity.json"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "the node's key is the agent's alone");
    }
    let status = server.ok(&["status", "web1"]).await;
    assert!(
        status.contains("n1"),
        "wharf status names the node: {status}"
    );
    let nodes = server.ok(&["nodes"]).await;
    assert!(
        nodes.contains("connected") && nodes.contains("web0") && nodes.contains(" ms"),
        "wharf nodes shows state, apps and latency: {nodes}"
    );

    // kill -9 of n1's agent: its app runs on there, but the server stops routing to it
    // (503, Retry-After) within 2 s of noticing; n0's app is untouched.
    agents[1].kill9().await;
    let killed = Instant::now();
    within!(
        Duration::from_secs(5),
        status_code(http, "web1.localhost").await == Some(503),
        "web1 answers 503 once its node is unreachable"
    );
    let noticed = killed.elapsed();
    assert!(
        noticed < Duration::from_secs(4),
        "the server noticed the node was gone in {noticed:?}"
    );
    let r = get(http, "web1.localhost", "/").await.unwrap();
    assert_eq!(
        r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("5")
    );
    assert_eq!(status_code(http, "web0.localhost").await, Some(200));
    assert_eq!(
        node_state(&server, "n1").await.as_deref(),
        Some("unreachable")
    );

    // Restarted (its identity kept, no token), served again within 5 s, one instance.
    let restarted = Instant::now();
    agents[1] = Agent::start(&bed, 1, &tmp.0.join("agent1"), None);
    within!(
        Duration::from_secs(5),
        status_code(http, "web1.localhost").await == Some(200),
        "web1 is served again within 5 s of its agent's restart"
    );
    let back = restarted.elapsed();
    assert_eq!(
        processes_in(&bed, 1, "http.server"),
        1,
        "no duplicate instance on n1"
    );
    assert_eq!(processes_in(&bed, 0, "http.server"), 1, "n0 untouched");
    let r = get(http, "web1.localhost", "/").await.unwrap();
    assert_eq!(r.text(), "served by n1");

    // A machine that goes silent (its network cut: no FIN, no RST) is noticed by the
    // heartbeat; its app keeps running there and is served again once the path is back.
    bed.cut(0).unwrap();
    let cut = Instant::now();
    within!(
        Duration::from_secs(3),
        status_code(http, "web0.localhost").await == Some(503),
        "web0 answers 503 once n0 is silent"
    );
    let silent = cut.elapsed();
    assert_eq!(status_code(http, "web1.localhost").await, Some(200));
    bed.restore(0).unwrap();
    let restored = Instant::now();
    within!(
        Duration::from_secs(10),
        status_code(http, "web0.localhost").await == Some(200),
        "web0 is served again once n0's path is back"
    );
    let healed = restored.elapsed();
    assert_eq!(
        processes_in(&bed, 0, "http.server"),
        1,
        "n0's app ran on through the cut"
    );

    // The server killed and started again (an upgrade): the agents reconnect, and their apps,
    // whose fingerprints match, are adopted, not restarted.
    let before: Vec<Vec<String>> = (0..2).map(|i| pids_in(&bed, i, "http.server")).collect();
    let link = server.link.unwrap().to_string();
    server.kill9().await;
    let server = server_at(&tmp, &link, http.port()).await;
    let restarted = Instant::now();
    for i in 0..2 {
        within!(
            Duration::from_secs(10),
            status_code(http, &format!("web{i}.localhost")).await == Some(200),
            "web{i} is served again after the server's restart"
        );
    }
    let readopted = restarted.elapsed();
    let after: Vec<Vec<String>> = (0..2).map(|i| pids_in(&bed, i, "http.server")).collect();
    assert_eq!(
        before, after,
        "the server's restart restarted no app on the nodes"
    );
    let status = server.ok(&["status", "web0"]).await;
    assert!(!status.contains("failed"), "{status}");
    eprintln!(
        "node killed: noticed in {noticed:?}, served again {back:?} after the restart; \
         node silent: noticed in {silent:?}, served again {healed:?} after the path came back; \
         server restarted: nodes' apps served again after {readopted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_work_once_removed_nodes_are_cut_off_and_the_wire_carries_no_clear_text() {
    require_python();
    require_tool("tcpdump", "tcpdump");
    let bed = bed(1);
    let tmp = TempDir::new("links-tokens");
    let server = server(&tmp, &bed).await;
    let http = server.http;

    // A wrong token, an expired one: refused, saying why.
    let (url, token) = invite(&server, "edge", &[]).await;
    let mut wrong = Agent::start(&bed, 0, &tmp.0.join("wrong"), Some((&url, "not-the-token")));
    let status = wrong.child.wait().await.unwrap();
    assert!(!status.success());
    assert!(wrong.log().contains("not known"), "{}", wrong.log());
    let (_, short) = invite(&server, "late", &["--expires", "1s"]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // the token's own lifetime
    let mut late = Agent::start(&bed, 0, &tmp.0.join("late"), Some((&url, &short)));
    assert!(!late.child.wait().await.unwrap().success());
    assert!(late.log().contains("expired"), "{}", late.log());

    // The right one joins; used again, it is refused.
    let agent = Agent::start(&bed, 0, &tmp.0.join("edge"), Some((&url, &token)));
    wait_connected(&server, "edge", &agent).await;
    let mut again = Agent::start(&bed, 0, &tmp.0.join("again"), Some((&url, &token)));
    assert!(!again.child.wait().await.unwrap().success());
    assert!(again.log().contains("already used"), "{}", again.log());

    // A request with a marker, through the link while the veth is captured: the marker is
    // nowhere on the wire, though the request crossed it.
    let marker = "wharf-marker-7f3a9c5e";
    server
        .ok(&[
            "apps",
            "create",
            "echo",
            "--run",
            &app_command(),
            "--env",
            &format!("GREETING={marker}"),
            "--node",
            "edge",
        ])
        .await;
    let capture = bed.capture(0).unwrap();
    let r = get(http, "echo.localhost", &format!("/?q={marker}"))
        .await
        .unwrap();
    assert_eq!(r.text(), marker, "the marker went there and back");
    let wire = capture.finish();
    assert!(
        wire.len() > 1000,
        "the capture saw the link's traffic ({} bytes)",
        wire.len()
    );
    assert!(
        !contains(&wire, marker.as_bytes()),
        "the marker crossed the wire in clear"
    );

    // Removed: the link is closed within 1 s and refused from then on.
    server.ok(&["apps", "delete", "echo", "--yes"]).await;
    let link_port = server.link.unwrap().port().to_string();
    let established = || {
        let out = bed
            .command(0, "ss")
            .args(["-Htn", "state", "established"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!(":{link_port}")))
            .count()
    };
    assert_eq!(established(), 1, "the agent keeps one connection");
    server.ok(&["nodes", "remove", "edge"]).await;
    let removed = Instant::now();
    while established() > 0 {
        assert!(
            removed.elapsed() < Duration::from_secs(1),
            "the removed node's link is closed within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its reconnections (backoff up to 5 s) are refused once its certificate is seen: the
    // agent never gets a link again (each attempt's hello is answered with the reason, then
    // the connection is closed).
    let links = |log: &str| log.matches("linked to the server").count();
    let before = links(&agent.log());
    // It is told why, and what to do.
    within!(
        Duration::from_secs(10),
        agent.log().contains("the server refused this node")
            && agent.log().contains("remove identity.json"),
        "the removed node tries again and is refused: {}",
        agent.log()
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // more attempts, at the agent's backoff
    assert_eq!(
        links(&agent.log()),
        before,
        "a removed node stays cut off: {}",
        agent.log()
    );
    assert_eq!(node_state(&server, "edge").await, None);
}

/// Debian's PostgreSQL server binaries (`/usr/lib/postgresql/<version>/bin`).
fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .filter(|b| b.join("postgres").exists())
        .unwrap_or_else(|| {
            panic!("PostgreSQL is missing; install it with: apt-get install -y postgresql")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_on_one_machine_queries_postgres_on_another_through_a_tunnel() {
    require_tool("psql", "postgresql-client");
    let pg = postgres_bin();
    let bed = bed(2);
    let tmp = TempDir::new("links-pg");
    let server = server(&tmp, &bed).await;
    let mut agents = Vec::new();
    for (i, name) in [(0, "web"), (1, "db")] {
        let (url, token) = invite(&server, name, &[]).await;
        let agent = Agent::start(&bed, i, &tmp.0.join(name), Some((&url, &token)));
        wait_connected(&server, name, &agent).await;
        agents.push(agent);
    }
    // Postgres in machine 1 on its loopback, as its own user.
    let cluster = tmp.0.join("pg");
    std::fs::create_dir_all(&cluster).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&cluster)
        .status()
        .unwrap();
    assert!(chown.success());
    let as_postgres = |program: &Path| {
        let mut c = bed.command(1, "runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    };
    let init = as_postgres(&pg.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(cluster.join("data"))
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut postgres = tokio::process::Command::from({
        let mut c = as_postgres(&pg.join("postgres"));
        c.arg("-D")
            .arg(cluster.join("data"))
            .args(["-h", "127.0.0.1", "-p", "5432", "-k"])
            .arg(&cluster)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    });
    let _postgres = postgres.kill_on_drop(true).spawn().unwrap();
    within!(
        Duration::from_secs(30),
        bed.command(1, pg.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", "5432"])
            .output()
            .unwrap()
            .status
            .success(),
        "postgres is up"
    );

    let out = server
        .ok(&[
            "tunnels",
            "add",
            "pg",
            "--listen",
            "web:15432",
            "--to",
            "db:127.0.0.1:5432",
        ])
        .await;
    assert!(
        !out.contains("warning"),
        "a loopback listener needs no warning: {out}"
    );
    let listening = bed.command(0, "ss").args(["-Hltn"]).output().unwrap();
    let listening = String::from_utf8_lossy(&listening.stdout).to_string();
    assert!(
        listening.contains("127.0.0.1:15432") && !listening.contains("0.0.0.0:15432"),
        "the tunnel listens on loopback only: {listening}"
    );
    let psql = || {
        bed.command(0, "psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                "15432",
                "-U",
                "postgres",
                "-tA",
                "-c",
                "select 6 * 7",
            ])
            .output()
            .unwrap()
    };
    within!(
        Duration::from_secs(10),
        psql().status.success(),
        "psql connects"
    );
    let out = psql();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // A tunnel listening on the server: a connection through it reaches Postgres (which
    // answers an SSL request with 'N'); removing the tunnel ends that open connection too.
    let here = free_port();
    server
        .ok(&[
            "tunnels",
            "add",
            "pg-here",
            "--listen",
            &format!("server:{here}"),
            "--to",
            "db:127.0.0.1:5432",
        ])
        .await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", here))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    let mut answer = [0u8; 1];
    conn.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"N", "Postgres answered through the tunnel");
    server.ok(&["tunnels", "remove", "pg-here"]).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut answer)).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "a removed tunnel's open connection ends: {ended:?}"
    );

    // Listening elsewhere than loopback is said.
    let out = server
        .ok(&[
            "tunnels",
            "add",
            "pg-open",
            "--listen",
            &format!("web:{}:15433", bed.ip(0)),
            "--to",
            "db:127.0.0.1:5432",
        ])
        .await;
    assert!(out.contains("warning"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_app_built_with_a_virtualenv_runs_on_a_node_as_built() {
    require_python();
    require_tool("unshare", "util-linux");
    let bed = bed(1);
    let tmp = TempDir::new("links-venv");
    let server = server(&tmp, &bed).await;
    let data = std::fs::canonicalize(tmp.0.join("data")).unwrap();

    // The node is another machine: the server's data folder is not there (an empty tmpfs hides
    // it from the agent), so the paths the build wrote must lead to the node's copy.
    let (url, token) = invite(&server, "py-node", &[]).await;
    let agent_data = tmp.0.join("agent");
    std::fs::create_dir_all(&agent_data).unwrap();
    let log = tmp.0.join("agent.log");
    let mut cmd = bed.command(0, "unshare");
    cmd.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs tmpfs "$1" && exec "$2" agent --data "$3" --join "$4" --token "$5""#)
        .arg("sh")
        .arg(&data)
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .arg(&agent_data)
        .args([&url, &token])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut cmd = tokio::process::Command::from(cmd);
    let _agent = cmd.kill_on_drop(true).spawn().unwrap();
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    within!(
        Duration::from_secs(20),
        node_state(&server, "py-node").await.as_deref() == Some("connected"),
        "the node connects: {}",
        agent_log()
    );

    // A Python app whose build makes a virtualenv (`requirements.txt`, empty: no index
    // needed), run with the virtualenv's `python` (Debian has no `python` of its own).
    let code = tmp.0.join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("requirements.txt"), "").unwrap();
    std::fs::write(code.join("Procfile"), "web: exec python app.py\n").unwrap();
    std::fs::write(
        code.join("app.py"),
        r#"import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = sys.prefix.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#,
    )
    .unwrap();
    support::open_to_apps(&code);
    server
        .ok(&["apps", "create", "py", "--node", "py-node"])
        .await;
    let out = server
        .ok(&["deploy", "py", "--dir", code.to_str().unwrap()])
        .await;
    assert!(out.contains("live"), "{out}");
    let prefix = get(server.http, "py.localhost", "/").await.unwrap().text();
    assert!(
        prefix.starts_with(&data.display().to_string()) && prefix.ends_with("/.venv"),
        "the app runs in the virtualenv the server built, at the path it was built at: {prefix}"
    );
}
