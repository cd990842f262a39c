//! Memory and CPU limits through cgroup v2, when this process may create cgroups. Failing to
//! set limits never fails a start: the instance runs unlimited and its status says why.

use std::path::PathBuf;

use crate::Limits;

const ROOT: &str = "/sys/fs/cgroup";

pub(crate) struct Cgroup {
    pub(crate) path: PathBuf,
}

impl Cgroup {
    /// Creates `wharf/<instance>` with the limits; `Err` is a user-facing reason.
    pub(crate) fn create(instance: &str, limits: &Limits) -> Result<Cgroup, String> {
        let root = PathBuf::from(ROOT);
        if !root.join("cgroup.controllers").exists() {
            return Err(
                "cgroup v2 is not available here; memory/CPU limits are not enforced".into(),
            );
        }
        let parent = root.join("wharf");
        let not_writable = |e: std::io::Error| {
            format!("cgroup v2 is not writable here ({e}); memory/CPU limits are not enforced")
        };
        std::fs::create_dir_all(&parent).map_err(not_writable)?;
        // Delegate the controllers down to wharf's cgroup (fails harmlessly if already done).
        let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +cpu");
        let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu");
        let path = parent.join(instance);
        std::fs::create_dir_all(&path).map_err(not_writable)?;
        let cg = Cgroup { path };
        if let Some(bytes) = limits.memory_bytes {
            cg.write("memory.max", &bytes.to_string())?;
        }
        if let Some(millis) = limits.cpu_millis {
            cg.write("cpu.max", &format!("{} 100000", u64::from(millis) * 100))?;
        }
        Ok(cg)
    }

    pub(crate) fn add(&self, pid: u32) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.path.join(file), value).map_err(|e| {
            let _ = std::fs::remove_dir(&self.path);
            format!(
                "cannot set {file} in {} ({e}); memory/CPU limits are not enforced",
                self.path.display()
            )
        })
    }

    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}
