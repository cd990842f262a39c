//! Python and Node apps as people write them, with their dependencies from the package
//! registries (so these tests need the network, and `python3 -m venv` and `npm` on the machine:
//! they fail, never skip, naming the Debian package when a tool is missing). Each app deploys
//! with its natural Procfile / package.json and serves; its downloads land in the app's build
//! cache, which the second deploy builds from; the pre-deploy backup holds the code and the
//! volume, not what a build makes.

mod support;

use std::path::Path;
use std::process::Command as StdCommand;

use support::{Repo, ServerProc, TempDir, free_port, page, require_tool};

/// Fails with the package to install when `python3 -m venv` cannot make a virtualenv (Debian
/// ships `venv` without `ensurepip` unless python3-venv is installed).
fn require_venv() {
    require_tool("python3", "python3");
    let ok = StdCommand::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`python3 -m venv` is missing: install it with `apt-get install -y python3-venv`"
    );
}

/// The backup a deploy printed (`backup: <path>`).
fn backup_of(deploy_output: &str) -> String {
    deploy_output
        .lines()
        .find_map(|l| l.split_once("backup: ").map(|(_, p)| p.trim().to_string()))
        .unwrap_or_else(|| panic!("the deploy made no backup:\n{deploy_output}"))
}

/// The entries of a tar.gz, as `tar -tzf` lists them.
fn entries(archive: &str) -> Vec<String> {
    let out = StdCommand::new("tar")
        .args(["-tzf", archive])
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -tzf {archive}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The backup holds the code and what the app wrote, and nothing a build makes again.
fn assert_backup_is_code_and_data(archive: &str, code_file: &str) {
    let names = entries(archive);
    for must in [
        format!("release/{code_file}"),
        "volume/notes.txt".to_string(),
    ] {
        assert!(names.contains(&must), "{must} is missing from {names:?}");
    }
    let rebuilt: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.split('/')
                .any(|part| [".venv", "node_modules", ".npm", ".cache"].contains(&part))
        })
        .collect();
    assert!(
        rebuilt.is_empty(),
        "the backup holds what a build recreates: {rebuilt:?}"
    );
}

fn write_note(data: &Path, app: &str) {
    let volume = data.join("volumes").join(app);
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("notes.txt"), "written by the app").unwrap();
}

const FLASK_APP: &str = "import os
from flask import Flask
app = Flask(__name__)

@app.get('/')
def index():
    return 'flask ' + open('version').read().strip()

@app.get('/venv')
def venv():
    return os.environ.get('VIRTUAL_ENV', 'none')
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_with_gunicorn_from_a_procfile_serves_and_builds_from_its_cache() {
    require_venv();
    let tmp = TempDir::new("registry-flask");
    let data = tmp.0.join("data");
    let repo = Repo::new(
        &tmp.0,
        "hello",
        &[
            ("app.py", FLASK_APP),
            ("version", "v1"),
            ("requirements.txt", "flask\ngunicorn\n"),
            ("Procfile", "web: gunicorn app:app --bind $HOST:$PORT\n"),
        ],
    );
    let server = ServerProc::start(&data, free_port()).await;
    let http = server.http;
    server
        .ok(&["apps", "create", "hello", "--git", &repo.url()])
        .await;
    let out = server.ok(&["deploy", "hello"]).await;
    assert!(out.contains("detected a procfile app"), "{out}");
    assert_eq!(
        page(http, "hello.localhost").await.as_deref(),
        Some("flask v1"),
        "gunicorn is found on PATH and its script runs from the release folder"
    );
    let venv = wharf_testkit::get(http, "hello.localhost", "/venv")
        .await
        .unwrap()
        .text();
    assert!(
        venv.ends_with("/apps/hello/releases/1/.venv"),
        "VIRTUAL_ENV names the release's virtualenv: {venv}"
    );

    // Dependencies land in the app's build cache (its wheelhouse), never in the release.
    let wheels = data.join("apps/hello/cache/wheels");
    let cached = |prefix: &str| {
        std::fs::read_dir(&wheels)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
            })
            .unwrap_or(false)
    };
    assert!(
        cached("flask-") && cached("gunicorn-"),
        "flask and gunicorn are kept in the build cache ({})",
        wheels.display()
    );
    assert!(
        !data.join("apps/hello/releases/1/.cache").exists(),
        "no download cache in the release"
    );

    // With the index switched off, pip finds what it needs in the build cache or fails: the
    // second build must need nothing else.
    server.ok(&["env", "set", "hello", "PIP_NO_INDEX=1"]).await;
    write_note(&data, "hello");
    repo.commit(&[("version", "v2")], "v2");
    let (ok, out, err) = server.cli(&["deploy", "hello"]).await;
    assert!(
        ok,
        "the second build installs flask and gunicorn from the build cache alone:\n{out}\n{err}"
    );
    assert_eq!(
        page(http, "hello.localhost").await.as_deref(),
        Some("flask v2")
    );
    assert_backup_is_code_and_data(&backup_of(&out), "app.py");
    server.stop().await;
}

const EXPRESS_APP: &str = "const express = require('express');
const fs = require('fs');
const app = express();
app.get('/', (req, res) => res.send('express ' + fs.readFileSync('version', 'utf8').trim()));
app.listen(Number(process.env.PORT), process.env.HOST);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_from_its_package_json_serves_and_builds_from_its_cache() {
    require_tool("npm", "npm");
    let tmp = TempDir::new("registry-express");
    let data = tmp.0.join("data");
    let repo = Repo::new(
        &tmp.0,
        "web",
        &[
            ("server.js", EXPRESS_APP),
            ("version", "v1"),
            (
                "package.json",
                r#"{"name":"web","version":"1.0.0","private":true,"scripts":{"start":"node server.js"},"dependencies":{"express":"^4.21.2"}}"#,
            ),
        ],
    );
    let server = ServerProc::start(&data, free_port()).await;
    let http = server.http;
    server
        .ok(&["apps", "create", "web", "--git", &repo.url()])
        .await;
    let out = server.ok(&["deploy", "web"]).await;
    assert!(out.contains("detected a node app"), "{out}");
    assert_eq!(
        page(http, "web.localhost").await.as_deref(),
        Some("express v1")
    );

    // Offline, npm installs from its cache or fails: the second build must need nothing else.
    server
        .ok(&["env", "set", "web", "npm_config_offline=true"])
        .await;
    write_note(&data, "web");
    repo.commit(&[("version", "v2")], "v2");
    let (ok, out, err) = server.cli(&["deploy", "web"]).await;
    assert!(
        ok,
        "the second build installs express offline from the build cache:\n{out}\n{err}"
    );
    assert_eq!(
        page(http, "web.localhost").await.as_deref(),
        Some("express v2")
    );
    assert_backup_is_code_and_data(&backup_of(&out), "server.js");
    assert!(
        !data.join("apps/web/releases/2/.npm").exists(),
        "no download cache in the release"
    );
    server.stop().await;
}

const OWN_PACKAGE: &str = "import http.server, os
def main():
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'own package installed'
            self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    http.server.ThreadingHTTPServer((os.environ['HOST'], int(os.environ['PORT'])), H).serve_forever()
";

/// A `requirements.txt` that installs the app's own project (`-e .`, a common way to get its
/// package and scripts into the virtualenv) builds: pip needs the project's build backend from
/// the index at install time, since an editable install is never taken from a wheel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requirements_file_that_installs_the_app_itself_builds() {
    require_venv();
    let tmp = TempDir::new("registry-editable");
    let data = tmp.0.join("data");
    let pyproject = "[build-system]
requires = [\"setuptools>=61\"]
build-backend = \"setuptools.build_meta\"

[project]
name = \"own-web\"
version = \"1.0\"

[project.scripts]
own-web = \"own_web:main\"

[tool.setuptools]
packages = [\"own_web\"]
";
    let repo = Repo::new(
        &tmp.0,
        "own",
        &[
            ("pyproject.toml", pyproject),
            ("own_web/__init__.py", OWN_PACKAGE),
            ("requirements.txt", "-e .\n"),
            // The script exists only once the project is installed in the release's .venv.
            ("Procfile", "web: own-web\n"),
        ],
    );
    let server = ServerProc::start(&data, free_port()).await;
    server
        .ok(&["apps", "create", "own", "--git", &repo.url()])
        .await;
    let (ok, out, err) = server.cli(&["deploy", "own"]).await;
    assert!(
        ok,
        "the build installs the app's own project:\n{out}\n{err}"
    );
    assert_eq!(
        page(server.http, "own.localhost").await.as_deref(),
        Some("own package installed")
    );
    server.stop().await;
}
