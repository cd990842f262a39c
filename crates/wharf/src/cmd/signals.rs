//! Runtime construction and the signal loop shared by the long-running subcommands.

use std::future::Future;

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

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

/// SIGHUP (reload) and SIGTERM/SIGINT (stop), listened to from creation on: create it before
/// saying "ready", so a signal sent right after is handled instead of killing the process, and
/// keep it across events so none is lost between two waits.
pub(crate) struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    pub(crate) fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// Waits for the next signal, or for anything `extra` yields.
    pub(crate) async fn next(&mut self, extra: impl Future<Output = Event>) -> Event {
        tokio::select! {
            _ = self.hup.recv() => Event::Reload,
            _ = self.term.recv() => Event::Stop,
            _ = self.int.recv() => Event::Stop,
            e = extra => e,
        }
    }
}
