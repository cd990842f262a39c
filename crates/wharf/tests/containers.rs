//! Container apps end to end on the host's Docker engine: the real `wharf server` and CLI, real
//! image builds from a Dockerfile in a git repository, real containers on the `wharf` network.
//! Needs Debian's `docker.io` with the engine running and the base image
//! `wharf-test/debian:bookworm` (see docs/testing.md); fails saying so otherwise.

mod support;

use std::net::SocketAddr;

use support::docker::python_repo;
use support::docker::{
    BASE_IMAGE, Cleanup, LOCAL, PYTHON_APP, PYTHON_DOCKERFILE, build_image, containers_of, docker,
    docker_try, eventually, images_of, inspect, python_layer, require_engine, unique,
};
use support::{Repo, ServerProc, TempDir, free_port, page};
use wharf_testkit::{Load, get};

/// The body of a 200 answer to `GET path` at `host`, failing the test on anything else.
async fn text(addr: SocketAddr, host: &str, path: &str) -> String {
    match get(addr, host, path).await {
        Ok(r) if r.status == 200 => r.text(),
        Ok(r) => panic!("GET {host}{path}: {} {}", r.status, r.text()),
        Err(e) => panic!("GET {host}{path}: {e}"),
    }
}

/// The container ids `wharf status APP --json` reports for the app's instances.
async fn status_ids(server: &ServerProc, app: &str) -> Vec<String> {
    let status: serde_json::Value =
        serde_json::from_str(&server.ok(&["status", app, "--json"]).await).unwrap();
    status["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("no instances in {status}"))
        .iter()
        .map(|i| {
            i["id"]
                .as_str()
                .unwrap_or_else(|| panic!("a container instance names its container: {i}"))
                .to_string()
        })
        .collect()
}

/// True when `short` names the container `full` (the engine accepts id prefixes).
fn same_container(full: &str, short: &str) -> bool {
    !short.is_empty() && full.starts_with(short)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_app_from_git_serves_and_ten_deploys_under_load_lose_no_request() {
    require_engine(LOCAL);
    let app = unique("web");
    let _cleanup = Cleanup::new(LOCAL, &[&app]);
    python_layer(LOCAL).await;
    let tmp = TempDir::new("containers-deploy");
    let repo = python_repo(&tmp.0, &app, "v1", PYTHON_DOCKERFILE);
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let host = format!("{app}.localhost");
    server
        .ok(&[
            "apps",
            "create",
            &app,
            "--runtime",
            "docker",
            "--git",
            &repo.url(),
        ])
        .await;

    let out = server.ok(&["deploy", &app]).await;
    assert!(
        out.contains("COPY . /app") && out.contains("release 1"),
        "the engine's build output streams to the terminal:\n{out}"
    );
    let body = text(server.http, &host, "/").await;
    let ids = containers_of(LOCAL, &app);
    assert_eq!(ids.len(), 1, "one container runs the app: {ids:?}");
    let c = inspect(LOCAL, &ids[0]);
    assert_eq!(
        c["Config"]["Image"].as_str(),
        Some(format!("wharf/{app}:1").as_str()),
        "the image is tagged per release"
    );
    assert_eq!(
        body,
        format!("v1 {}", c["Config"]["Hostname"].as_str().unwrap()),
        "the container answers"
    );
    let labels = &c["Config"]["Labels"];
    for label in [
        "wharf.app",
        "wharf.release",
        "wharf.instance",
        "wharf.fingerprint",
    ] {
        assert!(
            labels[label].is_string(),
            "{label} on the container: {labels}"
        );
    }
    let status = status_ids(&server, &app).await;
    assert!(
        status.len() == 1 && same_container(&ids[0], &status[0]),
        "wharf status names the container {}: {status:?}",
        ids[0]
    );
    let (ok, logs, err) = server.cli(&["logs", &app, "-n", "50"]).await;
    assert!(
        ok && logs.contains("serving on port 8000"),
        "wharf logs shows the container's output:\n{logs}\n{err}"
    );

    let load = Load::start(server.http, &host, "/", 4, 200_000);
    load.until_sent(50).await;
    for i in 2..=11 {
        repo.commit(&[("version", &format!("v{i}"))], &format!("v{i}"));
        server.ok(&["deploy", &app]).await;
    }
    let report = load.finish().await;
    assert_eq!(
        report.failed, 0,
        "failed requests during 10 deploys: {:?}",
        report.failures
    );
    assert!(
        report.ok > 100,
        "the load really ran: {} requests",
        report.ok
    );
    assert!(text(server.http, &host, "/").await.starts_with("v11 "));
    let now = containers_of(LOCAL, &app);
    assert_eq!(now.len(), 1, "old containers are stopped: {now:?}");
    assert!(now[0] != ids[0], "a deploy replaced the container");

    // A rollback runs the image the previous release ran.
    server.ok(&["rollback", &app]).await;
    assert!(
        text(server.http, &host, "/").await.starts_with("v10 "),
        "rolled back to the release before"
    );

    server
        .ok(&["apps", "delete", &app, "--purge", "--yes"])
        .await;
    let label = format!("label=wharf.app={app}");
    let left = docker(LOCAL, &["ps", "-aq", "--filter", &label]);
    assert!(left.trim().is_empty(), "purge removes containers: {left}");
    assert_eq!(images_of(LOCAL, &app), Vec::<String>::new(), "and images");
    assert_eq!(page(server.http, &host).await, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_reach_each_other_by_name_keep_their_volume_and_run_read_only_within_limits() {
    require_engine(LOCAL);
    let (front, back) = (unique("front"), unique("back"));
    let _cleanup = Cleanup::new(LOCAL, &[&front, &back]);
    python_layer(LOCAL).await;
    let tmp = TempDir::new("containers-network");
    let front_repo = python_repo(&tmp.0, &front, "f1", PYTHON_DOCKERFILE);
    let back_repo = python_repo(&tmp.0, &back, "b1", PYTHON_DOCKERFILE);
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let http = server.http;
    let front_host = format!("{front}.localhost");
    server
        .ok(&[
            "apps",
            "create",
            &back,
            "--runtime",
            "docker",
            "--git",
            &back_repo.url(),
        ])
        .await;
    server
        .ok(&[
            "apps",
            "create",
            &front,
            "--runtime",
            "docker",
            "--git",
            &front_repo.url(),
            "--read-only",
            "on",
            "--memory",
            "128MB",
            "--cpu",
            "0.5",
            "--stop-grace",
            "7s",
        ])
        .await;
    server.ok(&["deploy", &back]).await;
    server.ok(&["deploy", &front]).await;

    // By name, on the `wharf` network: `http://<app>:8000/`.
    let peer = text(http, &front_host, &format!("/peer/{back}")).await;
    assert!(
        peer.starts_with("b1 "),
        "front reached back by name: {peer}"
    );

    // Read-only root, writable /tmp.
    assert_eq!(
        text(http, &front_host, "/ro").await,
        "root=denied tmp=ok",
        "a read-only app writes only /tmp (and its volume)"
    );
    let back_ro = text(http, &format!("{back}.localhost"), "/ro").await;
    assert_eq!(back_ro, "root=ok tmp=ok", "read-only is off by default");

    // Limits as the engine enforces them.
    let ids = containers_of(LOCAL, &front);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let c = inspect(LOCAL, &ids[0]);
    assert_eq!(
        c["HostConfig"]["Memory"].as_i64(),
        Some(128 << 20),
        "--memory 128MB"
    );
    assert_eq!(
        c["HostConfig"]["NanoCpus"].as_i64(),
        Some(500_000_000),
        "--cpu 0.5"
    );
    assert_eq!(c["HostConfig"]["ReadonlyRootfs"].as_bool(), Some(true));
    assert_eq!(
        c["Config"]["StopTimeout"].as_i64(),
        Some(7),
        "--stop-grace 7s"
    );
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        env.contains(&"PORT=8000") && env.contains(&"WHARF_VOLUME=/data"),
        "the app is told its port and volume: {env:?}"
    );

    // The volume survives a deploy (a new container) ...
    assert_eq!(text(http, &front_host, "/vol").await, "1");
    assert_eq!(text(http, &front_host, "/vol").await, "2");
    front_repo.commit(&[("version", "f2")], "f2");
    server.ok(&["deploy", &front]).await;
    let after_deploy = containers_of(LOCAL, &front);
    assert!(
        after_deploy.len() == 1 && after_deploy[0] != ids[0],
        "the deploy replaced the container: {ids:?} → {after_deploy:?}"
    );
    assert!(text(http, &front_host, "/").await.starts_with("f2 "));
    assert_eq!(text(http, &front_host, "/vol").await, "3");

    // ... and a container removed behind wharf's back, which wharf replaces.
    docker(LOCAL, &["rm", "-f", &after_deploy[0]]);
    eventually(
        60,
        "wharf replaces a removed container and serves again",
        || async {
            let now = containers_of(LOCAL, &front);
            now.len() == 1
                && now[0] != after_deploy[0]
                && page(http, &front_host)
                    .await
                    .is_some_and(|b| b.starts_with("f2 "))
        },
    )
    .await;
    assert_eq!(text(http, &front_host, "/vol").await, "4");

    for app in [&front, &back] {
        server
            .ok(&["apps", "delete", app, "--purge", "--yes"])
            .await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_keep_running_through_a_killed_server_and_are_adopted() {
    require_engine(LOCAL);
    let app = unique("steady");
    let _cleanup = Cleanup::new(LOCAL, &[&app]);
    python_layer(LOCAL).await;
    let tmp = TempDir::new("containers-kill");
    let repo = python_repo(&tmp.0, &app, "k1", PYTHON_DOCKERFILE);
    let data = tmp.0.join("data");
    let http_port = free_port();
    let host = format!("{app}.localhost");
    let server = ServerProc::start(&data, http_port).await;
    let (body, ids) = created_and_deployed(&server, &app, &repo, &[]).await;
    let started = inspect(LOCAL, &ids[0])["State"]["StartedAt"].clone();

    server.kill9().await;
    assert_eq!(
        containers_of(LOCAL, &app),
        ids,
        "the container outlives the server"
    );

    let server = ServerProc::start(&data, http_port).await;
    eventually(30, "the restarted server serves the app again", || async {
        page(server.http, &host).await.as_deref() == Some(body.as_str())
    })
    .await;
    assert_eq!(
        containers_of(LOCAL, &app),
        ids,
        "the same container serves: adopted, not replaced"
    );
    let c = inspect(LOCAL, &ids[0]);
    assert_eq!(c["State"]["StartedAt"], started, "and not restarted");
    let status = status_ids(&server, &app).await;
    assert!(
        status.len() == 1 && same_container(&ids[0], &status[0]),
        "wharf status shows the adopted container {}: {status:?}",
        ids[0]
    );

    // The adopted container is replaced by the next deploy like any other.
    repo.commit(&[("version", "k2")], "k2");
    server.ok(&["deploy", &app]).await;
    assert!(text(server.http, &host, "/").await.starts_with("k2 "));
    let now = containers_of(LOCAL, &app);
    assert!(
        now.len() == 1 && now[0] != ids[0],
        "the adopted container was stopped after the switch: {now:?}"
    );
    server
        .ok(&["apps", "delete", &app, "--purge", "--yes"])
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_containers_and_images_survive_deploys_deletes_and_pruning() {
    require_engine(LOCAL);
    let app = unique("tidy");
    let foreign = unique("foreign");
    let foreign_image = format!("foreign/image:{}", std::process::id());
    let mut cleanup = Cleanup::new(LOCAL, &[&app]);
    cleanup.containers.push(foreign.clone());
    cleanup.images.push(foreign_image.clone());
    python_layer(LOCAL).await;
    docker(
        LOCAL,
        &["run", "-d", "--name", &foreign, BASE_IMAGE, "sleep", "600"],
    );
    docker(LOCAL, &["tag", BASE_IMAGE, &foreign_image]);
    let foreign_id = inspect(LOCAL, &foreign)["Id"].as_str().unwrap().to_string();

    let tmp = TempDir::new("containers-foreign");
    let repo = python_repo(&tmp.0, &app, "t1", PYTHON_DOCKERFILE);
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    server
        .ok(&[
            "apps",
            "create",
            &app,
            "--runtime",
            "docker",
            "--git",
            &repo.url(),
            "--keep-releases",
            "2",
        ])
        .await;
    server.ok(&["deploy", &app]).await;
    // On wharf's own network too, where wharf might mistake it for one of its own.
    docker(LOCAL, &["network", "connect", "wharf", &foreign]);
    for i in 2..=4 {
        repo.commit(&[("version", &format!("t{i}"))], &format!("t{i}"));
        server.ok(&["deploy", &app]).await;
    }
    assert!(
        text(server.http, &format!("{app}.localhost"), "/")
            .await
            .starts_with("t4 ")
    );
    let mut images = images_of(LOCAL, &app);
    images.sort();
    assert_eq!(
        images,
        vec![format!("wharf/{app}:3"), format!("wharf/{app}:4")],
        "images of releases no longer kept are pruned"
    );
    // A release whose image builds but never runs fails, and its image goes with it.
    repo.commit(&[("app.py", "import sys\nsys.exit(3)\n")], "broken");
    assert!(
        !server.cli(&["deploy", &app]).await.0,
        "the broken release fails"
    );
    let mut images = images_of(LOCAL, &app);
    images.sort();
    assert_eq!(
        images,
        vec![format!("wharf/{app}:3"), format!("wharf/{app}:4")],
        "the failed release's image is removed"
    );

    let survives = |when: &str| {
        let c = inspect(LOCAL, &foreign);
        assert_eq!(c["Id"].as_str(), Some(foreign_id.as_str()), "{when}");
        assert_eq!(
            c["State"]["Running"].as_bool(),
            Some(true),
            "the foreign container still runs {when}"
        );
        let (ok, _, err) = docker_try(LOCAL, &["image", "inspect", &foreign_image]);
        assert!(ok, "the foreign image is still there {when}: {err}");
    };
    survives("after deploys and pruning");
    server
        .ok(&["apps", "delete", &app, "--purge", "--yes"])
        .await;
    assert_eq!(images_of(LOCAL, &app), Vec::<String>::new());
    survives("after apps delete --purge");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_of_a_prebuilt_image() {
    require_engine(LOCAL);
    let app = unique("prebuilt");
    let image = format!("wharf-test/prebuilt-{}:1", std::process::id());
    let mut cleanup = Cleanup::new(LOCAL, &[&app]);
    cleanup.images.push(image.clone());
    python_layer(LOCAL).await;
    let tmp = TempDir::new("containers-image");
    let src = tmp.0.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (name, body) in [
        ("Dockerfile", PYTHON_DOCKERFILE),
        ("app.py", PYTHON_APP),
        ("version", "prebuilt"),
    ] {
        std::fs::write(src.join(name), body).unwrap();
    }
    let (src2, image2) = (src.clone(), image.clone());
    tokio::task::spawn_blocking(move || build_image(LOCAL, &src2, &image2))
        .await
        .unwrap();

    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    let host = format!("{app}.localhost");
    server
        .ok(&["apps", "create", &app, "--runtime", "docker"])
        .await;
    server.ok(&["deploy", &app, "--image", &image]).await;
    assert!(text(server.http, &host, "/").await.starts_with("prebuilt "));
    let ids = containers_of(LOCAL, &app);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let image_id = inspect(LOCAL, &image)["Id"].clone();
    assert_eq!(
        inspect(LOCAL, &ids[0])["Image"],
        image_id,
        "the container runs the image given"
    );

    // An image the engine does not have fails clearly; the running release keeps serving.
    let missing = format!("wharf-test/no-such-image-{}:1", std::process::id());
    let (ok, _, err) = server.cli(&["deploy", &app, "--image", &missing]).await;
    assert!(!ok && err.contains(&missing), "{err}");
    assert!(text(server.http, &host, "/").await.starts_with("prebuilt "));
    assert_eq!(containers_of(LOCAL, &app), ids);

    server
        .ok(&["apps", "delete", &app, "--purge", "--yes"])
        .await;
    let (ok, _, err) = docker_try(LOCAL, &["image", "inspect", &image]);
    assert!(ok, "an image wharf did not build survives the purge: {err}");
    server.stop().await;
}

/// At boot dockerd may come up after wharf: the server keeps looking for the engine, and once
/// it answers adopts the running containers and serves their apps again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_answers_late_is_found_and_its_containers_adopted() {
    require_engine(LOCAL);
    let app = unique("late");
    let _cleanup = Cleanup::new(LOCAL, &[&app]);
    python_layer(LOCAL).await;
    let tmp = TempDir::new("containers-late");
    let repo = python_repo(&tmp.0, &app, "l1", PYTHON_DOCKERFILE);
    let data = tmp.0.join("data");
    let http_port = free_port();
    let host = format!("{app}.localhost");
    // The engine's socket as this server knows it: there, gone, back again.
    let socket = tmp.0.join("docker.sock");
    let engine_at = LOCAL.trim_start_matches("unix://");
    std::os::unix::fs::symlink(engine_at, &socket).unwrap();
    let url = format!("unix://{}", socket.display());
    let args = ["--docker-host", url.as_str()];
    let server = ServerProc::start_args(&data, http_port, &args, &[]).await;
    let (body, ids) = created_and_deployed(&server, &app, &repo, &[]).await;

    server.kill9().await;
    std::fs::remove_file(&socket).unwrap();
    let server = ServerProc::start_args(&data, http_port, &args, &[]).await;
    assert_ne!(
        page(server.http, &host).await.as_deref(),
        Some(body.as_str()),
        "without its engine the app is not served"
    );
    std::os::unix::fs::symlink(engine_at, &socket).unwrap();
    eventually(
        60,
        "the engine is found and the app served again",
        || async { page(server.http, &host).await.as_deref() == Some(body.as_str()) },
    )
    .await;
    assert_eq!(
        containers_of(LOCAL, &app),
        ids,
        "the same container serves: adopted once the engine answered"
    );
    server
        .ok(&["apps", "delete", &app, "--purge", "--yes"])
        .await;
    server.stop().await;
}

/// `wharf run` in a container app runs inside one of its running containers, as `docker exec`
/// does: the container's env and files, its output streamed, the CLI's status the command's;
/// recorded in the operations log; stopped (its process gone from the container) past its
/// timeout, when its client goes away, or by the next start of a server killed meanwhile;
/// refused while no container runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_off_command_runs_inside_the_apps_container() {
    require_engine(LOCAL);
    let app = unique("oneoff");
    let _cleanup = Cleanup::new(LOCAL, &[&app]);
    python_layer(LOCAL).await;
    let tmp = TempDir::new("containers-run");
    let repo = python_repo(&tmp.0, &app, "r1-image-only", PYTHON_DOCKERFILE);
    let (data, http_port) = (tmp.0.join("data"), free_port());
    let server = ServerProc::start(&data, http_port).await;
    let env = ["--env", "GREETING=hello-from-the-env"];
    let (_, ids) = created_and_deployed(&server, &app, &repo, &env).await;
    let hostname = inspect(LOCAL, &ids[0])["Config"]["Hostname"]
        .as_str()
        .unwrap()
        .to_string();

    let script = "echo $GREETING; hostname; cat /app/version; echo; echo to-stderr >&2; exit 4";
    let (code, out, err) = server.run(&[&app, "--", "sh", "-c", script], None).await;
    assert_eq!(
        code, 4,
        "the CLI exits with the command's status: {out}{err}"
    );
    assert_eq!(
        out,
        format!("hello-from-the-env\n{hostname}\nr1-image-only\n"),
        "the container's env, hostname and files"
    );
    assert_eq!(err.trim(), "to-stderr", "stderr stays stderr");

    // Its standard input, given with --stdin.
    let (code, out, _) = server
        .run(&[&app, "--stdin", "--", "cat"], Some("piped in\n"))
        .await;
    assert_eq!((code, out.as_str()), (0, "piped in\n"));

    // Past its timeout it is stopped, and gone from the container.
    let (code, _, err) = server
        .run(&[&app, "--timeout", "1", "--", "sleep", "4321"], None)
        .await;
    assert_eq!(code, 128 + 9, "{err}");
    assert!(
        err.contains("stopped after 1 s (the run's timeout)"),
        "{err}"
    );
    gone_from(&ids[0], "sleep 4321").await;

    // A client that goes away stops it too.
    let mut cli = running(&server, &app, "sleep 4322").await;
    cli.kill().await.unwrap();
    gone_from(&ids[0], "sleep 4322").await;

    let runs = server.ops_of(&app, "run").await;
    assert_eq!(runs.len(), 4, "{runs:#?}");
    assert!(
        runs.iter().any(|o| o["message"]
            .as_str()
            .unwrap()
            .contains("the client went away")),
        "{runs:#?}"
    );
    let first = runs
        .iter()
        .find(|o| o["message"].as_str().unwrap().contains("exit 4"))
        .unwrap_or_else(|| panic!("the first run is recorded: {runs:#?}"));
    assert_eq!(first["status"], "failed", "{first:#}");
    assert!(
        first["message"].as_str().unwrap().contains("exit status 4"),
        "{first:#}"
    );

    // A server killed meanwhile stops it when it starts again.
    let cli = running(&server, &app, "sleep 4323").await;
    server.kill9().await;
    drop(cli);
    let server = ServerProc::start(&data, http_port).await;
    gone_from(&ids[0], "sleep 4323").await;

    // Without a running container there is nowhere to run it: said so, nothing recorded.
    server.ok(&["apps", "stop", &app]).await;
    let (code, _, err) = server.run(&[&app, "--", "true"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("no running container"), "{err}");
    server
        .ok(&["apps", "delete", &app, "--purge", "--yes"])
        .await;
    server.stop().await;
}

/// Waits (a while) until `command` no longer runs in `container`.
async fn gone_from(container: &str, command: &str) {
    let what = format!("`{command}` is stopped and gone from the container");
    eventually(10, &what, || async {
        !docker(LOCAL, &["top", container]).contains(command)
    })
    .await;
}

/// `wharf run APP -- COMMAND`, left running once the command has started.
async fn running(server: &ServerProc, app: &str, command: &str) -> tokio::process::Child {
    let script = format!("echo started; exec {command}");
    let mut cli = server.spawn_cli(&["run", app, "--", "sh", "-c", &script]);
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(cli.stdout.take().unwrap()));
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line()).await;
    assert_eq!(first.unwrap().unwrap().as_deref(), Some("started"));
    cli
}

/// Creates `app` on the docker runtime from `repo` (with `extra` options for `apps create`),
/// deploys it, and returns what it answers and its one container's id.
async fn created_and_deployed(
    server: &ServerProc,
    app: &str,
    repo: &Repo,
    extra: &[&str],
) -> (String, Vec<String>) {
    let url = repo.url();
    let mut create = vec!["apps", "create", app, "--runtime", "docker", "--git", &url];
    create.extend_from_slice(extra);
    server.ok(&create).await;
    server.ok(&["deploy", app]).await;
    let body = text(server.http, &format!("{app}.localhost"), "/").await;
    let ids = containers_of(LOCAL, app);
    assert_eq!(ids.len(), 1, "{ids:?}");
    (body, ids)
}
