//! The labels wharf puts on everything it creates, and the only way it finds its objects.

/// The app an object belongs to.
pub const APP: &str = "wharf.app";
/// The release it was built from or runs.
pub const RELEASE: &str = "wharf.release";
/// The instance name (containers, services).
pub const INSTANCE: &str = "wharf.instance";
/// [`wharf_runtime::InstanceSpec::fingerprint`], for adoption.
pub const FINGERPRINT: &str = "wharf.fingerprint";
/// The port the app listens on inside the container.
pub const PORT: &str = "wharf.port";
/// The wharf server that made it (an id kept in its data folder): several servers may share
/// one engine, and each lists, adopts, stops and prunes only its own.
pub const OWNER: &str = "wharf.owner";
/// On networks and volumes wharf created.
pub const MANAGED: &str = "wharf.managed";
