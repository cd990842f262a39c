//! Backups of apps' volumes and managed databases into a restic-format repository
//! (`wharf-backup`), so that the restic tool alone can restore them. `take.rs` takes one
//! backup (a database's consistent dump, or a volume's files), verifies it (its data read back
//! from the repository; a dump restored into a scratch server) and copies it off-site;
//! `restore.rs` brings one back after a backup of what is there; `schedule.rs` runs the
//! schedules on a [`Clock`], applies retention, works out freshness and sends alerts.
//!
//! A backup counts only once verified. Retention looks at one schedule's backups at a time
//! and never removes its newest verified one.

mod clock;
mod restore;
mod schedule;
mod take;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wharf_backup::{Location, Repository};
use wharf_store::Store;

pub use clock::Clock;
pub(crate) use schedule::spawn_scheduler;

use crate::databases::Databases;
use crate::paths::DataDir;
use crate::reconciler::Reconciler;

/// Where backups go and whom to tell when they fail.
#[derive(Clone, Default)]
pub struct BackupSettings {
    /// The repository: a folder or `s3:http(s)://HOST/BUCKET[/PREFIX]` (keys from
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`); default `<data>/repository`.
    pub repository: Option<String>,
    /// A second repository every verified backup is copied to (off-site).
    pub copy: Option<String>,
    /// Alerts: a webhook URL.
    pub alert_webhook: Option<String>,
    /// Alerts by email: addresses, the SMTP server (`smtp://HOST:PORT`) and the sender.
    pub alert_email: Vec<String>,
    pub smtp: Option<String>,
    pub smtp_from: Option<String>,
    pub smtp_user: Option<String>,
    pub smtp_password: Option<String>,
    /// The clock schedules run by.
    pub clock: Clock,
}

// By hand: the SMTP password and the webhook (its path is often the secret) never show.
impl std::fmt::Debug for BackupSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<hidden>");
        f.debug_struct("BackupSettings")
            .field("repository", &self.repository)
            .field("copy", &self.copy)
            .field("alert_webhook", &hidden(&self.alert_webhook))
            .field("alert_email", &self.alert_email)
            .field("smtp", &self.smtp)
            .field("smtp_from", &self.smtp_from)
            .field("smtp_user", &self.smtp_user)
            .field("smtp_password", &hidden(&self.smtp_password))
            .field("clock", &self.clock)
            .finish()
    }
}

/// The backups of this server.
pub(crate) struct Backups {
    store: Arc<Store>,
    data: DataDir,
    databases: Arc<Databases>,
    reconciler: Arc<Reconciler>,
    location: Location,
    copy: Option<Location>,
    password: String,
    /// Opened on first use (an S3 store may not answer at start), again after an error.
    repo: Mutex<Option<Arc<Repository>>>,
    copy_repo: Mutex<Option<Arc<Repository>>>,
    notifier: wharf_notify::Notifier,
    pub(crate) clock: Clock,
    /// One backup or restore at a time: they share the repository and the scratch servers.
    work: tokio::sync::Mutex<()>,
    /// Each schedule's level at the last look, for alerts on changes.
    levels: Mutex<HashMap<String, wharf_backup::freshness::Level>>,
    metrics: schedule::Metrics,
}

/// A backup's target: an app's volume or a database's contents.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    App(String),
    Database(wharf_store::Database),
}

impl Target {
    pub(crate) fn name(&self) -> &str {
        match self {
            Target::App(name) => name,
            Target::Database(db) => &db.name,
        }
    }
}

impl Backups {
    pub(crate) fn new(
        settings: &BackupSettings,
        store: Arc<Store>,
        data: DataDir,
        databases: Arc<Databases>,
        reconciler: Arc<Reconciler>,
    ) -> Result<Backups, String> {
        let location = match &settings.repository {
            Some(s) => Location::parse(s).map_err(|e| format!("--backup-repo: {e}"))?,
            None => Location::Local(data.repository()),
        };
        let copy = settings
            .copy
            .as_deref()
            .map(Location::parse)
            .transpose()
            .map_err(|e| format!("--backup-copy: {e}"))?;
        if copy.as_ref() == Some(&location) {
            return Err(format!(
                "--backup-copy is the repository itself ({location}): a copy there would be \
                 reported as off-site while it is not; give another location"
            ));
        }
        let password = password(&data.repository_password())?;
        let notifier = wharf_notify::Notifier::new(wharf_notify::Settings {
            webhook: settings.alert_webhook.clone(),
            email: (!settings.alert_email.is_empty()).then(|| wharf_notify::EmailSettings {
                smtp: settings
                    .smtp
                    .clone()
                    .unwrap_or_else(|| "smtp://127.0.0.1:25".into()),
                from: settings
                    .smtp_from
                    .clone()
                    .unwrap_or_else(|| "wharf@localhost".into()),
                to: settings.alert_email.clone(),
                username: settings.smtp_user.clone(),
                password: settings.smtp_password.clone(),
            }),
        })
        .map_err(|e| format!("alerts: {e}"))?;
        Ok(Backups {
            store,
            data,
            databases,
            reconciler,
            location,
            copy,
            password,
            repo: Mutex::new(None),
            copy_repo: Mutex::new(None),
            notifier,
            clock: settings.clock.clone(),
            work: tokio::sync::Mutex::new(()),
            levels: Mutex::new(HashMap::new()),
            metrics: schedule::Metrics::default(),
        })
    }

    /// Where the repository is, and the password file that opens it.
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    pub(crate) fn copy_location(&self) -> Option<&Location> {
        self.copy.as_ref()
    }

    pub(crate) fn password_file(&self) -> PathBuf {
        self.data.repository_password()
    }

    /// An app or a database by name.
    pub(crate) fn target(&self, name: &str) -> Result<Target, String> {
        if let Ok(db) = self.store.database(name) {
            return Ok(Target::Database(db));
        }
        match self.store.app(name) {
            // Their data is not in this machine's `volumes/` folder: a backup of it would be
            // an empty one marked verified.
            Ok(app) if app.node.is_some() => Err(format!(
                "{name} runs on node {}: its volume is on that machine, which backups do not \
                 reach yet",
                app.node.as_deref().unwrap_or("")
            )),
            Ok(app) if app.runtime == wharf_store::RuntimeKind::Swarm => Err(format!(
                "{name} runs on the Swarm: its volume is on the Swarm's nodes, which backups \
                 do not reach yet"
            )),
            Ok(_) => Ok(Target::App(name.to_string())),
            Err(_) => Err(format!("no app or database is named \"{name}\"")),
        }
    }

    /// The repository, opened (or made) now if it is not yet. Blocking.
    fn repo(&self) -> Result<Arc<Repository>, String> {
        open(&self.repo, &self.location, &self.password)
    }

    fn copy_repo(&self) -> Result<Option<Arc<Repository>>, String> {
        match &self.copy {
            None => Ok(None),
            Some(loc) => open(&self.copy_repo, loc, &self.password).map(Some),
        }
    }

    /// Forgets an opened repository after an error, so the next use opens it again.
    fn reset(&self) {
        *self.repo.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.copy_repo.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn metrics(&self) -> &schedule::Metrics {
        &self.metrics
    }

    /// Waits for the backup or restore in progress, and keeps others from starting.
    pub(crate) async fn quiesce(&self) {
        std::mem::forget(self.work.lock().await);
    }

    /// Where dumps are written before they go into the repository, and read back for a test
    /// restore: wharf's own private folder (`run/`, 0700), never one a database's user could
    /// plant a link in. Emptied at start: what a killed server left there is plaintext.
    pub(crate) fn spool(&self) -> PathBuf {
        self.data.run().join("backups")
    }
}

fn open(
    slot: &Mutex<Option<Arc<Repository>>>,
    location: &Location,
    password: &str,
) -> Result<Arc<Repository>, String> {
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(repo) = slot.as_ref() {
        return Ok(repo.clone());
    }
    let repo = Arc::new(Repository::open_or_init(location, password).map_err(|e| e.to_string())?);
    *slot = Some(repo.clone());
    Ok(repo)
}

/// The repository's password: made once (random), kept 0600 beside the database, the one
/// thing besides the repository that `restic` needs to read it.
fn password(path: &std::path::Path) -> Result<String, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let pw = hex::encode(rand::random::<[u8; 32]>());
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pw.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(pw)
}
