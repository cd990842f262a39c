//! Docker for the container tests: the real engine driven through Debian's `docker` client.
//! Tests that need an engine or the base image fail (never skip) saying how to get them.

use std::path::Path;
use std::process::{Command, Stdio};

/// The host's engine (the one `wharf server` picks by default when `DOCKER_HOST` is unset).
pub const LOCAL: &str = "unix:///var/run/docker.sock";
/// The two-engine test Swarm's manager and its registry (`swarm-nodes.sh up 2`).
pub const SWARM_MANAGER: &str = "unix:///run/wn1.sock";
pub const SWARM_REGISTRY: &str = "198.18.0.1:5000";
/// The Debian image every test Dockerfile starts `FROM` (no image registry is reachable here).
pub const BASE_IMAGE: &str = "wharf-test/debian:bookworm";

/// Where the test-bed recipes live: `../shared/recipes` beside the repository (`.ci/run`
/// runs them), or `WHARF_RECIPES`.
fn recipes() -> String {
    std::env::var("WHARF_RECIPES").unwrap_or_else(|_| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let repo = repo.canonicalize().unwrap_or(repo);
        repo.join("../shared/recipes").display().to_string()
    })
}

/// The first lines of every test app's Dockerfile: the same text everywhere, so the engine's
/// build cache installs python3 once per engine, not once per app or deploy.
pub const PYTHON_DOCKERFILE: &str = "FROM wharf-test/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
CMD [\"python3\", \"app.py\"]
";

/// A small web app for containers, on `$PORT` (all interfaces). `GET /` answers
/// `<version> <hostname>`; `/peer/<app>` fetches `http://<app>:8000/` and answers its body;
/// `/vol` appends a line to `$WHARF_VOLUME/count` and answers how many lines it has; `/ro`
/// tries to write `/probe` and `/tmp/probe` and answers e.g. `root=denied tmp=ok`. It prints
/// `serving on port N` once it listens, and exits on SIGTERM.
pub const PYTHON_APP: &str = r#"import http.server, os, signal, socket, urllib.request

# As a container's PID 1 the app gets no default action for SIGTERM: stop at once when told.
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

def try_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError:
        return "denied"

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/peer/"):
            name = self.path[len("/peer/"):]
            body = urllib.request.urlopen("http://%s:8000/" % name, timeout=5).read().decode()
        elif self.path == "/vol":
            path = os.path.join(os.environ["WHARF_VOLUME"], "count")
            with open(path, "a") as f:
                f.write("x\n")
            body = str(len(open(path).read().splitlines()))
        elif self.path == "/ro":
            body = "root=%s tmp=%s" % (try_write("/probe"), try_write("/tmp/probe"))
        else:
            body = "%s %s" % (open("version").read().strip(), socket.gethostname())
        data = body.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H)
print("serving on port", os.environ["PORT"], flush=True)
server.serve_forever()
"#;

/// Runs `docker -H host ARGS`; returns (success, stdout, stderr).
pub fn docker_try(host: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .arg("-H")
        .arg(host)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the docker client runs (apt-get install -y docker.io)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `docker -H host ARGS` and returns its stdout, failing the test if it fails.
pub fn docker(host: &str, args: &[&str]) -> String {
    let (ok, out, err) = docker_try(host, args);
    assert!(ok, "docker -H {host} {args:?} failed:\n{out}\n{err}");
    out
}

/// Fails (never skips) unless the engine at `host` answers and has the base image, saying
/// what to install, start or run.
pub fn require_engine(host: &str) {
    super::require_tool("docker", "docker.io");
    let (ok, _, err) = docker_try(host, &["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        ok,
        "no Docker engine answers at {host}: install it with `apt-get install -y docker.io` and \
         start it (`systemctl start docker`, or `dockerd &`) ({})",
        err.trim()
    );
    require_image(host, BASE_IMAGE);
}

/// Fails unless `image` is in the engine at `host`, naming the recipe that makes it.
pub fn require_image(host: &str, image: &str) {
    let (ok, _, _) = docker_try(host, &["image", "inspect", image]);
    assert!(
        ok,
        "the image {image} is missing from the engine at {host}: make it with \
         `bash {}/debian-base-image.sh {image} {host}` (as root, needs debootstrap; `.ci/run` does)",
        recipes()
    );
}

/// Fails unless the two-node test Swarm answers with both nodes ready, naming the recipe.
pub fn require_swarm() {
    let fix = format!(
        "start it with `bash {}/swarm-nodes.sh up 2` (as root; `.ci/run` does)",
        recipes()
    );
    super::require_tool("docker", "docker.io");
    let (ok, out, err) = docker_try(
        SWARM_MANAGER,
        &["node", "ls", "--format", "{{.Status}} {{.Availability}}"],
    );
    assert!(
        ok,
        "the test Swarm's manager does not answer at {SWARM_MANAGER}: {fix} ({})",
        err.trim()
    );
    let ready = out.lines().filter(|l| l.starts_with("Ready")).count();
    assert!(
        ready >= 2,
        "the test Swarm has {ready} ready nodes, 2 are needed: {fix}\n{out}"
    );
    assert!(
        out.lines().all(|l| l.ends_with("Active")),
        "a node of the test Swarm is not available (drained or paused, perhaps by a test that \
         was cut short): `docker -H {SWARM_MANAGER} node update --availability active <node>`\n{out}"
    );
    require_image(SWARM_MANAGER, BASE_IMAGE);
}

/// Ids of the running containers labelled `wharf.app=<app>` (`docker ps --filter`).
pub fn containers_of(host: &str, app: &str) -> Vec<String> {
    let label = format!("label=wharf.app={app}");
    docker(host, &["ps", "-q", "--no-trunc", "--filter", &label])
        .lines()
        .map(str::to_string)
        .collect()
}

/// `docker inspect` of one object, as JSON.
pub fn inspect(host: &str, id: &str) -> serde_json::Value {
    let out = docker(host, &["inspect", id]);
    let mut all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    all.remove(0)
}

/// The tags of the images labelled `wharf.app=<app>`.
pub fn images_of(host: &str, app: &str) -> Vec<String> {
    let label = format!("label=wharf.app={app}");
    docker(
        host,
        &[
            "images",
            "--filter",
            &label,
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Removes what the named apps left in the engine when the test ends, passed or not:
/// containers and images labelled with one of the apps, and the given foreign objects. Names
/// are unique per test run, so nothing of another test or user is touched.
pub struct Cleanup {
    pub host: String,
    pub apps: Vec<String>,
    pub containers: Vec<String>,
    pub images: Vec<String>,
}

impl Cleanup {
    pub fn new(host: &str, apps: &[&str]) -> Cleanup {
        Cleanup {
            host: host.to_string(),
            apps: apps.iter().map(|a| a.to_string()).collect(),
            containers: Vec::new(),
            images: Vec::new(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for app in &self.apps {
            let label = format!("label=wharf.app={app}");
            // Swarm services first (on an engine that is no manager this lists nothing).
            let (_, services, _) =
                docker_try(&self.host, &["service", "ls", "-q", "--filter", &label]);
            for s in services.lines() {
                let _ = docker_try(&self.host, &["service", "rm", s]);
            }
            for kind in [["ps", "-aq"], ["images", "-q"]] {
                let (_, ids, _) = docker_try(&self.host, &[kind[0], kind[1], "--filter", &label]);
                let ids: Vec<&str> = ids.lines().collect();
                if !ids.is_empty() {
                    let rm = if kind[0] == "ps" { "rm" } else { "rmi" };
                    let mut args = vec![rm, "-f"];
                    args.extend(ids);
                    let _ = docker_try(&self.host, &args);
                }
            }
        }
        for c in &self.containers {
            let _ = docker_try(&self.host, &["rm", "-f", c]);
        }
        for i in &self.images {
            let _ = docker_try(&self.host, &["rmi", i]);
        }
    }
}

/// A name unique to this test run (app names become network aliases on the one shared
/// engine, where other tests and runs may be deploying at the same time).
pub fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Builds `tag` from `dir` with the engine at `host` (the classic builder, as wharf's builds
/// use, so both share the engine's build cache).
pub fn build_image(host: &str, dir: &Path, tag: &str) {
    let out = Command::new("docker")
        .args(["-H", host, "build", "-q", "-t", tag])
        .arg(dir)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("the docker client runs (apt-get install -y docker.io)");
    assert!(
        out.status.success(),
        "docker build -t {tag} {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the first three lines of [`PYTHON_DOCKERFILE`] once per test binary and engine, so the
/// apps' builds (which start with the same lines) find python3 in the engine's build cache
/// instead of installing it at once in several tests. The result is tagged
/// `wharf-test/python:bookworm` and kept, as the base image is: it is what keeps that cache.
/// Tagging the last shared step (`WORKDIR`) matters: an image removal takes its untagged
/// parents that no other image uses, so one test's prune could otherwise take a layer another
/// test's build is building on at that moment ("unknown parent image ID").
pub async fn python_layer(host: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let host = host.to_string();
    tokio::task::spawn_blocking(move || {
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        if done.contains(&host) {
            return;
        }
        let dir = std::env::temp_dir().join(format!("wharf-e2e-{}-python", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let head: String = PYTHON_DOCKERFILE
            .lines()
            .take(3)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(dir.join("Dockerfile"), head).unwrap();
        build_image(&host, &dir, "wharf-test/python:bookworm");
        let _ = std::fs::remove_dir_all(&dir);
        done.push(host);
    })
    .await
    .unwrap();
}

/// Polls `check` every 100 ms until it holds, failing after `secs` seconds with `what`: for
/// state the engine changes in the background (a replaced container, a moved task), which
/// takes longer than `assert_eventually!`'s 10 s allows.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "not true within {secs} s: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The Swarm services labelled `wharf.app=<app>` on the manager.
pub fn services_of(app: &str) -> Vec<String> {
    let label = format!("label=wharf.app={app}");
    docker(SWARM_MANAGER, &["service", "ls", "-q", "--filter", &label])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The node ids of the app's tasks that are running now.
pub fn running_task_nodes(app: &str) -> Vec<String> {
    let mut nodes = Vec::new();
    for service in services_of(app) {
        let tasks = docker(
            SWARM_MANAGER,
            &[
                "service",
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                "desired-state=running",
                &service,
            ],
        );
        for task in tasks.lines() {
            let (ok, out, _) = docker_try(
                SWARM_MANAGER,
                &[
                    "inspect",
                    "--type",
                    "task",
                    "--format",
                    "{{.NodeID}} {{.Status.State}}",
                    task,
                ],
            );
            if let Some(node) = out.strip_suffix(" running\n").filter(|_| ok) {
                nodes.push(node.to_string());
            }
        }
    }
    nodes.sort();
    nodes
}

/// The Swarm's nodes as (id, address, is manager).
pub fn swarm_nodes() -> Vec<(String, String, bool)> {
    let ids = docker(SWARM_MANAGER, &["node", "ls", "-q"]);
    ids.lines()
        .map(|id| {
            let out = docker(
                SWARM_MANAGER,
                &[
                    "node",
                    "inspect",
                    "--format",
                    "{{.ID}} {{.Status.Addr}} {{.Spec.Role}}",
                    id,
                ],
            );
            let f: Vec<&str> = out.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2] == "manager")
        })
        .collect()
}

/// The python3 image of [`python_layer`], copied into the engine at `host` when it lacks it:
/// the test Swarm's engines live in network namespaces without a route to the Debian mirror,
/// so they cannot install python3 themselves.
pub async fn python_image_on(host: &str) {
    python_layer(LOCAL).await;
    let host = host.to_string();
    tokio::task::spawn_blocking(move || {
        if docker_try(&host, &["image", "inspect", PYTHON_IMAGE]).0 {
            return;
        }
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker -H {LOCAL} save {PYTHON_IMAGE} | docker -H {host} load -q"
            ))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "copying {PYTHON_IMAGE} into {host} failed"
        );
    })
    .await
    .unwrap();
}

/// The python3 image [`python_layer`] keeps.
pub const PYTHON_IMAGE: &str = "wharf-test/python:bookworm";

/// A Dockerfile for engines that cannot reach the Debian mirror: python3 is in the image
/// already (see [`python_image_on`]).
pub const PYTHON_IMAGE_DOCKERFILE: &str = "FROM wharf-test/python:bookworm
WORKDIR /app
COPY . /app
CMD [\"python3\", \"app.py\"]
";

/// A git repository holding the Python test app (`version` in a file it serves) built by
/// `dockerfile`: [`PYTHON_DOCKERFILE`], or [`PYTHON_IMAGE_DOCKERFILE`] on the prepared image.
pub fn python_repo(root: &Path, name: &str, version: &str, dockerfile: &str) -> super::Repo {
    super::Repo::new(
        root,
        name,
        &[
            ("Dockerfile", dockerfile),
            ("app.py", PYTHON_APP),
            ("version", version),
        ],
    )
}
