//! The `wharf` binary: argument parsing and dispatch only; the work lives in the library crates.
#![forbid(unsafe_code)]

mod cmd;
mod logging;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "Host many sites and apps on one machine or a few"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "WHARF_LOG_FORMAT"
    )]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: API on 127.0.0.1:7070, gateway on :8080, apps, all with embedded defaults.
    Server(cmd::server::Args),
    /// Run the gateway alone from a TOML file, as an nginx replacement.
    Gateway(cmd::gateway::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Server(args) => cmd::server::run(args),
        Command::Gateway(args) => cmd::gateway::run(args),
    }
}
