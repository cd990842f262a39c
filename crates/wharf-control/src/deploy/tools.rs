//! The app's own tool folders, for its build and its processes alike: `.venv/bin` and
//! `node_modules/.bin` come first on `PATH`, and `VIRTUAL_ENV` names the `.venv` once it
//! exists, so a Procfile's `gunicorn app:app` or a build's `vite build` finds the app's tools.

use std::collections::BTreeMap;
use std::path::Path;

/// Folders (inside the app's code) searched before the system's `PATH`, first first.
const TOOL_DIRS: [&str; 2] = [".venv/bin", "node_modules/.bin"];

/// Used when the server itself has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Puts the tool folders of the code in `dir` in front of `env`'s `PATH` (the app's own, else
/// the server's) and sets `VIRTUAL_ENV` when `dir` has a `.venv`.
pub(crate) fn add_tool_paths(dir: &Path, env: &mut BTreeMap<String, String>) {
    let base = env.get("PATH").cloned().unwrap_or_else(|| {
        std::env::var("PATH")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.to_string())
    });
    let mut path: Vec<String> = TOOL_DIRS
        .iter()
        .map(|d| dir.join(d).to_string_lossy().into_owned())
        .collect();
    path.push(base);
    env.insert("PATH".into(), path.join(":"));
    let venv = dir.join(".venv");
    if venv.join("bin").is_dir() {
        env.insert("VIRTUAL_ENV".into(), venv.to_string_lossy().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_folders_come_first_and_a_venv_is_named() {
        let dir = std::env::temp_dir().join(format!("wharf-tools-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut env = BTreeMap::from([("PATH".to_string(), "/opt/bin".to_string())]);
        add_tool_paths(&dir, &mut env);
        let d = dir.display();
        assert_eq!(
            env["PATH"],
            format!("{d}/.venv/bin:{d}/node_modules/.bin:/opt/bin")
        );
        assert!(!env.contains_key("VIRTUAL_ENV"), "no .venv yet");

        std::fs::create_dir_all(dir.join(".venv/bin")).unwrap();
        let mut env = BTreeMap::new();
        add_tool_paths(&dir, &mut env);
        assert_eq!(env["VIRTUAL_ENV"], format!("{d}/.venv"));
        assert!(env["PATH"].starts_with(&format!("{d}/.venv/bin:")));
        assert!(env["PATH"].len() > format!("{d}/.venv/bin:{d}/node_modules/.bin:").len());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
