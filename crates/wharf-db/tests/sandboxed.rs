//! Each engine's server command inside the app sandbox the process runtime uses (Landlock:
//! system folders read-only, only `data` and `TMPDIR` writable, only its port bindable): it
//! initialises, serves, takes rows and gives a dump. The test binary is its own launcher:
//! run with `WHARF_DB_TEST_LAUNCH` set, the `launcher` test confines itself and execs the
//! command, as `wharf sandbox-exec` does.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wharf_db::{Engine, Params};

const LAUNCH: &str = "WHARF_DB_TEST_LAUNCH";
const NOBODY: u32 = 65534;

/// Not a test of its own: the launcher, active only when the sandboxed test starts it.
#[test]
fn launcher() {
    let Ok(spec) = std::env::var(LAUNCH) else {
        return;
    };
    let mut parts = spec.splitn(4, '\n');
    let (data, tmp, port, cmd) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let policy = wharf_sandbox::Policy {
        read: vec![],
        write: vec![data.into(), tmp.into()],
        bind_ports: vec![port.parse().unwrap()],
    };
    let report = wharf_sandbox::restrict_self(&policy).unwrap();
    eprintln!("sandbox: {}", report.support.describe());
    let err = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env_remove(LAUNCH)
        .uid(NOBODY)
        .gid(NOBODY)
        .exec();
    panic!("exec: {err}");
}

fn owned_dir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).unwrap();
    rustix::fs::chown(
        &path,
        Some(rustix::fs::Uid::from_raw(NOBODY)),
        Some(rustix::fs::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    path
}

async fn serves_in_the_sandbox(engine: Engine, root: &Path) {
    if let Err(e) = engine.installed() {
        panic!("{e}");
    }
    let (data, tmp) = (owned_dir(root.join("data")), owned_dir(root.join("tmp")));
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let params = Params::generate(engine, "app", port, data.clone());
    let spec = format!(
        "{}\n{}\n{port}\n{}",
        data.display(),
        tmp.display(),
        params.server_command()
    );
    let log = root.join("server.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "launcher", "--nocapture", "--test-threads=1"])
        .env_clear()
        .envs(params.server_env())
        .env("TMPDIR", &tmp)
        .env(LAUNCH, spec)
        .current_dir(&tmp)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let ready = params.ready(Duration::from_secs(60)).await;
    let result = ready.and_then(|()| {
        let script = match engine {
            Engine::Redis => "SET a 1\nSET b 2\n",
            _ => "create table t (id int primary key); insert into t values (1), (2);",
        };
        let mut shell = params.shell_command();
        let status = shell
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(script.as_bytes())
                    .unwrap();
                c.wait().unwrap()
            });
        assert!(status.unwrap().success());
        params.contents()
    });
    let dump = params.dump_command().output().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let report = result.unwrap_or_else(|e| panic!("{engine:?}: {e}\n{}", read_log()));
    assert_eq!(report.items, 2, "{engine:?}");
    assert!(
        dump.status.success() && !dump.stdout.is_empty(),
        "{engine:?} dump"
    );
    assert!(read_log().contains("sandbox: landlock"), "{}", read_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_run_in_the_app_sandbox() {
    if wharf_sandbox::support().landlock_abi.is_none() {
        panic!("this kernel has no Landlock: the sandbox cannot be tested here");
    }
    let root = std::env::temp_dir().join(format!("wharf-db-sandbox-{}", std::process::id()));
    let engines = [Engine::Postgres, Engine::Mysql, Engine::Redis];
    let runs = engines.map(|e| {
        let dir = root.join(e.as_str());
        tokio::spawn(async move { serves_in_the_sandbox(e, &dir).await })
    });
    let mut failed = Vec::new();
    for (run, engine) in runs.into_iter().zip(engines) {
        if let Err(e) = run.await {
            failed.push(format!("{engine:?}: {e}"));
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    assert!(failed.is_empty(), "{failed:#?}");
}
