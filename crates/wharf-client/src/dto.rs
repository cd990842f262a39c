//! The API's JSON shapes: the only place that knows the wire format (the server in
//! `wharf-control` and every client use these types). Requests refuse unknown
//! fields; responses never carry env values or tokens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The largest archive a deploy may upload (the server refuses more, the CLI says so first).
pub const MAX_ARCHIVE_BYTES: usize = 512 << 20;

/// `POST /api/v1/apps`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub name: String,
    /// `"process"` (default) or `"static"`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub settings: Settings,
    /// Extra host names besides `<name>.<base-domain>`.
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Settable fields: `settings` of a create, and the whole body of `PATCH /api/v1/apps/{app}`;
/// absent = unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Shell command of a process app; it must listen on `$PORT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Folder the command runs in (default `<data>/apps/<app>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Folder a static app serves (default `<data>/apps/<app>/public`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// e.g. `"256MB"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Cores, e.g. `0.5`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Largest request body, e.g. `"10MB"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body: Option<String>,
    /// Path answering 2xx when the app is healthy, e.g. `"/up"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    /// `"enabled"`, `"not-served"` or `"disabled"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability: Option<String>,
    /// Git repository deploys and webhooks fetch from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_url: Option<String>,
    /// Branch deployed by default and accepted from webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// How many releases to keep (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_releases: Option<u32>,
    /// `Strict-Transport-Security` max-age on HTTPS answers, e.g. `"365d"`; `"off"` sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<String>,
    /// Whether the app's processes and builds run in the sandbox (default true); false opts
    /// out, and `wharf status` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<bool>,
    /// What runs the app: `"process"` (default), `"docker"` or `"swarm"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The port the app listens on in its container (default 8000, told in `$PORT`); 0 puts
    /// the default back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Containers get a read-only root file system (and a writable `/tmp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Swarm placement constraints, e.g. `["node.labels.zone==a"]`; `[]` removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<String>>,
    /// Time between SIGTERM and SIGKILL when an instance stops, e.g. `"30s"` (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace: Option<String>,
    /// The node (a machine running `wharf agent`) it runs on; `""` brings it back to the
    /// server's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `POST /api/v1/apps/{app}/domains`: adds a host name, or changes the certificate source of
/// one the app has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    pub host: String,
    /// Certificate source: `acme`, `self-signed`, `manual` (with `cert_pem` and `key_pem`) or
    /// `none`; absent leaves it as it is (`none` for a new domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// PEM certificate chain, leaf first (`tls = "manual"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    /// PEM private key (`tls = "manual"`); kept 0600 in the data folder, never shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
}

/// `GET /api/v1/apps/{app}/traffic`: rates over the last half hour, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrafficView {
    pub interval_seconds: u64,
    pub points: Vec<TrafficPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrafficPoint {
    /// Unix seconds at the end of the interval.
    pub at: i64,
    pub requests_per_second: f64,
    /// Answers with a 5xx status, per second.
    pub errors_per_second: f64,
    /// Mean time to response headers; `None` without requests.
    pub mean_latency_ms: Option<f64>,
}

/// `GET /api/v1/certs`: one per domain with a certificate source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertView {
    pub host: String,
    pub app: Option<String>,
    /// `acme`, `self-signed` or `manual`.
    pub source: String,
    /// Set once a certificate is installed.
    pub issuer: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub last_attempt: Option<CertAttempt>,
    /// ACME only: when the next order is due (Unix seconds).
    pub next_renewal: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertAttempt {
    pub at: i64,
    pub ok: bool,
    pub message: String,
}

/// `POST /api/v1/apps/{app}/env`: set some variables, unset others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEnv {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

/// `POST /api/v1/apps/{app}/scale`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub replicas: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppView {
    pub name: String,
    pub kind: String,
    pub availability: String,
    /// Where the app answers, e.g. `http://blog.localhost:8080`.
    pub url: String,
    /// Every host name routed to the app (default first).
    pub hosts: Vec<String>,
    /// The custom ones (removable).
    pub domains: Vec<String>,
    /// Certificate source per custom domain served over HTTPS.
    #[serde(default)]
    pub tls: BTreeMap<String, String>,
    /// HSTS max-age in seconds, if sent.
    #[serde(default)]
    pub hsts_seconds: Option<u64>,
    /// Requests per second through the gateway over the last few seconds.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Names only; values are write-only.
    pub env: Vec<String>,
    pub run: Option<String>,
    pub workdir: String,
    pub root: Option<String>,
    pub replicas: u32,
    pub memory_bytes: Option<u64>,
    pub cpu: Option<f64>,
    pub max_body_bytes: Option<u64>,
    pub health_path: Option<String>,
    pub volume: String,
    /// Running / backoff / failed / stopped per instance.
    pub instances: Vec<InstanceView>,
    /// `running`, `starting`, `crashed`, `failed`, `stopped`, `not-served`, `static`.
    pub state: String,
    /// Why the app's last change failed (e.g. it exited before it became healthy, with its last
    /// output), until a change succeeds. The app is `failed` when this is set and nothing runs.
    #[serde(default)]
    pub failure: Option<String>,
    /// Set when memory/CPU limits are not enforced here, saying why.
    pub limits_note: Option<String>,
    /// The app's sandbox setting (false: it opted out).
    #[serde(default = "yes")]
    pub sandbox: bool,
    /// How the app's processes are sandboxed, e.g. "landlock ABI 7 (files, tcp bind,
    /// signals)", or "off (opted out)", "unavailable (...)".
    #[serde(default)]
    pub sandbox_status: Option<String>,
    /// The user id the app's instances and builds run as, when it has its own.
    #[serde(default)]
    pub uid: Option<u32>,
    /// What runs it: `process`, `docker` or `swarm`.
    #[serde(default = "process")]
    pub runtime: String,
    /// The port it listens on in its container (container runtimes).
    #[serde(default)]
    pub port: Option<u16>,
    /// Whether its containers have a read-only root.
    #[serde(default)]
    pub read_only: bool,
    /// Its Swarm placement constraints.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Seconds between SIGTERM and SIGKILL when an instance stops.
    #[serde(default)]
    pub stop_grace_seconds: Option<f64>,
    /// The node it runs on (`None`: the server's machine).
    #[serde(default)]
    pub node: Option<String>,
    /// Set when apps run as wharf's own user instead of their own, saying why.
    #[serde(default)]
    pub users_note: Option<String>,
    /// The live release, once something was deployed.
    #[serde(default)]
    pub release: Option<u32>,
    /// Where deploys without an explicit source (and webhooks) fetch from.
    #[serde(default)]
    pub git_url: Option<String>,
    #[serde(default)]
    pub git_ref: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceView {
    pub name: String,
    /// The port the gateway reaches it on (0 while unknown).
    pub port: u16,
    /// Where the gateway reaches it, e.g. `127.0.0.1:41234` or a container's address.
    #[serde(default)]
    pub addr: Option<String>,
    /// The container or Swarm task id.
    #[serde(default)]
    pub id: Option<String>,
    /// The Swarm node it runs on.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub release: Option<u32>,
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub uptime_seconds: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationView {
    pub id: i64,
    pub app: Option<String>,
    pub kind: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// What happened, for the user.
    pub message: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Who did it: a user's name, `hook` (a webhook) or `system` (the server's own work);
    /// empty for operations recorded before users existed.
    #[serde(default)]
    pub actor: String,
    pub actions: Vec<ActionView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionView {
    pub name: String,
    pub status: String,
    pub message: String,
    pub at: i64,
}

/// What a change returns: the app as it is now and the operation that changed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Changed {
    pub app: AppView,
    pub operation: OperationView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub uptime_seconds: u64,
    pub gateway: String,
    pub base_domain: String,
    pub data_dir: String,
    pub rss_bytes: Option<u64>,
    /// How many apps there are (also when `apps` is left out with `?apps=false`).
    #[serde(default)]
    pub app_count: u64,
    pub apps: Vec<AppView>,
}

/// A change that answers with a sentence only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub message: String,
}

/// Every error: a stable code and a sentence saying what to fix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// `POST /api/v1/apps/{app}/deploy` with a JSON body: deploy from git. Without `git`, the app's
/// saved repository is used; `ref` defaults to the saved branch, then `main`. (An archive is
/// deployed by sending a tar.gz body with `Content-Type: application/gzip` instead.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Deploy this image as it is (apps on a container runtime); no code, no build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// One line of a deploy's streamed answer (newline-delimited JSON): build output as it happens,
/// then the finished operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployEvent {
    Log(String),
    Done(OperationView),
}

/// `POST /api/v1/apps/{app}/run`: a one-off command in the app's release folder and env, as
/// the app's user and in its sandbox. Either `command` (an argument list, run as it is) or
/// `shell` (a command line for `/bin/sh -c`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Stopped after this long (default 600, at most 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Given to the command on its standard input (none: it reads end of file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// One line of a run's streamed answer (newline-delimited JSON): output as it comes (text; bytes
/// that are not UTF-8 are replaced), then exactly one `exit`, always last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunEvent {
    Stdout(String),
    Stderr(String),
    Exit(RunExit),
}

/// How a run ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunExit {
    /// The command's exit status, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it (a timeout or the output limit ends it with SIGKILL).
    pub signal: Option<i32>,
    /// In words, e.g. "exit status 3" or "stopped after 600 s (the run's timeout)".
    pub message: String,
    /// The operation that records the run.
    pub operation: i64,
}

impl RunExit {
    /// The status a shell would report: the code, or 128 + the signal.
    pub fn status(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseView {
    pub number: u32,
    /// `building`, `ready`, `failed` or `active`.
    pub status: String,
    pub source: String,
    pub commit: Option<String>,
    pub build: String,
    pub run: Option<String>,
    pub static_dir: Option<String>,
    /// The image it runs (container runtimes).
    #[serde(default)]
    pub image: Option<String>,
    pub backup: Option<String>,
    pub backup_sha256: Option<String>,
    pub message: String,
    pub created_at: i64,
}

/// `POST /api/v1/apps/{app}/rollback`: to `release`, or to the newest earlier one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u32>,
}

/// `POST /api/v1/apps/{app}/webhook`: a new secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookView {
    /// Where the git host sends push events.
    pub url: String,
    /// The secret wharf made, shown this once; absent when the caller chose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Pushes to other branches are ignored.
    pub branch: String,
}

fn yes() -> bool {
    true
}

fn process() -> String {
    "process".to_string()
}

/// `GET /api/v1/nodes`: the machines running `wharf agent`, and the Swarm's nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodesView {
    pub agents: Vec<AgentView>,
    /// `None` when there is no Swarm (see `swarm_note`).
    #[serde(default)]
    pub swarm: Option<Vec<NodeView>>,
    #[serde(default)]
    pub swarm_note: Option<String>,
    /// Where agents connect, when the link is on.
    #[serde(default)]
    pub link: Option<String>,
}

/// A machine joined (or invited to join) with `wharf nodes add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentView {
    pub name: String,
    /// `connected`, `unreachable` or `invited` (a token was made; the agent never joined).
    pub state: String,
    /// Seconds since the Unix epoch of the last answer on its link.
    pub last_contact: Option<u64>,
    pub version: Option<String>,
    /// Apps placed on it.
    pub apps: Vec<String>,
    /// The link's round trip, in milliseconds, as last measured.
    pub latency_ms: Option<f64>,
    /// Where its link connects from.
    pub addr: Option<String>,
}

/// `POST /api/v1/nodes`: invite a machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    pub name: String,
    /// How long the token works, e.g. `"10m"` (default `"1h"`, at most `"7d"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// The answer to `POST /api/v1/nodes`: the one command to run on the new machine. The token
/// works once, until `expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInvite {
    pub name: String,
    pub url: String,
    pub token: String,
    pub expires_at: u64,
    pub command: String,
}

/// `GET /api/v1/tunnels`, and `POST` to add one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSpec {
    pub name: String,
    /// `NODE:[ADDR:]PORT` (the address defaults to 127.0.0.1); `server` is the server's machine.
    pub listen: String,
    /// `NODE:ADDR:PORT`.
    pub to: String,
    /// In answers: set when the listening end is not on loopback (other machines can connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `GET /api/v1/nodes` (Swarm part): a Swarm node and wharf's tasks on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub id: String,
    pub hostname: String,
    pub addr: String,
    /// `ready`, `down`, …
    pub state: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    pub manager: bool,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    pub app: String,
    pub id: String,
    pub state: String,
    /// Where the gateway reaches it (node address and published port).
    pub addr: Option<String>,
}

/// `POST /api/v1/databases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDatabase {
    pub name: String,
    /// `postgres`, `mysql` (MariaDB) or `redis`.
    pub engine: String,
}

/// A managed database. Its password is never part of it (see `GET …/url`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseView {
    pub name: String,
    pub engine: String,
    /// `running`, `backoff`, `failed`, `stopped`.
    pub state: String,
    pub port: u16,
    pub user: String,
    /// The connection URL with the password shown as `****`.
    pub url: String,
    /// The variable `db link` sets in an app (`DATABASE_URL` or `REDIS_URL`).
    pub url_var: String,
    pub created_at: i64,
}

/// `GET /api/v1/databases/{db}/url`: the one answer that carries the database's password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseUrl {
    pub url: String,
    pub password: String,
}

/// `POST /api/v1/databases/{db}/links`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDatabase {
    pub app: String,
}

/// A backup as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupView {
    pub id: i64,
    pub target: String,
    pub schedule: Option<String>,
    /// `scheduled`, `manual` or `pre-restore`.
    pub kind: String,
    /// `running`, `verified`, `failed` or `removed`. Only `verified` is a backup to count on.
    pub state: String,
    pub snapshot: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub total_bytes: Option<u64>,
    pub added_bytes: Option<u64>,
    pub error: Option<String>,
    /// Where copies are (`copy:SNAPSHOT` in the second repository).
    pub copies: Vec<String>,
    /// What verification found.
    pub note: String,
}

/// `POST /api/v1/backups`: one now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBackup {
    /// An app or a database.
    pub target: String,
}

/// A schedule (`GET`/`POST /api/v1/backups/schedules`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Default: the target's name.
    #[serde(default)]
    pub name: Option<String>,
    pub target: String,
    /// A retention template: `production` (hourly=36,daily=30,monthly=3) or
    /// `hourly=N,daily=N,weekly=N,monthly=N,yearly=N`. Default `production`.
    #[serde(default)]
    pub template: Option<String>,
    /// A cron expression (UTC). Default: by the template's shortest period.
    #[serde(default)]
    pub cron: Option<String>,
}

/// A schedule's freshness (`GET /api/v1/backups/check`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FreshnessView {
    pub schedule: String,
    pub target: String,
    /// `ok`, `warn` or `crit`.
    pub level: String,
    pub newest_verified: Option<i64>,
    pub age_seconds: Option<i64>,
    pub warn_seconds: i64,
    pub crit_seconds: i64,
    pub last_error: Option<String>,
    pub next_run: Option<i64>,
}

/// `GET /api/v1/backups/check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckView {
    /// The worst level: `ok`, `warn` or `crit` (exit 0, 1, 2 like a Nagios plugin).
    pub level: String,
    pub schedules: Vec<FreshnessView>,
    /// Alerts that could not be sent, newest first.
    pub unsent_alerts: Vec<AlertView>,
}

/// An alert sent (or not).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertView {
    pub at: i64,
    /// `failure`, `stale` or `recovery`.
    pub kind: String,
    pub target: String,
    pub subject: String,
    /// How each channel took it: `[{channel, ok, error}]`; empty when none is configured.
    pub deliveries: serde_json::Value,
}

/// `GET /api/v1/backups/repository`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryView {
    /// As restic's `-r` takes it.
    pub location: String,
    pub password_file: String,
    /// A command that lists the snapshots with restic alone.
    pub restic: String,
    pub copy: Option<String>,
}

/// `POST /api/v1/backups/restore`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub target: String,
    /// A snapshot id (or its first 8 characters), as `backups list` shows.
    pub snapshot: String,
    /// Restore into another app (existing) or a new database.
    #[serde(default)]
    pub to: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreView {
    pub target: String,
    pub snapshot: String,
    /// The backup of what was there, taken first.
    pub pre_restore: Option<i64>,
    /// Its snapshot, which `wharf backups restore` takes to put it back.
    #[serde(default)]
    pub pre_restore_snapshot: Option<String>,
    pub summary: String,
}

/// `POST /api/v1/login`: a user's name and password, for a session token. (No `Debug`, here
/// and on the other types holding a password: nothing may print one by mistake.)
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

/// A token just made (by a login or `POST /api/v1/tokens`): the only answer that carries a
/// token's value; it is never shown again.
#[derive(Clone, Serialize, Deserialize)]
pub struct NewToken {
    pub name: String,
    pub user: String,
    pub token: String,
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("name", &self.name)
            .field("user", &self.user)
            .field("token", &"<hidden>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token as `GET /api/v1/tokens` lists it: never its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenView {
    pub name: String,
    pub user: String,
    /// `api` (made by hand) or `session` (a password login, ending by itself).
    pub kind: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// `POST /api/v1/tokens`
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// Another user's (admins only); the caller's own by default.
    #[serde(default)]
    pub user: Option<String>,
    /// Days until it stops working; never by default (and never later than the token asking,
    /// when that one expires).
    #[serde(default)]
    pub expires_days: Option<u32>,
    /// The caller's own password: needed when the request comes with a password login's
    /// session token, so a stolen session cannot mint a lasting token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A role, everywhere (`app` absent) or on one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleGrant {
    /// `admin` (everywhere only), `deployer` or `viewer`.
    pub role: String,
    #[serde(default)]
    pub app: Option<String>,
}

/// `GET /api/v1/users`: a user and their roles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    /// Whether the user can log in with a password (otherwise with tokens only).
    pub has_password: bool,
    pub created_at: i64,
    pub roles: Vec<RoleGrant>,
}

/// `POST /api/v1/users`
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    /// None: the user works with tokens only.
    #[serde(default)]
    pub password: Option<String>,
    /// A first role, everywhere or on `app`.
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub app: Option<String>,
}

/// `PUT /api/v1/users/{user}/password`; `null` removes it (tokens only).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    pub password: Option<String>,
    /// The current password: needed to change one's own with a password login's session token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}
