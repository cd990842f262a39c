//! Upstream targets of proxy sites: the pool and its balancing, active health checks, and
//! passive ejection on connection errors, and the keep-alive connections to each target.

mod conn;
mod h1;
mod health;
mod pool;

pub(crate) use conn::{Returning, SendError, Sender, Upgraded, send};
pub(crate) use h1::{ExchangeError, Head, RawBody, body, exchange, response, write_head};
pub(crate) use health::{probe, spawn_checker};
pub(crate) use pool::{Pool, Target, TargetGuard, Targets};
