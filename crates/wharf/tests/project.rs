//! Facts about the project itself that no compiler checks: the Rust version it claims, and what
//! its files may name.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `1.91` and `1.91.0` are the same version: missing parts count as 0.
fn version(v: &str) -> Vec<u32> {
    let mut parts: Vec<u32> = v.split('.').map(|n| n.parse().unwrap()).collect();
    parts.resize(3, 0);
    parts
}

/// `rust-version` must be the true minimum: not below what any locked dependency needs (the
/// code's own use of newer standard library items is refused by clippy's `incompatible_msrv`).
#[test]
fn the_stated_rust_version_covers_every_dependency() {
    // This machine's platform only: the others' dependencies (e.g. Windows named pipes) are
    // never downloaded, and offline metadata cannot resolve them.
    let rustc = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let used: Vec<&str> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let mut ours = None;
    let mut needed = (vec![0], String::new());
    for p in meta["packages"].as_array().unwrap() {
        let Some(v) = p["rust_version"].as_str() else {
            continue;
        };
        if p["name"] == "wharf" {
            ours = Some(version(v));
        }
        if used.contains(&p["id"].as_str().unwrap()) && version(v) > needed.0 {
            needed = (
                version(v),
                format!(
                    "{} {}",
                    p["name"].as_str().unwrap(),
                    p["version"].as_str().unwrap()
                ),
            );
        }
    }
    let ours = ours.expect("the workspace states a rust-version");
    assert!(
        ours >= needed.0,
        "rust-version {ours:?} is below what {} needs: {:?}",
        needed.1,
        needed.0
    );
}

/// Code, docs, scripts and commits speak of the product only: no package registry's host is
/// named (lock files, written by cargo, aside).
#[test]
fn no_file_names_a_package_registry_host() {
    // Spelled in parts so this file does not name them either.
    let hosts: Vec<String> = [
        ["crates", "io"],
        ["pypi", "org"],
        ["npmjs", "org"],
        ["npmjs", "com"],
        ["rubygems", "org"],
        ["debian", "org"],
        ["golang", "org"],
    ]
    .iter()
    .map(|p| p.join("."))
    .collect();
    let files = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(files.status.success(), "git ls-files");
    let mut found = Vec::new();
    for name in files.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name.ends_with(".lock") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root().join(&name)) else {
            continue; // binary (screenshots) or removed in the work tree
        };
        let text = text.to_lowercase();
        for host in &hosts {
            if text.contains(host.as_str()) {
                found.push(format!("{name}: {host}"));
            }
        }
    }
    assert!(found.is_empty(), "registry hosts named in: {found:#?}");
}
