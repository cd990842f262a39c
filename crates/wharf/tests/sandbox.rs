//! The sandbox launcher (`wharf sandbox-exec`) as the runtime uses it: a real process confined
//! by the kernel, checked for what it can and cannot reach.

mod support;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use support::{TempDir, free_port};

/// A folder standing for wharf's data folder: the app's release and volume, another app's
/// files, the database and the token.
struct Layout {
    dir: TempDir,
}

impl Layout {
    fn new(name: &str) -> Layout {
        let dir = TempDir::new(name);
        for (path, text) in [
            ("apps/a/releases/1/app.txt", "a's code"),
            ("volumes/a/kept.txt", "a's data"),
            ("apps/b/releases/1/app.txt", "b's code"),
            ("volumes/b/kept.txt", "b's data"),
            ("wharf.db", "every env value"),
            ("admin.token", "the admin token"),
            ("certs/example.com/key.pem", "a private key"),
        ] {
            let p = dir.0.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(dir.0.join("apps/a/tmp")).unwrap();
        Layout { dir }
    }

    fn path(&self, p: &str) -> String {
        self.dir.0.join(p).display().to_string()
    }

    /// Runs `script` in app a's sandbox (release read, volume and tmp write, `port` bindable).
    fn run_as_a(&self, port: u16, script: &str) -> Output {
        self.command_as_a(port, script)
            .output()
            .expect("the launcher runs")
    }

    fn command_as_a(&self, port: u16, script: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("sandbox-exec")
            .args(["--read", &self.path("apps/a/releases/1")])
            .args(["--write", &self.path("volumes/a")])
            .args(["--write", &self.path("apps/a/tmp")])
            .args(["--bind-port", &port.to_string()])
            .args(["--", "/bin/sh", "-c", script])
            .current_dir(self.path("apps/a/releases/1"))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("D", self.dir.0.as_os_str());
        cmd
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cat` of each path, one line each: "PATH: ok" or "PATH: denied".
fn probe_reads(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| format!("if cat \"$D/{p}\" >/dev/null 2>&1; then echo '{p}: ok'; else echo '{p}: denied'; fi;"))
        .collect()
}

#[test]
fn a_sandboxed_app_reads_only_its_release_and_volume() {
    let l = Layout::new("sbx-read");
    let out = l.run_as_a(
        free_port(),
        &probe_reads(&[
            "apps/a/releases/1/app.txt",
            "volumes/a/kept.txt",
            "apps/b/releases/1/app.txt",
            "volumes/b/kept.txt",
            "wharf.db",
            "admin.token",
            "certs/example.com/key.pem",
        ]),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "apps/a/releases/1/app.txt: ok",
            "volumes/a/kept.txt: ok",
            "apps/b/releases/1/app.txt: denied",
            "volumes/b/kept.txt: denied",
            "wharf.db: denied",
            "admin.token: denied",
            "certs/example.com/key.pem: denied",
        ]
    );
    // Nor can it list the data folder to discover what is there.
    let out = l.run_as_a(free_port(), "ls \"$D\"");
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("Permission denied"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn a_sandboxed_app_writes_only_to_its_volume_and_tmp() {
    let l = Layout::new("sbx-write");
    let out = l.run_as_a(
        free_port(),
        "echo new > \"$D/volumes/a/new.txt\" && echo volume-ok; \
         echo new > \"$D/apps/a/tmp/t.txt\" && echo tmp-ok; \
         echo new > \"$D/apps/a/releases/1/app.txt\" || echo release-denied; \
         echo new > \"$D/volumes/b/kept.txt\" || echo other-denied; \
         echo new > \"$D/evil.txt\" || echo data-denied; \
         echo new > /tmp/wharf-sbx-escape-$$ || echo shared-tmp-denied",
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "volume-ok",
            "tmp-ok",
            "release-denied",
            "other-denied",
            "data-denied",
            "shared-tmp-denied"
        ],
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(l.dir.0.join("volumes/a/new.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(l.dir.0.join("volumes/b/kept.txt")).unwrap(),
        "b's data"
    );
    assert!(!l.dir.0.join("evil.txt").exists());
}

#[test]
fn a_sandboxed_app_binds_only_its_own_port() {
    let l = Layout::new("sbx-bind");
    let own = free_port();
    let other = free_port();
    let script = format!(
        "for port in {own} {other}; do \
           python3 -c \"import socket; socket.socket().bind(('127.0.0.1', $port))\" \
             && echo $port bound || echo $port refused; \
         done"
    );
    support::require_python();
    let out = l.run_as_a(own, &script);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [format!("{own} bound"), format!("{other} refused")],
        "{stderr}"
    );
    assert!(stderr.contains("PermissionError"), "{stderr}");
    // The other port is still free for whoever owns it.
    TcpListener::bind(("127.0.0.1", other)).unwrap();
}

#[test]
fn a_sandboxed_app_cannot_signal_or_inspect_processes_outside() {
    let l = Layout::new("sbx-signal");
    // As wharf without per-app users runs them: the app and the process outside share one
    // user, so only the sandbox stands between them (root could bypass it with its
    // capabilities, which is why apps never run as root when wharf is root).
    let as_user = |cmd: &mut Command| {
        if rustix::process::geteuid().is_root() {
            cmd.uid(65534).gid(65534);
        }
    };
    let mut outside = Command::new("sleep");
    outside.arg("60").env("OUTSIDE_SECRET", "hunter2");
    as_user(&mut outside);
    let mut outside = outside.spawn().unwrap();
    let pid = outside.id();
    let mut app = l.command_as_a(
        free_port(),
        &format!(
            "kill -TERM {pid} 2>/dev/null && echo killed || echo kill-refused; \
             cat /proc/{pid}/environ >/dev/null 2>&1 && echo environ-read || echo environ-refused; \
             sleep 30 & inner=$!; kill $inner && echo own-child-killed"
        ),
    );
    as_user(&mut app);
    let out = app.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["kill-refused", "environ-refused", "own-child-killed"],
        "{stderr}"
    );
    assert!(
        outside.try_wait().unwrap().is_none(),
        "the outside process still runs"
    );
    outside.kill().unwrap();
    outside.wait().unwrap();
}

#[test]
fn the_launcher_refuses_to_start_an_app_it_cannot_confine() {
    let l = Layout::new("sbx-bad");
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["sandbox-exec", "--read", &l.path("no-such-release")])
        .args(["--", "/bin/sh", "-c", "echo started"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(stdout, "", "the command never ran");
    assert!(
        stderr.contains("cannot confine the app") && stderr.contains("no-such-release"),
        "{stderr}"
    );
}

/// A process app that reports, on its page, which of wharf's files it could read, and whether
/// it could make a temporary file (the shared /tmp is closed: `TMPDIR` must name its own).
const PROBE_APP: &str = "D=\"$WHARF_VOLUME/../..\"; cd \"$WHARF_VOLUME\" && \
    for f in wharf.db admin.token apps/other/releases/1/secret.txt; do \
      if cat \"$D/$f\" >/dev/null 2>&1; then echo \"$f: read\"; else echo \"$f: denied\"; fi; \
    done > index.html && \
    { mktemp >/dev/null 2>&1 && echo 'own TMPDIR: written' || echo 'own TMPDIR: denied'; } >> index.html && \
    exec python3 -m http.server \"$PORT\" --bind \"$HOST\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_run_sandboxed_by_default_and_can_opt_out_visibly() {
    support::require_python();
    let tmp = TempDir::new("sbx-server");
    let data = tmp.0.join("data");
    let server = support::ServerProc::start(&data, free_port()).await;
    let other = data.join("apps/other/releases/1");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("secret.txt"), "another app's code").unwrap();

    server
        .ok(&["apps", "create", "probe", "--run", PROBE_APP])
        .await;
    let page = support::page(server.http, "probe.localhost").await;
    assert_eq!(
        page.as_deref(),
        Some(
            "wharf.db: denied\nadmin.token: denied\napps/other/releases/1/secret.txt: denied\n\
             own TMPDIR: written\n"
        ),
        "the app serves, reaches none of wharf's files, and has a tmp of its own"
    );
    let status = server.ok(&["status", "probe"]).await;
    assert!(
        status.contains("sandbox   landlock ABI") && status.contains("files"),
        "{status}"
    );
    assert_eq!(server.app_json("probe").await["sandbox"], true);

    // Opting out is explicit, restarts the app, and shows.
    server
        .ok(&["apps", "set", "probe", "--sandbox", "off"])
        .await;
    let status = server.ok(&["status", "probe"]).await;
    assert!(status.contains("sandbox   off (opted out)"), "{status}");
    assert!(
        support::page(server.http, "probe.localhost")
            .await
            .is_some(),
        "still serving"
    );
    let (ok, _, err) = server
        .cli(&["apps", "set", "probe", "--sandbox", "maybe"])
        .await;
    assert!(!ok && err.contains("use on or off"), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_cannot_write_outside_its_release_or_read_wharf_files() {
    let tmp = TempDir::new("sbx-build");
    let repo = support::Repo::new(
        &tmp.0,
        "site",
        &[
            ("index.html", "v1"),
            (
                "wharf.toml",
                "build = \"echo cached > \\\"$HOME/ok\\\" && echo built > out.txt && \
                 touch ../../../../escaped; cat ../../../../admin.token\"\nstatic = \".\"\n",
            ),
        ],
    );
    let data = tmp.0.join("data");
    let server = support::ServerProc::start(&data, free_port()).await;
    server
        .ok(&["apps", "create", "site", "--git", &repo.url()])
        .await;
    let (ok, out, err) = server.cli(&["deploy", "site"]).await;
    assert!(!ok, "the build fails:\n{out}\n{err}");
    assert!(out.contains("(sandboxed:"), "{out}");
    assert!(
        out.contains("escaped': Permission denied")
            && out.contains("admin.token: Permission denied"),
        "the build log says what was refused:\n{out}"
    );
    assert!(err.contains("the build failed"), "{err}");
    assert!(!data.join("escaped").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("apps/site/cache/ok")).unwrap(),
        "cached\n",
        "the build cache is writable"
    );
    server.stop().await;
}

/// wharf run as an unprivileged user, without capabilities: it cannot give apps users of their
/// own, so an app runs as wharf's user and owns the same files; only the sandbox keeps it from
/// the database and the token. Opting out shows the difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprivileged_server_still_sandboxes_its_apps() {
    support::require_python();
    let tmp = TempDir::new("sbx-unprivileged");
    let user = rustix::process::geteuid().is_root().then(|| {
        let nobody = (65534, 65534);
        std::os::unix::fs::chown(&tmp.0, Some(nobody.0), Some(nobody.1)).unwrap();
        nobody
    });
    let data = tmp.0.join("data");
    let server = support::ServerProc::start_as(&data, free_port(), user.map(|(uid, _)| uid)).await;
    let other = data.join("apps/other/releases/1");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("secret.txt"), "another app's code").unwrap();
    if let Some((uid, gid)) = user {
        // Made here as root; the server (and the app) must own them as they would their own.
        for p in [
            "apps",
            "apps/other",
            "apps/other/releases",
            "apps/other/releases/1",
        ] {
            std::os::unix::fs::chown(data.join(p), Some(uid), Some(gid)).unwrap();
        }
        std::os::unix::fs::chown(other.join("secret.txt"), Some(uid), Some(gid)).unwrap();
    }

    server
        .ok(&["apps", "create", "probe", "--run", PROBE_APP])
        .await;
    assert_eq!(
        support::page(server.http, "probe.localhost")
            .await
            .as_deref(),
        Some(
            "wharf.db: denied\nadmin.token: denied\napps/other/releases/1/secret.txt: denied\n\
             own TMPDIR: written\n"
        ),
    );
    let status = server.ok(&["status", "probe"]).await;
    assert!(status.contains("sandbox   landlock ABI"), "{status}");

    // Without the sandbox the same app, as the same user, reads them all.
    server
        .ok(&["apps", "set", "probe", "--sandbox", "off"])
        .await;
    assert_eq!(
        support::page(server.http, "probe.localhost")
            .await
            .as_deref(),
        Some(
            "wharf.db: read\nadmin.token: read\napps/other/releases/1/secret.txt: read\n\
             own TMPDIR: written\n"
        ),
    );
    server.stop().await;
}
