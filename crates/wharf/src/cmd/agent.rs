//! `wharf agent`: runs a server's apps on this machine over one outbound link (see
//! `docs/agents.md`). Joins once with the URL and token `wharf nodes add NAME` printed.

use std::path::PathBuf;

use anyhow::Context;
use wharf_agent::{AgentConfig, JoinUrl};

use super::signals::{Event, Signals, runtime};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Join a server (first run only): the wharf://HOST:PORT/CA-FINGERPRINT that `wharf nodes
    /// add NAME` printed on the server.
    #[arg(long, value_name = "URL")]
    join: Option<String>,
    /// The one-time token `wharf nodes add NAME` printed, with --join (used once, never stored).
    #[arg(long, env = "WHARF_JOIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data folder: the agent's identity, releases, volumes, logs.
    #[arg(long, default_value = "/var/lib/wharf-agent", env = "WHARF_AGENT_DATA")]
    data: PathBuf,
    /// The Docker engine for apps on the docker runtime: unix:///path or tcp://HOST:PORT
    /// (default: DOCKER_HOST, then the local socket). Without one, only processes run here.
    #[arg(long, value_name = "URL", env = "WHARF_DOCKER_HOST")]
    docker_host: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let join = match (args.join, args.token) {
        (Some(url), Some(token)) => {
            // The message names the expected form; its causes are in it already.
            let url: JoinUrl = url.parse().map_err(|e| anyhow::anyhow!("--join: {e}"))?;
            Some((url, token))
        }
        (Some(_), None) => anyhow::bail!(
            "--join needs the token `wharf nodes add` printed with it: --token TOKEN (or WHARF_JOIN_TOKEN)"
        ),
        // A token left in the environment after joining is not needed any more.
        (None, _) => None,
    };
    // Before the runtime's threads exist, so none of them, and no app, keeps them.
    wharf_control::drop_inherited_capabilities()
        .context("cannot clear the ambient capabilities apps would inherit")?;
    super::raise_open_file_limit();
    let config = AgentConfig {
        data_dir: args.data,
        join,
        docker_host: args.docker_host,
        // This very binary confines apps (`wharf sandbox-exec`), as on the server.
        launcher: std::env::current_exe().ok(),
    };
    runtime(0)?.block_on(async {
        let mut signals = Signals::new()?;
        let stop = async {
            while let Event::Reload = signals.next(std::future::pending()).await {
                tracing::info!("SIGHUP: nothing to reload");
            }
        };
        // Each message carries its causes already (anyhow's chain would repeat them).
        wharf_agent::run_until(config, stop)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
}
