//! Managed databases: Postgres, MariaDB or Redis from the system's own packages, each a
//! supervised process of the process runtime with its own user, folders (an app's layout:
//! `volumes/<db>` holds its data, `apps/<db>/tmp` its sockets and scratch files), sandbox,
//! fixed loopback port and generated password. Unlike an app's instances, a database is never
//! started twice side by side (two servers on one data folder would corrupt it): a change stops
//! it first. What wharf knows of each engine (commands, URLs, dumps) is in `wharf-db`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wharf_db::{Engine, Params};
use wharf_runtime::{
    AppUser, InstanceSpec, Isolation, Limits, RestartPolicy, Runtime, SandboxPolicy, Workload,
};
use wharf_store::{Database, Store};

use crate::paths::DataDir;
use crate::users::AppUsers;

/// How long a database has to answer after it starts (a first start initialises it).
const READY_WITHIN: Duration = Duration::from_secs(90);

/// Loopback ports handed to databases, one each for life: apps' URLs name them.
const PORTS: std::ops::RangeInclusive<u16> = 15000..=15999;

pub(crate) struct Databases {
    store: Arc<Store>,
    data: DataDir,
    users: AppUsers,
    launcher: Option<std::path::PathBuf>,
    process: Arc<dyn Runtime>,
    /// The instance running each database.
    running: Mutex<HashMap<String, String>>,
    /// One change at a time per database (start, stop, restore).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Databases {
    pub(crate) fn new(
        store: Arc<Store>,
        data: DataDir,
        users: AppUsers,
        launcher: Option<std::path::PathBuf>,
        process: Arc<dyn Runtime>,
    ) -> Databases {
        Databases {
            store,
            data,
            users,
            launcher,
            process,
            running: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The engine and connection settings of a database, its password included.
    pub(crate) fn params(&self, db: &Database) -> Result<Params, String> {
        let engine = Engine::parse(&db.engine).map_err(|e| e.to_string())?;
        let password = self
            .store
            .database_password(&db.name)
            .map_err(|e| e.to_string())?;
        let params = Params {
            engine,
            name: db.name.clone(),
            user: db.user.clone(),
            password,
            port: db.port,
            data: self.data.volume(&db.name),
        };
        params.check().map_err(|e| e.to_string())?;
        Ok(params)
    }

    pub(crate) fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Creates a database and starts it; nothing is left of it when it cannot start.
    pub(crate) async fn create(&self, name: &str, engine: Engine) -> Result<Database, String> {
        wharf_store::validate_app_name(name).map_err(|e| format!("database name: {e}"))?;
        engine.installed().map_err(|e| e.to_string())?;
        if let Some(why) = self.users.refusal() {
            return Err(format!("{name} cannot start: {why}"));
        }
        // A folder a deleted app or database left keeps its data (and, for Postgres, its old
        // password): never taken over, nor removed if this create fails.
        let volume = self.data.volume(name);
        if std::fs::read_dir(&volume).is_ok_and(|mut d| d.next().is_some()) {
            return Err(format!(
                "{} holds data a deleted app or database named {name} left; move it away or \
                 remove it (`wharf apps delete {name} --purge` for an app's), or choose another \
                 name",
                volume.display()
            ));
        }
        let made_app_dir = !self.data.app_dir(name).exists();
        let port = self.free_port()?;
        let params = Params::generate(engine, name, port, volume);
        params.check().map_err(|e| e.to_string())?;
        let db = self
            .store
            .create_database(name, engine.as_str(), port, &params.user, &params.password)
            .map_err(|e| e.to_string())?;
        let lock = self.lock(name);
        let _held = lock.lock().await;
        if let Err(e) = self.start_locked(&db).await {
            let _ = self.stop_locked(name).await;
            let _ = self.store.delete_database(name);
            // Only what this create made (the volume was empty or missing).
            let _ = std::fs::remove_dir_all(self.data.volume(name));
            if made_app_dir {
                let _ = std::fs::remove_dir_all(self.data.app_dir(name));
            }
            return Err(e);
        }
        Ok(db)
    }

    fn free_port(&self) -> Result<u16, String> {
        let taken = self.store.database_ports().map_err(|e| e.to_string())?;
        PORTS
            .clone()
            .filter(|p| !taken.contains(p))
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .ok_or_else(|| {
                format!(
                    "no free port left for a database between {} and {}",
                    PORTS.start(),
                    PORTS.end()
                )
            })
    }

    /// Starts every database (at server start), each on its own, after clearing what backups
    /// a killed server left in its tmp (scratch servers' folders).
    pub(crate) async fn start_all(self: &Arc<Self>) {
        let Ok(dbs) = self.store.databases() else {
            return;
        };
        for db in &dbs {
            for e in std::fs::read_dir(self.data.tmp(&db.name))
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.file_name().to_string_lossy().starts_with("v-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        for db in dbs {
            let me = self.clone();
            tokio::spawn(async move {
                let lock = me.lock(&db.name);
                let _held = lock.lock().await;
                if let Err(e) = me.start_locked(&db).await {
                    tracing::error!(database = %db.name, error = %e, "database did not start");
                }
            });
        }
    }

    /// Starts `db` and waits until it answers. The caller holds its lock.
    pub(crate) async fn start_locked(&self, db: &Database) -> Result<(), String> {
        let params = self.params(db)?;
        let user = self.users.prepare(&self.store, &self.data, &db.name)?;
        let spec = self.spec(db, &params, user)?;
        let instance = spec.instance.clone();
        self.process
            .start(spec)
            .await
            .map_err(|e| format!("cannot start database {}: {e}", db.name))?;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(db.name.clone(), instance.clone());
        let ready = params.ready(READY_WITHIN);
        tokio::select! {
            r = ready => r.map_err(|e| {
                format!("database {} did not answer within {}s: {e}", db.name, READY_WITHIN.as_secs())
            }),
            why = self.process.exited(&instance) => {
                let mut out = self.process.recent_output(&instance, 20).await.join("\n");
                // A server may echo its settings; the password stays out of the answer.
                if !params.password.is_empty() {
                    out = out.replace(&params.password, "****");
                }
                Err(format!(
                    "database {} ended at start ({}):\n{out}",
                    db.name,
                    why.unwrap_or_default()
                ))
            }
        }
    }

    fn spec(
        &self,
        db: &Database,
        params: &Params,
        user: Option<AppUser>,
    ) -> Result<InstanceSpec, String> {
        let tmp = self.data.tmp(&db.name);
        let volume = self.data.volume(&db.name);
        for dir in [&tmp, &volume] {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        }
        let mut env: BTreeMap<String, String> = params.server_env().into_iter().collect();
        env.insert("TMPDIR".into(), tmp.display().to_string());
        env.insert("HOME".into(), tmp.display().to_string());
        let sandbox = self.launcher.as_ref().map(|_| SandboxPolicy {
            read: Vec::new(),
            write: vec![volume.clone(), tmp.clone()],
            bind_ports: vec![db.port],
        });
        Ok(InstanceSpec {
            app: db.name.clone(),
            instance: format!("{}-{}", db.name, hex::encode(rand::random::<[u8; 3]>())),
            release: None,
            fingerprint: String::new(),
            workload: Workload::Process {
                command: params.server_command(),
                workdir: volume.clone(),
            },
            env,
            port: Some(db.port),
            replicas: 1,
            volume,
            log_dir: self.data.logs(&db.name),
            limits: Limits::default(),
            restart: RestartPolicy::default(),
            // A database flushes and closes cleanly on SIGTERM when given time to.
            stop_grace: Duration::from_secs(30),
            isolation: Isolation { user, sandbox },
            container: Default::default(),
        })
    }

    /// Stops the database. The caller holds its lock. A database that could not be stopped
    /// stays recorded as running (nothing may start another server on its folder).
    pub(crate) async fn stop_locked(&self, name: &str) -> Result<(), String> {
        let instance = self.instance(name);
        if let Some(i) = instance {
            self.process.stop(&i).await.map_err(|e| {
                tracing::warn!(database = name, error = %e, "could not stop the database");
                format!("could not stop database {name}: {e}")
            })?;
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
        }
        Ok(())
    }

    /// Stops every database (server shutdown).
    pub(crate) async fn stop_all(&self) {
        let names: Vec<String> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for name in names {
            let lock = self.lock(&name);
            let _held = lock.lock().await;
            let _ = self.stop_locked(&name).await;
        }
    }

    /// The instance running the database, if any.
    fn instance(&self, name: &str) -> Option<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Whether it runs, as the process runtime sees it.
    pub(crate) async fn state(&self, name: &str) -> &'static str {
        let instance = self.instance(name);
        let Some(instance) = instance else {
            return "stopped";
        };
        match self.process.list().await {
            Ok(list) => list
                .iter()
                .find(|i| i.instance == instance)
                .map_or("stopped", |i| i.state.as_str()),
            Err(_) => "unknown",
        }
    }

    /// Removes a database: stopped, forgotten, and with `purge` its data and uid too (its
    /// backups stay in the repository).
    pub(crate) async fn delete(&self, name: &str, purge: bool) -> Result<(), String> {
        self.store.database(name).map_err(|e| e.to_string())?;
        let lock = self.lock(name);
        let _held = lock.lock().await;
        self.stop_locked(name).await?;
        self.store
            .delete_database(name)
            .map_err(|e| e.to_string())?;
        if purge {
            for dir in [
                self.data.volume(name),
                self.data.app_dir(name),
                self.data.logs(name),
            ] {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .map_err(|e| format!("could not remove {}: {e}", dir.display()))?;
                }
            }
            self.store
                .free_app_uid(name)
                .map_err(|e| format!("could not free its user id: {e}"))?;
        }
        Ok(())
    }

    /// The user the database runs as (for scratch servers that verify its dumps).
    pub(crate) fn user(&self, name: &str) -> Result<Option<AppUser>, String> {
        self.users.prepare(&self.store, &self.data, name)
    }
}
