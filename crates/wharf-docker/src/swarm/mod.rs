//! The Swarm runtime: each instance is one Swarm service running all of an app's replicas;
//! its tasks publish the app port in host mode and the gateway routes to each serving task's
//! node address and port, following the tasks as they move.

mod logs;
mod runtime;
mod spec;
mod task;
mod watch;

pub use runtime::{NodeInfo, SwarmRuntime, TaskInfo};
