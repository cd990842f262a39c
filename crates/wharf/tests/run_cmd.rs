//! One-off commands: `wharf run APP -- CMD` runs in the app's release folder, with its env, as
//! its user, streams its output and exits with the command's status; it is recorded in the
//! operations log without the env; the dashboard's terminal does the same over a WebSocket,
//! opened only by a logged-in page of the same origin.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use support::{Repo, ServerProc, TempDir, free_port, require_python, sleep_in};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wharf_testkit::{assert_eventually, request};

const SECRET: &str = "greeting-s3cret-7731";

/// A server with the app `web` deployed (release 1) and `GREETING` set.
async fn deployed(tmp: &TempDir) -> ServerProc {
    require_python();
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
        .ok(&[
            "apps",
            "create",
            "web",
            "--git",
            &repo.url(),
            "--env",
            &format!("GREETING={SECRET}"),
        ])
        .await;
    server.ok(&["deploy", "web"]).await;
    server
}

/// `wharf run ARGS…`: (exit code, stdout, stderr).
async fn run(server: &ServerProc, args: &[&str]) -> (i32, String, String) {
    server.run(args, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_runs_in_the_release_with_the_apps_env_and_user_and_its_status_is_the_clis() {
    let tmp = TempDir::new("run-cmd");
    let server = deployed(&tmp).await;
    let data = tmp.0.join("data").canonicalize().unwrap();

    let (code, out, err) = run(
        &server,
        &[
            "web",
            "--",
            "sh",
            "-c",
            "echo $GREETING; pwd; id -u; echo to-stderr >&2; exit 3",
        ],
    )
    .await;
    assert_eq!(
        code, 3,
        "the CLI exits with the command's status: {out}{err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], SECRET, "the app's env: {out}");
    assert_eq!(
        Path::new(lines[1]),
        data.join("apps/web/releases/1"),
        "the release folder"
    );
    let uid = server.app_json("web").await["uid"].as_u64();
    if let Some(uid) = uid {
        assert_eq!(lines[2], uid.to_string(), "runs as the app's own user");
        assert_ne!(lines[2], "0");
    }
    assert_eq!(err.trim(), "to-stderr", "stderr stays stderr");

    // Arguments arrive as they are; a command killed by a signal exits 128 + signal.
    let (code, out, _) = run(&server, &["web", "--", "printf", "%s|", "it's", "a b"]).await;
    assert_eq!((code, out.as_str()), (0, "it's|a b|"));
    let (code, _, err) = run(&server, &["web", "--", "sh", "-c", "kill -9 $$"]).await;
    assert_eq!(code, 128 + 9, "{err}");
    // --json: the API's events, one a line; the status is still the CLI's.
    let (code, out, _) = run(
        &server,
        &["web", "--json", "--", "sh", "-c", "echo j; exit 5"],
    )
    .await;
    assert_eq!(code, 5);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["stdout"], "j\n");
    assert_eq!(lines.last().unwrap()["exit"]["code"], 5, "{out}");

    // Recorded as operations of kind run, with the command (the env value masked) and how it
    // ended; the value is nowhere in the operations log nor the server's log.
    let runs = server.ops_of("web", "run").await;
    assert_eq!(runs.len(), 4, "{runs:#?}");
    let first = runs
        .iter()
        .find(|o| o["message"].as_str().unwrap().contains("exit 3"))
        .unwrap_or_else(|| panic!("the first run is recorded: {runs:#?}"));
    assert_eq!(first["status"], "failed");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("echo $GREETING; pwd"),
        "{first:#}"
    );
    let (_, secret_run, _) = run(&server, &["web", "--", "echo", SECRET]).await;
    assert_eq!(secret_run.trim(), SECRET);
    let shown = server.ok(&["ops", "web"]).await;
    assert!(shown.contains("run"), "{shown}");
    let all_ops = server.ok(&["ops", "web", "--json"]).await;
    assert!(!all_ops.contains(SECRET), "{all_ops}");
    assert!(all_ops.contains("echo ****"), "{all_ops}");
    let logged = server.logged.lock().unwrap().join("\n");
    assert!(logged.contains("echo ****"), "the run is logged: {logged}");
    assert!(
        !logged.contains(SECRET),
        "the server log holds the env value"
    );

    // `wharf run … | head -1`: a closed stdout ends the CLI quietly, as every verb.
    let out = server.closed_stdout(&["run", "web", "--", "sh", "-c", "echo one; echo two"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// `wharf run web -- sh -c SCRIPT` once its first line, `first`, came while it still runs (the
/// first line is read as it comes, not at the end) and its `sleep` is there.
async fn started(server: &ServerProc, data: &Path, script: &str, first: &str) -> Child {
    let mut cli = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["run", "web", "--", "sh", "-c", script])
        .env("WHARF_URL", format!("http://{}", server.api))
        .env("WHARF_TOKEN", &server.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the first line comes while the command still runs")
        .unwrap();
    assert_eq!(line.as_deref(), Some(first));
    // `sh` forks the sleep right after the echo.
    assert_eventually!(sleep_in(data), "the command is still running");
    cli
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_streams_as_it_comes_and_a_client_that_leaves_ends_the_command() {
    let tmp = TempDir::new("run-stream");
    let server = deployed(&tmp).await;
    let data = tmp.0.join("data").canonicalize().unwrap();

    let mut cli = started(
        &server,
        &data,
        "echo first; sleep 300; echo second",
        "first",
    )
    .await;

    // The client goes away (Ctrl-C, a dropped connection): the command ends with it.
    cli.start_kill().unwrap();
    cli.wait().await.unwrap();
    assert_eventually!(!sleep_in(&data), "the command was stopped");
    let ops = server.ok(&["ops", "web"]).await;
    assert!(ops.contains("the client went away"), "{ops}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_ends_the_commands_it_runs_and_says_so() {
    let tmp = TempDir::new("run-stop");
    let server = deployed(&tmp).await;
    let data = tmp.0.join("data").canonicalize().unwrap();
    let cli = started(&server, &data, "echo up; sleep 300", "up").await;

    // A server stop (systemctl restart) does not wait for the command: `stop` allows 30 s,
    // the command would take 300.
    server.stop().await;
    assert!(!sleep_in(&data), "the command ended with the server");
    let out = tokio::time::timeout(Duration::from_secs(30), cli.wait_with_output())
        .await
        .expect("the CLI ends")
        .unwrap();
    assert_eq!(out.status.code(), Some(137));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("the server is stopping"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_a_killed_server_left_running_is_stopped_when_it_starts_again() {
    let tmp = TempDir::new("run-crash");
    let server = deployed(&tmp).await;
    let data = tmp.0.join("data").canonicalize().unwrap();
    let mut cli = server.spawn_cli(&["run", "web", "--", "sh", "-c", "echo up; sleep 300"]);
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the command started")
        .unwrap();
    assert_eq!(first.as_deref(), Some("up"));
    assert_eventually!(sleep_in(&data), "the command runs");

    let port = server.http.port();
    server.kill9().await;
    assert!(sleep_in(&data), "a kill -9 leaves the command running");
    let _server = ServerProc::start(&tmp.0.join("data"), port).await;
    assert_eventually!(!sleep_in(&data), "the next server stopped the command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_without_a_release_has_nowhere_to_run_a_command() {
    let tmp = TempDir::new("run-norelease");
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let repo = Repo::new(&tmp.0, "fresh", &[("index.html", "v1")]);
    server
        .ok(&["apps", "create", "fresh", "--git", &repo.url()])
        .await;
    let (code, out, err) = run(&server, &["fresh", "--", "true"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("fresh has no release yet") && err.contains("wharf deploy fresh"),
        "{err}"
    );
    let answer = api_post(&server, "/api/v1/apps/fresh/run", r#"{"command":["true"]}"#).await;
    assert_eq!(answer.status, 409, "{}", answer.text());
    let answer = api_post(&server, "/api/v1/apps/fresh/run", r#"{"command":[]}"#).await;
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert!(
        answer.text().contains("say what to run"),
        "{}",
        answer.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_output_events_then_one_exit_and_feeds_stdin() {
    let tmp = TempDir::new("run-api");
    let server = deployed(&tmp).await;
    let answer = api_post(
        &server,
        "/api/v1/apps/web/run",
        r#"{"command":["sh","-c","cat; echo oops >&2; exit 2"],"stdin":"piped-in\n"}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/x-ndjson"));
    let events: Vec<serde_json::Value> = answer
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, output) = events.split_last().unwrap();
    let text = |key: &str| -> String {
        output
            .iter()
            .filter_map(|e| e[key].as_str())
            .collect::<String>()
    };
    assert_eq!(text("stdout"), "piped-in\n");
    assert_eq!(text("stderr"), "oops\n");
    assert_eq!(last["exit"]["code"], 2, "{last}");
    assert_eq!(last["exit"]["message"], "exit status 2");
    let op = last["exit"]["operation"].as_i64().unwrap();
    let ops: serde_json::Value =
        serde_json::from_str(&server.ok(&["ops", "web", "--json"]).await).unwrap();
    let recorded = ops.as_array().unwrap().iter().find(|o| o["id"] == op);
    let recorded = recorded.unwrap_or_else(|| panic!("operation {op} is recorded: {ops:#}"));
    assert_eq!(recorded["kind"], "run");
    assert_eq!(
        recorded["status"], "failed",
        "a non-zero status is a failed run"
    );

    // Past its timeout, the command is killed and the CLI says why.
    let (code, _, err) = run(&server, &["web", "--timeout", "1", "--", "sleep", "120"]).await;
    assert_eq!(code, 128 + 9, "{err}");
    assert!(
        err.contains("stopped after 1 s (the run's timeout)"),
        "{err}"
    );
}

async fn api_post(server: &ServerProc, path: &str, body: &str) -> wharf_testkit::Reply {
    let addr: SocketAddr = server.api.parse().unwrap();
    let req = http::Request::post(path)
        .header("host", server.api.as_str())
        .header("authorization", format!("Bearer {}", server.token))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    request(addr, req).await.unwrap()
}

/// Logs in to the dashboard; returns the session cookie and the terminal page's CSRF token.
async fn dashboard_login(server: &ServerProc, app: &str) -> (String, String) {
    let addr: SocketAddr = server.api.parse().unwrap();
    // A form another site's page sends is refused: it would log the browser in as that
    // site's author.
    let req = http::Request::post("/login")
        .header("host", server.api.as_str())
        .header("origin", "https://elsewhere.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!("token={}", server.token))))
        .unwrap();
    let reply = request(addr, req).await.unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(
        reply.header("set-cookie").is_none(),
        "no session from elsewhere"
    );
    let req = http::Request::post("/login")
        .header("origin", format!("http://{}", server.api))
        .header("host", server.api.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!("token={}", server.token))))
        .unwrap();
    let reply = request(addr, req).await.unwrap();
    let cookie = reply
        .header("set-cookie")
        .expect("logged in")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let req = http::Request::get(format!("/apps/{app}/terminal"))
        .header("host", server.api.as_str())
        .header("cookie", &cookie)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let page = request(addr, req).await.unwrap();
    assert_eq!(page.status, 200);
    let page = page.text();
    assert!(page.contains("xterm.js"), "the page loads xterm.js");
    let csrf = page
        .split("data-csrf=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page carries the CSRF token")
        .to_string();
    (cookie, csrf)
}

/// Opens the terminal's socket with these headers.
async fn open(
    server: &ServerProc,
    app: &str,
    csrf: &str,
    cookie: Option<&str>,
    origin: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
> {
    let url = format!("ws://{}/apps/{app}/terminal/socket?csrf={csrf}", server.api);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            Err(format!("refused with {}", resp.status()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Reads from the terminal until what it showed contains `want`; returns all it showed.
async fn read_until(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    want: &str,
) -> String {
    let mut shown = String::new();
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                shown.push_str(&t);
                if shown.contains(want) {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert!(
        matches!(got, Ok(true)),
        "the terminal never showed {want:?}; it showed {shown:?}"
    );
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_terminal_runs_a_line_and_opens_only_for_its_own_page() {
    let tmp = TempDir::new("run-terminal");
    let server = deployed(&tmp).await;
    let data = tmp.0.join("data").canonicalize().unwrap();
    let (cookie, csrf) = dashboard_login(&server, "web").await;
    let origin = format!("http://{}", server.api);

    let mut ws = open(&server, "web", &csrf, Some(&cookie), &origin)
        .await
        .expect("the terminal opens");
    read_until(&mut ws, "$ ").await;
    ws.send(Message::text("echo hi\r")).await.unwrap();
    let shown = read_until(&mut ws, "[exit status 0]").await;
    assert!(
        shown.contains("echo hi\r\nhi\r\n"),
        "echo, then output: {shown:?}"
    );

    // Backspace edits the line; the app's env is there.
    ws.send(Message::text("echo $GREETINX\x7fG\r"))
        .await
        .unwrap();
    let shown = read_until(&mut ws, "[exit status 0]").await;
    assert!(shown.contains(SECRET), "{shown:?}");

    // Ctrl-C stops a running command.
    ws.send(Message::text("echo started; sleep 300\r"))
        .await
        .unwrap();
    read_until(&mut ws, "started").await;
    assert_eventually!(sleep_in(&data), "the command runs");
    ws.send(Message::text("\x03")).await.unwrap();
    read_until(&mut ws, "^C").await;
    assert_eventually!(!sleep_in(&data), "Ctrl-C stopped the command");
    ws.send(Message::text("exit 4\r")).await.unwrap();
    read_until(&mut ws, "[exit status 4]").await;
    let ops = server.ok(&["ops", "web"]).await;
    assert!(ops.contains("echo hi"), "recorded: {ops}");

    // Without a session, with another site's Origin, or without the page's CSRF token: refused.
    let refused = open(&server, "web", &csrf, None, &origin).await;
    assert_eq!(refused.err().as_deref(), Some("refused with 403 Forbidden"));
    let refused = open(&server, "web", &csrf, Some(&cookie), "http://evil.example").await;
    assert_eq!(refused.err().as_deref(), Some("refused with 403 Forbidden"));
    let refused = open(&server, "web", "0000", Some(&cookie), &origin).await;
    assert_eq!(refused.err().as_deref(), Some("refused with 403 Forbidden"));

    // Logging out ends a terminal left open: its next line is refused, and it closes.
    let logout = http::Request::post("/logout")
        .header("host", server.api.as_str())
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!("csrf={csrf}"))))
        .unwrap();
    let reply = request(server.api.parse().unwrap(), logout).await.unwrap();
    assert_eq!(reply.status, 303, "{}", reply.text());
    ws.send(Message::text("echo after\r")).await.unwrap();
    let shown = read_until(&mut ws, "the session ended").await;
    assert!(!shown.contains("after\r\n[exit"), "nothing ran: {shown:?}");
}
