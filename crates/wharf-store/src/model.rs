//! The records the store keeps. Values are validated by their constructors or by the caller
//! (the API) before they reach a query.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKind {
    /// Served by the gateway from a folder; no process.
    Static,
    /// A supervised process listening on `$PORT`.
    Process,
}

/// Director's three states: served and running, running but not routed, or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Enabled,
    NotServed,
    Disabled,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(format!(
                        "`{s}` is not one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(AppKind { Static = "static", Process = "process" });
text_enum!(Availability { Enabled = "enabled", NotServed = "not-served", Disabled = "disabled" });
text_enum!(OpStatus { Running = "running", Succeeded = "succeeded", Failed = "failed" });
text_enum!(ReleaseStatus { Building = "building", Ready = "ready", Failed = "failed", Active = "active" });

/// An app as stored: its desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub kind: AppKind,
    pub availability: Availability,
    pub run: Option<String>,
    pub workdir: Option<String>,
    pub root: Option<String>,
    pub replicas: u32,
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u32>,
    pub max_body: Option<u64>,
    pub health_path: Option<String>,
    /// Custom host names, sorted.
    pub domains: Vec<String>,
    /// Names of env vars, sorted. Values are only read by [`crate::Store::env`].
    pub env_names: Vec<String>,
    /// The active release, once something was deployed.
    pub release: Option<u32>,
    pub keep_releases: u32,
    /// Where `git` deploys and webhooks fetch from.
    pub git_url: Option<String>,
    pub git_ref: Option<String>,
    /// Whether a webhook secret is set (the secret itself is read by [`crate::Store::webhook_secret`]).
    pub has_webhook: bool,
    /// `Strict-Transport-Security` max-age sent on HTTPS answers.
    pub hsts_seconds: Option<u64>,
    /// Domains served over HTTPS and where their certificate comes from.
    pub tls: BTreeMap<String, Tls>,
    /// Whether the app's processes and builds run in the sandbox (off only when asked).
    pub sandbox: bool,
    /// What runs its instances.
    pub runtime: RuntimeKind,
    /// The port it listens on in its container (`None`: the default, 8000).
    pub port: Option<u16>,
    /// Its containers get a read-only root (and a writable `/tmp`).
    pub read_only: bool,
    /// Swarm placement constraints, e.g. `node.labels.zone==a`.
    pub constraints: Vec<String>,
    /// SIGTERM → this long → SIGKILL (`None`: 10 s).
    pub stop_grace_ms: Option<u64>,
    /// The node (agent machine) it runs on; `None`: this machine.
    pub node: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The settable fields of an app; `None` leaves a field as it is on update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppSettings {
    pub availability: Option<Availability>,
    pub run: Option<Option<String>>,
    pub workdir: Option<Option<String>>,
    pub root: Option<Option<String>>,
    pub replicas: Option<u32>,
    pub memory_bytes: Option<Option<u64>>,
    pub cpu_millis: Option<Option<u32>>,
    pub max_body: Option<Option<u64>>,
    pub health_path: Option<Option<String>>,
    pub keep_releases: Option<u32>,
    pub git_url: Option<Option<String>>,
    pub git_ref: Option<Option<String>>,
    pub hsts_seconds: Option<Option<u64>>,
    pub sandbox: Option<bool>,
    pub runtime: Option<RuntimeKind>,
    pub port: Option<Option<u16>>,
    pub read_only: Option<bool>,
    pub constraints: Option<Vec<String>>,
    pub stop_grace_ms: Option<Option<u64>>,
    pub node: Option<Option<String>>,
}

/// What runs an app's instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuntimeKind {
    /// Supervised processes on this machine.
    #[default]
    Process,
    /// Containers in the Docker engine.
    Docker,
    /// A Swarm service across the Swarm's nodes.
    Swarm,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Swarm => "swarm",
        }
    }

    /// Whether it runs images (built from a Dockerfile or given) rather than code in a folder.
    pub fn runs_images(self) -> bool {
        self != RuntimeKind::Process
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(RuntimeKind::Process),
            "docker" => Ok(RuntimeKind::Docker),
            "swarm" => Ok(RuntimeKind::Swarm),
            other => Err(format!(
                "unknown runtime `{other}`: use process, docker or swarm"
            )),
        }
    }
}

/// Where a domain's certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tls {
    None,
    Acme,
    SelfSigned,
    /// PEM files uploaded with the domain, kept in the data folder.
    Manual,
}

impl Tls {
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::None => "none",
            Tls::Acme => "acme",
            Tls::SelfSigned => "self-signed",
            Tls::Manual => "manual",
        }
    }
}

impl std::str::FromStr for Tls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => Tls::None,
            "acme" => Tls::Acme,
            "self-signed" => Tls::SelfSigned,
            "manual" => Tls::Manual,
            other => {
                return Err(format!(
                    "`{other}` is not a certificate source; use acme, self-signed, manual or none"
                ));
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseStatus {
    Building,
    Ready,
    Failed,
    Active,
}

/// A release switch a stopped server left unfinished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupted {
    pub app: String,
    /// The app's release pointer: the release that was going live, or `previous` when the
    /// server stopped before it was activated.
    pub going_live: Option<u32>,
    /// The release that served before the switch.
    pub previous: Option<u32>,
    /// The config (JSON snapshot) in force before a rollback began changing it; `None` for a
    /// deploy.
    pub config: Option<String>,
}

/// One deploy's result: the code (in `<data>/apps/<app>/releases/<number>`), how it was built and
/// run, and the config it ran with (for rollback).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub app: String,
    pub number: u32,
    pub status: ReleaseStatus,
    /// Where the code came from, e.g. `git file:///srv/blog.git main` or `archive`.
    pub source: String,
    pub commit: Option<String>,
    /// What the build detection found: `manifest`, `procfile`, `node`, `python`, `static`.
    pub build: String,
    pub run: Option<String>,
    /// For static releases, the folder (relative to the release) that is served.
    pub static_dir: Option<String>,
    pub health_path: Option<String>,
    /// JSON snapshot of the app's config when the release went live.
    pub config: String,
    pub backup: Option<String>,
    pub backup_sha256: Option<String>,
    pub message: String,
    pub created_at: i64,
    /// JSON object of env defaults from the release's manifest; the app's own env wins.
    pub env_defaults: String,
    /// The image it runs (container runtimes): built from its Dockerfile, or given with
    /// `wharf deploy --image`. `None`: it runs its folder's code.
    pub image: Option<String>,
}

/// What a finished build records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildResult {
    pub commit: Option<String>,
    pub build: String,
    pub run: Option<String>,
    pub static_dir: Option<String>,
    pub health_path: Option<String>,
    pub message: String,
    /// JSON object of env defaults (empty means none).
    pub env_defaults: String,
    pub image: Option<String>,
}

/// App names are DNS labels: they become host names (`<app>.<base-domain>`) and folder names.
pub fn validate_app_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid app name: use 1-63 lower-case letters, digits and single dashes, not at either end (e.g. \"my-blog\")"
        ))
    }
}

/// Env var names as shells accept them.
pub fn validate_env_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid variable name: use letters, digits and '_', not starting with a digit"
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpStatus {
    Running,
    Succeeded,
    Failed,
}

/// Which apps a listing keeps; every field left `None` keeps all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppFilter {
    /// Names starting with this (read through the name index).
    pub prefix: Option<String>,
    /// Names holding this anywhere.
    pub contains: Option<String>,
    pub kind: Option<AppKind>,
    /// Only the apps this user holds a role on (a user with roles on single apps only).
    pub visible_to: Option<String>,
}

/// Where a page of apps starts, in name order: keyset pagination, so a page costs the same
/// wherever it is and apps created or deleted meanwhile neither repeat nor shift others out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameCursor<'a> {
    /// From the first name on.
    Start,
    /// Names after this one, ascending.
    After(&'a str),
    /// Names before this one, descending (nearest first).
    Before(&'a str),
}

/// Which operations a listing keeps; every field left `None` keeps all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpFilter {
    pub app: Option<String>,
    pub kind: Option<String>,
    pub status: Option<OpStatus>,
}

/// One operation (create, deploy, restart…) with its ordered actions and a user-facing message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub id: i64,
    pub app: Option<String>,
    pub kind: String,
    pub status: OpStatus,
    pub message: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Who did it: a user's name, `hook` (a webhook), `system` (the server's own work), or
    /// empty for operations recorded before users existed.
    pub actor: String,
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    pub status: OpStatus,
    pub message: String,
    pub at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for ok in ["a", "blog", "my-blog", "a1-b2", &"x".repeat(63)] {
            assert!(validate_app_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "A",
            "a_b",
            "a b",
            "a.b",
            "a`b",
            &"x".repeat(64),
        ] {
            assert!(validate_app_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_X", "DATABASE_URL", "a1"] {
            assert!(validate_env_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "ä"] {
            assert!(validate_env_name(bad).is_err(), "{bad}");
        }
    }
}
