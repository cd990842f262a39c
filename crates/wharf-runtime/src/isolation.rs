//! How an instance (or a build) is confined: the user it runs as and the sandbox around it.
//! The control plane decides; the runtime applies it when it spawns.

/// How an instance (or a build) is confined. Default: not at all (runs as wharf itself).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Isolation {
    /// Run as this user and group (set by the control plane when wharf may switch users).
    pub user: Option<AppUser>,
    /// Confine with the sandbox launcher (set by the control plane unless the app opted out).
    pub sandbox: Option<SandboxPolicy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppUser {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SandboxPolicy {
    /// Folders readable (and executable): the release, system folders.
    pub read: Vec<std::path::PathBuf>,
    /// Folders readable and writable: the volume, a private tmp, (for builds) the release and cache.
    pub write: Vec<std::path::PathBuf>,
    /// TCP ports the process may bind (empty: none... builds: see below).
    pub bind_ports: Vec<u16>,
}
