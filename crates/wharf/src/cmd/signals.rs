//! Runtime construction and the signal loop shared by the long-running subcommands.

use std::future::Future;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

/// One worker means a current-thread runtime: no work stealing, no cross-thread wake-ups.
pub(crate) fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if workers > 1 {
            b.worker_threads(workers);
        }
        b.enable_all().build()
    };
    rt.context("cannot start the async runtime")
}

pub(crate) enum Event {
    Reload,
    Stop,
}

/// Waits for SIGHUP (reload), or SIGTERM/SIGINT (stop), and for anything `extra` yields.
pub(crate) async fn next_event(extra: impl Future<Output = Event>) -> anyhow::Result<Event> {
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(tokio::select! {
        _ = hup.recv() => Event::Reload,
        _ = term.recv() => Event::Stop,
        _ = int.recv() => Event::Stop,
        e = extra => e,
    })
}
