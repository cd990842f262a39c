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
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    // The backup engine reports every step of every backup at info ("reading index...",
    // "finished."): kept to its warnings unless RUST_LOG names it.
    let spec = if spec.contains("rustic") {
        spec
    } else {
        format!("{spec},rustic_core=warn,rustic_backend=warn")
    };
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
