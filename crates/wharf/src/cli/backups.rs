//! `wharf db …` (managed databases) and `wharf backups …` (backups, schedules, restores).

use std::os::unix::process::CommandExt;

use wharf_client::Client;
use wharf_client::dto::{BackupView, CreateDatabase, DatabaseView, RestoreRequest, ScheduleSpec};

use super::Conn;
use super::print::{ago, bytes, changed, json, table};

#[derive(clap::Subcommand)]
pub(crate) enum DbCmd {
    /// Every managed database (the default).
    List,
    /// Create a database, run it as a supervised service and wait until it answers.
    Create {
        name: String,
        /// postgres, mysql (MariaDB) or redis.
        #[arg(long)]
        engine: String,
    },
    /// Engine, state, port and URL (password hidden) of a database.
    Info { name: String },
    /// Set the database's URL in an app (DATABASE_URL, or REDIS_URL) and restart it without
    /// downtime.
    Link {
        db: String,
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
    },
    /// Open the engine's own shell (psql, mariadb, redis-cli) on the database; arguments
    /// after `--` go to it (e.g. `-- -c 'select 1'`).
    Shell {
        name: String,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Stop and forget a database; --purge removes its data too (its backups stay).
    Delete {
        name: String,
        #[arg(long)]
        purge: bool,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum BackupsCmd {
    /// Backups with size, age, verification and copies, newest first (the default).
    List {
        /// An app or database.
        target: Option<String>,
        /// Also those retention removed.
        #[arg(long)]
        all: bool,
    },
    /// Take a backup of an app's volume or a database now, verified before it counts.
    Run { target: String },
    /// Each schedule's freshness; exits 0 (ok), 1 (warn) or 2 (crit), like a Nagios plugin.
    Check,
    /// Where the repository is and how to open it with restic alone.
    Repo,
    /// Restore a backup: what is there is backed up first, then the backup comes back.
    Restore {
        target: String,
        snapshot: String,
        /// Restore into another app (which must exist) or a new database.
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Backup schedules (list, add, remove).
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Alerts sent about backups, and how each channel took them.
    Alerts,
}

#[derive(clap::Subcommand)]
pub(crate) enum ScheduleCmd {
    List,
    /// Back up TARGET on a schedule, keeping what a retention template says.
    Add {
        target: String,
        /// `production` (hourly=36,daily=30,monthly=3, the default) or e.g. `daily=7,weekly=4`.
        #[arg(long, value_name = "TEMPLATE")]
        keep: Option<String>,
        /// Cron expression in UTC (default: by the template's shortest period, e.g. hourly).
        #[arg(long)]
        cron: Option<String>,
        /// Default: the target's name.
        #[arg(long)]
        name: Option<String>,
    },
    Remove {
        name: String,
    },
}

pub(crate) async fn db(client: &Client, conn: &Conn, cmd: Option<DbCmd>) -> anyhow::Result<()> {
    match cmd.unwrap_or(DbCmd::List) {
        DbCmd::List => {
            let dbs = client.databases().await?;
            if conn.json {
                return json(&dbs);
            }
            let rows = dbs
                .into_iter()
                .map(|d| vec![d.name, d.engine, d.state, d.port.to_string(), d.url])
                .collect();
            table(&["NAME", "ENGINE", "STATE", "PORT", "URL"], rows);
        }
        DbCmd::Create { name, engine } => {
            let d = client
                .create_database(&CreateDatabase { name, engine })
                .await?;
            if conn.json {
                return json(&d);
            }
            outln!(
                "{} database {} is {} on 127.0.0.1:{}; `wharf db link {} APP` sets {} in an app",
                d.engine,
                d.name,
                d.state,
                d.port,
                d.name,
                d.url_var
            );
        }
        DbCmd::Info { name } => {
            let d = client.database(&name).await?;
            if conn.json {
                return json(&d);
            }
            outln!("name:     {}", d.name);
            outln!("engine:   {}", d.engine);
            outln!("state:    {}", d.state);
            outln!("port:     127.0.0.1:{}", d.port);
            outln!("user:     {}", d.user);
            outln!("url:      {} (as {} in linked apps)", d.url, d.url_var);
            outln!("created:  {}", super::print::date(d.created_at));
        }
        DbCmd::Link { db, app } => {
            let c = client.link_database(&db, &app).await?;
            return changed(conn, c);
        }
        DbCmd::Shell { name, args } => {
            let d = client.database(&name).await?;
            let password = client.database_url(&name).await?.password;
            let err = shell_command(&d, password).args(args).exec();
            anyhow::bail!("cannot run the {} shell: {err}", d.engine);
        }
        DbCmd::Delete { name, purge } => {
            client.delete_database(&name, purge).await?;
            outln!(
                "database {name} removed{}",
                if purge {
                    " with its data"
                } else {
                    "; its data is kept"
                }
            );
        }
    }
    Ok(())
}

/// The engine's own client, the password passed in its environment (never on its command line).
fn shell_command(d: &DatabaseView, password: String) -> std::process::Command {
    let port = d.port.to_string();
    let mut cmd;
    match d.engine.as_str() {
        "postgres" => {
            cmd = std::process::Command::new("psql");
            cmd.args(["-h", "127.0.0.1", "-p", &port, "-U", &d.user, &d.name])
                .env("PGPASSWORD", password);
        }
        "mysql" => {
            cmd = std::process::Command::new("mariadb");
            cmd.args(["-h", "127.0.0.1", "-P", &port, "-u", &d.user, &d.name])
                .env("MYSQL_PWD", password);
        }
        _ => {
            cmd = std::process::Command::new("redis-cli");
            cmd.args(["-h", "127.0.0.1", "-p", &port])
                .env("REDISCLI_AUTH", password);
        }
    }
    cmd
}

fn age(b: &BackupView) -> String {
    ago(b.started_at.max(0) as u64)
}

pub(crate) async fn backups(client: &Client, conn: &Conn, cmd: BackupsCmd) -> anyhow::Result<()> {
    match cmd {
        BackupsCmd::List { target, all } => {
            let list = client.backups(target.as_deref(), all).await?;
            if conn.json {
                return json(&list);
            }
            let rows = list
                .into_iter()
                .map(|b| {
                    vec![
                        b.snapshot
                            .as_deref()
                            .map_or("-".to_string(), |s| s[..s.len().min(8)].to_string()),
                        age(&b),
                        b.target,
                        b.kind,
                        b.state,
                        bytes(b.total_bytes),
                        bytes(b.added_bytes),
                        if b.copies.is_empty() {
                            "-".to_string()
                        } else {
                            b.copies.join(" ")
                        },
                        b.error.unwrap_or(b.note),
                    ]
                })
                .collect();
            table(
                &[
                    "SNAPSHOT", "TAKEN", "TARGET", "KIND", "STATE", "SIZE", "ADDED", "COPIES",
                    "NOTE",
                ],
                rows,
            );
        }
        BackupsCmd::Run { target } => {
            let b = client.run_backup(&target).await?;
            if conn.json {
                json(&b)?;
            } else if b.state == "verified" {
                outln!(
                    "backup {} of {} verified: {} ({} added){}",
                    b.snapshot.as_deref().map_or("", |s| &s[..s.len().min(8)]),
                    b.target,
                    bytes(b.total_bytes),
                    bytes(b.added_bytes),
                    if b.note.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", b.note)
                    }
                );
            }
            if b.state != "verified" {
                anyhow::bail!(
                    "backup of {} failed: {}",
                    b.target,
                    b.error.as_deref().unwrap_or("unknown")
                );
            }
        }
        BackupsCmd::Check => {
            // A server that does not answer takes no backups: critical, not a warning.
            let c = match client.backups_check().await {
                Ok(c) => c,
                Err(e) => {
                    outln!("BACKUPS CRIT - cannot reach the server: {e}");
                    std::process::exit(2);
                }
            };
            if conn.json {
                json(&c)?;
            } else {
                if c.schedules.is_empty() {
                    outln!(
                        "BACKUPS OK - no schedules (add one: wharf backups schedule add TARGET)"
                    );
                } else {
                    outln!(
                        "BACKUPS {} - {}",
                        c.level.to_uppercase(),
                        c.schedules
                            .iter()
                            .map(|s| format!(
                                "{} {}{}",
                                s.schedule,
                                s.level,
                                s.age_seconds.map_or(" (never verified)".to_string(), |a| {
                                    format!(" ({} min old)", a / 60)
                                })
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                for s in c.schedules.iter().filter(|s| s.last_error.is_some()) {
                    outln!(
                        "{}: last run failed: {}",
                        s.schedule,
                        s.last_error.as_deref().unwrap_or("")
                    );
                }
                for a in &c.unsent_alerts {
                    outln!("alert not sent: {} ({})", a.subject, a.deliveries);
                }
            }
            crate::out::bytes(b"");
            std::process::exit(match c.level.as_str() {
                "ok" => 0,
                "warn" => 1,
                _ => 2,
            });
        }
        BackupsCmd::Repo => {
            let r = client.backup_repository().await?;
            if conn.json {
                return json(&r);
            }
            outln!("repository:    {}", r.location);
            outln!("password file: {}", r.password_file);
            if let Some(copy) = &r.copy {
                outln!("copies to:     {copy} (same password)");
            }
            outln!("open it with restic alone (keep a copy of the password file elsewhere):");
            outln!("  {}", r.restic);
        }
        BackupsCmd::Restore {
            target,
            snapshot,
            to,
        } => {
            let r = client
                .restore_backup(&RestoreRequest {
                    target,
                    snapshot,
                    to,
                })
                .await?;
            if conn.json {
                return json(&r);
            }
            outln!(
                "restored {} from {}: {}{}",
                r.target,
                &r.snapshot[..r.snapshot.len().min(8)],
                r.summary,
                match (&r.pre_restore_snapshot, r.pre_restore) {
                    (Some(s), _) => format!(
                        "; what was there is backup {} (wharf backups restore {} {} puts it back)",
                        &s[..s.len().min(8)],
                        r.target,
                        &s[..s.len().min(8)]
                    ),
                    (None, Some(id)) => format!("; what was there is backup #{id}"),
                    (None, None) => String::new(),
                }
            );
        }
        BackupsCmd::Schedule(cmd) => match cmd {
            ScheduleCmd::List => {
                let list = client.schedules().await?;
                if conn.json {
                    return json(&list);
                }
                let rows = list
                    .into_iter()
                    .map(|s| {
                        vec![
                            s.name.unwrap_or_default(),
                            s.target,
                            s.cron.unwrap_or_default(),
                            s.template.unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(&["NAME", "TARGET", "CRON", "KEEP"], rows);
            }
            ScheduleCmd::Add {
                target,
                keep,
                cron,
                name,
            } => {
                let s = client
                    .add_schedule(&ScheduleSpec {
                        name,
                        target,
                        template: keep,
                        cron,
                    })
                    .await?;
                if conn.json {
                    return json(&s);
                }
                outln!(
                    "schedule {}: {} at `{}`, keeping {}",
                    s.name.unwrap_or_default(),
                    s.target,
                    s.cron.unwrap_or_default(),
                    s.template.unwrap_or_default()
                );
            }
            ScheduleCmd::Remove { name } => {
                client.remove_schedule(&name).await?;
                outln!("schedule {name} removed; its backups stay");
            }
        },
        BackupsCmd::Alerts => {
            let list = client.alerts().await?;
            if conn.json {
                return json(&list);
            }
            let rows = list
                .into_iter()
                .map(|a| {
                    let sent = a.deliveries.as_array().map_or(String::new(), |d| {
                        if d.is_empty() {
                            "no channel configured".to_string()
                        } else {
                            d.iter()
                                .map(|d| {
                                    format!(
                                        "{} {}",
                                        d["channel"].as_str().unwrap_or(""),
                                        if d["ok"] == true {
                                            "sent".to_string()
                                        } else {
                                            format!(
                                                "NOT SENT: {}",
                                                d["error"].as_str().unwrap_or("")
                                            )
                                        }
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    });
                    vec![ago(a.at.max(0) as u64), a.kind, a.subject, sent]
                })
                .collect();
            table(&["WHEN", "KIND", "SUBJECT", "DELIVERY"], rows);
        }
    }
    Ok(())
}
