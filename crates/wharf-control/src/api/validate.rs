//! Checks API input and turns it into store values. Every refusal says what to fix.

use wharf_client::dto::Settings;
use wharf_gateway::config::{HostPattern, parse_size};
use wharf_store::{AppKind, AppSettings, Availability};

use super::error::ApiError;

const MAX_REPLICAS: u32 = 64;

pub(crate) fn settings(s: &Settings, kind: AppKind) -> Result<AppSettings, ApiError> {
    let mut out = AppSettings::default();
    if let Some(run) = &s.run {
        if run.trim().is_empty() || run.contains('\0') || run.len() > 4096 {
            return Err(ApiError::invalid(
                "`run` must be a non-empty shell command (at most 4096 characters)",
            ));
        }
        if kind == AppKind::Static {
            return Err(ApiError::invalid(
                "a static app has no `run` command; it serves `root`",
            ));
        }
        out.run = Some(Some(run.clone()));
    }
    if let Some(dir) = &s.workdir {
        out.workdir = Some(Some(existing_dir("workdir", dir)?));
    }
    if let Some(dir) = &s.root {
        if kind == AppKind::Process {
            return Err(ApiError::invalid(
                "`root` is for static apps; a process app uses `workdir`",
            ));
        }
        out.root = Some(Some(existing_dir("root", dir)?));
    }
    if let Some(n) = s.replicas {
        if n > MAX_REPLICAS {
            return Err(ApiError::invalid(format!(
                "`replicas` must be between 0 and {MAX_REPLICAS}"
            )));
        }
        out.replicas = Some(n);
    }
    if let Some(m) = &s.memory {
        let bytes = size("memory", m)?;
        if bytes < 4 << 20 {
            return Err(ApiError::invalid("`memory` must be at least 4MB"));
        }
        out.memory_bytes = Some(Some(bytes));
    }
    if let Some(cpu) = s.cpu {
        if !(0.01..=1024.0).contains(&cpu) {
            return Err(ApiError::invalid(
                "`cpu` is in cores, between 0.01 and 1024 (e.g. 0.5)",
            ));
        }
        out.cpu_millis = Some(Some((cpu * 1000.0).round() as u32));
    }
    if let Some(h) = &s.hsts {
        out.hsts_seconds = Some(match h.as_str() {
            "off" | "" => None,
            h => Some(
                wharf_gateway::config::parse_duration(h)
                    .map_err(|e| ApiError::invalid(format!("`hsts`: {e}; or \"off\"")))?
                    .as_secs(),
            ),
        });
    }
    if let Some(b) = &s.max_body {
        let bytes = size("max_body", b)?;
        out.max_body = Some(Some(bytes));
    }
    if let Some(p) = &s.health_path {
        if !p.starts_with('/')
            || p.len() > 1024
            || p.contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(ApiError::invalid(
                "`health_path` must be a path such as \"/up\"",
            ));
        }
        out.health_path = Some(Some(p.clone()));
    }
    if let Some(url) = &s.git_url {
        let url = url.trim();
        // "" or "none" forgets the repository.
        out.git_url = Some(if url.is_empty() || url == "none" {
            None
        } else {
            let reference = s.git_ref.as_deref().unwrap_or("main");
            crate::deploy::check_git(url, reference).map_err(ApiError::invalid)?;
            Some(url.to_string())
        });
    }
    if let Some(r) = &s.git_ref {
        crate::deploy::check_git("x", r).map_err(ApiError::invalid)?;
        out.git_ref = Some(Some(r.clone()));
    }
    if let Some(k) = s.keep_releases {
        if !(1..=100).contains(&k) {
            return Err(ApiError::invalid(
                "`keep_releases` must be between 1 and 100",
            ));
        }
        out.keep_releases = Some(k);
    }
    out.sandbox = s.sandbox;
    if let Some(r) = &s.runtime {
        let r: wharf_store::RuntimeKind = r
            .parse()
            .map_err(|e| ApiError::invalid(format!("`runtime`: {e}")))?;
        if r.runs_images() && kind == AppKind::Static {
            return Err(ApiError::invalid(
                "a static app is served by the gateway itself; only process apps run on docker or swarm",
            ));
        }
        out.runtime = Some(r);
    }
    if let Some(p) = s.port {
        out.port = Some((p != 0).then_some(p));
    }
    out.read_only = s.read_only;
    if let Some(g) = &s.stop_grace {
        let d = wharf_gateway::config::parse_duration(g)
            .map_err(|e| ApiError::invalid(format!("`stop_grace`: {e}")))?;
        if d > std::time::Duration::from_secs(3600) {
            return Err(ApiError::invalid("`stop_grace` is at most 1h"));
        }
        out.stop_grace_ms = Some(Some(d.as_millis() as u64));
    }
    if let Some(cs) = &s.constraints {
        for c in cs {
            let ok = c.len() <= 256
                && (c.contains("==") || c.contains("!="))
                && !c.chars().any(char::is_control);
            if !ok {
                return Err(ApiError::invalid(format!(
                    "`constraints`: `{c}` is not a placement constraint: use e.g. node.labels.zone==a or node.role!=manager"
                )));
            }
        }
        out.constraints = Some(cs.clone());
    }
    if let Some(n) = &s.node {
        if n.is_empty() {
            out.node = Some(None);
        } else {
            if !crate::nodes::valid_name(n) {
                return Err(ApiError::invalid(format!(
                    "`node`: `{n}` is not a node name (lowercase letters, digits and -)"
                )));
            }
            if kind == AppKind::Static {
                return Err(ApiError::invalid(
                    "a static app is served by the gateway itself; only process and docker apps run on nodes",
                ));
            }
            out.node = Some(Some(n.clone()));
        }
    }
    if let Some(a) = &s.availability {
        let a: Availability = a
            .parse()
            .map_err(|e| ApiError::invalid(format!("`availability`: {e}")))?;
        out.availability = Some(a);
    }
    Ok(out)
}

fn existing_dir(key: &str, dir: &str) -> Result<String, ApiError> {
    let path = std::path::Path::new(dir);
    if !path.is_absolute() {
        return Err(ApiError::invalid(format!(
            "`{key}` must be an absolute path, got `{dir}`"
        )));
    }
    if !path.is_dir() {
        return Err(ApiError::invalid(format!(
            "`{key}`: the folder `{dir}` does not exist on the server"
        )));
    }
    Ok(dir.to_string())
}

/// A size the store can hold (SQLite integers are signed 64-bit).
fn size(key: &str, raw: &str) -> Result<u64, ApiError> {
    let bytes = parse_size(raw).map_err(|e| ApiError::invalid(format!("`{key}`: {e}")))?;
    if i64::try_from(bytes).is_err() {
        return Err(ApiError::invalid(format!(
            "`{key}`: `{raw}` is too large; write e.g. \"512MB\" or \"4GB\""
        )));
    }
    Ok(bytes)
}

/// A custom host name: a DNS name or `*.wildcard`, never `*` alone, never an app's default host.
pub(crate) fn domain(
    raw: &str,
    base_domain: &str,
    app_exists: impl Fn(&str) -> Result<bool, ApiError>,
) -> Result<String, ApiError> {
    let pattern = HostPattern::parse(raw).map_err(|e| ApiError::invalid(format!("host {e}")))?;
    if pattern == HostPattern::Any {
        return Err(ApiError::invalid(
            "`*` would take every host; name a host such as \"blog.example.com\"",
        ));
    }
    let host = pattern.to_string();
    if let Some(label) = host.strip_suffix(&format!(".{base_domain}"))
        && !label.contains('.')
        && app_exists(label)?
    {
        {
            return Err(ApiError {
                status: http::StatusCode::CONFLICT,
                code: "conflict",
                message: format!("`{host}` is the default host of app \"{label}\""),
            });
        }
    }
    Ok(host)
}

pub(crate) fn kind(raw: Option<&str>) -> Result<AppKind, ApiError> {
    match raw {
        None => Ok(AppKind::Process),
        Some(k) => k
            .parse()
            .map_err(|e| ApiError::invalid(format!("`kind`: {e}"))),
    }
}
