//! Build detection: what to build and how to run a release, from (in this order) a `wharf.toml`
//! manifest, a `Procfile`, `package.json`, Python project files, or plain static files.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The optional `wharf.toml` at the root of an app's code.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// Shell command run in the release folder before it goes live.
    build: Option<String>,
    /// Shell command that serves the app on `$PORT`.
    run: Option<String>,
    /// Folder (relative) served as a static site; no process.
    #[serde(rename = "static")]
    static_dir: Option<String>,
    /// Path answering 2xx when the app is healthy.
    health: Option<String>,
    /// How long the build may take, e.g. "10m".
    build_timeout: Option<String>,
    /// Paths (relative) kept out of pre-deploy backups, besides `node_modules` and `.git`.
    #[serde(default)]
    exclude: Vec<String>,
    /// Env defaults; a value set with `wharf env set` wins over these.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// The Dockerfile (relative) that apps on a container runtime are built from; default
    /// `Dockerfile`. Process apps ignore it.
    dockerfile: Option<String>,
}

/// How a container app's release is built: by the engine, from a Dockerfile.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ImagePlan {
    /// Relative to the code's root.
    pub(crate) dockerfile: String,
    /// Replaces the image's own command when set.
    pub(crate) run: Option<String>,
    pub(crate) health: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) env: BTreeMap<String, String>,
}

/// The image plan of code deployed to a container runtime: the Dockerfile (`wharf.toml`'s
/// `dockerfile`, else `Dockerfile` at the root) and what `wharf.toml` adds (run, health, env,
/// build timeout).
pub(crate) fn image_plan(dir: &Path) -> Result<ImagePlan, String> {
    let manifest_path = dir.join("wharf.toml");
    let m: Manifest = if manifest_path.is_file() {
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| format!("cannot read wharf.toml: {e}"))?;
        toml::from_str(&text).map_err(|e| format!("wharf.toml: {}", e.to_string().trim_end()))?
    } else {
        Manifest::default()
    };
    let dockerfile = m.dockerfile.unwrap_or_else(|| "Dockerfile".to_string());
    check_relative("dockerfile", &dockerfile)?;
    if !dir.join(&dockerfile).is_file() {
        return Err(format!(
            "no `{dockerfile}` in the code: an app on a container runtime is built from a Dockerfile (add one at the root, or name it with `dockerfile = \"...\"` in wharf.toml), or deployed from an image with `wharf deploy APP --image REF`"
        ));
    }
    if let Some(h) = &m.health
        && !h.starts_with('/')
    {
        return Err("wharf.toml: `health` must be a path such as \"/up\"".into());
    }
    for name in m.env.keys() {
        wharf_store::validate_env_name(name)
            .map_err(|e| format!("wharf.toml: [env] `{name}`: {e}"))?;
    }
    let timeout = match &m.build_timeout {
        Some(t) => wharf_gateway::config::parse_duration(t)
            .map_err(|e| format!("wharf.toml: `build_timeout`: {e}"))?,
        None => DEFAULT_TIMEOUT,
    };
    Ok(ImagePlan {
        dockerfile,
        run: m.run,
        health: m.health,
        timeout,
        env: m.env,
    })
}

/// What the detection decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// `manifest`, `procfile`, `node`, `python` or `static`.
    pub(crate) kind: &'static str,
    pub(crate) build: Option<String>,
    pub(crate) run: Option<String>,
    pub(crate) static_dir: Option<String>,
    pub(crate) health: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) exclude: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) fn detect(dir: &Path) -> Result<Plan, String> {
    let procfile_run = procfile(dir)?;
    let manifest_path = dir.join("wharf.toml");
    if manifest_path.is_file() {
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| format!("cannot read wharf.toml: {e}"))?;
        let m: Manifest = toml::from_str(&text)
            .map_err(|e| format!("wharf.toml: {}", e.to_string().trim_end()))?;
        let timeout = match &m.build_timeout {
            Some(t) => wharf_gateway::config::parse_duration(t)
                .map_err(|e| format!("wharf.toml: `build_timeout`: {e}"))?,
            None => DEFAULT_TIMEOUT,
        };
        if let Some(h) = &m.health
            && !h.starts_with('/')
        {
            return Err("wharf.toml: `health` must be a path such as \"/up\"".into());
        }
        if let Some(s) = &m.static_dir {
            check_relative("static", s)?;
        }
        for e in &m.exclude {
            check_relative("exclude", e)?;
        }
        for name in m.env.keys() {
            wharf_store::validate_env_name(name)
                .map_err(|e| format!("wharf.toml: [env] `{name}`: {e}"))?;
        }
        let run = m.run.or(procfile_run);
        let static_dir = m.static_dir.or_else(|| {
            if run.is_none() {
                static_root(dir)
            } else {
                None
            }
        });
        if run.is_none() && static_dir.is_none() && m.build.is_none() {
            return Err(
                "wharf.toml sets neither `run` nor `static`: say how to serve the app".into(),
            );
        }
        return Ok(Plan {
            kind: "manifest",
            build: m.build,
            run,
            static_dir,
            health: m.health,
            timeout,
            exclude: m.exclude,
            env: m.env,
        });
    }
    if let Some(run) = procfile_run {
        let build = node_build(dir)?.or_else(|| python_build(dir));
        return Ok(Plan {
            kind: "procfile",
            build,
            run: Some(run),
            timeout: DEFAULT_TIMEOUT,
            ..Plan::default()
        });
    }
    if dir.join("package.json").is_file() {
        let text = std::fs::read_to_string(dir.join("package.json"))
            .map_err(|e| format!("cannot read package.json: {e}"))?;
        let pkg: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("package.json: {e}"))?;
        let has = |s: &str| pkg["scripts"][s].is_string();
        let build = node_build(dir)?;
        let run = has("start").then(|| "npm start".to_string());
        let static_dir = if run.is_none() {
            Some(static_after_build(dir))
        } else {
            None
        };
        return Ok(Plan {
            kind: "node",
            build,
            run,
            static_dir,
            timeout: DEFAULT_TIMEOUT,
            ..Plan::default()
        });
    }
    if let Some(build) = python_build(dir) {
        return Err(format!(
            "a Python app needs a run command: add a Procfile with a `web:` line or a wharf.toml `run` (its build would be: {build})"
        ));
    }
    if let Some(static_dir) = static_root(dir) {
        return Ok(Plan {
            kind: "static",
            static_dir: Some(static_dir),
            timeout: DEFAULT_TIMEOUT,
            ..Plan::default()
        });
    }
    Err("cannot tell how to build or run this code: add a wharf.toml (run/static), a Procfile `web:` line, a package.json, or an index.html".into())
}

fn check_relative(key: &str, p: &str) -> Result<(), String> {
    if p.starts_with('/') || p.split('/').any(|s| s == "..") {
        return Err(format!(
            "wharf.toml: `{key}` must be a path inside the app's code, got `{p}`"
        ));
    }
    Ok(())
}

fn procfile(dir: &Path) -> Result<Option<String>, String> {
    let Ok(text) = std::fs::read_to_string(dir.join("Procfile")) else {
        return Ok(None);
    };
    for line in text.lines() {
        if let Some(cmd) = line.trim().strip_prefix("web:") {
            let cmd = cmd.trim();
            if cmd.is_empty() {
                return Err("Procfile: the `web:` line has no command".into());
            }
            return Ok(Some(cmd.to_string()));
        }
    }
    Ok(None)
}

fn node_build(dir: &Path) -> Result<Option<String>, String> {
    if !dir.join("package.json").is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(dir.join("package.json"))
        .map_err(|e| format!("cannot read package.json: {e}"))?;
    let pkg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("package.json: {e}"))?;
    let install = if dir.join("package-lock.json").is_file() {
        "npm ci"
    } else {
        "npm install"
    };
    Ok(Some(if pkg["scripts"]["build"].is_string() {
        format!("{install} && npm run build")
    } else {
        install.to_string()
    }))
}

/// Python dependencies go through a wheelhouse in the app's build cache (`$HOME/wheels`): pip's
/// own download cache keeps a file only when the index sends cache headers, which mirrors and
/// proxies often strip, while a wheel found in `--find-links` is taken over the index's copy of
/// the same version. So a second build downloads nothing it already has, and with
/// `PIP_NO_INDEX=1` in the app's env it needs nothing else. The install keeps the index: a
/// local or editable project (`-e .` in `requirements.txt`, or the project itself) is built
/// there, never taken from a wheel, and needs its build backend.
fn python_build(dir: &Path) -> Option<String> {
    let what = if dir.join("requirements.txt").is_file() {
        "-r requirements.txt"
    } else if dir.join("pyproject.toml").is_file() {
        "."
    } else {
        return None;
    };
    const WHEELS: &str = r#"--find-links "$HOME/wheels""#;
    Some(format!(
        r#"python3 -m venv .venv && .venv/bin/pip wheel --wheel-dir "$HOME/wheels" {WHEELS} {what} && .venv/bin/pip install {WHEELS} {what}"#
    ))
}

/// The folder holding `index.html`: the root, or a usual output folder.
fn static_root(dir: &Path) -> Option<String> {
    [".", "public", "dist", "_site", "build"]
        .into_iter()
        .find(|d| dir.join(d).join("index.html").is_file())
        .map(str::to_string)
}

/// A node build without `start` is a static site generator; its output folder exists only after
/// the build, so guess the usual one and check after building.
fn static_after_build(dir: &Path) -> String {
    static_root(dir).unwrap_or_else(|| "dist".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wharf-detect-{}-{}",
            std::process::id(),
            files.iter().map(|f| f.0.len()).sum::<usize>() * 1000 + files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, body) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn manifest_env_defaults() {
        // Its own folder: `project` names folders by shape, shared with the table test.
        let dir = std::env::temp_dir().join(format!("wharf-detect-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("wharf.toml"),
            "run = \"./serve\"\n[env]\nNODE_ENV = \"production\"\n",
        )
        .unwrap();
        let plan = detect(&dir).unwrap();
        assert_eq!(
            plan.env.get("NODE_ENV").map(String::as_str),
            Some("production")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    type Files = Vec<(&'static str, &'static str)>;
    type Want = Result<(&'static str, Option<&'static str>, Option<&'static str>), &'static str>;

    #[test]
    fn detection_order_and_results() {
        let cases: Vec<(Files, Want)> = vec![
            (
                vec![
                    ("wharf.toml", "run = \"./serve\"\nbuild = \"make\"\n"),
                    ("Procfile", "web: other"),
                ],
                Ok(("manifest", Some("./serve"), None)),
            ),
            (
                vec![("wharf.toml", "static = \"site\"\n")],
                Ok(("manifest", None, Some("site"))),
            ),
            (
                vec![("Procfile", "worker: x\nweb: python3 app.py\n")],
                Ok(("procfile", Some("python3 app.py"), None)),
            ),
            (
                vec![("package.json", "{\"scripts\":{\"start\":\"node s.js\"}}")],
                Ok(("node", Some("npm start"), None)),
            ),
            (vec![("index.html", "hi")], Ok(("static", None, Some(".")))),
            (
                vec![("public/index.html", "hi")],
                Ok(("static", None, Some("public"))),
            ),
            (
                vec![("requirements.txt", "flask")],
                Err("needs a run command"),
            ),
            (vec![("README.md", "x")], Err("cannot tell how")),
            (
                vec![("wharf.toml", "bogus = 1\n")],
                Err("unknown field `bogus`"),
            ),
            (
                vec![("wharf.toml", "static = \"../etc\"\n")],
                Err("inside the app's code"),
            ),
            (vec![("Procfile", "web:   \n")], Err("has no command")),
            (
                vec![("wharf.toml", "run = \"x\"\n[env]\n\"BAD NAME\" = \"1\"\n")],
                Err("[env] `BAD NAME`"),
            ),
        ];
        for (files, want) in cases {
            let dir = project(&files);
            let got = detect(&dir);
            match (got, want) {
                (Ok(p), Ok((kind, run, stat))) => {
                    assert_eq!(
                        (p.kind, p.run.as_deref(), p.static_dir.as_deref()),
                        (kind, run, stat),
                        "{files:?}"
                    )
                }
                (Err(e), Err(says)) => assert!(e.contains(says), "{files:?}: {e}"),
                (got, want) => panic!("{files:?}: got {got:?}, want {want:?}"),
            }
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
