//! Real servers of each engine, run as `nobody` the way the process runtime runs them:
//! start, readiness, rows written through the shell, dump, test restore, restore after a
//! delete, wrong password refused, restart over the data folder, and bad dumps refused.
//! The password must never show in any process's command line nor in any error.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wharf_db::{DbError, Engine, Params, verify_dump};

const NOBODY: (u32, u32) = (65534, 65534);
const PATIENCE: Duration = Duration::from_secs(60);

/// A test folder under the system temp folder, removed at the end.
struct TestDir(PathBuf);

impl TestDir {
    fn new(engine: Engine) -> TestDir {
        let dir = std::env::temp_dir().join(format!(
            "wharf-db-{}-{}-{:x}",
            engine.as_str(),
            std::process::id(),
            rand_u32()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    /// A fresh folder owned by `nobody`.
    fn owned(&self, name: &str) -> PathBuf {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("chown")
            .arg("65534:65534")
            .arg(&dir)
            .status()
            .unwrap();
        dir
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A server run like the process runtime runs it: `sh -c` with a clean environment.
struct Server {
    child: Child,
    log: PathBuf,
    engine: Engine,
}

impl Server {
    fn start(params: &Params, tmp: &Path, log: PathBuf) -> Server {
        use std::os::unix::process::CommandExt;
        let out = File::create(&log).unwrap();
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(params.server_command())
            .env_clear()
            .envs(params.server_env())
            .env("TMPDIR", tmp)
            .current_dir(tmp)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .uid(NOBODY.0)
            .gid(NOBODY.1)
            .spawn()
            .unwrap();
        Server {
            child,
            log,
            engine: params.engine,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let signal = if self.engine == Engine::Postgres {
            "-INT"
        } else {
            "-TERM"
        };
        let _ = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        assert!(
            status.success() || status.code().is_none(),
            "server: {status}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn need(engine: Engine) {
    if let Err(e) = engine.installed() {
        panic!("{e}");
    }
}

/// Runs the database's shell with `script` on stdin; returns stdout.
fn shell(params: &Params, script: &str) -> String {
    let mut child = params
        .shell_command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "shell failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// No process on the machine shows `secret` in its command line.
fn assert_not_in_any_cmdline(secret: &str) {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                !cmdline.contains(secret),
                "password in the command line of pid {:?}",
                entry.file_name()
            );
        }
    }
}

/// No regular file under `dir` holds `secret` (sockets and FIFOs are skipped).
fn assert_not_in_files(dir: &Path, secret: &str) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            assert_not_in_files(&path, secret);
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "password in {}", path.display());
        }
    }
}

fn assert_no_secret(err: &DbError, secret: &str) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(secret), "password in an error: {text}");
}

fn dump(params: &Params, to: &Path) {
    let out = params.dump_command().output().unwrap();
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());
    std::fs::write(to, &out.stdout).unwrap();
}

const SQL_ROWS: &str = "create table items (id int primary key, name varchar(40));
insert into items values (1, 'apple'), (2, 'pear'), (3, 'plum');
create table notes (id int primary key, body text);
insert into notes values (1, 'first'), (2, 'second');
";

/// The whole life of a SQL database (postgres or mariadb).
async fn sql_lifecycle(engine: Engine) {
    need(engine);
    let dir = TestDir::new(engine);
    let (data, tmp) = (dir.owned("data"), dir.owned("tmp"));
    let params = Params::generate(engine, "shop", free_port(), data);
    params.check().unwrap();

    let mut server = Server::start(&params, &tmp, dir.0.join("first.log"));
    params
        .ready(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert!(server.log().contains("wharf-db: initialising"));
    assert_not_in_any_cmdline(&params.password);
    assert_not_in_files(&tmp, &params.password);

    shell(&params, SQL_ROWS);
    assert_eq!(params.contents().unwrap().summary, "2 tables, 5 rows");

    let dump_path = dir.0.join(engine.dump_filename("shop"));
    dump(&params, &dump_path);
    let verified = verify_dump(
        engine,
        &dump_path,
        &dir.owned("scratch"),
        Some(NOBODY),
        PATIENCE,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((verified.tables, verified.items), (2, 5), "{verified:?}");
    assert_eq!(std::fs::read_dir(dir.0.join("scratch")).unwrap().count(), 0);

    // Rows deleted after the dump come back with a restore into the running server.
    shell(&params, "delete from items where id > 1;");
    assert_eq!(params.contents().unwrap().items, 3);
    let restored = params.restore(&dump_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(restored.summary, "2 tables, 5 rows");
    let names = shell(&params, "select name from items order by id;");
    assert!(names.contains("plum"), "{names}");

    // A wrong password is refused, and the error names neither password.
    let wrong = Params {
        password: "wrongwrongwrong".into(),
        ..params.clone()
    };
    let err = wrong.ready(Duration::from_secs(2)).await.unwrap_err();
    assert_no_secret(&err, &params.password);
    assert!(wrong.contents().is_err());

    // A truncated dump fails verification, and says why.
    let bytes = std::fs::read(&dump_path).unwrap();
    let cut = dir.0.join("cut");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err =
        verify_dump(engine, &cut, &dir.owned("scratch2"), Some(NOBODY), PATIENCE).unwrap_err();
    assert_no_secret(&err, &params.password);
    eprintln!("truncated {engine:?} dump: {err}");

    // A restart over the data folder keeps the rows and does not initialise again.
    server.stop();
    let server = Server::start(&params, &tmp, dir.0.join("second.log"));
    params
        .ready(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(params.contents().unwrap().items, 5);
    assert!(!server.log().contains("initialising"), "{}", server.log());
    assert_not_in_any_cmdline(&params.password);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lifecycle() {
    sql_lifecycle(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_lifecycle() {
    sql_lifecycle(Engine::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lifecycle() {
    let engine = Engine::Redis;
    need(engine);
    let dir = TestDir::new(engine);
    let (data, tmp) = (dir.owned("data"), dir.owned("tmp"));
    let params = Params::generate(engine, "cache", free_port(), data);

    let mut server = Server::start(&params, &tmp, dir.0.join("first.log"));
    params
        .ready(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_not_in_any_cmdline(&params.password);
    assert_not_in_files(&tmp, &params.password);
    shell(
        &params,
        "SET a 1\nSET b 2\nSET c 3\nRPUSH list x y\nHSET h f v\n",
    );
    assert_eq!(params.contents().unwrap().summary, "5 keys");

    let dump_path = dir.0.join(engine.dump_filename("cache"));
    dump(&params, &dump_path);
    let verified = verify_dump(
        engine,
        &dump_path,
        &dir.owned("scratch"),
        Some(NOBODY),
        PATIENCE,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.summary, "5 keys");

    // Redis restores offline: stop, put the dump in place, start.
    shell(&params, "DEL a b\n");
    assert!(matches!(
        params.restore(&dump_path),
        Err(DbError::NeedsStop)
    ));
    server.stop();
    params.restore_offline(&dump_path).unwrap();
    let mut server = Server::start(&params, &tmp, dir.0.join("second.log"));
    params
        .ready(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(params.contents().unwrap().items, 5);
    assert_eq!(shell(&params, "GET a\n").trim(), "1");

    let wrong = Params {
        password: "wrongwrongwrong".into(),
        ..params.clone()
    };
    let err = wrong.ready(Duration::from_secs(2)).await.unwrap_err();
    assert_no_secret(&err, &params.password);

    let bytes = std::fs::read(&dump_path).unwrap();
    let cut = dir.0.join("cut");
    std::fs::write(&cut, &bytes[..bytes.len() - 12]).unwrap();
    let err =
        verify_dump(engine, &cut, &dir.owned("scratch2"), Some(NOBODY), PATIENCE).unwrap_err();
    eprintln!("truncated redis dump: {err}");
    assert!(matches!(err, DbError::ServerExited { .. }), "{err}");

    // A restart keeps the keys (redis saves on a clean stop).
    shell(&params, "SET d 4\n");
    server.stop();
    let server = Server::start(&params, &tmp, dir.0.join("third.log"));
    params
        .ready(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(params.contents().unwrap().items, 6);
}

#[test]
fn garbage_is_not_a_dump() {
    let dir = TestDir::new(Engine::Redis);
    let garbage = dir.0.join("garbage");
    std::fs::write(&garbage, b"this is not a database dump\n").unwrap();
    for engine in [Engine::Postgres, Engine::Mysql, Engine::Redis] {
        need(engine);
        let scratch = dir.owned(engine.as_str());
        let err = verify_dump(engine, &garbage, &scratch, Some(NOBODY), PATIENCE).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, DbError::BadDump { .. }), "{text}");
        assert!(text.contains("not a usable"), "{text}");
    }
    let empty = dir.0.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let err = verify_dump(
        Engine::Mysql,
        &empty,
        &dir.owned("e"),
        Some(NOBODY),
        PATIENCE,
    )
    .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
