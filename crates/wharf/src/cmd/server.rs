//! `wharf server`: the whole platform with embedded defaults. Today that is the gateway on
//! 127.0.0.1:8080 with its admin listener on 127.0.0.1:9901; the control plane (store, API,
//! runtimes) joins it here.

use std::net::SocketAddr;

use anyhow::Context;
use wharf_gateway::Gateway;
use wharf_gateway::config::GatewayConfig;

use super::signals::{Event, next_event, runtime};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Address of the Host-routed HTTP listener.
    #[arg(long, default_value = "127.0.0.1:8080", env = "WHARF_HTTP")]
    http: SocketAddr,
    /// Address of the admin listener (/metrics, /healthz).
    #[arg(long, default_value = "127.0.0.1:9901", env = "WHARF_ADMIN")]
    admin: SocketAddr,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let config = GatewayConfig {
        listen: vec![args.http],
        admin: Some(args.admin),
        ..Default::default()
    };
    runtime(0)?.block_on(async move {
        let gateway = Gateway::start(config).context("cannot start the gateway")?;
        tracing::info!(http = %args.http, admin = %args.admin, "wharf server running");
        while let Event::Reload = next_event(std::future::pending()).await? {
            tracing::info!("nothing to reload yet");
        }
        gateway.shutdown().await;
        Ok(())
    })
}
