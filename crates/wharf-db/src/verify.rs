//! Test restores: a dump counts as verified once a throwaway server of its engine has loaded
//! it and answered what came back.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::dump::{RestoreReport, check_dump};
use crate::engine::Engine;
use crate::error::{DbError, Result};
use crate::exec::{tail, wait};
use crate::params::Params;

/// Restores `dump` into a throwaway server and reports what it holds: a scratch data folder
/// under `scratch` (a fresh, empty folder the caller owns), the engine started on a free
/// loopback port as `uid` (`Some((uid, gid))`: folders chowned to it; `None`: the current
/// user, who must not be root for postgres and mariadb), the dump restored and counted, the
/// server stopped and the scratch contents removed. Everything within `timeout`. Blocking:
/// call it from `spawn_blocking` in async code.
pub fn verify_dump(
    engine: Engine,
    dump: &Path,
    scratch: &Path,
    uid: Option<(u32, u32)>,
    timeout: Duration,
) -> Result<RestoreReport> {
    engine.installed()?;
    check_dump(engine, dump)?;
    let deadline = Instant::now() + timeout;
    let mut server = Scratch::new(engine, scratch, uid)?;
    if engine == Engine::Redis {
        // Redis loads its dump when it starts.
        server.params.restore_offline(dump)?;
    }
    server.start(uid)?;
    server.wait_ready(deadline, timeout)?;
    let report = match engine {
        Engine::Redis => server.params.contents_until(Some(deadline))?,
        _ => server.params.restore_until(dump, Some(deadline))?,
    };
    server.stop();
    Ok(report)
}

/// A throwaway server and its folders; dropping it stops the server and removes them.
struct Scratch {
    params: Params,
    tmp: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Scratch {
    fn new(engine: Engine, scratch: &Path, uid: Option<(u32, u32)>) -> Result<Scratch> {
        let (data, tmp) = (scratch.join("data"), scratch.join("tmp"));
        let port = free_port()?;
        let this = Scratch {
            params: Params::generate(engine, "verify", port, data.clone()),
            tmp: tmp.clone(),
            log: scratch.join("server.log"),
            child: None,
        };
        for dir in [&data, &tmp] {
            private_dir(dir, uid)?;
        }
        Ok(this)
    }

    fn start(&mut self, uid: Option<(u32, u32)>) -> Result<()> {
        let io = |what, source| DbError::Io {
            what,
            path: self.log.clone(),
            source,
        };
        let log = File::create(&self.log).map_err(|e| io("cannot create log", e))?;
        let log2 = log.try_clone().map_err(|e| io("cannot create log", e))?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(self.params.server_command())
            .env_clear()
            .envs(self.params.server_env())
            .env("TMPDIR", &self.tmp)
            .current_dir(&self.tmp)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if let Some((uid, gid)) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().map_err(|source| DbError::Spawn {
            program: "/bin/sh".into(),
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self, deadline: Instant, within: Duration) -> Result<()> {
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(DbError::ServerExited {
                    engine: self.params.engine.as_str(),
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            let last = match self.params.probe(Some(deadline))? {
                Ok(()) => return Ok(()),
                Err(last) => last,
            };
            if Instant::now() >= deadline {
                return Err(self
                    .params
                    .not_ready(within, format!("{last}; log: {}", self.log_tail())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        tail(
            &std::fs::read(&self.log).unwrap_or_default(),
            &self.params.password,
        )
    }

    /// Asks the server to stop (postgres: fast shutdown), kills it after 10 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signal = match self.params.engine {
            Engine::Postgres => Signal::INT,
            _ => Signal::TERM,
        };
        if let Some(pid) = Pid::from_raw(child.id() as i32) {
            let _ = kill_process(pid, signal);
        }
        wait(&mut child, Some(Instant::now() + Duration::from_secs(10)));
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.params.data);
        let _ = std::fs::remove_dir_all(&self.tmp);
        let _ = std::fs::remove_file(&self.log);
    }
}

fn private_dir(dir: &Path, uid: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |what, source| DbError::Io {
        what,
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("cannot create scratch folder", e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("cannot make private", e))?;
    if let Some((uid, gid)) = uid {
        rustix::fs::chown(
            dir,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| io("cannot hand over", e.into()))?;
    }
    Ok(())
}

/// A loopback port free right now (the OS picks it; the server binds it a moment later).
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| DbError::Io {
            what: "cannot find a free port on",
            path: "127.0.0.1".into(),
            source,
        })
}
