//! The client verbs (`wharf <noun> <verb>`): parse, call the API through `wharf-client`, print a
//! table or `--json`. A failed operation exits with status 1 and says why.

mod access;
mod apps;
mod backups;
pub(crate) mod complete;
mod connect;
mod deploy;
mod print;
mod run;
mod watch;

use clap::{Args, Subcommand};

pub(crate) use connect::{Login, login};

/// Options every client verb takes.
#[derive(Args, Clone)]
pub(crate) struct Conn {
    /// API address.
    #[arg(long, global = true, env = "WHARF_URL")]
    pub(crate) url: Option<String>,
    /// API token (default: the login file, then <data>/admin.token on this machine).
    #[arg(long, global = true, env = "WHARF_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub(crate) enum AppsCmd {
    /// List apps with their state and URL, in name order (every page, printed as it comes,
    /// unless --limit is given).
    List(apps::ListArgs),
    /// Create an app and start it (a process app needs --run; a static one serves a folder).
    Create {
        name: String,
        /// A static site served by the gateway (no process).
        #[arg(long)]
        r#static: bool,
        #[command(flatten)]
        settings: apps::SettingsArgs,
        /// Extra host name (repeatable); <app>.<base-domain> is always routed.
        #[arg(long = "domain", value_name = "HOST")]
        domains: Vec<String>,
        /// Environment variable KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = apps::key_value)]
        env: Vec<(String, String)>,
    },
    /// Show one app with its instances.
    Show {
        #[arg(add = crate::cli::complete::app_names())]
        name: String,
    },
    /// Change an app's settings (only the flags given change).
    Set {
        #[arg(add = crate::cli::complete::app_names())]
        name: String,
        #[command(flatten)]
        settings: apps::SettingsArgs,
        /// enabled (served), not-served (running, no route) or disabled (stopped).
        #[arg(long, value_parser = ["enabled", "not-served", "disabled"])]
        availability: Option<String>,
    },
    /// Delete an app and its hosts' certificates (its volume and logs are kept unless --purge).
    Delete {
        #[arg(add = crate::cli::complete::app_names())]
        name: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
        /// Also remove its volume, logs, code, releases, backups and git caches.
        #[arg(long)]
        purge: bool,
    },
    /// Enable an app and start it.
    Start {
        #[arg(add = crate::cli::complete::app_names())]
        name: String,
    },
    /// Stop an app and disable it.
    Stop {
        #[arg(add = crate::cli::complete::app_names())]
        name: String,
    },
    /// Restart an app's instances with zero downtime.
    Restart {
        #[arg(add = crate::cli::complete::app_names())]
        name: String,
    },
    /// Set the number of instances.
    Scale {
        #[arg(add = crate::cli::complete::app_names())]
        name: String,
        replicas: u32,
    },
}

#[derive(Subcommand)]
pub(crate) enum EnvCmd {
    /// Names of the app's variables (values are never shown).
    List {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
    },
    /// Set variables and restart the app with them.
    Set {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = apps::key_value)]
        vars: Vec<(String, String)>,
    },
    /// Remove variables and restart the app without them.
    Unset {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum DomainsCmd {
    /// Host names routed to the app.
    List {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
    },
    /// Route another host name to the app, optionally over HTTPS; again on a domain the app has,
    /// changes its certificate source.
    Add {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
        host: String,
        /// Certificate: acme (ordered and renewed), self-signed (e.g. behind a CDN in "Full"
        /// mode), manual (with --cert and --key) or none.
        #[arg(long, value_name = "SOURCE")]
        tls: Option<String>,
        /// PEM certificate chain for --tls manual.
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<std::path::PathBuf>,
        /// PEM private key for --tls manual.
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<std::path::PathBuf>,
    },
    /// Stop routing a host name to the app.
    Remove {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
        host: String,
    },
}

pub(crate) use access::{TokensCmd, UsersCmd};
pub(crate) use apps::{NodesCmd, TunnelsCmd};
pub(crate) use backups::{BackupsCmd, DbCmd};
pub(crate) use complete::registration as completion_script;
pub(crate) use deploy::{DeployArgs, HooksCmd, ReleasesCmd};
pub(crate) use run::RunArgs;

// Built once per CLI run; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Verb {
    Apps(AppsCmd),
    Env(EnvCmd),
    Domains(DomainsCmd),
    Status {
        app: Option<String>,
    },
    Logs {
        app: String,
        lines: u32,
        follow: bool,
    },
    Ops {
        app: Option<String>,
        limit: u32,
    },
    Deploy(DeployArgs),
    Releases {
        app: String,
        limit: Option<u32>,
    },
    ReleaseShow {
        app: String,
        release: u32,
    },
    Rollback {
        app: String,
        release: Option<u32>,
    },
    Hooks(HooksCmd),
    Certs,
    Nodes(Option<apps::NodesCmd>),
    Tunnels(Option<apps::TunnelsCmd>),
    Db(Option<DbCmd>),
    Backups(BackupsCmd),
    Run(RunArgs),
    Users(UsersCmd),
    Tokens(TokensCmd),
}

/// Runs one client verb on a small single-threaded runtime.
pub(crate) fn run(conn: Conn, verb: Verb) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = connect::client(&conn)?;
        let result = match verb {
            Verb::Apps(cmd) => apps::apps(&client, &conn, cmd).await,
            Verb::Env(cmd) => apps::env(&client, &conn, cmd).await,
            Verb::Domains(cmd) => apps::domains(&client, &conn, cmd).await,
            Verb::Certs => apps::certs(&client, &conn).await,
            Verb::Nodes(cmd) => apps::nodes(&client, &conn, cmd).await,
            Verb::Tunnels(cmd) => apps::tunnels(&client, &conn, cmd).await,
            Verb::Db(cmd) => backups::db(&client, &conn, cmd).await,
            Verb::Backups(cmd) => backups::backups(&client, &conn, cmd).await,
            Verb::Status { app } => watch::status(&client, &conn, app).await,
            Verb::Logs { app, lines, follow } => watch::logs(&client, &app, lines, follow).await,
            Verb::Ops { app, limit } => watch::ops(&client, &conn, app, limit).await,
            Verb::Deploy(args) => deploy::deploy(&client, &conn, args).await,
            Verb::Releases { app, limit } => deploy::releases(&client, &conn, &app, limit).await,
            Verb::ReleaseShow { app, release } => {
                deploy::release_show(&client, &conn, &app, release).await
            }
            Verb::Rollback { app, release } => {
                let changed = client.rollback(&app, release).await?;
                print::changed(&conn, changed)
            }
            Verb::Hooks(cmd) => deploy::hooks(&client, &conn, cmd).await,
            Verb::Run(args) => run::run(&client, &conn, args).await,
            Verb::Users(cmd) => access::users(&client, &conn, cmd).await,
            Verb::Tokens(cmd) => access::tokens(&client, &conn, cmd).await,
        };
        result.map_err(|e| match e.downcast::<wharf_client::ClientError>() {
            Ok(ce) if ce.is_unauthorized() => anyhow::anyhow!(
                "{ce}\nhint: set WHARF_TOKEN, run `wharf login`, or run the CLI where WHARF_DATA/admin.token is readable"
            ),
            Ok(ce) => anyhow::Error::new(ce),
            Err(other) => other,
        })
    })
}
