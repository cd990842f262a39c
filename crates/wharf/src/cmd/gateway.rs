//! `wharf gateway --config FILE`: the standalone gateway. SIGHUP or a change to the file
//! reloads it; an invalid file is refused and the running config keeps serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use wharf_gateway::Gateway;
use wharf_gateway::config::GatewayConfig;
use wharf_tls::{CertManager, RenewPolicy};

use super::signals::{Event, Signals, runtime};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The gateway's TOML file (see docs/gateway.md).
    #[arg(long, short, env = "WHARF_GATEWAY_CONFIG")]
    config: PathBuf,
    /// Check the file and exit: prints what is wrong, or nothing.
    #[arg(long)]
    check: bool,
    /// Do not reload when the file changes (SIGHUP still reloads).
    #[arg(long)]
    no_watch: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let config = GatewayConfig::from_file(&args.config)?;
    if args.check {
        outln!(
            "{}: ok, {} site(s)",
            args.config.display(),
            config.sites.len()
        );
        return Ok(());
    }
    super::raise_open_file_limit();
    runtime(config.workers)?.block_on(serve(args, config))
}

async fn serve(args: Args, config: GatewayConfig) -> anyhow::Result<()> {
    let gateway = Gateway::start(config.clone()).context("cannot start the gateway")?;
    // The manager installs into the store the gateway's HTTPS listeners serve from.
    let certs = CertManager::new(
        gateway.certs(),
        config.tls_dir.clone().unwrap_or_else(|| "certs".into()),
        config.acme.clone(),
        RenewPolicy::default(),
    );
    apply_certs(&certs, &config);
    let stop_certs = tokio_util::sync::CancellationToken::new();
    certs.spawn(stop_certs.clone());
    let mut signals = Signals::new()?;
    tracing::info!(config = %args.config.display(), "gateway running; SIGHUP or editing the file reloads it");
    let (tx, mut changes) = mpsc::channel(1);
    let _watcher = if args.no_watch {
        None
    } else {
        Some(watch(&args.config, tx)?)
    };
    loop {
        let changed = async {
            changes.recv().await;
            // Editors write in several steps; read once the file has been quiet for 150 ms.
            while let Ok(Some(())) =
                tokio::time::timeout(Duration::from_millis(150), changes.recv()).await
            {}
            Event::Reload
        };
        match signals.next(changed).await {
            Event::Reload => reload(&gateway, &certs, &args.config),
            Event::Stop => break,
        }
    }
    stop_certs.cancel();
    tracing::info!("stopping: finishing open requests");
    gateway.shutdown().await;
    Ok(())
}

fn apply_certs(certs: &CertManager, config: &GatewayConfig) {
    certs.set_acme(config.acme.clone());
    for (name, problem) in certs.apply(config.wanted_certs()) {
        tracing::error!(site = %name, error = %problem, "certificate not installed");
    }
}

fn reload(gateway: &Gateway, certs: &CertManager, path: &Path) {
    let read = GatewayConfig::from_file(path).map_err(|e| e.to_string());
    let read = match read {
        // A file with no sites while some serve is most likely caught mid-write (or emptied
        // by mistake): every site would go. A config without sites is taken at start only.
        Ok(c) if c.sites.is_empty() && gateway.site_count() > 0 => Err(format!(
            "{} has no sites now (empty, or still being written?); to serve none, restart",
            path.display()
        )),
        other => other,
    };
    if read.is_err() {
        gateway.reload_refused();
    }
    match read.and_then(|c| {
        gateway
            .reload(c.clone())
            .map(|()| c)
            .map_err(|e| e.to_string())
    }) {
        Ok(config) => {
            apply_certs(certs, &config);
            tracing::info!(config = %path.display(), "configuration reloaded")
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration refused; the previous one keeps serving")
        }
    }
}

/// Watches the file's folder (editors often replace the file by renaming a new one over it).
fn watch(path: &Path, tx: mpsc::Sender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let file = path.file_name().map(|f| f.to_owned());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            // Reads are not changes; a writer closing the file is (it finished writing).
            let written = matches!(
                ev.kind,
                notify::EventKind::Access(notify::event::AccessKind::Close(
                    notify::event::AccessMode::Write
                ))
            );
            if ev.kind.is_access() && !written {
                return;
            }
            if ev.paths.iter().any(|p| p.file_name() == file.as_deref()) {
                let _ = tx.try_send(());
            }
        }
    })
    .context("cannot watch the config file")?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(watcher)
}
