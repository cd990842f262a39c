//! Containers' usage read from their cgroup files, when the engine runs on this machine.
//!
//! The engine's stats call waits for its collector's next one-second tick once several are
//! asked at the same time (Docker 20.10, API 1.41, even "one-shot"), so listing 20 containers
//! took a second; the same numbers are in the cgroup files, read in microseconds. Where none is
//! found (another machine's engine, a server in a container), the caller asks the engine.

use std::path::{Path, PathBuf};

/// Where a container's cgroup may be, by cgroup version and engine cgroup driver.
fn candidates(root: &Path, id: &str) -> [(Version, PathBuf, PathBuf); 4] {
    let scope = format!("docker-{id}.scope");
    [
        (
            Version::V2,
            root.join("system.slice").join(&scope),
            root.join("system.slice").join(&scope),
        ),
        (
            Version::V2,
            root.join("docker").join(id),
            root.join("docker").join(id),
        ),
        (
            Version::V1,
            root.join("memory/docker").join(id),
            root.join("cpuacct/docker").join(id),
        ),
        (
            Version::V1,
            root.join("memory/system.slice").join(&scope),
            root.join("cpuacct/system.slice").join(&scope),
        ),
    ]
}

#[derive(Clone, Copy)]
enum Version {
    V1,
    V2,
}

/// Memory in use without the page cache that can be dropped (as `docker stats` counts it), and
/// CPU seconds; `None` when no cgroup of the container is found here.
pub(crate) fn usage(root: &Path, id: &str) -> Option<(u64, f64)> {
    // Only a container id: nothing else may become part of the path.
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    candidates(root, id).into_iter().find_map(|(v, mem, cpu)| {
        let (usage, inactive_key, cpu_seconds) = match v {
            Version::V2 => {
                let usage = read_u64(&mem.join("memory.current"))?;
                let usec = stat(&cpu.join("cpu.stat"), "usage_usec")?;
                (usage, "inactive_file", usec as f64 / 1e6)
            }
            Version::V1 => {
                let usage = read_u64(&mem.join("memory.usage_in_bytes"))?;
                let ns = read_u64(&cpu.join("cpuacct.usage"))?;
                (usage, "total_inactive_file", ns as f64 / 1e9)
            }
        };
        let inactive = stat(&mem.join("memory.stat"), inactive_key).unwrap_or(0);
        let rss = if inactive < usage {
            usage - inactive
        } else {
            usage
        };
        Some((rss, cpu_seconds))
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// One `key value` line of a cgroup stat file.
fn stat(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_v1_and_v2_layouts() {
        let root = std::env::temp_dir().join(format!("wharf-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (a, b) = ("aa11", "bb22");
        write(
            &root.join("memory/docker/aa11/memory.usage_in_bytes"),
            "5000\n",
        );
        write(
            &root.join("memory/docker/aa11/memory.stat"),
            "cache 9\ntotal_inactive_file 1000\n",
        );
        write(
            &root.join("cpuacct/docker/aa11/cpuacct.usage"),
            "2500000000\n",
        );
        let scope = root.join("system.slice/docker-bb22.scope");
        write(&scope.join("memory.current"), "8192\n");
        write(&scope.join("memory.stat"), "anon 1\ninactive_file 192\n");
        write(&scope.join("cpu.stat"), "usage_usec 1500000\nuser_usec 1\n");
        assert_eq!(usage(&root, a), Some((4000, 2.5)));
        assert_eq!(usage(&root, b), Some((8000, 1.5)));
        assert_eq!(usage(&root, "cc33"), None);
        assert_eq!(usage(&root, "../aa11"), None);
        std::fs::remove_dir_all(root).unwrap();
    }
}
