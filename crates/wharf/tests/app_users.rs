//! A user per app, end to end: with wharf run as root (as CI does), two process apps cannot
//! reach each other's files, processes or environment, nor wharf's database, keys and token;
//! a build cannot read another app's files; and wharf run as an ordinary user still runs
//! apps, saying that per-app users are off and why.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::{Repo, ServerProc, TempDir, free_port, page, require_python, require_tool};
use wharf_testkit::{assert_eventually, get};

/// An app that keeps a secret in its volume, serves `uid gid secret` on `/`, and on `/probe`
/// says what it could read of the paths in `$PROBE` and whether it could kill `$PROBE_PID`.
const PROBE_APP: &str = r#"import http.server, json, os, signal
vol = os.environ['WHARF_VOLUME']
with open(os.path.join(vol, 'secret.txt'), 'w') as f:
    f.write('secret of ' + os.environ['NAME'])
def attempt(path):
    try:
        with open(path, 'rb') as f:
            f.read(1)
        return 'read'
    except PermissionError:
        return 'denied'
    except OSError as e:
        return type(e).__name__
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/probe':
            out = {p: attempt(p) for p in os.environ.get('PROBE', '').split(':') if p}
            pid = os.environ.get('PROBE_PID')
            if pid:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    out['kill'] = 'killed'
                except PermissionError:
                    out['kill'] = 'denied'
            body = json.dumps(out)
        else:
            body = 'uid %d gid %d %s' % (os.getuid(), os.getgid(), open(os.path.join(vol, 'secret.txt')).read())
        body = body.encode()
        self.send_response(200)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((os.environ['HOST'], int(os.environ['PORT'])), H).serve_forever()
"#;

/// This process's effective uid, from `/proc/self/status`.
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Fails (never skips) when not root, saying how to run it.
fn require_root(why: &str) {
    assert!(
        is_root(),
        "{why}: run this test as root (e.g. `sudo -E cargo test -p wharf --test app_users`), as CI does"
    );
}

fn is_root() -> bool {
    euid() == 0
}

fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
        if path.is_dir()
            && let Some(found) = find(&path, name)
        {
            return Some(found);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_run_as_their_own_users_and_cannot_reach_each_other_or_wharf() {
    require_python();
    require_root("per-app users need wharf to run as root");
    let tmp = TempDir::new("app-users");
    let data = tmp.0.join("data");
    let repo = Repo::new(
        &tmp.0,
        "probe",
        &[
            ("app.py", PROBE_APP),
            ("Procfile", "web: exec python3 app.py\n"),
        ],
    );
    let server = ServerProc::start(&data, free_port()).await;
    let http = server.http;
    let data = std::fs::canonicalize(&data).unwrap();

    // B: an app with a secret in its env, its volume and its release, and a certificate.
    server
        .ok(&[
            "apps",
            "create",
            "bee",
            "--env",
            "NAME=bee",
            "--env",
            "TOKEN=b-secret",
        ])
        .await;
    server
        .ok(&[
            "domains",
            "add",
            "bee",
            "bee.example.test",
            "--tls",
            "self-signed",
        ])
        .await;
    server.ok(&["deploy", "bee", "--git", &repo.url()]).await;
    let bee_page = page(http, "bee.localhost").await.expect("bee serves");
    let bee = server.app_json("bee").await;
    let bee_uid = bee["uid"].as_u64().expect("bee has its own uid");
    let bee_pid = bee["instances"][0]["pid"].as_u64().unwrap();
    assert!(
        bee_page.starts_with(&format!("uid {bee_uid} gid {bee_uid} secret of bee")),
        "{bee_page}"
    );
    let key = find(&data.join("certs"), "key.pem").expect("a certificate key");

    // A: the same code, told to try everything of B's and of wharf's.
    let targets = [
        data.join("volumes/bee/secret.txt"),
        data.join("apps/bee/releases/1/app.py"),
        format!("/proc/{bee_pid}/environ").into(),
        data.join("wharf.db"),
        data.join("admin.token"),
        key.clone(),
        data.join("volumes/ant/secret.txt"),
    ];
    let probe = targets
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    server
        .ok(&[
            "apps",
            "create",
            "ant",
            "--env",
            "NAME=ant",
            "--env",
            &format!("PROBE={probe}"),
            "--env",
            &format!("PROBE_PID={bee_pid}"),
        ])
        .await;
    server.ok(&["deploy", "ant", "--git", &repo.url()]).await;
    let ant_uid = server.app_json("ant").await["uid"].as_u64().unwrap();
    assert!(ant_uid != 0 && ant_uid != bee_uid, "{ant_uid} vs {bee_uid}");
    let ant_page = page(http, "ant.localhost").await.unwrap();
    assert!(
        ant_page.starts_with(&format!("uid {ant_uid} gid {ant_uid} ")),
        "{ant_page}"
    );

    let answer = get(http, "ant.localhost", "/probe").await.unwrap();
    let seen: serde_json::Value = serde_json::from_str(&answer.text()).unwrap();
    for denied in &targets[..6] {
        let key = denied.display().to_string();
        assert_eq!(seen[&key], "denied", "{key}: {seen}");
    }
    assert_eq!(
        seen[&targets[6].display().to_string()],
        "read",
        "its own volume: {seen}"
    );
    assert_eq!(seen["kill"], "denied", "{seen}");

    // B is unaffected: same process, same secret.
    let bee = server.app_json("bee").await;
    assert_eq!(bee["instances"][0]["pid"].as_u64(), Some(bee_pid), "{bee}");
    assert_eq!(
        page(http, "bee.localhost").await.as_deref(),
        Some(bee_page.as_str())
    );

    // The layout: others may pass through the data folder, not list it; each app's folders
    // are its own.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let owner = |p: &Path| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(p).unwrap());
    assert_eq!(mode(&data), 0o711);
    for dir in ["certs", "logs", "backups", "run", "cache"] {
        assert_eq!(mode(&data.join(dir)), 0o700, "{dir}");
    }
    for dir in ["apps/bee", "volumes/bee"] {
        assert_eq!(mode(&data.join(dir)), 0o700, "{dir}");
        assert_eq!(u64::from(owner(&data.join(dir))), bee_uid, "{dir}");
    }
    let shown = server.ok(&["apps", "show", "ant"]).await;
    assert!(
        shown.contains(&format!("user      uid {ant_uid}")),
        "{shown}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_reads_another_apps_files_fails_saying_so() {
    require_root("per-app users need wharf to run as root");
    let tmp = TempDir::new("app-users-build");
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    let data = std::fs::canonicalize(&data).unwrap();
    server.ok(&["apps", "create", "vault"]).await;
    let secret = data.join("volumes/vault/secret.txt");
    std::fs::write(&secret, "vault's secret").unwrap();
    let repo = Repo::new(
        &tmp.0,
        "thief",
        &[(
            "wharf.toml",
            &format!(
                "build = \"id -u > built-by && cat {}\"\nstatic = \".\"\n",
                secret.display()
            ),
        )],
    );
    server.ok(&["apps", "create", "thief"]).await;
    let (ok, out, err) = server.cli(&["deploy", "thief", "--git", &repo.url()]).await;
    assert!(!ok, "{out}\n{err}");
    let said = format!("{out}{err}");
    assert!(said.contains("Permission denied"), "{said}");
    assert!(said.contains("the build failed"), "{said}");
    assert!(!said.contains("vault's secret"), "{said}");
    server.stop().await;
}

/// wharf run as an ordinary user (no capabilities): apps still run, as that user, and
/// `wharf status` says per-app users are off and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_an_ordinary_user_apps_still_run_and_status_says_why_users_are_off() {
    require_python();
    let tmp = TempDir::new("app-users-off");
    let data = tmp.0.join("data");
    let site = tmp.0.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "hello").unwrap();
    // The server's user must own its data folder's parent to create it.
    let nobody = 65534;
    let run_as = is_root().then_some(nobody);
    if run_as.is_some() {
        std::os::unix::fs::chown(&tmp.0, Some(nobody), Some(nobody)).unwrap();
    }
    let server = ServerProc::start_as(&data, free_port(), run_as).await;
    // The app's folder is named as its workdir: the sandbox lets an app without releases use
    // the folder the admin named, and nothing else outside the data folder.
    let workdir = site.display().to_string();
    let cmd = "exec python3 -m http.server \"$PORT\" --bind \"$HOST\"";
    server
        .ok(&[
            "apps",
            "create",
            "plain",
            "--workdir",
            &workdir,
            "--run",
            cmd,
        ])
        .await;
    assert_eq!(
        page(server.http, "plain.localhost").await.as_deref(),
        Some("hello")
    );
    let app = server.app_json("plain").await;
    assert!(app["uid"].is_null(), "{app}");
    let uid = run_as.unwrap_or_else(euid);
    let shown = server.ok(&["apps", "show", "plain"]).await;
    assert!(
        shown.contains(&format!(
            "per-app users: off (wharf runs as uid {uid} without CAP_SETUID"
        )),
        "{shown}"
    );
    assert_eventually!(
        std::fs::read_to_string(format!("/proc/{}/status", app["instances"][0]["pid"])).is_ok_and(
            |s| s
                .lines()
                .any(|l| l.starts_with("Uid:") && l.contains(&uid.to_string()))
        ),
        "the app runs as wharf's user"
    );
    server.stop().await;
}

/// wharf run as an ordinary user with the capabilities the systemd unit grants (docs/server.md)
/// still gives each app its own user, and the app inherits none of wharf's capabilities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_user_with_the_units_capabilities_gives_apps_their_own_users() {
    require_python();
    require_tool("setpriv", "util-linux");
    require_root("granting capabilities needs root");
    let tmp = TempDir::new("app-users-caps");
    let data = tmp.0.join("data");
    let site = tmp.0.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "hello").unwrap();
    let nobody = 65534;
    std::os::unix::fs::chown(&tmp.0, Some(nobody), Some(nobody)).unwrap();
    let caps = "+net_bind_service,+setuid,+setgid,+chown,+dac_override,+fowner,+kill";
    let server = ServerProc::start_wrapped(
        &data,
        free_port(),
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            "--",
        ],
    )
    .await;
    // The app's folder is named as its workdir: the sandbox lets an app without releases use
    // the folder the admin named, and nothing else outside the data folder.
    let workdir = site.display().to_string();
    let cmd = "exec python3 -m http.server \"$PORT\" --bind \"$HOST\"";
    server
        .ok(&[
            "apps",
            "create",
            "capped",
            "--workdir",
            &workdir,
            "--run",
            cmd,
        ])
        .await;
    assert_eq!(
        page(server.http, "capped.localhost").await.as_deref(),
        Some("hello")
    );
    let app = server.app_json("capped").await;
    let uid = app["uid"].as_u64().expect("its own uid");
    assert!((61184..=65519).contains(&uid), "{app}");
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", app["instances"][0]["pid"])).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap()
    };
    assert!(field("Uid:").starts_with(&uid.to_string()), "{status}");
    for caps in ["CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(
            field(caps),
            "0000000000000000",
            "{caps} of the app: {status}"
        );
    }
    // wharf can still stop what runs as another user.
    let pid = app["instances"][0]["pid"].as_u64().unwrap();
    server.stop().await;
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the app stopped with the server"
    );
}

/// An app (one that runs something) keeps its uid for life: deleted, its files (volume, logs) stay and so does its uid,
/// which an app created again under its name gets back; only a purge frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_app_keeps_its_uid_until_it_is_purged() {
    require_root("per-app users need wharf to run as root");
    require_python();
    let tmp = TempDir::new("app-users-purge");
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    // Apps that run something get a user; static sites, served by the gateway, need none.
    let create = |app: &'static str| {
        let server = &server;
        async move {
            server
                .ok(&[
                    "apps",
                    "create",
                    app,
                    "--run",
                    "exec python3 -m http.server \"$PORT\" --bind \"$HOST\"",
                ])
                .await
        }
    };
    server.ok(&["apps", "create", "site", "--static"]).await;
    assert!(
        server.app_json("site").await["uid"].is_null(),
        "a static site got a user of its own"
    );
    let uid = |app: &'static str| {
        let server = &server;
        async move { server.app_json(app).await["uid"].as_u64().unwrap() }
    };
    create("first").await;
    let first = uid("first").await;
    server.ok(&["apps", "delete", "first", "--yes"]).await;
    create("other").await;
    assert_ne!(
        uid("other").await,
        first,
        "not reused while its files remain"
    );
    create("first").await;
    assert_eq!(uid("first").await, first, "the same name gets it back");
    let volume = std::fs::canonicalize(&data).unwrap().join("volumes/first");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&volume).unwrap());
    assert_eq!(u64::from(owner), first, "with its kept volume");
    server
        .ok(&["apps", "delete", "first", "--yes", "--purge"])
        .await;
    create("third").await;
    assert_eq!(uid("third").await, first, "a purge frees it");
    server.stop().await;
}

/// A library that, loaded into a process, leaves `loaded-as-<euid>` in `$WHARF_VOLUME`.
const PRELOAD_C: &str = r#"#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    const char *vol = getenv("WHARF_VOLUME");
    char path[4096];
    if (!vol) return;
    snprintf(path, sizeof path, "%s/loaded-as-%u", vol, (unsigned)geteuid());
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    if (fd >= 0) close(fd);
}
"#;

/// An app's env (here its own `wharf.toml`) that sets `LD_PRELOAD` to a library of its own
/// must not get that library loaded by the launcher while it still runs as root: only the
/// app's own processes, as its user, load it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_ld_preload_never_runs_as_root() {
    require_python();
    require_tool("cc", "gcc");
    if !is_root() {
        eprintln!("skipped: per-app users need wharf to run as root (CI runs as root)");
        return;
    }
    let tmp = TempDir::new("app-users-preload");
    let data = tmp.0.join("data");
    let repo = Repo::new(
        &tmp.0,
        "preload",
        &[
            ("mark.c", PRELOAD_C),
            (
                "wharf.toml",
                "build = \"cc -shared -fPIC -o mark.so mark.c\"\n\
                 run = \"exec python3 -m http.server $PORT --bind $HOST\"\n\
                 [env]\nLD_PRELOAD = \"./mark.so\"\n",
            ),
        ],
    );
    let server = ServerProc::start(&data, free_port()).await;
    let data = std::fs::canonicalize(&data).unwrap();
    server.ok(&["apps", "create", "pre"]).await;
    server.ok(&["deploy", "pre", "--git", &repo.url()]).await;
    let uid = server.app_json("pre").await["uid"]
        .as_u64()
        .expect("pre has its own uid");
    let volume = data.join("volumes/pre");
    assert!(
        volume.join(format!("loaded-as-{uid}")).exists(),
        "the app's own processes load its LD_PRELOAD"
    );
    assert!(
        !volume.join("loaded-as-0").exists(),
        "the app's LD_PRELOAD was loaded into a process running as root"
    );
    server.stop().await;
}

/// A deploy writes nothing through a link an app left in its own releases folder (the app
/// owns that folder when it has its own user, and knows the next release's number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_writes_nothing_through_a_link_in_the_releases_folder() {
    let tmp = TempDir::new("app-users-tar-link");
    let data = tmp.0.join("data");
    let victim = tmp.0.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let repo = Repo::new(
        &tmp.0,
        "site",
        &[("wharf.toml", "static = \".\"\n"), ("index.html", "hi")],
    );
    let server = ServerProc::start(&data, free_port()).await;
    server.ok(&["apps", "create", "site"]).await;
    let releases = data.join("apps/site/releases");
    std::fs::create_dir_all(&releases).unwrap();
    std::os::unix::fs::symlink(&victim, releases.join("1.tar")).unwrap();
    server.ok(&["deploy", "site", "--git", &repo.url()]).await;
    let after = std::fs::read(&victim).unwrap();
    assert!(
        after == b"precious",
        "the deploy wrote {} bytes through the app's link",
        after.len()
    );
    server.stop().await;
}

/// wharf run as root with its data folder where other users cannot enter (as `./wharf-data`
/// under `/root` would be): apps cannot have users of their own, and none runs as root
/// instead. Starting one fails saying why and how to fix it; a static site still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_server_that_cannot_give_apps_users_runs_none_as_root() {
    require_root("the refusal is root's");
    let tmp = TempDir::new("app-users-closed");
    let closed = tmp.0.join("closed");
    std::fs::create_dir_all(&closed).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = closed.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    let (ok, out, err) = server
        .cli(&["apps", "create", "rooty", "--run", "exec sleep 600"])
        .await;
    let said = format!("{out}{err}");
    assert!(!ok, "a process app was started: {said}");
    assert!(
        said.contains("never runs apps as root") && said.contains("chmod o+x"),
        "{said}"
    );
    let ps = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 600$"])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "the app's process runs");

    server.ok(&["apps", "create", "site", "--static"]).await;
    std::fs::write(data.join("apps/site/public/index.html"), "still static").unwrap();
    assert_eq!(
        page(server.http, "site.localhost").await.as_deref(),
        Some("still static")
    );
    server.stop().await;
}
