//! The `wharf` binary: argument parsing and dispatch only; the work lives in the library crates.
#![forbid(unsafe_code)]

#[macro_use]
mod out;
mod cli;
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
    /// Run apps of a wharf server on this machine: join it once, then keep one link to it.
    Agent(cmd::agent::Args),
    /// Create, change, start, stop and delete apps.
    Apps {
        #[command(subcommand)]
        cmd: cli::AppsCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// An app's environment variables (values are write-only).
    Env {
        #[command(subcommand)]
        cmd: cli::EnvCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Host names routed to an app.
    Domains {
        #[command(subcommand)]
        cmd: cli::DomainsCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// The server and its apps at a glance, or one app in detail.
    Status {
        #[arg(add = crate::cli::complete::app_names())]
        app: Option<String>,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// An app's output (stdout and stderr of its instances).
    Logs {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
        /// How many past lines to show.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: u32,
        /// Keep streaming new lines until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// The operations log: what was done, step by step, and how it ended.
    Ops {
        #[arg(add = crate::cli::complete::app_names())]
        app: Option<String>,
        /// How many of the latest operations (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Deploy an app from git, a local folder or an archive, and watch the build.
    Deploy {
        #[command(flatten)]
        args: cli::DeployArgs,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Every certificate: host, app, source, issuer, expiry, next renewal, last attempt.
    Certs {
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Other machines: agents joined by links (add, list, remove), and the Swarm's nodes
    /// with the tasks of wharf's apps on each.
    Nodes {
        #[command(subcommand)]
        cmd: Option<cli::NodesCmd>,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Managed databases: Postgres, MariaDB or Redis as supervised services.
    Db {
        #[command(subcommand)]
        cmd: Option<cli::DbCmd>,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Backups of apps' volumes and databases: run, list, check, restore, schedules.
    Backups {
        #[command(subcommand)]
        cmd: Option<cli::BackupsCmd>,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// TCP tunnels between machines over the links (what stunnel does).
    Tunnels {
        #[command(subcommand)]
        cmd: Option<cli::TunnelsCmd>,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// An app's releases, newest first; `releases show APP N` prints one with its build log.
    #[command(args_conflicts_with_subcommands = true)]
    Releases {
        #[command(subcommand)]
        cmd: Option<cli::ReleasesCmd>,
        /// The app whose releases to list.
        #[arg(required = true)]
        #[arg(add = crate::cli::complete::app_names())]
        app: Option<String>,
        /// Show at most this many (default: the server's page, 100; at most 1000).
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Go back to an earlier release (default: the one before), with the config it ran with.
    Rollback {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
        release: Option<u32>,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Run a one-off command in an app's release, with its env, as its user; exits with the
    /// command's status.
    Run {
        #[command(flatten)]
        args: cli::RunArgs,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Push webhooks from GitHub, Gitea or GitLab.
    Hooks {
        #[command(subcommand)]
        cmd: cli::HooksCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Users and their roles (admin, deployer, viewer), everywhere or on single apps.
    Users {
        #[command(subcommand)]
        cmd: cli::UsersCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// API tokens: yours, or (admins) any user's: list, create, revoke.
    Tokens {
        #[command(subcommand)]
        cmd: cli::TokensCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Remember an API address and token for the CLI.
    Login(cli::Login),
    /// Print a shell completion script, e.g. `wharf completions bash > /etc/bash_completion.d/wharf`
    /// (or `source <(COMPLETE=bash wharf)` in ~/.bashrc). It asks wharf as you type, so app
    /// names come from the server.
    Completions { shell: clap_complete::Shell },
}

fn main() -> std::process::ExitCode {
    // The sandbox launcher (hidden) is handled before anything else: see `cmd::sandbox_exec`.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "sandbox-exec") {
        return cmd::sandbox_exec::run(args);
    }
    // `COMPLETE=<shell> wharf -- ...` is the shell asking for completions: answered, then exit.
    {
        use clap::CommandFactory;
        clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Server(args) => cmd::server::run(args),
        Command::Gateway(args) => cmd::gateway::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Apps { cmd, conn } => cli::run(conn, cli::Verb::Apps(cmd)),
        Command::Env { cmd, conn } => cli::run(conn, cli::Verb::Env(cmd)),
        Command::Domains { cmd, conn } => cli::run(conn, cli::Verb::Domains(cmd)),
        Command::Status { app, conn } => cli::run(conn, cli::Verb::Status { app }),
        Command::Logs {
            app,
            lines,
            follow,
            conn,
        } => cli::run(conn, cli::Verb::Logs { app, lines, follow }),
        Command::Ops { app, limit, conn } => cli::run(conn, cli::Verb::Ops { app, limit }),
        Command::Deploy { args, conn } => cli::run(conn, cli::Verb::Deploy(args)),
        Command::Releases {
            cmd: Some(cli::ReleasesCmd::Show { app, release, conn }),
            ..
        } => cli::run(conn, cli::Verb::ReleaseShow { app, release }),
        Command::Releases {
            app, limit, conn, ..
        } => cli::run(
            conn,
            cli::Verb::Releases {
                app: app.unwrap_or_default(),
                limit,
            },
        ),
        Command::Certs { conn } => cli::run(conn, cli::Verb::Certs),
        Command::Nodes { cmd, conn } => cli::run(conn, cli::Verb::Nodes(cmd)),
        Command::Tunnels { cmd, conn } => cli::run(conn, cli::Verb::Tunnels(cmd)),
        Command::Db { cmd, conn } => cli::run(conn, cli::Verb::Db(cmd)),
        Command::Backups { cmd, conn } => cli::run(
            conn,
            cli::Verb::Backups(cmd.unwrap_or(cli::BackupsCmd::List {
                target: None,
                all: false,
            })),
        ),
        Command::Rollback { app, release, conn } => {
            cli::run(conn, cli::Verb::Rollback { app, release })
        }
        Command::Hooks { cmd, conn } => cli::run(conn, cli::Verb::Hooks(cmd)),
        Command::Run { args, conn } => cli::run(conn, cli::Verb::Run(args)),
        Command::Users { cmd, conn } => cli::run(conn, cli::Verb::Users(cmd)),
        Command::Tokens { cmd, conn } => cli::run(conn, cli::Verb::Tokens(cmd)),
        Command::Login(args) => cli::login(args),
        Command::Completions { shell } => {
            out::bytes(&cli::completion_script(shell)?);
            Ok(())
        }
    }
}
