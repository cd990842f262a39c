//! Process-wide log setup: `RUST_LOG` filters, text or JSON lines on stderr. Colours only on a
//! terminal (and not with `NO_COLOR`): stderr is often a log file or the journal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

pub(crate) fn init(format: Format) {
    let mut spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    // The backup engine reports every step of every backup at info ("reading index...",
    // "finished."), and its S3 layer every retry of every request of an outage: kept down
    // unless RUST_LOG names them (wharf reports the backup's outcome itself). A burst of them
    // into a stderr nobody drains would stall the server.
    for (krate, level) in [
        ("rustic_core", "warn"),
        ("rustic_backend", "warn"),
        ("opendal", "error"),
    ] {
        if !spec.contains(krate) {
            spec.push_str(&format!(",{krate}={level}"));
        }
    }
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    match format {
        Format::Text => builder.init(),
        Format::Json => builder.json().init(),
    }
}
