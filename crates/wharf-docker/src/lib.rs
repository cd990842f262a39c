//! Containers: one [`Engine`] (a bollard client to a Docker engine, its API version negotiated
//! down to what the engine speaks, e.g. Debian's 1.41), image builds from a release's code
//! ([`image`]), and two runtimes on top: [`DockerRuntime`] (one container per instance on the
//! `wharf` network) and [`SwarmRuntime`] (one Swarm service per app, tasks routed to directly).
//!
//! wharf only ever touches objects it labelled ([`labels`]): containers, services, networks and
//! images someone else made are never listed, stopped, pruned or removed.
#![forbid(unsafe_code)]

mod cgroup;
mod container;
mod engine;
mod error;
mod exec;
pub mod image;
pub mod labels;
mod logs;
mod probe;
mod swarm;

pub use container::DockerRuntime;
pub use engine::{DEFAULT_NETWORK, Engine};
pub use error::DockerError;
pub use exec::{Chunk, Exec, ExecError, Started};
pub use swarm::{NodeInfo, SwarmRuntime, TaskInfo};
