//! The process runtime with real child processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wharf_runtime::{
    InstanceSpec, InstanceState, Limits, ProcessRuntime, RestartPolicy, Runtime, Workload,
};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("wharf-rt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn spec(d: &Dir, name: &str, command: &str) -> InstanceSpec {
    InstanceSpec {
        app: "app".into(),
        instance: name.into(),
        release: None,
        fingerprint: String::new(),
        workload: Workload::Process {
            command: command.into(),
            workdir: d.0.clone(),
        },
        env: BTreeMap::from([("GREETING".to_string(), "hi there".to_string())]),
        port: Some(4567),
        replicas: 1,
        container: Default::default(),
        volume: d.0.join("volume"),
        log_dir: d.0.join("logs"),
        limits: Limits::default(),
        restart: RestartPolicy {
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            max_restarts: 3,
            stable_after: Duration::from_secs(30),
        },
        stop_grace: Duration::from_millis(300),
        isolation: Default::default(),
    }
}

/// Waits (bounded) until the runtime's status satisfies `pred`.
async fn until(
    rt: &ProcessRuntime,
    name: &str,
    what: &str,
    pred: impl Fn(&wharf_runtime::InstanceStatus) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if rt.status(name).is_some_and(|s| pred(&s)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s: {:?}",
            rt.status(name)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits on the live log until a line contains `needle`.
async fn log_line(rx: &mut tokio::sync::broadcast::Receiver<String>, needle: &str) -> String {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = rx.recv().await.expect("log channel open");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with `{needle}`"))
}

#[tokio::test]
async fn clean_environment_with_port_host_volume_and_app_vars() {
    let d = dir("env");
    let rt = ProcessRuntime::new();
    let mut logs = rt.subscribe_logs("app");
    let cmd = "echo \"vars $PORT $HOST $WHARF_VOLUME $DATA_DIR [$GREETING]\"; env | sort | tr '\\n' ' '; echo; exec sleep 30";
    rt.start(spec(&d, "env-1", cmd)).await.unwrap();
    let vol = d.0.join("volume").display().to_string();
    let line = log_line(&mut logs, "vars").await;
    assert!(
        line.contains(&format!("vars 4567 127.0.0.1 {vol} {vol} [hi there]")),
        "{line}"
    );
    assert!(
        line.contains("env-1 out|"),
        "lines name the instance and stream: {line}"
    );
    let env = log_line(&mut logs, "PATH=").await;
    for leaked in ["CARGO", "HOME=", "RUST_"] {
        assert!(
            !env.contains(leaked),
            "{leaked} leaked into the app's environment: {env}"
        );
    }
    assert!(d.0.join("volume").is_dir(), "volume created");
    let file = std::fs::read_to_string(d.0.join("logs/app.log")).unwrap();
    assert!(
        file.contains("[hi there]"),
        "log file has the output:\n{file}"
    );
    rt.stop("env-1").await.unwrap();
    assert!(rt.status("env-1").is_none());
}

#[tokio::test]
async fn a_killed_process_is_restarted() {
    let d = dir("kill");
    let rt = ProcessRuntime::new();
    rt.start(spec(&d, "k-1", "exec sleep 30")).await.unwrap();
    let first = rt.status("k-1").unwrap().pid.unwrap();
    std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap();
    until(&rt, "k-1", "restart", |s| {
        s.restarts == 1 && s.state == InstanceState::Running && s.pid.is_some()
    })
    .await;
    let s = rt.status("k-1").unwrap();
    assert_ne!(s.pid, Some(first));
    assert_eq!(s.last_exit.as_deref(), Some("killed by signal 9"));
    rt.stop("k-1").await.unwrap();
}

#[tokio::test]
async fn crash_loops_give_up() {
    let d = dir("crash");
    let rt = ProcessRuntime::new();
    rt.start(spec(&d, "c-1", "exit 1")).await.unwrap();
    until(&rt, "c-1", "giving up", |s| {
        s.state == InstanceState::Failed
    })
    .await;
    let s = rt.status("c-1").unwrap();
    assert_eq!(s.restarts, 3);
    assert_eq!(s.last_exit.as_deref(), Some("exited with status 1"));
    let log = std::fs::read_to_string(d.0.join("logs/app.log")).unwrap();
    assert!(log.contains("giving up"), "{log}");
    rt.stop("c-1").await.unwrap();
}

#[tokio::test]
async fn stop_terminates_then_kills_what_ignores_sigterm() {
    let d = dir("stop");
    let rt = ProcessRuntime::new();
    rt.start(spec(
        &d,
        "polite",
        "trap 'exit 0' TERM; while :; do sleep 0.05; done",
    ))
    .await
    .unwrap();
    rt.start(spec(
        &d,
        "stubborn",
        "trap '' TERM; while :; do sleep 0.05; done",
    ))
    .await
    .unwrap();
    let stubborn_pid = rt.status("stubborn").unwrap().pid.unwrap();
    rt.stop("polite").await.unwrap();
    let t = Instant::now();
    rt.stop("stubborn").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "waited for the grace period"
    );
    assert!(
        !PathBuf::from(format!("/proc/{stubborn_pid}")).exists(),
        "the process is gone"
    );
    assert!(rt.list().await.unwrap().is_empty());
    assert!(matches!(
        rt.stop("stubborn").await,
        Err(wharf_runtime::RuntimeError::UnknownInstance(_))
    ));
}

#[tokio::test]
async fn limits_are_enforced_or_explained() {
    let d = dir("limits");
    let rt = ProcessRuntime::new();
    let mut s = spec(&d, "lim-1", "exec sleep 30");
    s.limits = Limits {
        memory_bytes: Some(64 << 20),
        cpu_millis: Some(500),
    };
    rt.start(s).await.unwrap();
    let status = rt.status("lim-1").unwrap();
    let cg = PathBuf::from("/sys/fs/cgroup/wharf/lim-1/memory.max");
    let enforced =
        std::fs::read_to_string(&cg).is_ok_and(|v| v.trim() == (64u64 << 20).to_string());
    assert!(
        enforced
            || status
                .limits_note
                .as_deref()
                .is_some_and(|n| n.contains("not enforced")),
        "neither enforced nor explained: {status:?}"
    );
    rt.stop("lim-1").await.unwrap();
}

#[tokio::test]
async fn a_missing_workdir_fails_the_start_clearly() {
    let d = dir("missing");
    let rt = ProcessRuntime::new();
    let mut s = spec(&d, "m-1", "true");
    s.workload = Workload::Process {
        command: "true".into(),
        workdir: d.0.join("nope"),
    };
    let err = rt.start(s).await.unwrap_err();
    assert!(
        err.to_string().contains("cannot start instance \"m-1\""),
        "{err}"
    );
    assert!(rt.status("m-1").is_none());
}

#[tokio::test]
async fn orphans_of_a_killed_server_are_reaped() {
    let d = dir("orphans");
    let pids = d.0.join("run");
    // A previous server started an instance and died without stopping it: its async runtime
    // (and so its supervisor) is gone, the child process is not.
    let old_spec = spec(&d, "o-1", "exec sleep 30");
    let old_pids = pids.clone();
    let pid = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pid = rt.block_on(async {
            let before = ProcessRuntime::with_pid_dir(old_pids).unwrap();
            before.start(old_spec).await.unwrap();
            let pid = before.status("o-1").unwrap().pid.unwrap();
            std::mem::forget(before);
            pid
        });
        drop(rt);
        pid
    })
    .join()
    .unwrap();
    assert!(pids.join("o-1.pid").exists());

    // A recorded pid that now belongs to nobody (or to another process) is left alone.
    std::fs::write(pids.join("stale.pid"), "999999 12345\n").unwrap();

    let after = ProcessRuntime::with_pid_dir(pids.clone()).unwrap();
    assert_eq!(after.reap_orphans(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while PathBuf::from(format!("/proc/{pid}/stat")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
    {
        assert!(Instant::now() < deadline, "orphan {pid} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::read_dir(&pids).unwrap().count(),
        0,
        "pid files cleaned up"
    );
}

#[tokio::test]
async fn an_exit_is_signalled_with_the_last_output() {
    let d = dir("exited");
    let rt = ProcessRuntime::new();
    // Output written just before the exit must not be lost to the race between the process
    // ending and its pipes being read.
    // One stream, so the order is the app's (two streams are read independently).
    let cmd = "for i in $(seq 1 30); do echo line $i; done; echo 'cannot open config.toml'; \
               head -c 5000 /dev/zero | tr '\\0' x; echo; exit 1";
    rt.start(spec(&d, "app-1", cmd)).await.unwrap();
    let how = tokio::time::timeout(Duration::from_secs(10), rt.exited("app-1"))
        .await
        .expect("the exit is signalled");
    assert_eq!(how.as_deref(), Some("exited with status 1"));
    let out = rt.recent_output("app-1", 3).await;
    assert_eq!(out[..2], ["line 30", "cannot open config.toml"]);
    assert_eq!(out[2], "x".repeat(1000), "a long line is cut");
    rt.stop("app-1").await.unwrap();
    assert_eq!(rt.exited("app-1").await, None, "unknown once stopped");

    // A process that keeps running is never reported as ended.
    rt.start(spec(&d, "app-2", "exec sleep 30")).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), rt.exited("app-2")).await;
    assert!(waited.is_err(), "a running process has not ended");
    rt.stop("app-2").await.unwrap();
}

#[tokio::test]
async fn an_instance_runs_as_its_user_with_no_other_groups() {
    assert!(
        rustix::process::geteuid().is_root(),
        "switching users needs root: run this test as root (e.g. `sudo -E cargo test -p \
         wharf-runtime --test process`), as CI does"
    );
    let d = dir("user");
    let rt = ProcessRuntime::new();
    let mut logs = rt.subscribe_logs("app");
    let mut s = spec(
        &d,
        "user-1",
        "echo \"who $(id -u) $(id -g) [$(id -G)] $HOME\"; exec sleep 30",
    );
    s.isolation.user = Some(wharf_runtime::AppUser {
        uid: 61999,
        gid: 61998,
    });
    rt.start(s).await.unwrap();
    let vol = d.0.join("volume").display().to_string();
    let line = log_line(&mut logs, "who").await;
    // Root's supplementary groups (root, and whatever else) must not follow the app.
    assert!(
        line.contains(&format!("who 61999 61998 [61998] {vol}")),
        "{line}"
    );
    rt.stop("user-1").await.unwrap();
}

#[test]
fn a_spec_in_a_log_line_names_env_variables_but_not_their_values() {
    let d = dir("debug");
    let shown = format!("{:?}", spec(&d, "dbg-1", "true"));
    assert!(shown.contains("GREETING"), "{shown}");
    assert!(
        !shown.contains("hi there"),
        "env values never appear: {shown}"
    );
}

/// A start that fails before anything runs (its volume cannot be made) leaves no instance
/// listed as running, and the name can start once the cause is gone.
#[tokio::test]
async fn a_start_whose_volume_cannot_be_made_leaves_nothing_listed() {
    let d = dir("no-volume");
    let rt = ProcessRuntime::new();
    std::fs::write(d.0.join("volume"), "a file where the folder goes").unwrap();
    let err = rt
        .start(spec(&d, "v-1", "exec sleep 30"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot create the volume"),
        "{err}"
    );
    assert!(rt.status("v-1").is_none(), "{:?}", rt.status("v-1"));
    std::fs::remove_file(d.0.join("volume")).unwrap();
    rt.start(spec(&d, "v-1", "exec sleep 30")).await.unwrap();
    rt.stop("v-1").await.unwrap();
}
