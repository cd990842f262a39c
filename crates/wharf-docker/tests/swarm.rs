//! The Swarm runtime against a real two-node Swarm: the test bed of
//! `swarm-nodes.sh up 2` (manager at unix:///run/wn1.sock, node 198.18.0.11; worker 198.18.0.12;
//! a registry at 198.18.0.1:5000). `WHARF_TEST_SWARM` points at another manager. The app image
//! is built here from the Debian base image and pushed to the registry; it is a small HTTP
//! server (perl, in the base image already) answering with its host name.
//!
//! The tests share the Swarm (one drains a node), so they run one at a time.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::{Duration, Instant};

use wharf_docker::{Engine, SwarmRuntime};
use wharf_runtime::{
    ContainerOptions, InstanceSpec, InstanceState, Isolation, Limits, RestartPolicy, Runtime,
    RuntimeError, Workload,
};

const BASE_IMAGE: &str = "wharf-test/debian:bookworm";
const IMAGE: &str = "198.18.0.1:5000/wharf-test/hostname:1";
const BRING_UP: &str = "bring the test Swarm up (as root) with:\n  \
     bash /work/shared/recipes/swarm-nodes.sh up 2\n  \
     bash /work/shared/recipes/debian-base-image.sh wharf-test/debian:bookworm unix:///run/wn1.sock";

/// One test at a time on the shared Swarm.
static BED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The app: answers every request with its host name (the container id, one per task); says
/// when it listens; exits on SIGTERM.
const APP: &str = r#"use strict; use IO::Socket::INET; use POSIX ();
my $name = (POSIX::uname())[1];
my $port = $ENV{PORT} || 8000;
$SIG{CHLD} = 'IGNORE';
$SIG{TERM} = sub { exit 0 };
$| = 1;
my $srv = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $port, Listen => 128, ReuseAddr => 1) or die "cannot listen on $port: $!";
print "listening on $port\n";
while (1) {
  my $c = $srv->accept or next;
  my $pid = fork();
  if (defined $pid && $pid == 0) {
    while (my $l = <$c>) { last if $l =~ /^\r?\n$/ }
    print $c "HTTP/1.1 200 OK\r\ncontent-length: " . length($name) . "\r\nconnection: close\r\n\r\n$name";
    close $c; POSIX::_exit(0);
  }
  close $c;
}
"#;

fn manager() -> String {
    std::env::var("WHARF_TEST_SWARM").unwrap_or_else(|_| "unix:///run/wn1.sock".to_string())
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .arg("-H")
        .arg(manager())
        .args(args)
        .output()
        .expect("the docker command line runs")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds and pushes the app image once per test run (the engine's build cache makes it quick).
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if !docker(&["image", "inspect", BASE_IMAGE]).status.success() {
            panic!(
                "the base image {BASE_IMAGE} is missing on {}; {BRING_UP}",
                manager()
            );
        }
        let dir = std::env::temp_dir().join(format!("wharf-swarm-app-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.pl"), APP).unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            format!(
                "FROM {BASE_IMAGE}\nCOPY app.pl /srv/app.pl\nCMD [\"perl\", \"/srv/app.pl\"]\n"
            ),
        )
        .unwrap();
        docker_ok(&["build", "-q", "-t", IMAGE, dir.to_str().unwrap()]);
        let _ = std::fs::remove_dir_all(&dir);
        let push = docker(&["push", IMAGE]);
        assert!(
            push.status.success(),
            "cannot push {IMAGE} (is the registry at 198.18.0.1:5000 up?): {}; {BRING_UP}",
            String::from_utf8_lossy(&push.stderr)
        );
    });
    IMAGE
}

/// The manager, checked to be a Swarm manager with at least two ready nodes, and the image.
async fn bed() -> (tokio::sync::MutexGuard<'static, ()>, Arc<Engine>) {
    let guard = BED.lock().await;
    let engine = match Engine::connect(Some(&manager()), None).await {
        Ok(e) => Arc::new(e),
        Err(e) => panic!("no Swarm manager: {e}; {BRING_UP}"),
    };
    let ready = docker(&["node", "ls", "--format", "{{.Status}}"]);
    let ready = String::from_utf8_lossy(&ready.stdout);
    assert!(
        ready.lines().filter(|l| *l == "Ready").count() >= 2,
        "the engine at {} is not the manager of a Swarm of two ready nodes ({ready:?}); {BRING_UP}",
        manager()
    );
    image();
    (guard, engine)
}

/// Removes the named services when dropped (even when a test fails), and the manager's copy of
/// their app's volume once nothing uses it (the worker keeps its own; the test bed starts empty
/// each time it is brought up).
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = docker(&["service", "rm", s]);
            if let Some(app) = s.strip_suffix("-r1") {
                let _ = docker(&["volume", "rm", &format!("wharf-{app}")]);
            }
        }
    }
}

/// A unique app name per test run (services of earlier runs never collide).
fn name(tag: &str) -> String {
    format!("t{}-{tag}", std::process::id())
}

fn spec(app: &str, instance: &str, replicas: u32) -> InstanceSpec {
    InstanceSpec {
        app: app.to_string(),
        instance: instance.to_string(),
        release: Some(1),
        fingerprint: format!("fp-{instance}"),
        workload: Workload::Image {
            image: image().to_string(),
            command: None,
        },
        env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
        port: None,
        replicas,
        volume: "/nonexistent".into(),
        log_dir: "/nonexistent".into(),
        limits: Limits {
            memory_bytes: Some(128 << 20),
            cpu_millis: Some(500),
        },
        restart: RestartPolicy::default(),
        stop_grace: Duration::from_secs(5),
        isolation: Isolation::default(),
        container: ContainerOptions {
            read_only: true,
            ..Default::default()
        },
    }
}

async fn hostname(addr: SocketAddr) -> String {
    let reply = wharf_testkit::get(addr, "app", "/")
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}/: {e}"));
    assert_eq!(reply.status, 200, "GET http://{addr}/");
    reply.text()
}

fn service_exists(name: &str) -> bool {
    docker(&["service", "inspect", name]).status.success()
}

#[tokio::test]
async fn two_replicas_run_one_task_per_node_each_answering_with_its_own_hostname() {
    let (_bed, engine) = bed().await;
    let rt = SwarmRuntime::new(engine);
    let app = name("pair");
    let instance = format!("{app}-r1");
    let _cleanup = Cleanup(vec![instance.clone()]);

    let mut live = rt.subscribe_logs(&app);
    let mut s = spec(&app, &instance, 2);
    // The volume is writable, and so is /tmp; the rest of the file system is read-only (else
    // the app does not start).
    s.workload = Workload::Image {
        image: image().to_string(),
        command: Some(
            "touch /data/ok /tmp/ok && ! touch /srv/no 2>/dev/null && exec perl /srv/app.pl".into(),
        ),
    };
    let addrs = rt.start(s).await.expect("the service starts");
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let ips: HashSet<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    assert_eq!(ips.len(), 2, "one task per node: {addrs:?}");
    let names: HashSet<String> = futures_join(addrs.iter().map(|a| hostname(*a))).await;
    assert_eq!(names.len(), 2, "two tasks, two host names: {names:?}");

    // Other services reach it by the app's name on the apps' network.
    let by_name = docker_ok(&[
        "run",
        "--rm",
        "--network",
        "wharf-swarm",
        BASE_IMAGE,
        "perl",
        "-MIO::Socket::INET",
        "-e",
        &format!(
            "my $s = IO::Socket::INET->new(PeerAddr => '{app}:8000', Timeout => 5) or die $!; \
             print $s \"GET / HTTP/1.0\\r\\n\\r\\n\"; my @r = <$s>; print $r[-1]"
        ),
    ]);
    assert!(names.contains(&by_name), "{by_name:?} is one of {names:?}");

    // Live lines, as the tasks write them.
    let line = tokio::time::timeout(Duration::from_secs(20), live.recv())
        .await
        .expect("a live log line")
        .unwrap();
    assert!(
        line.contains(&format!(" {instance} stdout| listening on 8000")),
        "{line:?}"
    );

    let nodes = rt.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    for n in &nodes {
        let mine: Vec<_> = n.tasks.iter().filter(|t| t.app == app).collect();
        assert_eq!(
            mine.len(),
            1,
            "one task of {app} on {} ({}): {n:?}",
            n.hostname,
            n.addr
        );
        assert_eq!(n.state, "ready");
        assert_eq!(
            mine[0].addr.map(|a| a.ip().to_string()),
            Some(n.addr.clone())
        );
    }
    assert_eq!(nodes.iter().filter(|n| n.manager).count(), 1);

    let list = rt.list().await.expect("list");
    let tasks: Vec<_> = list.iter().filter(|s| s.app == app).collect();
    assert_eq!(tasks.len(), 2, "{list:?}");
    for t in &tasks {
        assert_eq!(t.state, InstanceState::Running);
        assert_eq!(t.fingerprint, format!("fp-{instance}"));
        assert_eq!(t.release, Some(1));
        assert_eq!(t.image.as_deref(), Some(IMAGE));
        assert!(
            t.instance.starts_with(&format!("{instance}.")),
            "{}",
            t.instance
        );
        assert!(
            t.node.is_some() && t.id.is_some() && t.started_at.is_some(),
            "{t:?}"
        );
        assert!(addrs.contains(&t.addr.expect("a running task has an address")));
    }

    // The app's output, through the manager.
    wharf_testkit::assert_eventually!(
        rt.recent_output(&instance, 10)
            .await
            .iter()
            .filter(|l| l.as_str() == "listening on 8000")
            .count()
            == 2,
        "both tasks said they listen on PORT=8000"
    );
    let logs = rt.logs(&app, 10).await.expect("logs");
    assert!(
        logs.iter()
            .any(|l| l.contains(&format!(" {instance} stdout| listening on 8000"))),
        "{logs:?}"
    );

    rt.stop(&instance).await.expect("stop");
    assert!(!service_exists(&instance), "the service is removed");
    assert!(rt.list().await.unwrap().iter().all(|s| s.app != app));
    assert!(rt.addresses(&instance).is_none());
    assert!(matches!(
        rt.stop(&instance).await,
        Err(RuntimeError::UnknownInstance(_))
    ));
}

/// Awaits all, collecting the results.
async fn futures_join<F: std::future::Future<Output = String>>(
    futs: impl Iterator<Item = F>,
) -> HashSet<String> {
    let mut out = HashSet::new();
    for f in futs {
        out.insert(f.await);
    }
    out
}

/// Puts a node back to `active` when dropped, whatever the test did.
struct Activate(String);

impl Drop for Activate {
    fn drop(&mut self) {
        let _ = docker(&["node", "update", "--availability", "active", &self.0]);
    }
}

#[tokio::test]
async fn draining_a_node_moves_its_task_without_losing_a_request() {
    let (_bed, engine) = bed().await;
    let rt = SwarmRuntime::new(engine);
    let app = name("drain");
    let instance = format!("{app}-r1");
    let _cleanup = Cleanup(vec![instance.clone()]);
    rt.start(spec(&app, &instance, 2))
        .await
        .expect("the service starts");

    let nodes = rt.nodes().await.unwrap();
    let manager_node = nodes.iter().find(|n| n.manager).expect("a manager");
    let worker = nodes.iter().find(|n| !n.manager).expect("a worker");
    let manager_ip: IpAddr = manager_node.addr.parse().unwrap();
    let worker_ip: IpAddr = worker.addr.parse().unwrap();

    // Route like the gateway: each request goes to a target of the latest address list.
    let mut addrs = rt.addresses(&instance).expect("the service is watched");
    assert_eq!(addrs.borrow().len(), 2);
    let latest = Arc::new(StdMutex::new(addrs.borrow().clone()));
    let follow = {
        let latest = latest.clone();
        tokio::spawn(async move {
            while addrs.changed().await.is_ok() {
                *latest.lock().unwrap() = addrs.borrow_and_update().clone();
            }
        })
    };
    let stop_load = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let on_worker = Arc::new(AtomicUsize::new(0));
    let load = {
        let latest = latest.clone();
        let stop_load = stop_load.clone();
        let (answered, on_worker) = (answered.clone(), on_worker.clone());
        tokio::spawn(async move {
            let mut failed = Vec::new();
            let mut i = 0usize;
            // Bounded in requests too.
            while !stop_load.load(Relaxed) && i < 20_000 {
                let target = {
                    let l = latest.lock().unwrap();
                    if l.is_empty() {
                        None
                    } else {
                        Some(l[i % l.len()])
                    }
                };
                i += 1;
                let Some(target) = target else {
                    failed.push("no address".to_string());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                match wharf_testkit::get(target, "app", "/").await {
                    Ok(r) if r.status == 200 => {
                        answered.fetch_add(1, Relaxed);
                        if target.ip() == worker_ip {
                            on_worker.fetch_add(1, Relaxed);
                        }
                    }
                    Ok(r) => failed.push(format!("{target}: status {}", r.status)),
                    Err(e) => failed.push(format!("{target}: {e}")),
                }
            }
            failed
        })
    };
    wharf_testkit::assert_eventually!(
        on_worker.load(Relaxed) > 0,
        "requests reach the worker before the drain"
    );

    let _activate = Activate(worker.id.clone());
    docker_ok(&["node", "update", "--availability", "drain", &worker.id]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = latest.lock().unwrap().clone();
        if now.len() == 2 && now.iter().all(|a| a.ip() == manager_ip) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drained task did not come back on the manager within 60 s: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the moment the worker's container was stopped, and a while beyond.
    wharf_testkit::assert_eventually!(
        docker_ok(&[
            "service",
            "ps",
            &instance,
            "--filter",
            &format!("node={}", worker.id),
            "--format",
            "{{.CurrentState}}",
        ])
        .lines()
        .all(|s| s.starts_with("Shutdown")),
        "the worker's task stopped"
    );
    let at = answered.load(Relaxed);
    wharf_testkit::assert_eventually!(
        answered.load(Relaxed) >= at + 200,
        "requests keep being answered"
    );
    stop_load.store(true, Relaxed);
    let failed = load.await.unwrap();
    follow.abort();
    let (ok, on_worker) = (answered.load(Relaxed), on_worker.load(Relaxed));

    eprintln!(
        "drain: {ok} requests answered ({on_worker} by the worker), {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    let now = latest.lock().unwrap().clone();
    let names: HashSet<String> = futures_join(now.into_iter().map(hostname)).await;
    assert_eq!(names.len(), 2, "two tasks on the manager now: {names:?}");

    drop(_activate);
    let nodes = rt.nodes().await.unwrap();
    assert!(
        nodes.iter().all(|n| n.availability == "active"),
        "{nodes:?}"
    );
    rt.stop(&instance).await.expect("stop");
}

#[tokio::test]
async fn services_wharf_did_not_make_are_never_listed_adopted_or_removed() {
    let (_bed, engine) = bed().await;
    let foreign = name("foreign");
    let _cleanup = Cleanup(vec![foreign.clone()]);
    // Someone else's service, even one claiming an app label.
    docker_ok(&[
        "service",
        "create",
        "-q",
        "--detach",
        "--name",
        &foreign,
        "--label",
        "wharf.app=x",
        "--publish",
        "mode=host,target=8000",
        image(),
    ]);
    let rt = SwarmRuntime::new(engine);
    assert!(
        rt.list()
            .await
            .unwrap()
            .iter()
            .all(|s| !s.instance.starts_with(&foreign))
    );
    assert!(
        rt.adopt()
            .await
            .unwrap()
            .iter()
            .all(|s| s.instance != foreign)
    );
    assert!(rt.addresses(&foreign).is_none());
    let nodes = rt.nodes().await.unwrap();
    assert!(
        nodes.iter().all(|n| n.tasks.iter().all(|t| t.app != "x")),
        "{nodes:?}"
    );
    assert!(matches!(
        rt.stop(&foreign).await,
        Err(RuntimeError::UnknownInstance(_))
    ));
    assert!(
        service_exists(&foreign),
        "the foreign service is still there"
    );
    assert!(rt.recent_output(&foreign, 10).await.is_empty());
}

#[tokio::test]
async fn a_fresh_runtime_adopts_the_running_service() {
    let (_bed, engine) = bed().await;
    let app = name("adopt");
    let instance = format!("{app}-r1");
    let _cleanup = Cleanup(vec![instance.clone()]);
    let first = SwarmRuntime::new(engine.clone());
    first
        .start(spec(&app, &instance, 2))
        .await
        .expect("the service starts");
    let id = docker_ok(&["service", "inspect", "--format", "{{.ID}}", &instance]);
    drop(first); // the server goes away; the service keeps running

    let second = SwarmRuntime::new(engine);
    let adopted = second.adopt().await.expect("adopt");
    let mine: Vec<_> = adopted.iter().filter(|s| s.app == app).collect();
    assert_eq!(mine.len(), 1, "one status per service: {adopted:?}");
    assert_eq!(mine[0].instance, instance);
    assert_eq!(mine[0].id.as_deref(), Some(id.as_str()));
    assert_eq!(mine[0].fingerprint, format!("fp-{instance}"));
    assert_eq!(mine[0].state, InstanceState::Running);
    let addr = mine[0].addr.expect("a running task's address");
    assert!(!hostname(addr).await.is_empty());

    let mut addrs = second.addresses(&instance).expect("watched after adoption");
    let now = addrs.wait_for(|a| a.len() == 2).await.unwrap().clone();
    assert!(now.contains(&addr));
    second.stop(&instance).await.expect("stop");
    assert!(!service_exists(&instance));
}

#[tokio::test]
async fn a_start_that_cannot_run_fails_with_the_reason_and_leaves_nothing() {
    let (_bed, engine) = bed().await;
    let rt = SwarmRuntime::new(engine);

    // An image no node can pull.
    let app = name("nopull");
    let instance = format!("{app}-r1");
    let _cleanup = Cleanup(vec![instance.clone()]);
    let mut s = spec(&app, &instance, 1);
    s.workload = Workload::Image {
        image: "198.18.0.1:5000/wharf-test/absent:1".into(),
        command: None,
    };
    let err = tokio::time::timeout(Duration::from_secs(90), rt.start(s))
        .await
        .expect("the start gives up")
        .expect_err("an image that is not there cannot start");
    let msg = err.to_string();
    assert!(
        msg.contains("absent") || msg.to_lowercase().contains("no such image"),
        "{msg}"
    );
    assert!(!service_exists(&instance), "the failed service is removed");
    assert!(rt.exited(&instance).await.is_none(), "a forgotten instance");

    // An app that exits at once: the start says how, and what it wrote is kept.
    let app = name("crash");
    let instance = format!("{app}-r1");
    let _cleanup2 = Cleanup(vec![instance.clone()]);
    let mut s = spec(&app, &instance, 1);
    s.workload = Workload::Image {
        image: image().to_string(),
        command: Some("echo cannot open the database; exit 3".into()),
    };
    // It may be seen running before it exits: then `exited` says how it ended.
    let how = match tokio::time::timeout(Duration::from_secs(90), rt.start(s))
        .await
        .expect("the start gives up")
    {
        Err(e) => {
            assert!(!service_exists(&instance), "the failed service is removed");
            e.to_string()
        }
        Ok(_) => tokio::time::timeout(Duration::from_secs(30), rt.exited(&instance))
            .await
            .expect("exited resolves")
            .expect("a known instance"),
    };
    assert!(how.contains("status 3"), "{how}");
    assert_eq!(
        rt.recent_output(&instance, 5).await,
        vec!["cannot open the database".to_string()]
    );
}

#[tokio::test]
async fn exited_reports_a_task_that_dies_after_the_start() {
    let (_bed, engine) = bed().await;
    let rt = SwarmRuntime::new(engine);
    let app = name("dies");
    let instance = format!("{app}-r1");
    let _cleanup = Cleanup(vec![instance.clone()]);
    let mut s = spec(&app, &instance, 1);
    // Serves, then ends on its own a moment later.
    s.workload = Workload::Image {
        image: image().to_string(),
        command: Some("perl /srv/app.pl & sleep 3; exit 7".into()),
    };
    let addrs = rt.start(s).await.expect("it starts");
    assert_eq!(addrs.len(), 1);
    let how = tokio::time::timeout(Duration::from_secs(30), rt.exited(&instance))
        .await
        .expect("exited resolves")
        .expect("a known instance");
    assert!(how.contains("status 7"), "{how}");
    rt.stop(&instance).await.expect("stop");
}
