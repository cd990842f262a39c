//! The process runtime: each instance is a supervised child process.

mod cgroup;
mod logs;
pub mod pidfile;
mod stats;
mod supervisor;

pub use supervisor::{ProcessRuntime, free_port};
