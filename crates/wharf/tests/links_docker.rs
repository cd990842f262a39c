//! A container app on a node with its own Docker engine, end to end: `wharf server` in the root
//! network namespace builds the image with the host's engine; `wharf agent` runs in the test
//! Swarm's namespace `wn2` with that namespace's engine (`swarm-nodes.sh up 2`, as `.ci/run`
//! starts it), which never had the image: the server sends it over the link. Needs root,
//! nsenter, Debian's docker.io with the host's engine and the test Swarm's engines running.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::docker::{
    Cleanup, LOCAL, PYTHON_IMAGE_DOCKERFILE, containers_of, docker, docker_try, inspect,
    python_layer, require_engine, unique,
};
use support::links::{invite, node};
use support::{ServerProc, TempDir, free_port, require_tool};
use wharf_testkit::get;

/// The node's engine, in the network namespace the agent runs in.
const NODE_ENGINE: &str = "unix:///run/wn2.sock";
const NODE_NETNS: &str = "/run/netns/wn2";
/// The root namespace's address on the test Swarm's bridge (`wnbr`), where the link listens.
const BRIDGE_IP: &str = "198.18.0.1";

/// Fails (never skips) unless the namespace and its engine are there, saying how to start them.
fn require_node_engine() {
    require_tool("nsenter", "util-linux");
    let fix = "start the test Swarm's engines with `bash ../shared/recipes/swarm-nodes.sh up 2` \
               (as root; `.ci/run` does)";
    assert!(
        Path::new(NODE_NETNS).exists(),
        "the network namespace {NODE_NETNS} is missing: {fix}"
    );
    let (ok, _, err) = docker_try(NODE_ENGINE, &["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        ok,
        "no Docker engine answers at {NODE_ENGINE}: {fix} ({})",
        err.trim()
    );
}

/// Removes a network the test's agent created in the node's engine (the apps' network), if
/// it was not there before the test: the test Swarm's engines are shared with other tests.
struct NetworkCleanup {
    host: &'static str,
    name: &'static str,
    existed: bool,
}

impl NetworkCleanup {
    fn new(host: &'static str, name: &'static str) -> NetworkCleanup {
        let existed = docker_try(host, &["network", "inspect", name]).0;
        NetworkCleanup {
            host,
            name,
            existed,
        }
    }
}

impl Drop for NetworkCleanup {
    fn drop(&mut self) {
        if !self.existed {
            // Refused while a container is on it: then it is someone else's now.
            let _ = docker_try(self.host, &["network", "rm", self.name]);
        }
    }
}

/// `wharf agent` in the namespace `wn2`, with that namespace's engine.
struct Agent {
    _child: tokio::process::Child,
    log: PathBuf,
}

impl Agent {
    fn start(data: &Path, url: &str, token: &str) -> Agent {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension("log");
        let mut cmd = tokio::process::Command::new("nsenter");
        cmd.arg(format!("--net={NODE_NETNS}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_wharf"))
            .arg("agent")
            .arg("--data")
            .arg(data)
            .args([
                "--join",
                url,
                "--token",
                token,
                "--docker-host",
                NODE_ENGINE,
            ])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        Agent {
            _child: cmd.spawn().expect("nsenter runs wharf agent"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Waits until the node is connected with its Docker runtime.
async fn wait_docker_node(server: &ServerProc, name: &str, agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = node(server, name).await;
        let connected = n.as_ref().is_some_and(|n| n["state"] == "connected");
        // The agent looks for its engine before it says hello, and logs it.
        if connected && agent.log().contains("Docker runtime available") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {name} did not connect with its Docker runtime within 20 s ({n:?}); agent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_app_on_a_node_gets_its_image_from_the_server_and_is_served_through_it() {
    require_engine(LOCAL);
    require_node_engine();
    let app = unique("nodeweb");
    // Dropped last, passed or failed (in reverse order: the network once its containers are
    // gone): what the test made in either engine goes.
    let _network = NetworkCleanup::new(NODE_ENGINE, "wharf");
    let _on_host = Cleanup::new(LOCAL, &[&app]);
    let _on_node = Cleanup::new(NODE_ENGINE, &[&app]);
    python_layer(LOCAL).await;
    let image = format!("wharf/{app}:1");
    assert!(
        !docker_try(NODE_ENGINE, &["image", "inspect", &image]).0,
        "the node's engine starts without the app's image"
    );

    let tmp = TempDir::new("links-docker");
    let repo = support::docker::python_repo(&tmp.0, &app, "v1", PYTHON_IMAGE_DOCKERFILE);
    let link = format!("{BRIDGE_IP}:{}", free_port());
    let server = ServerProc::start_args(
        &tmp.0.join("data"),
        free_port(),
        &["--link", &link, "--docker-host", LOCAL],
        &[],
    )
    .await;
    let (url, token) = invite(&server, "n2", &[]).await;
    let agent = Agent::start(&tmp.0.join("agent"), &url, &token);
    wait_docker_node(&server, "n2", &agent).await;

    server
        .ok(&[
            "apps",
            "create",
            &app,
            "--runtime",
            "docker",
            "--node",
            "n2",
            "--git",
            &repo.url(),
        ])
        .await;
    let deployed = Instant::now();
    let (ok, out, err) = server.cli(&["deploy", &app]).await;
    let took = deployed.elapsed();
    assert!(
        ok && out.contains("release 1"),
        "the deploy builds on the server and starts on the node:\n{out}\n{err}\nagent log:\n{}",
        agent.log()
    );

    // Served through the server's gateway, by the container on the node.
    let r = get(server.http, &format!("{app}.localhost"), "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let on_node = containers_of(NODE_ENGINE, &app);
    assert_eq!(on_node.len(), 1, "one container on the node: {on_node:?}");
    let c = inspect(NODE_ENGINE, &on_node[0]);
    assert_eq!(
        r.text(),
        format!("v1 {}", c["Config"]["Hostname"].as_str().unwrap()),
        "the node's container answers"
    );
    assert_eq!(c["Config"]["Image"].as_str(), Some(image.as_str()));
    assert_eq!(
        c["Config"]["Labels"]["wharf.app"].as_str(),
        Some(app.as_str())
    );
    assert!(
        c["NetworkSettings"]["Networks"]["wharf"].is_object(),
        "on the node's wharf network: {}",
        c["NetworkSettings"]["Networks"]
    );
    assert!(
        containers_of(LOCAL, &app).is_empty(),
        "nothing of the app runs in the server's engine"
    );

    // The image travelled: the node's engine has it now, built by the server's (same id).
    let id = |host: &str| docker(host, &["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(
        id(NODE_ENGINE),
        id(LOCAL),
        "the node holds the image the server built"
    );
    assert!(
        agent.log().contains("image received"),
        "the agent says it received the image:\n{}",
        agent.log()
    );

    // A new release: its image is sent too (once), and serves.
    repo.commit(&[("version", "v2")], "v2");
    let redeployed = Instant::now();
    let out = server.ok(&["deploy", &app]).await;
    let took2 = redeployed.elapsed();
    assert!(out.contains("release 2"), "{out}");
    let r = get(server.http, &format!("{app}.localhost"), "/")
        .await
        .unwrap();
    assert!(
        r.text().starts_with("v2 "),
        "release 2 serves: {}",
        r.text()
    );
    let image2 = format!("wharf/{app}:2");
    assert!(
        docker_try(NODE_ENGINE, &["image", "inspect", &image2]).0,
        "the node got release 2's image"
    );
    assert_eq!(
        agent.log().matches("image received").count(),
        2,
        "one image sent per release:\n{}",
        agent.log()
    );

    // Neither engine has the image any more (removed by hand): a change that needs a new
    // container fails saying so, and the running one keeps serving.
    docker(LOCAL, &["rmi", "-f", &image2]);
    docker(NODE_ENGINE, &["rmi", "-f", &image2]);
    let (_, out, err) = server.cli(&["env", "set", &app, "MODE=two"]).await;
    let status = server.ok(&["status", &app, "--json"]).await;
    let said = format!("{out}{err}{status}");
    assert!(
        said.contains(&format!(
            "node n2 has no image {image2} and this server's engine cannot give it"
        )),
        "the failure names the missing image:\n{said}"
    );
    let r = get(server.http, &format!("{app}.localhost"), "/")
        .await
        .unwrap();
    assert!(
        r.text().starts_with("v2 "),
        "release 2 still serves: {}",
        r.text()
    );

    eprintln!("deploys with the image sent to the node: {took:?}, then {took2:?}");
}
