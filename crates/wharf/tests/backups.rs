//! Backups end to end: a managed Postgres linked to an app, scheduled backups forced by a clock
//! file, verified, read back with the restic tool alone, restored; an S3 store that dies
//! mid-upload (failed, alerted by email, `check` exits 2); a server killed during a backup.
//! Real servers all: Postgres, restic, an S3 server (moto), an SMTP sink (aiosmtpd).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{ServerProc, TempDir, free_port, open_to_apps, page, require_python, require_tool};
use tokio::io::AsyncWriteExt;

/// 2026-01-01T00:30:00Z: schedules are forced by moving this clock, never by waiting.
const T0: i64 = 1_767_227_400;

fn set_clock(file: &Path, t: i64) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, t.to_string()).unwrap();
    std::fs::rename(tmp, file).unwrap();
}

fn require_postgres() {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().any(|e| e.path().join("bin/postgres").exists()))
        .unwrap_or(false);
    assert!(
        found,
        "Postgres is missing: install it with `apt-get install -y postgresql`"
    );
    require_tool("psql", "postgresql-client");
}

fn moto_server() -> PathBuf {
    let path = std::env::var_os("WHARF_MOTO_SERVER")
        .map_or_else(|| PathBuf::from("/opt/moto/bin/moto_server"), PathBuf::from);
    assert!(
        path.exists(),
        "the S3 test server is missing ({}): install it with \
         `python3 -m venv /opt/moto && /opt/moto/bin/pip install 'moto[server]'` \
         (or set WHARF_MOTO_SERVER)",
        path.display()
    );
    path
}

/// Polls `cond` every 50 ms for up to `secs` seconds.
async fn until<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "not true within {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `wharf db shell DB` (psql, unaligned) with `sql` on its stdin; returns its output.
async fn sql(server: &ServerProc, db: &str, sql: &str) -> String {
    shell(server, db, &["-tA"], sql).await
}

async fn backups(server: &ServerProc, target: &str) -> Vec<serde_json::Value> {
    let out = server.ok(&["backups", "list", target, "--json"]).await;
    serde_json::from_str(&out).unwrap()
}

/// `wharf backups check`'s exit code and output.
async fn check(server: &ServerProc) -> (i32, String) {
    let out = server
        .spawn_cli(&["backups", "check"])
        .wait_with_output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// An app that answers with the number of rows in `notes`, read through $DATABASE_URL.
const COUNTER: &str = r#"
import http.server, os, subprocess
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = os.environ.get("DATABASE_URL")
        if not url:
            body = "no DATABASE_URL"
        else:
            r = subprocess.run(["psql", url, "-tAc", "select count(*) from notes"], capture_output=True, text=True)
            body = r.stdout.strip() or ("error: " + r.stderr.strip())
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())
http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_postgres_is_backed_up_on_schedule_verified_read_by_restic_and_restored() {
    require_python();
    require_postgres();
    require_tool("restic", "restic");
    let tmp = TempDir::new("backups-pg");
    open_to_apps(&tmp.0);
    let data = tmp.0.join("data");
    let clock = tmp.0.join("clock");
    set_clock(&clock, T0);
    let offsite = tmp.0.join("offsite");
    let server = ServerProc::start_with(
        &data,
        free_port(),
        free_port(),
        &[
            ("WHARF_CLOCK_FILE", clock.display().to_string()),
            ("WHARF_BACKUP_COPY", offsite.display().to_string()),
        ],
    )
    .await;

    let out = server
        .ok(&["db", "create", "pg1", "--engine", "postgres"])
        .await;
    assert!(out.contains("postgres database pg1 is running"), "{out}");
    let info = server.ok(&["db", "info", "pg1"]).await;
    assert!(
        info.contains("postgres://") && info.contains("****"),
        "{info}"
    );
    sql(
        &server,
        "pg1",
        "create table notes (id int primary key, body text);
         insert into notes values (1, 'one'), (2, 'two'), (3, 'three');",
    )
    .await;

    // An app linked to it: its URL arrives as DATABASE_URL.
    let code = tmp.0.join("web");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("counter.py"), COUNTER).unwrap();
    open_to_apps(&code);
    server
        .ok(&[
            "apps",
            "create",
            "web",
            "--run",
            "exec python3 counter.py",
            "--workdir",
            code.to_str().unwrap(),
        ])
        .await;
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("no DATABASE_URL")
    );
    server.ok(&["db", "link", "pg1", "web"]).await;
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("3")
    );

    // A schedule; the clock moves past its next hour and the backup runs.
    let out = server
        .ok(&["backups", "schedule", "add", "pg1", "--keep", "production"])
        .await;
    assert!(out.contains("0 * * * *"), "{out}");
    set_clock(&clock, T0 + 30 * 60 + 5);
    until(120, "the scheduled backup is verified", || async {
        backups(&server, "pg1")
            .await
            .iter()
            .any(|b| b["kind"] == "scheduled" && b["state"] == "verified")
    })
    .await;
    let scheduled = backups(&server, "pg1").await[0].clone();
    assert!(
        scheduled["note"].as_str().unwrap().contains("test restore"),
        "verified by a test restore: {scheduled}"
    );
    let snapshot = scheduled["snapshot"].as_str().unwrap().to_string();
    // Copied to the second repository, which restic reads too.
    let copy = scheduled["copies"][0].as_str().unwrap_or("").to_string();
    assert!(copy.starts_with("copy:"), "{scheduled}");
    let listed = std::process::Command::new("restic")
        .arg("-r")
        .arg(&offsite)
        .arg("--password-file")
        .arg(data.join("repository.password"))
        .args(["snapshots", "--json", "--tag", "target=pg1"])
        .output()
        .unwrap();
    let copies: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(copies.len(), 1, "the off-site copy is there");
    let (code, out) = check(&server).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("BACKUPS OK"), "{out}");

    // The restic tool alone, with the repository's password file, gives the dump back.
    let repo = server.ok(&["backups", "repo"]).await;
    assert!(repo.contains("restic -r"), "{repo}");
    let restored = tmp.0.join("by-restic");
    let status = std::process::Command::new("restic")
        .args(["-r"])
        .arg(data.join("repository"))
        .arg("--password-file")
        .arg(data.join("repository.password"))
        .args(["restore", &snapshot, "--target"])
        .arg(&restored)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "restic restore");
    let dump = find_file(&restored, "pg1.pgdump").expect("the dump is in the snapshot");
    let listing = std::process::Command::new("pg_restore")
        .arg("--list")
        .arg(&dump)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listed.contains("TABLE DATA public notes"),
        "a custom-format dump with the table's rows: {listed}{}",
        String::from_utf8_lossy(&listing.stderr)
    );

    // Rows deleted after the backup come back with `wharf backups restore`.
    sql(&server, "pg1", "delete from notes where id > 1;").await;
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("1")
    );
    let out = server
        .ok(&["backups", "restore", "pg1", &snapshot[..8]])
        .await;
    assert!(out.contains("restored pg1"), "{out}");
    assert_eq!(
        page(server.http, "web.localhost").await.as_deref(),
        Some("3")
    );
    let pre: Vec<_> = backups(&server, "pg1")
        .await
        .into_iter()
        .filter(|b| b["kind"] == "pre-restore")
        .collect();
    assert_eq!(pre.len(), 1, "what was there was backed up first");
    assert_eq!(pre[0]["state"], "verified");
    server.stop().await;
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// Writes `mb` MB of incompressible bytes to `path`.
fn random_file(path: &Path, mb: usize) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (path.as_os_str().len() as u64);
    for _ in 0..mb {
        for chunk in buf.chunks_mut(8) {
            // xorshift: fast, and no two megabytes alike.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&buf).unwrap();
    }
}

/// A static app whose volume holds `mb` MB.
async fn app_with_volume(server: &ServerProc, data: &Path, name: &str, mb: usize) {
    server.ok(&["apps", "create", name, "--static"]).await;
    let volume = data.join("volumes").join(name);
    std::fs::create_dir_all(&volume).unwrap();
    random_file(&volume.join("blob"), mb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_store_that_dies_mid_upload_fails_the_backup_alerts_by_email_and_check_says_crit() {
    require_python();
    let moto = moto_server();
    require_tool("aiosmtpd", "python3-aiosmtpd");
    let tmp = TempDir::new("backups-s3");
    let (mut s3, s3_port) = listening("the S3 server", |port| {
        let mut c = tokio::process::Command::new(&moto);
        c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        c
    })
    .await;
    let mailbox = tmp.0.join("mail");
    let (_smtp, smtp_port) = listening("the SMTP sink", |port| {
        let mut c = tokio::process::Command::new("aiosmtpd");
        c.args(["-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&mailbox);
        c
    })
    .await;
    let bucket = format!("http://127.0.0.1:{s3_port}/backups");
    let made = reqwest_put(&bucket).await;
    assert!(made, "the bucket is made");

    let data = tmp.0.join("data");
    let clock = tmp.0.join("clock");
    set_clock(&clock, T0);
    let server = ServerProc::start_with(
        &data,
        free_port(),
        free_port(),
        &[
            ("WHARF_CLOCK_FILE", clock.display().to_string()),
            ("WHARF_BACKUP_REPO", format!("s3:{bucket}/wharf")),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("WHARF_ALERT_EMAIL", "ops@example.test".into()),
            ("WHARF_SMTP", format!("smtp://127.0.0.1:{smtp_port}")),
        ],
    )
    .await;
    app_with_volume(&server, &data, "files", 8).await;
    server
        .ok(&[
            "backups",
            "schedule",
            "add",
            "files",
            "--keep",
            "hourly=24,daily=7",
        ])
        .await;
    // The first run goes through.
    set_clock(&clock, T0 + 30 * 60 + 5);
    until(120, "the first backup is verified", || async {
        backups(&server, "files")
            .await
            .iter()
            .any(|b| b["state"] == "verified")
    })
    .await;
    assert_eq!(check(&server).await.0, 0);

    // New data, the next hour; the store dies once the backup's first new pack arrived in
    // the bucket, with the rest of the upload (and the read-back) still to come.
    random_file(&data.join("volumes/files/more"), 128);
    let packs_before = s3_keys(&bucket, "wharf/data/").await;
    set_clock(&clock, T0 + 90 * 60 + 5);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s3_keys(&bucket, "wharf/data/").await <= packs_before {
        assert!(
            Instant::now() < deadline,
            "no new pack reached the store within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s3.kill().await.unwrap();
    until(120, "the second backup fails", || async {
        backups(&server, "files")
            .await
            .iter()
            .any(|b| b["state"] == "failed")
    })
    .await;
    let list = backups(&server, "files").await;
    let failed = list.iter().find(|b| b["state"] == "failed").unwrap();
    assert!(
        failed["error"].as_str().unwrap().contains("127.0.0.1"),
        "the error names the store: {failed}"
    );
    assert_eq!(
        list.iter().filter(|b| b["state"] == "verified").count(),
        1,
        "never verified without a copy: {list:?}"
    );
    let (code, out) = check(&server).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("BACKUPS CRIT"), "{out}");
    // Generous: the SMTP sink looks up its own host name on its first session, which can
    // take a resolver timeout on a machine without DNS.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !mails(&mailbox)
        .iter()
        .any(|m| m.contains("backup of files failed"))
    {
        if Instant::now() >= deadline {
            let alerts = server.cli(&["backups", "alerts"]).await;
            panic!("no alert email within 120 s; the alerts as wharf recorded them: {alerts:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = server.ok(&["backups", "alerts"]).await;
    assert!(status.contains("email sent"), "{status}");
    // The dashboard shows it red, with why.
    let page = dashboard_page(&server, &tmp.0, "/backups").await;
    assert!(page.contains("state crit"), "{page}");
    assert!(page.contains("127.0.0.1"), "the reason is shown: {page}");
    server.stop().await;
}

/// Starts a server on a free port and waits until it is the one listening there: a port
/// another test took between our look and its bind makes it exit, and it is tried again.
async fn listening(
    what: &str,
    command: impl Fn(u16) -> tokio::process::Command,
) -> (tokio::process::Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = command(port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // lost the port: try another
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                // Still ours a moment later (not someone else's listener it raced with).
                tokio::time::sleep(Duration::from_millis(200)).await;
                if child.try_wait().unwrap().is_none() {
                    return (child, port);
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what} does not listen within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("{what} could not get a port in 5 tries");
}

/// How many objects the bucket holds under `prefix` (one S3 listing; 1000 at most).
async fn s3_keys(bucket: &str, prefix: &str) -> usize {
    let out = tokio::process::Command::new("curl")
        .args(["-sf", &format!("{bucket}?list-type=2&prefix={prefix}")])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .matches("<Key>")
        .count()
}

/// Plain HTTP PUT (makes an S3 bucket).
async fn reqwest_put(url: &str) -> bool {
    let out = tokio::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", url])
        .output()
        .await
        .unwrap();
    out.status.success()
}

fn mails(maildir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(maildir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_a_backup_leaves_a_sound_repository_and_the_next_backup_works() {
    require_tool("restic", "restic");
    let tmp = TempDir::new("backups-kill");
    let data = tmp.0.join("data");
    let port = free_port();
    let server = ServerProc::start(&data, port).await;
    app_with_volume(&server, &data, "big", 4).await;
    server.ok(&["backups", "run", "big"]).await;
    random_file(&data.join("volumes/big/more"), 160);
    let packs = |dir: PathBuf| walk_count(&dir.join("repository/data"));
    let before = packs(data.clone());
    let _run = server.spawn_cli(&["backups", "run", "big"]);
    until(60, "the backup writes data", || {
        let n = packs(data.clone());
        async move { n > before }
    })
    .await;
    server.kill9().await;

    let check = std::process::Command::new("restic")
        .arg("-r")
        .arg(data.join("repository"))
        .arg("--password-file")
        .arg(data.join("repository.password"))
        .args(["check", "--no-lock"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "restic check after kill -9: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let server = ServerProc::start(&data, port).await;
    let list = backups(&server, "big").await;
    assert!(
        list.iter()
            .any(|b| b["state"] == "failed"
                && b["error"].as_str().unwrap().contains("server stopped")),
        "the interrupted backup is failed: {list:?}"
    );
    // And alerted as a failure is, not left for freshness, which stays quiet about it.
    until(30, "the interrupted backup is alerted", || async {
        server
            .ok(&["backups", "alerts"])
            .await
            .contains("backup of big failed")
    })
    .await;
    let out = server.ok(&["backups", "run", "big"]).await;
    assert!(out.contains("verified"), "{out}");
    server.stop().await;
}

/// An app's volume comes back as it was backed up, after a verified backup of what it held.
/// A folder an earlier restore left (it may hold the app's only files) is never removed: the
/// restore stops and names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_volume_is_restored_and_a_leftover_restore_is_never_removed() {
    let tmp = TempDir::new("backups-volume");
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;
    app_with_volume(&server, &data, "site", 1).await;
    let note = data.join("volumes/site/note.txt");
    std::fs::write(&note, "as backed up").unwrap();
    server.ok(&["backups", "run", "site"]).await;
    let snapshot = backups(&server, "site").await[0]["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&note, "changed since").unwrap();

    let leftover = data.join("volumes/.restore-site");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("only-copy"), "precious").unwrap();
    let (ok, _, err) = server
        .cli(&["backups", "restore", "site", &snapshot[..8]])
        .await;
    assert!(!ok && err.contains(".restore-site"), "{err}");
    assert_eq!(
        std::fs::read_to_string(leftover.join("only-copy")).unwrap(),
        "precious"
    );
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "changed since");

    std::fs::remove_dir_all(&leftover).unwrap();
    let out = server
        .ok(&["backups", "restore", "site", &snapshot[..8]])
        .await;
    assert!(
        out.contains("restored site") && out.contains("puts it back"),
        "the way back is named: {out}"
    );
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "as backed up");
    assert!(
        !leftover.exists(),
        "the previous files go once the app runs on the restored ones"
    );
    let pre: Vec<_> = backups(&server, "site")
        .await
        .into_iter()
        .filter(|b| b["kind"] == "pre-restore")
        .collect();
    assert!(
        pre.iter().any(|b| b["state"] == "verified"),
        "what was there was backed up first: {pre:?}"
    );
    server.stop().await;
}

fn walk_count(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            n += walk_count(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

/// A dashboard page, as a logged-in browser gets it.
async fn dashboard_page(server: &ServerProc, dir: &Path, path: &str) -> String {
    let jar = dir.join("cookies");
    let base = format!("http://{}", server.api);
    let login = tokio::process::Command::new("curl")
        .args(["-sf", "-c"])
        .arg(&jar)
        .args(["--data-urlencode", &format!("token={}", server.token)])
        .arg(format!("{base}/login"))
        .output()
        .await
        .unwrap();
    assert!(login.status.success(), "dashboard login");
    let out = tokio::process::Command::new("curl")
        .args(["-sf", "-b"])
        .arg(&jar)
        .arg(format!("{base}{path}"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "GET {path}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_each_schedules_newest_and_never_touches_another_schedule_or_manual_backups()
 {
    require_tool("restic", "restic");
    let tmp = TempDir::new("backups-retention");
    let data = tmp.0.join("data");
    let clock = tmp.0.join("clock");
    set_clock(&clock, T0);
    let server = ServerProc::start_with(
        &data,
        free_port(),
        free_port(),
        &[("WHARF_CLOCK_FILE", clock.display().to_string())],
    )
    .await;
    app_with_volume(&server, &data, "site", 1).await;
    server.ok(&["backups", "run", "site"]).await;
    server
        .ok(&[
            "backups", "schedule", "add", "site", "--name", "short", "--keep", "hourly=2",
        ])
        .await;
    server
        .ok(&[
            "backups",
            "schedule",
            "add",
            "site",
            "--name",
            "long",
            "--keep",
            "hourly=24",
        ])
        .await;
    // Five hours, each one backup per schedule.
    for hour in 1..=5 {
        set_clock(&clock, T0 + 30 * 60 + (hour - 1) * 3600 + 5);
        let want = 2 * hour as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let all = backups_all(&server, "site").await;
            let done = all
                .iter()
                .filter(|b| b["kind"] == "scheduled" && b["state"] != "running")
                .count();
            if done >= want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "hour {hour}'s backups are not taken within 60 s: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let all = backups_all(&server, "site").await;
    let of = |s: &str, state: &str| {
        all.iter()
            .filter(|b| b["schedule"] == s && b["state"] == state)
            .count()
    };
    assert_eq!(of("short", "verified"), 2, "hourly=2 keeps two: {all:#?}");
    assert_eq!(of("short", "removed"), 3);
    assert_eq!(
        of("long", "verified"),
        5,
        "the other schedule keeps all its own"
    );
    assert_eq!(of("long", "removed"), 0);
    assert!(
        all.iter()
            .any(|b| b["kind"] == "manual" && b["state"] == "verified"),
        "a manual backup is no schedule's to remove"
    );
    // The repository holds exactly what is listed as kept.
    let out = std::process::Command::new("restic")
        .arg("-r")
        .arg(data.join("repository"))
        .arg("--password-file")
        .arg(data.join("repository.password"))
        .args(["snapshots", "--json"])
        .output()
        .unwrap();
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.len(), 2 + 5 + 1);
    server.stop().await;
}

async fn backups_all(server: &ServerProc, target: &str) -> Vec<serde_json::Value> {
    let out = server
        .ok(&["backups", "list", target, "--all", "--json"])
        .await;
    serde_json::from_str(&out).unwrap()
}

/// `wharf db shell DB -- ARGS` with `input` on its stdin; returns its output.
async fn shell(server: &ServerProc, db: &str, args: &[&str], input: &str) -> String {
    let mut all = vec!["db", "shell", db, "--"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = server.cli_input(&all, input).await;
    assert_eq!(code, 0, "db shell {db}: {stdout}{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_and_redis_are_backed_up_verified_and_restored() {
    require_tool("mariadbd", "mariadb-server");
    require_tool("mariadb", "mariadb-client");
    require_tool("redis-server", "redis-server");
    let tmp = TempDir::new("backups-my-redis");
    let data = tmp.0.join("data");
    let server = ServerProc::start(&data, free_port()).await;

    server
        .ok(&["db", "create", "shop", "--engine", "mysql"])
        .await;
    shell(
        &server,
        "shop",
        &["-N"],
        "create table items (id int primary key); insert into items values (1), (2), (3);",
    )
    .await;
    let out = server.ok(&["backups", "run", "shop"]).await;
    assert!(out.contains("test restore: 1 table, 3 rows"), "{out}");
    let snapshot = serde_json::from_str::<Vec<serde_json::Value>>(
        &server.ok(&["backups", "list", "shop", "--json"]).await,
    )
    .unwrap()[0]["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    shell(&server, "shop", &["-N"], "delete from items;").await;
    let out = server.ok(&["backups", "restore", "shop", &snapshot]).await;
    assert!(out.contains("restored shop"), "{out}");
    assert_eq!(
        shell(&server, "shop", &["-N"], "select count(*) from items;")
            .await
            .trim(),
        "3"
    );

    server
        .ok(&["db", "create", "cache", "--engine", "redis"])
        .await;
    shell(&server, "cache", &[], "SET a 1\nSET b 2\n").await;
    let out = server.ok(&["backups", "run", "cache"]).await;
    assert!(out.contains("2 keys"), "{out}");
    let snapshot = serde_json::from_str::<Vec<serde_json::Value>>(
        &server.ok(&["backups", "list", "cache", "--json"]).await,
    )
    .unwrap()[0]["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    shell(&server, "cache", &[], "FLUSHALL\n").await;
    let out = server
        .ok(&["backups", "restore", "cache", &snapshot, "--to", "cache2"])
        .await;
    assert!(out.contains("restored cache2"), "{out}");
    assert_eq!(shell(&server, "cache2", &[], "GET b\n").await.trim(), "2");
    let dbs = server.ok(&["db", "list"]).await;
    assert!(dbs.contains("cache2") && dbs.contains("running"), "{dbs}");

    // A deleted database's data is never taken over by a new one of that name, and its
    // backups bring it back once it is gone for good.
    server.ok(&["db", "delete", "cache"]).await;
    let (ok, _, err) = server
        .cli(&["db", "create", "cache", "--engine", "redis"])
        .await;
    assert!(!ok && err.contains("holds data"), "{err}");
    std::fs::remove_dir_all(data.join("volumes/cache")).unwrap();
    let out = server.ok(&["backups", "restore", "cache", &snapshot]).await;
    assert!(out.contains("restored cache"), "{out}");
    assert_eq!(shell(&server, "cache", &[], "GET a\n").await.trim(), "1");
    server.stop().await;
}

/// A webhook receiver on loopback: answers 200 and hands over each request's body.
async fn webhook_sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]);
                            let _ = tx.send(body.to_string());
                            let _ = conn
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_gone_stale_is_alerted_and_so_is_its_recovery() {
    let tmp = TempDir::new("backups-stale");
    let data = tmp.0.join("data");
    let clock = tmp.0.join("clock");
    set_clock(&clock, T0);
    let (hook, mut alerts) = webhook_sink().await;
    let admin = free_port();
    let server = ServerProc::start_with(
        &data,
        free_port(),
        free_port(),
        &[
            ("WHARF_CLOCK_FILE", clock.display().to_string()),
            (
                "WHARF_ALERT_WEBHOOK",
                format!("http://127.0.0.1:{hook}/hook"),
            ),
            ("WHARF_ADMIN", format!("127.0.0.1:{admin}")),
        ],
    )
    .await;
    app_with_volume(&server, &data, "blog", 1).await;
    // Hourly freshness (crit after 6 h) but a backup only daily at 03:00: it goes stale.
    server
        .ok(&[
            "backups",
            "schedule",
            "add",
            "blog",
            "--keep",
            "hourly=24",
            "--cron",
            "0 3 * * *",
        ])
        .await;
    set_clock(&clock, T0 + (2 * 60 + 30) * 60 + 5); // 03:00:05
    until(60, "the 03:00 backup is verified", || async {
        backups(&server, "blog")
            .await
            .iter()
            .any(|b| b["state"] == "verified")
    })
    .await;
    assert_eq!(check(&server).await.0, 0);

    set_clock(&clock, T0 + (9 * 60 + 30) * 60); // 10:00, 7 h later
    let stale = tokio::time::timeout(Duration::from_secs(30), alerts.recv())
        .await
        .expect("a stale alert within 30 s")
        .unwrap();
    let stale: serde_json::Value = serde_json::from_str(&stale).unwrap();
    assert_eq!(stale["kind"], "stale", "{stale}");
    assert_eq!(stale["target"], "blog");
    let (code, out) = check(&server).await;
    assert_eq!(code, 2, "{out}");
    // Monitoring sees it too.
    let metrics = wharf_testkit::get(([127, 0, 0, 1], admin).into(), "localhost", "/metrics")
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("wharf_backup_freshness{schedule=\"blog\",target=\"blog\"} 2"),
        "{metrics}"
    );

    // The next day's run recovers it, and says so.
    set_clock(&clock, T0 + (26 * 60 + 30) * 60 + 5); // 03:00:05 the next day
    let recovered = tokio::time::timeout(Duration::from_secs(60), alerts.recv())
        .await
        .expect("a recovery alert within 60 s")
        .unwrap();
    let recovered: serde_json::Value = serde_json::from_str(&recovered).unwrap();
    assert_eq!(recovered["kind"], "recovery", "{recovered}");
    assert_eq!(check(&server).await.0, 0);
    let listed = server.ok(&["backups", "alerts"]).await;
    assert!(
        listed.contains("stale") && listed.contains("recovery") && listed.contains("webhook sent"),
        "{listed}"
    );
    server.stop().await;
}
