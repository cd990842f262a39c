//! The Docker runtime and image builds against the real engine (`DOCKER_HOST` or the local
//! socket), with images built from `wharf-test/debian:bookworm`. Each test uses its own apps
//! (unique names) and removes what it made, even when it fails.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, ListContainersOptions, ListImagesOptions,
    RemoveContainerOptions, RemoveImageOptions,
};
use futures_util::StreamExt;
use tokio::sync::OnceCell;
use wharf_docker::image::{BuildRequest, tag};
use wharf_docker::{DockerRuntime, Engine};
use wharf_runtime::{
    ContainerOptions, InstanceSpec, InstanceState, Isolation, Limits, RestartPolicy, Runtime,
    RuntimeError, Workload,
};
use wharf_testkit::assert_eventually;

const BASE: &str = "wharf-test/debian:bookworm";
/// Waits on the engine (start, exit, build) are bounded by this.
const PATIENCE: Duration = Duration::from_secs(60);

/// A tiny app: answers its hostname, its environment, files it reads and writes, what it
/// fetches from another URL, and prints what it is told to.
const SERVER: &str = r#"
import http.server, os, socket, sys, urllib.request
port = int(os.environ["PORT"])
print("listening on", port, flush=True)
print("ready on stderr", file=sys.stderr, flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path, _, q = self.path.partition("?")
        status, body = 200, b""
        try:
            if path == "/":
                body = socket.gethostname().encode()
            elif path == "/env":
                body = os.environ.get(q, "").encode()
            elif path == "/fetch":
                body = urllib.request.urlopen(q, timeout=5).read()
            elif path == "/write":
                with open(q, "w") as f:
                    f.write("written by " + socket.gethostname())
                body = b"written"
            elif path == "/read":
                with open(q) as f:
                    body = f.read().encode()
            elif path == "/say":
                print(q, flush=True)
                body = b"said"
        except Exception as e:
            status, body = 500, repr(e).encode()
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", port), H).serve_forever()
"#;

const DOCKERFILE: &str = "FROM wharf-test/debian:bookworm\n\
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
&& rm -rf /var/lib/apt/lists/*\n\
COPY server.py /app/server.py\n\
CMD [\"python3\", \"/app/server.py\"]\n";

/// The test app's image, built once per run and shared (it stays, like the base image, so the
/// next run finds it in the engine's build cache).
static SHARED_IMAGE: OnceCell<String> = OnceCell::const_new();
const SHARED_APP: &str = "wharftest-server";

async fn engine() -> Arc<Engine> {
    let engine = Engine::connect(None, None).await.unwrap_or_else(|e| {
        panic!("these tests need a Docker engine: {e}; start dockerd (apt-get install docker.io)")
    });
    assert!(
        engine.has_image(BASE).await.unwrap(),
        "the engine has no {BASE} image: make it with ../shared/recipes/debian-base-image.sh"
    );
    Arc::new(engine)
}

fn docker() -> Docker {
    Docker::connect_with_defaults().expect("docker client")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wharf-docker-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A build context with the test server and `dockerfile`.
fn context(dir: &Path, dockerfile: &str) -> PathBuf {
    let ctx = dir.join("code");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(ctx.join("server.py"), SERVER).unwrap();
    ctx
}

async fn shared_image(engine: &Engine) -> String {
    SHARED_IMAGE
        .get_or_init(|| async {
            let dir = scratch("shared");
            let req = BuildRequest {
                app: SHARED_APP.into(),
                release: 1,
                context: context(&dir, DOCKERFILE),
                dockerfile: "Dockerfile".into(),
            };
            let image =
                tokio::time::timeout(Duration::from_secs(600), engine.build_image(&req, &|_| {}))
                    .await
                    .expect("the test image builds within 10 minutes")
                    .expect("the test image builds");
            let _ = std::fs::remove_dir_all(dir);
            image
        })
        .await
        .clone()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique app name for this run.
fn app(name: &str) -> String {
    format!("wt{}-{name}", std::process::id() % 100_000)
}

/// A unique instance name of `app`.
fn instance(app: &str) -> String {
    format!("{app}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

fn spec(app: &str, image: &str, dir: &Path) -> InstanceSpec {
    InstanceSpec {
        app: app.to_string(),
        instance: instance(app),
        release: Some(1),
        fingerprint: "fp-1".into(),
        workload: Workload::Image {
            image: image.to_string(),
            command: None,
        },
        env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        port: None,
        replicas: 1,
        volume: dir.join(app).join("volume"),
        log_dir: dir.join("logs").join(app),
        limits: Limits::default(),
        restart: RestartPolicy::default(),
        stop_grace: Duration::from_secs(3),
        isolation: Isolation::default(),
        container: ContainerOptions::default(),
    }
}

/// Removes what a test made (its apps' containers and images, other named objects, its
/// folder), even when the test panicked.
struct Cleanup {
    apps: Vec<String>,
    containers: Vec<String>,
    images: Vec<String>,
    /// Every network of each of these names.
    networks: Vec<String>,
    dir: Option<PathBuf>,
}

impl Cleanup {
    fn new(apps: &[&str], dir: &Path) -> Cleanup {
        Cleanup {
            apps: apps.iter().map(|a| a.to_string()).collect(),
            containers: Vec::new(),
            images: Vec::new(),
            networks: Vec::new(),
            dir: Some(dir.to_path_buf()),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let apps = std::mem::take(&mut self.apps);
        let containers = std::mem::take(&mut self.containers);
        let images = std::mem::take(&mut self.images);
        let networks = std::mem::take(&mut self.networks);
        let dir = self.dir.take();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let docker = docker();
                let force = || RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                for c in &containers {
                    let _ = docker.remove_container(c, Some(force())).await;
                }
                for app in &apps {
                    let label =
                        HashMap::from([("label".to_string(), vec![format!("wharf.app={app}")])]);
                    let list = docker
                        .list_containers(Some(ListContainersOptions {
                            all: true,
                            filters: Some(label.clone()),
                            ..Default::default()
                        }))
                        .await
                        .unwrap_or_default();
                    for c in list.into_iter().filter_map(|c| c.id) {
                        let _ = docker.remove_container(&c, Some(force())).await;
                    }
                }
                // After the containers: the engine keeps a network that has some.
                for name in &networks {
                    for id in networks_named(name).await {
                        let _ = docker.remove_network(&id).await;
                    }
                }
                for image in &images {
                    let _ = docker
                        .remove_image(image, None::<RemoveImageOptions>, None)
                        .await;
                }
                for app in &apps {
                    let label =
                        HashMap::from([("label".to_string(), vec![format!("wharf.app={app}")])]);
                    let list = docker
                        .list_images(Some(ListImagesOptions {
                            filters: Some(label),
                            ..Default::default()
                        }))
                        .await
                        .unwrap_or_default();
                    for image in list {
                        let _ = docker
                            .remove_image(
                                &image.id,
                                Some(RemoveImageOptions {
                                    force: true,
                                    ..Default::default()
                                }),
                                None,
                            )
                            .await;
                    }
                }
            });
            if let Some(dir) = dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        })
        .join()
        .unwrap();
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let reply = wharf_testkit::get(addr, "app", path).await?;
    Ok((reply.status.as_u16(), reply.text()))
}

/// Waits until the app answers on `addr`.
async fn answering(addr: SocketAddr) {
    assert_eventually!(get(addr, "/").await.is_ok(), "{addr} answers HTTP");
}

async fn start_one(rt: &DockerRuntime, spec: InstanceSpec) -> SocketAddr {
    let addrs = tokio::time::timeout(PATIENCE, rt.start(spec))
        .await
        .expect("start within a minute")
        .expect("start");
    assert_eq!(addrs.len(), 1, "one address: {addrs:?}");
    answering(addrs[0]).await;
    addrs[0]
}

async fn inspect(id: &str) -> bollard::models::ContainerInspectResponse {
    docker().inspect_container(id, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn build_streams_the_engine_output_and_labels_the_release() {
    let engine = engine().await;
    shared_image(&engine).await;
    let dir = scratch("build");
    let app = app("build");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let req = BuildRequest {
        app: app.clone(),
        release: 7,
        context: context(&dir, DOCKERFILE),
        dockerfile: "Dockerfile".into(),
    };
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let image = engine
        .build_image(&req, &|l| lines.lock().unwrap().push(l.to_string()))
        .await
        .unwrap();
    assert_eq!(image, format!("wharf/{app}:7"));
    let lines = lines.into_inner().unwrap();
    assert!(lines.iter().any(|l| l.starts_with("Step 1/")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("Successfully tagged {image}"))),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| l == l.trim() && !l.is_empty()),
        "{lines:?}"
    );
    assert!(engine.has_image(&image).await.unwrap());
    assert!(!engine.has_image(&tag(&app, 8)).await.unwrap());
    let labels = docker()
        .inspect_image(&image)
        .await
        .unwrap()
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default();
    assert_eq!(labels.get("wharf.app"), Some(&app));
    assert_eq!(labels.get("wharf.release").map(String::as_str), Some("7"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_build_quotes_the_engine_and_names_the_step() {
    let engine = engine().await;
    let dir = scratch("failing");
    let app = app("failing");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let ctx = context(
        &dir,
        "FROM wharf-test/debian:bookworm\nRUN echo about to fail && exit 7\n",
    );
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let req = BuildRequest {
        app: app.clone(),
        release: 1,
        context: ctx.clone(),
        dockerfile: "Dockerfile".into(),
    };
    let err = engine
        .build_image(&req, &|l| lines.lock().unwrap().push(l.to_string()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("returned a non-zero code: 7"), "{err}");
    // The build's labels add steps of their own after the Dockerfile's.
    assert!(
        err.contains("at Step 2/") && err.contains(" : RUN echo about to fail"),
        "{err}"
    );
    let lines = lines.into_inner().unwrap();
    assert!(lines.iter().any(|l| l == "about to fail"), "{lines:?}");

    let missing = BuildRequest {
        dockerfile: "docker/Dockerfile.prod".into(),
        ..req
    };
    let err = engine
        .build_image(&missing, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("there is no docker/Dockerfile.prod"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_needs_a_registry_and_reports_the_engine_refusal() {
    let engine = engine().await;
    let err = engine
        .push_image("wharf/x:1", &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no registry is set") && err.contains("--registry"),
        "{err}"
    );

    let image = shared_image(&engine).await;
    // Nothing listens on port 9: the engine's own error comes back.
    let with_registry = Engine::connect(None, Some("127.0.0.1:9".into()))
        .await
        .unwrap();
    let err = with_registry
        .push_image(&image, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("cannot push 127.0.0.1:9/{image}")) && err.contains("127.0.0.1:9"),
        "{err}"
    );
    let _ = docker()
        .remove_image(
            &format!("127.0.0.1:9/{image}"),
            None::<RemoveImageOptions>,
            None,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_started_container_answers_with_its_environment_and_is_listed() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("start");
    let app = app("start");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let rt = DockerRuntime::new(engine.clone());
    assert_eq!(rt.name(), "docker");
    assert!(rt.outlives_server() && !rt.replicates());
    let spec = spec(&app, &image, &dir);
    let name = spec.instance.clone();
    let addr = start_one(&rt, spec).await;
    assert_eq!(addr.port(), 8000);
    assert!(
        !addr.ip().is_loopback(),
        "routed to the container itself: {addr}"
    );
    for (var, want) in [
        ("PORT", "8000"),
        ("HOST", "0.0.0.0"),
        ("WHARF_VOLUME", "/data"),
        ("DATA_DIR", "/data"),
        ("GREETING", "hello"),
    ] {
        assert_eq!(
            get(addr, &format!("/env?{var}")).await.unwrap().1,
            want,
            "{var}"
        );
    }
    let (_, hostname) = get(addr, "/").await.unwrap();

    let list = rt.list().await.unwrap();
    let s = list.iter().find(|s| s.instance == name).expect("listed");
    assert_eq!(s.app, app);
    assert_eq!(s.state, InstanceState::Running);
    assert_eq!(s.addr, Some(addr));
    assert_eq!(s.fingerprint, "fp-1");
    assert_eq!(s.release, Some(1));
    assert_eq!(s.image.as_deref(), Some(image.as_str()));
    assert!(
        s.id.as_deref().unwrap().starts_with(&hostname),
        "{:?} {hostname}",
        s.id
    );
    assert!(
        s.rss_bytes.is_some_and(|r| r > 1 << 20),
        "{:?}",
        s.rss_bytes
    );
    assert!(
        s.cpu_seconds.is_some_and(|c| c > 0.0),
        "{:?}",
        s.cpu_seconds
    );
    assert!(s.started_at.is_some());
    assert_eq!(s.restarts, 0);

    rt.stop(&name).await.unwrap();
    assert!(rt.list().await.unwrap().iter().all(|s| s.instance != name));
    assert!(
        docker().inspect_container(&name, None).await.is_err(),
        "removed"
    );
    assert!(matches!(
        rt.stop(&name).await,
        Err(RuntimeError::UnknownInstance(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_reach_each_other_by_name() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("names");
    let (api, web) = (app("api"), app("web"));
    let _cleanup = Cleanup::new(&[&api, &web], &dir);
    let rt = DockerRuntime::new(engine);
    let api_addr = start_one(&rt, spec(&api, &image, &dir)).await;
    let web_addr = start_one(&rt, spec(&web, &image, &dir)).await;
    let (_, api_host) = get(api_addr, "/").await.unwrap();
    let (status, body) = get(web_addr, &format!("/fetch?http://{api}:8000/"))
        .await
        .unwrap();
    assert_eq!((status, body), (200, api_host));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_volume_outlives_the_container() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("volume");
    let app = app("volume");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let rt = DockerRuntime::new(engine);
    let first = spec(&app, &image, &dir);
    let (first_name, volume) = (first.instance.clone(), first.volume.clone());
    let addr = start_one(&rt, first).await;
    let (_, first_host) = get(addr, "/").await.unwrap();
    assert_eq!(get(addr, "/write?/data/note").await.unwrap().1, "written");
    rt.stop(&first_name).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(volume.join("note")).unwrap(),
        format!("written by {first_host}")
    );

    let addr = start_one(&rt, spec(&app, &image, &dir)).await;
    assert_eq!(
        get(addr, "/read?/data/note").await.unwrap().1,
        format!("written by {first_host}")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_root_still_has_a_writable_tmp() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("readonly");
    let app = app("readonly");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let rt = DockerRuntime::new(engine);
    let mut s = spec(&app, &image, &dir);
    s.container.read_only = true;
    let addr = start_one(&rt, s).await;
    let (status, body) = get(addr, "/write?/app/new-file").await.unwrap();
    assert_eq!(status, 500);
    assert!(body.contains("Read-only file system"), "{body}");
    assert_eq!(
        get(addr, "/write?/tmp/scratch").await.unwrap(),
        (200, "written".into())
    );
    assert_eq!(
        get(addr, "/write?/data/kept").await.unwrap(),
        (200, "written".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_restart_policy_are_given_to_the_engine() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("limits");
    let app = app("limits");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let rt = DockerRuntime::new(engine);
    let mut s = spec(&app, &image, &dir);
    s.limits = Limits {
        memory_bytes: Some(96 << 20),
        cpu_millis: Some(500),
    };
    s.stop_grace = Duration::from_secs(4);
    let name = s.instance.clone();
    let addr = start_one(&rt, s).await;
    // A set-uid program inside gains nothing.
    let (_, status) = get(addr, "/read?/proc/self/status").await.unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let i = inspect(&name).await;
    let hc = i.host_config.unwrap();
    assert_eq!(hc.memory, Some(96 << 20));
    assert_eq!(hc.memory_swap, Some(96 << 20));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(
        hc.restart_policy
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .as_deref(),
        Some("unless-stopped")
    );
    assert!(
        hc.port_bindings.unwrap_or_default().is_empty(),
        "no published ports"
    );
    let config = i.config.unwrap();
    assert_eq!(config.stop_timeout, Some(4));
    let labels = config.labels.unwrap();
    for l in [
        "wharf.app",
        "wharf.instance",
        "wharf.release",
        "wharf.fingerprint",
        "wharf.port",
    ] {
        assert!(labels.contains_key(l), "{l} in {labels:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_runtime_adopts_running_containers_without_restarting_them() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("adopt");
    let app = app("adopt");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let name;
    let id;
    let started;
    {
        let first = DockerRuntime::new(engine.clone());
        let s = spec(&app, &image, &dir);
        name = s.instance.clone();
        start_one(&first, s).await;
        let i = inspect(&name).await;
        id = i.id.unwrap();
        started = i.state.unwrap().started_at.unwrap();
        // The first runtime goes away (a server killed); its container stays.
    }
    let second = DockerRuntime::new(engine);
    let adopted = second.adopt().await.unwrap();
    let s = adopted
        .iter()
        .find(|s| s.instance == name)
        .expect("adopted");
    assert_eq!(s.id.as_deref(), Some(id.as_str()));
    assert_eq!(s.state, InstanceState::Running);
    assert_eq!(s.fingerprint, "fp-1");
    let addr = s.addr.expect("address");
    assert_eq!(get(addr, "/").await.unwrap().0, 200);
    let i = inspect(&name).await;
    assert_eq!(
        i.state.unwrap().started_at.unwrap(),
        started,
        "not restarted"
    );
    assert_eq!(i.restart_count, Some(0));
    // Taken back under supervision: its output, its live log, its stop.
    assert!(
        second
            .recent_output(&name, 10)
            .await
            .contains(&"listening on 8000".to_string())
    );
    let mut live = second.subscribe_logs(&app);
    get(addr, "/say?after-adoption").await.unwrap();
    let line = tokio::time::timeout(PATIENCE, live.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        line.ends_with(&format!(" {name} out| after-adoption\n")),
        "{line}"
    );
    second.stop(&name).await.unwrap();
    assert!(docker().inspect_container(&id, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn what_wharf_did_not_create_is_never_touched() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("foreign");
    let app = app("foreign");
    let foreign = format!("{app}-not-wharfs");
    let mut cleanup = Cleanup::new(&[&app], &dir);
    cleanup.containers.push(foreign.clone());
    let docker = docker();
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(foreign.clone()),
                ..Default::default()
            }),
            // From wharf's image: it inherits the image's wharf.app label, yet is the user's.
            bollard::models::ContainerCreateBody {
                image: Some(image.clone()),
                cmd: Some(vec!["sleep".into(), "300".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker.start_container(&foreign, None).await.unwrap();

    let rt = DockerRuntime::new(engine.clone());
    start_one(&rt, spec(&app, &image, &dir)).await;
    let list = rt.list().await.unwrap();
    assert!(
        list.iter()
            .all(|s| s.instance != foreign && s.app != SHARED_APP),
        "{list:?}"
    );
    assert!(list.iter().any(|s| s.app == app));
    assert!(
        rt.adopt()
            .await
            .unwrap()
            .iter()
            .all(|s| s.instance != foreign)
    );
    assert!(matches!(
        rt.stop(&foreign).await,
        Err(RuntimeError::UnknownInstance(_))
    ));
    engine.prune_images(&app, &[]).await.unwrap();
    engine.remove_images(&app).await.unwrap();
    assert!(engine.has_image(BASE).await.unwrap());
    assert!(engine.has_image(&image).await.unwrap());
    let state = inspect(&foreign).await.state.unwrap();
    assert_eq!(
        state.running,
        Some(true),
        "the foreign container still runs"
    );
}

/// A one-line image of `app`'s release `n`.
async fn tiny_release(engine: &Engine, dir: &Path, app: &str, n: u32) -> String {
    let ctx = dir.join(format!("release-{n}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {BASE}\nCMD [\"sleep\", \"300\"]\nENV RELEASE={n}\n"),
    )
    .unwrap();
    let req = BuildRequest {
        app: app.to_string(),
        release: n,
        context: ctx,
        dockerfile: "Dockerfile".into(),
    };
    engine.build_image(&req, &|_| {}).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_kept_releases_images_in_use_and_images_built_on_them() {
    let engine = engine().await;
    let dir = scratch("prune");
    let app = app("prune");
    let user_image = format!("{app}-users-own:latest");
    let mut cleanup = Cleanup::new(&[&app], &dir);
    cleanup.images.push(user_image.clone());
    let mut images = Vec::new();
    for n in 1..=4 {
        images.push(tiny_release(&engine, &dir, &app, n).await);
    }
    // Someone builds their own image FROM release 2: it carries wharf's labels, yet is theirs.
    let ctx = dir.join("users-own");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nENV MINE=1\n", images[1]),
    )
    .unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_dir_all(".", &ctx).unwrap();
    let body = bytes::Bytes::from(tar.into_inner().unwrap());
    let client = docker();
    let mut build = client.build_image(
        BuildImageOptions {
            t: Some(user_image.clone()),
            ..Default::default()
        },
        None,
        Some(bollard::body_full(body)),
    );
    while let Some(item) = build.next().await {
        item.unwrap();
    }
    // Release 1 runs.
    let rt = DockerRuntime::new(engine.clone());
    let mut s = spec(&app, &images[0], &dir);
    s.port = Some(8000);
    tokio::time::timeout(PATIENCE, rt.start(s))
        .await
        .unwrap()
        .unwrap();

    let mut removed = engine.prune_images(&app, &[4]).await.unwrap();
    removed.sort();
    assert_eq!(removed, [images[1].clone(), images[2].clone()]);
    for (image, kept) in [
        (&images[0], true),
        (&images[1], false),
        (&images[2], false),
        (&images[3], true),
        (&user_image, true),
    ] {
        assert_eq!(engine.has_image(image).await.unwrap(), kept, "{image}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_past_and_live() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("logs");
    let app = app("logs");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let rt = DockerRuntime::new(engine);
    let mut live = rt.subscribe_logs(&app);
    let s = spec(&app, &image, &dir);
    let name = s.instance.clone();
    let addr = start_one(&rt, s).await;

    // The first lines, then one written on request, arrive live.
    let mut seen = Vec::new();
    get(addr, "/say?marker-one").await.unwrap();
    while !seen.iter().any(|l: &String| l.contains("marker-one")) {
        let line = tokio::time::timeout(PATIENCE, live.recv())
            .await
            .unwrap()
            .unwrap();
        seen.push(line);
    }
    let stamped = |l: &str| {
        l.len() > 21 && l.as_bytes()[4] == b'-' && l.as_bytes()[10] == b'T' && &l[19..21] == "Z "
    };
    assert!(
        seen.iter().all(|l| stamped(l) && l.ends_with('\n')),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.ends_with(&format!(" {name} out| listening on 8000\n"))),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.ends_with(&format!(" {name} err| ready on stderr\n"))),
        "{seen:?}"
    );

    // Past lines come from the engine, oldest first, the last `n` only.
    let past = rt.logs(&app, 100).await.unwrap();
    let pos = |needle: &str| past.iter().position(|l| l.ends_with(needle));
    let (listening, marker) = (pos("out| listening on 8000"), pos("out| marker-one"));
    assert!(
        listening.is_some() && marker.is_some() && listening < marker,
        "{past:?}"
    );
    assert!(
        past.iter().all(|l| stamped(l) && l.contains(&name)),
        "{past:?}"
    );
    let last = rt.logs(&app, 1).await.unwrap();
    assert_eq!(last.len(), 1);
    assert!(last[0].ends_with("out| marker-one"), "{last:?}");
    assert_eq!(rt.recent_output(&name, 1).await, ["marker-one".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_at_start_is_reported_with_its_status_and_last_words() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("crash");
    let app = app("crash");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let rt = DockerRuntime::new(engine);
    let mut live = rt.subscribe_logs(&app);
    let mut s = spec(&app, &image, &dir);
    s.workload = Workload::Image {
        image: image.clone(),
        command: Some("echo cannot open the database >&2; exit 3".into()),
    };
    let name = s.instance.clone();
    tokio::time::timeout(PATIENCE, rt.start(s))
        .await
        .unwrap()
        .unwrap();
    let how = tokio::time::timeout(PATIENCE, rt.exited(&name))
        .await
        .unwrap();
    assert_eq!(how.as_deref(), Some("exited with status 3"));
    // Everything it wrote before it ended is there once `exited` says it ended.
    assert_eq!(
        rt.recent_output(&name, 1).await,
        ["cannot open the database".to_string()]
    );
    // The engine restarts it (it keeps failing).
    assert_eventually!(
        rt.list()
            .await
            .unwrap()
            .iter()
            .any(|st| st.instance == name && st.restarts > 0),
        "restarted by the engine"
    );
    // Its log is followed across the engine's restarts: each run's words arrive live.
    for run in 1..=2 {
        let line = tokio::time::timeout(PATIENCE, live.recv())
            .await
            .unwrap_or_else(|_| panic!("run {run}'s line arrives"))
            .unwrap();
        assert!(
            line.ends_with(&format!(" {name} err| cannot open the database\n")),
            "{line}"
        );
    }
    assert_eq!(rt.exited("no-such-instance").await, None);
    rt.stop(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_is_named() {
    let engine = engine().await;
    let dir = scratch("noimage");
    let app = app("noimage");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let rt = DockerRuntime::new(engine);
    let s = spec(&app, &format!("wharf/{app}:404"), &dir);
    let name = s.instance.clone();
    let err = rt.start(s).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("No such image: wharf/{app}:404")),
        "{err}"
    );
    assert!(rt.list().await.unwrap().iter().all(|s| s.instance != name));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_workload_is_refused_clearly() {
    let engine = engine().await;
    let dir = scratch("process");
    let app = app("process");
    let _cleanup = Cleanup::new(&[&app], &dir);
    let rt = DockerRuntime::new(engine);
    let mut s = spec(&app, BASE, &dir);
    s.workload = Workload::Process {
        command: "python3 app.py".into(),
        workdir: dir.clone(),
    };
    let err = rt.start(s).await.unwrap_err().to_string();
    assert!(err.contains("runs images") && err.contains(&app), "{err}");
}

/// Engines before API 1.44 (Debian's docker.io) accept two networks of one name, and then
/// every container creation on that name fails as "ambiguous". Two servers creating the apps'
/// network at the same moment leave such twins: the next `ensure_network` keeps the oldest.
#[tokio::test(flavor = "multi_thread")]
async fn twin_networks_are_narrowed_to_the_oldest() {
    let name = format!("wharftest-twins-{}", std::process::id());
    let mut cleanup = Cleanup::new(&[], &scratch("twins"));
    cleanup.networks.push(name.clone());
    let docker = docker();
    let request = || bollard::models::NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(HashMap::from([(
            "wharf.managed".to_string(),
            "true".to_string(),
        )])),
        ..Default::default()
    };
    let first = docker.create_network(request()).await.unwrap().id;
    let twin = docker.create_network(request()).await;
    if let Err(e) = &twin {
        // API 1.44 and later: the engine itself keeps names unique.
        assert!(
            matches!(
                e,
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    ..
                }
            ),
            "{e}"
        );
        eprintln!("this engine refuses twin networks: only the one network to keep");
    }
    let engine = Engine::connect(None, None)
        .await
        .unwrap()
        .with_network(name.clone());
    engine.ensure_network().await.unwrap();
    assert_eq!(
        networks_named(&name).await,
        vec![first],
        "the oldest is kept"
    );
}

/// Twins wharf may not remove (the user's own, unlabelled) stay; containers still start, on
/// the oldest.
#[tokio::test(flavor = "multi_thread")]
async fn containers_start_while_two_networks_share_the_name() {
    let engine = engine().await;
    let image = shared_image(&engine).await;
    let dir = scratch("twin-start");
    let name = format!("wharftest-twinstart-{}", std::process::id());
    let web = app("twinweb");
    let mut cleanup = Cleanup::new(&[&web], &dir);
    cleanup.networks.push(name.clone());
    let docker = docker();
    let request = || bollard::models::NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        ..Default::default()
    };
    let first = docker.create_network(request()).await.unwrap().id;
    match docker.create_network(request()).await {
        Ok(_) => assert_eq!(
            networks_named(&name).await.len(),
            2,
            "two networks, one name"
        ),
        // API 1.44 and later: the engine itself keeps names unique.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => eprintln!("this engine refuses twin networks: only the one network to join"),
        Err(e) => panic!("{e}"),
    }
    let engine = Arc::new(
        Engine::connect(None, None)
            .await
            .unwrap()
            .with_network(name.clone()),
    );
    let rt = DockerRuntime::new(engine);
    let addr = start_one(&rt, spec(&web, &image, &dir)).await;
    let (status, body) = get(addr, "/").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let listed = docker
        .list_containers(Some(ListContainersOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("wharf.app={web}")],
            )])),
            ..Default::default()
        }))
        .await
        .unwrap();
    let id = listed[0].id.clone().unwrap();
    let joined = inspect(&id)
        .await
        .network_settings
        .unwrap()
        .networks
        .unwrap();
    assert_eq!(
        joined.get(&name).and_then(|e| e.network_id.clone()),
        Some(first),
        "on the oldest network: {joined:?}"
    );
}

async fn networks_named(name: &str) -> Vec<String> {
    docker()
        .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
            filters: Some(HashMap::from([(
                "name".to_string(),
                vec![name.to_string()],
            )])),
        }))
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| n.id)
        .collect()
}
