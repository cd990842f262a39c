//! Upstream targets of proxy sites: the pool and its balancing, active health checks, and
//! passive ejection on connection errors.

mod health;
mod pool;

pub(crate) use health::{probe, spawn_checker};
pub(crate) use pool::{Pool, Target, TargetGuard};
