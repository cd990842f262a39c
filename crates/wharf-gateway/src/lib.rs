//! wharf's gateway: a Host-routed reverse proxy and static-site server.
//!
//! Start one with [`Gateway::start`] from a validated [`config::GatewayConfig`] (from a TOML file
//! with [`config::GatewayConfig::from_file`], or built by the control plane), change it live with
//! [`Gateway::reload`], swap a site's upstreams with zero dropped requests with
//! [`Gateway::deploy`], and stop it with [`Gateway::shutdown`].
#![forbid(unsafe_code)]

mod access_log;
mod body;
pub mod config;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod gateway;
mod limits;
mod metrics;
mod proxy;
mod routing;
mod server;
mod site;
mod static_files;
mod synthetic;
mod upstream;

pub use body::Body;
pub use error::{ConfigError, GatewayError, Result};
pub use gateway::{DeployOptions, DeployReport, Gateway, SiteChanges, wait_healthy};
pub use limits::{OpenFileLimit, raise_open_file_limit};
pub use metrics::SiteStats;
