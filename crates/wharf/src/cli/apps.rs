//! `wharf apps`, `wharf env` and `wharf domains`.

use std::collections::BTreeMap;

use wharf_client::dto::{ChangeEnv, CreateApp, Settings};
use wharf_client::{AppsQuery, Client, Page};

use super::print::{self, changed, json};
use super::{AppsCmd, Conn, DomainsCmd, EnvCmd};

/// Settings flags shared by `apps create` and `apps set`.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct SettingsArgs {
    /// Shell command that serves the app on $PORT (process apps).
    #[arg(long, value_name = "CMD")]
    run: Option<String>,
    /// Absolute folder the command runs in (default <data>/apps/<app>).
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// Absolute folder a static app serves (default <data>/apps/<app>/public).
    #[arg(long, value_name = "DIR")]
    root: Option<String>,
    /// Number of instances.
    #[arg(long)]
    replicas: Option<u32>,
    /// Memory limit, e.g. 256MB.
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit in cores, e.g. 0.5.
    #[arg(long)]
    cpu: Option<f64>,
    /// Largest request body the gateway lets through, e.g. 10MB.
    #[arg(long)]
    max_body: Option<String>,
    /// Path that answers 2xx when the app is healthy, e.g. /up.
    #[arg(long, value_name = "PATH")]
    health_path: Option<String>,
    /// Git repository that `wharf deploy` (without --git) and webhooks fetch from; `none`
    /// forgets it.
    #[arg(long, value_name = "URL")]
    git: Option<String>,
    /// Branch deployed by default and accepted from webhooks (default main).
    #[arg(long)]
    branch: Option<String>,
    /// How many releases to keep for rollback (default 5).
    #[arg(long)]
    keep_releases: Option<u32>,
    /// Send Strict-Transport-Security with this max-age on HTTPS answers, e.g. 365d; "off" to stop.
    #[arg(long, value_name = "DURATION")]
    hsts: Option<String>,
    /// Run the app's processes and builds in the sandbox (default on); "off" opts out.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    sandbox: Option<bool>,
    /// What runs the app: process (default), docker (containers built from its Dockerfile) or
    /// swarm (a Swarm service across nodes).
    #[arg(long, value_parser = ["process", "docker", "swarm"])]
    runtime: Option<String>,
    /// The port the app listens on in its container (default 8000, told in $PORT).
    #[arg(long)]
    port: Option<u16>,
    /// Containers get a read-only root file system and a writable /tmp.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    read_only: Option<bool>,
    /// Swarm placement constraint, e.g. node.labels.zone==a (repeatable; the list given
    /// replaces the app's; `--constraint none` removes them).
    #[arg(long = "constraint", value_name = "EXPR")]
    constraints: Vec<String>,
    /// Time an instance gets between SIGTERM and SIGKILL when it stops, e.g. 30s (default 10s).
    #[arg(long, value_name = "DURATION")]
    stop_grace: Option<String>,
    /// The node (a machine running `wharf agent`) the app runs on; `none` brings it back to
    /// the server's machine.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{s}`: use on or off")),
    }
}

impl SettingsArgs {
    fn into_settings(self, availability: Option<String>) -> Settings {
        Settings {
            run: self.run,
            workdir: self.workdir.map(absolute),
            root: self.root.map(absolute),
            replicas: self.replicas,
            memory: self.memory,
            cpu: self.cpu,
            max_body: self.max_body,
            health_path: self.health_path,
            availability,
            git_url: self.git,
            git_ref: self.branch,
            keep_releases: self.keep_releases,
            hsts: self.hsts,
            sandbox: self.sandbox,
            runtime: self.runtime,
            port: self.port,
            read_only: self.read_only,
            constraints: match self.constraints.as_slice() {
                [] => None,
                [none] if none == "none" => Some(Vec::new()),
                _ => Some(self.constraints),
            },
            stop_grace: self.stop_grace,
            node: self.node.map(|n| match n.as_str() {
                "none" | "server" => String::new(),
                _ => n,
            }),
        }
    }
}

/// Relative folders are taken from where the CLI runs, as users expect.
fn absolute(dir: String) -> String {
    let p = std::path::Path::new(&dir);
    if p.is_absolute() {
        return dir;
    }
    std::env::current_dir().map_or(dir.clone(), |cwd| cwd.join(p).display().to_string())
}

/// Parses `KEY=VALUE`.
pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

#[derive(clap::Args)]
pub(crate) struct ListArgs {
    /// Only apps whose name starts with this.
    #[arg(long)]
    prefix: Option<String>,
    /// Only apps of this kind: static or process.
    #[arg(long)]
    kind: Option<String>,
    /// Only apps in this state (running, stopped, static, not-served, no-command, crashed, failed).
    #[arg(long)]
    state: Option<String>,
    /// Show the first N apps only (at most 1000); without it every page is listed.
    #[arg(long)]
    limit: Option<u32>,
}

/// Lists apps a page at a time, printing each page as it arrives, so the first lines come at
/// once with ten thousand apps.
async fn list(client: &Client, conn: &Conn, args: ListArgs) -> anyhow::Result<()> {
    let query = AppsQuery {
        limit: args.limit,
        prefix: args.prefix,
        kind: args.kind,
        state: args.state,
        ..Default::default()
    };
    let headers = ["NAME", "KIND", "STATE", "INSTANCES", "URL"];
    let filtered = query.prefix.is_some() || query.kind.is_some() || query.state.is_some();
    let mut page: Page<serde_json::Value> = client.page(&query.path()).await?;
    if conn.json {
        // One JSON array of every app listed, as before pages existed.
        let mut all = std::mem::take(&mut page.items);
        while let (None, Some(next)) = (args.limit, page.next.take()) {
            page = client.page(&next).await?;
            all.append(&mut page.items);
        }
        return json(&all);
    }
    let mut widths: Option<Vec<usize>> = None;
    loop {
        let apps: Vec<wharf_client::dto::AppView> = page
            .items
            .drain(..)
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()?;
        let rows: Vec<Vec<String>> = apps
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    a.kind.clone(),
                    a.state.clone(),
                    a.instances.len().to_string(),
                    a.url.clone(),
                ]
            })
            .collect();
        if widths.is_none() {
            if rows.is_empty() {
                if filtered {
                    outln!("no apps match");
                } else {
                    outln!(
                        "no apps yet: create one with `wharf apps create NAME --run CMD` or `--static`"
                    );
                }
                return Ok(());
            }
            // Wide enough for the longest name an app may have, so later pages line up.
            let mut w = print::widths(&headers, &rows);
            w[0] = w[0].max(24);
            print::table_rows(&w, vec![headers.iter().map(|h| h.to_string()).collect()]);
            widths = Some(w);
        }
        print::table_rows(widths.as_deref().unwrap_or_default(), rows);
        match (args.limit, page.next.take()) {
            (None, Some(next)) => page = client.page(&next).await?,
            _ => return Ok(()),
        }
    }
}

pub(crate) async fn apps(client: &Client, conn: &Conn, cmd: AppsCmd) -> anyhow::Result<()> {
    match cmd {
        AppsCmd::List(args) => list(client, conn, args).await,
        AppsCmd::Create {
            name,
            r#static,
            settings,
            domains,
            env,
        } => {
            let req = CreateApp {
                name,
                kind: Some(if r#static { "static" } else { "process" }.to_string()),
                settings: settings.into_settings(None),
                domains,
                env: env.into_iter().collect::<BTreeMap<_, _>>(),
            };
            changed(conn, client.create_app(&req).await?)
        }
        AppsCmd::Show { name } => {
            if conn.json {
                return json(&client.get_json(&format!("/apps/{name}")).await?);
            }
            super::watch::show_app(&client.app(&name).await?);
            Ok(())
        }
        AppsCmd::Set {
            name,
            settings,
            availability,
        } => changed(
            conn,
            client
                .update_app(&name, &settings.into_settings(availability))
                .await?,
        ),
        AppsCmd::Delete { name, yes, purge } => {
            if !yes {
                let what = if purge {
                    format!(
                        "deleting `{name}` with --purge stops it, removes its routes and certificates, and removes its volume, logs, code, releases and backups for good"
                    )
                } else {
                    format!(
                        "deleting `{name}` stops it and removes its routes and certificates (its volume and logs are kept; --purge removes them too)"
                    )
                };
                if !confirmed(&what, &name)? {
                    anyhow::bail!("{what}; add --yes to confirm");
                }
            }
            let op = client.delete_app(&name, purge).await?;
            if conn.json {
                return json(&op);
            }
            super::print::operation(&op);
            if op.status == "failed" {
                anyhow::bail!("{}", op.message);
            }
            Ok(())
        }
        AppsCmd::Start { name } => changed(conn, client.action(&name, "start").await?),
        AppsCmd::Stop { name } => changed(conn, client.action(&name, "stop").await?),
        AppsCmd::Restart { name } => changed(conn, client.action(&name, "restart").await?),
        AppsCmd::Scale { name, replicas } => changed(conn, client.scale(&name, replicas).await?),
    }
}

pub(crate) async fn env(client: &Client, conn: &Conn, cmd: EnvCmd) -> anyhow::Result<()> {
    match cmd {
        EnvCmd::List { app } => {
            let names = client.env_names(&app).await?;
            if conn.json {
                return json(&serde_json::json!({ "names": names }));
            }
            if names.is_empty() {
                outln!("{app} has no variables");
            }
            for n in names {
                outln!("{n}");
            }
            Ok(())
        }
        EnvCmd::Set { app, vars } => {
            let req = ChangeEnv {
                set: vars.into_iter().collect(),
                unset: Vec::new(),
            };
            changed(conn, client.change_env(&app, &req).await?)
        }
        EnvCmd::Unset { app, keys } => {
            let req = ChangeEnv {
                set: BTreeMap::new(),
                unset: keys,
            };
            changed(conn, client.change_env(&app, &req).await?)
        }
    }
}

pub(crate) async fn domains(client: &Client, conn: &Conn, cmd: DomainsCmd) -> anyhow::Result<()> {
    match cmd {
        DomainsCmd::List { app } => {
            let a = client.app(&app).await?;
            if conn.json {
                return json(
                    &serde_json::json!({ "hosts": a.hosts, "domains": a.domains, "tls": a.tls }),
                );
            }
            // Each host with where its certificate comes from (plain HTTP: none).
            let rows = a
                .hosts
                .iter()
                .map(|h| {
                    let kind = if a.domains.contains(h) {
                        "domain"
                    } else {
                        "default"
                    };
                    let tls = a.tls.get(h).map_or("none (HTTP only)", String::as_str);
                    vec![h.clone(), kind.to_string(), tls.to_string()]
                })
                .collect();
            print::table(&["HOST", "KIND", "TLS"], rows);
            Ok(())
        }
        DomainsCmd::Add {
            app,
            host,
            tls,
            cert,
            key,
        } => {
            let read = |p: Option<std::path::PathBuf>| {
                p.map(|p| {
                    std::fs::read_to_string(&p)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
                })
                .transpose()
            };
            let body = wharf_client::dto::AddDomain {
                host,
                tls,
                cert_pem: read(cert)?,
                key_pem: read(key)?,
            };
            changed(conn, client.add_domain_with(&app, &body).await?)
        }
        DomainsCmd::Remove { app, host } => changed(conn, client.remove_domain(&app, &host).await?),
    }
}

/// `wharf certs`: every domain served over HTTPS, its certificate and the last attempt.
/// `wharf nodes`: the Swarm's nodes and the tasks of wharf's apps on each.
pub(crate) async fn nodes(
    client: &Client,
    conn: &Conn,
    cmd: Option<NodesCmd>,
) -> anyhow::Result<()> {
    match cmd {
        None | Some(NodesCmd::List) => {}
        Some(NodesCmd::Add { name, expires }) => {
            let invite = client.add_node(&name, expires).await?;
            if conn.json {
                return json(&invite);
            }
            let secs = invite.expires_at.saturating_sub(super::print::unix_now());
            let left = if secs < 120 {
                format!("{secs} s")
            } else {
                format!("{} min", secs.div_ceil(60))
            };
            println!(
                "Run this on the machine that joins as {} (the token works once, for {left}):\n\n  {}\n",
                invite.name, invite.command
            );
            return Ok(());
        }
        Some(NodesCmd::Remove { name }) => {
            client.remove_node(&name).await?;
            println!("node {name} removed: its link is closed and its certificate refused");
            return Ok(());
        }
    }
    let nodes = client.nodes().await?;
    if conn.json {
        return json(&nodes);
    }
    if nodes.link.is_some() || !nodes.agents.is_empty() {
        let rows = nodes
            .agents
            .into_iter()
            .map(|a| {
                vec![
                    a.name,
                    a.state,
                    a.last_contact
                        .map(super::print::ago)
                        .unwrap_or_else(|| "-".into()),
                    a.version.unwrap_or_else(|| "-".into()),
                    if a.apps.is_empty() {
                        "-".into()
                    } else {
                        a.apps.join(", ")
                    },
                    a.latency_ms
                        .map(|ms| format!("{ms:.1} ms"))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        super::print::table(
            &[
                "NODE",
                "STATE",
                "LAST CONTACT",
                "VERSION",
                "APPS",
                "LATENCY",
            ],
            rows,
        );
    }
    let Some(swarm) = nodes.swarm else {
        if nodes.link.is_none() {
            anyhow::bail!(
                "no nodes: the server's link is off and {}",
                nodes
                    .swarm_note
                    .unwrap_or_else(|| "there is no Swarm".into())
            );
        }
        return Ok(());
    };
    let rows = swarm
        .into_iter()
        .map(|n| {
            let tasks = if n.tasks.is_empty() {
                "-".to_string()
            } else {
                n.tasks
                    .iter()
                    .map(|t| match &t.addr {
                        Some(a) => format!("{} ({} {a})", t.app, t.state),
                        None => format!("{} ({})", t.app, t.state),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                n.hostname,
                n.addr,
                n.state,
                n.availability,
                if n.manager { "manager" } else { "worker" }.to_string(),
                tasks,
            ]
        })
        .collect();
    super::print::table(
        &[
            "SWARM NODE",
            "ADDRESS",
            "STATE",
            "AVAILABILITY",
            "ROLE",
            "TASKS",
        ],
        rows,
    );
    Ok(())
}

pub(crate) async fn tunnels(
    client: &Client,
    conn: &Conn,
    cmd: Option<TunnelsCmd>,
) -> anyhow::Result<()> {
    match cmd {
        None | Some(TunnelsCmd::List) => {
            let list = client.tunnels().await?;
            if conn.json {
                return json(&list);
            }
            let rows = list
                .into_iter()
                .map(|t| vec![t.name, t.listen, t.to])
                .collect();
            super::print::table(&["TUNNEL", "LISTEN", "TO"], rows);
        }
        Some(TunnelsCmd::Add { name, listen, to }) => {
            let t = client
                .add_tunnel(&wharf_client::dto::TunnelSpec {
                    name,
                    listen,
                    to,
                    warning: None,
                })
                .await?;
            if conn.json {
                return json(&t);
            }
            println!("tunnel {}: {} -> {}", t.name, t.listen, t.to);
            if let Some(w) = &t.warning {
                println!("warning: {w}");
            }
        }
        Some(TunnelsCmd::Remove { name }) => {
            client.remove_tunnel(&name).await?;
            println!("tunnel {name} removed");
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub(crate) enum NodesCmd {
    /// Every node: state, last contact, version, apps and link latency (the default).
    List,
    /// Invite a machine: prints the one command to run there (`wharf agent --join …`).
    Add {
        name: String,
        /// How long the token works (default 1h), e.g. 10m.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Forget a node: its link is closed at once and refused from then on.
    Remove { name: String },
}

#[derive(clap::Subcommand)]
pub(crate) enum TunnelsCmd {
    /// Every tunnel (the default).
    List,
    /// Carry TCP from one machine to another over the links, e.g.
    /// `wharf tunnels add pg --listen web1:5432 --to db1:127.0.0.1:5432`.
    Add {
        name: String,
        /// NODE:[ADDR:]PORT where connections are accepted (`server` is the server's
        /// machine); the address defaults to 127.0.0.1.
        #[arg(long)]
        listen: String,
        /// NODE:ADDR:PORT they are carried to.
        #[arg(long)]
        to: String,
    },
    /// Close a tunnel.
    Remove { name: String },
}

pub(crate) async fn certs(client: &Client, conn: &Conn) -> anyhow::Result<()> {
    let certs = client.certs().await?;
    if conn.json {
        return json(&certs);
    }
    if certs.is_empty() {
        outln!("no certificates: add one with `wharf domains add APP HOST --tls acme`");
        return Ok(());
    }
    let date = |t: Option<i64>| t.map_or_else(|| "-".to_string(), super::print::date);
    let rows = certs
        .into_iter()
        .map(|c| {
            vec![
                c.host,
                c.app.unwrap_or_else(|| "-".into()),
                c.source,
                c.issuer.unwrap_or_else(|| "(none yet)".into()),
                date(c.not_after),
                date(c.next_renewal),
                c.last_attempt.map_or_else(
                    || "-".into(),
                    |a| format!("{} {}", if a.ok { "ok" } else { "FAILED" }, a.message),
                ),
            ]
        })
        .collect();
    super::print::table(
        &[
            "HOST",
            "APP",
            "SOURCE",
            "ISSUER",
            "EXPIRES",
            "RENEWAL",
            "LAST ATTEMPT",
        ],
        rows,
    );
    Ok(())
}

/// Asks on the terminal to type `name` to go on; false (ask for `--yes`) when stdin or stderr
/// is not a terminal, as in scripts.
fn confirmed(what: &str, name: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    let mut err = std::io::stderr();
    write!(err, "{what}.\nType the app's name to confirm: ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() == name {
        return Ok(true);
    }
    anyhow::bail!("not deleted: the name typed was not `{name}`")
}
