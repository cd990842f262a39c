//! Read-only views: `wharf status`, `wharf logs`, `wharf ops`.

use futures_util::StreamExt;
use wharf_client::Client;
use wharf_client::dto::AppView;

use super::Conn;
use super::print::{bytes, json, operation, table};

pub(crate) async fn status(
    client: &Client,
    conn: &Conn,
    app: Option<String>,
) -> anyhow::Result<()> {
    if let Some(app) = app {
        if conn.json {
            return json(&client.get_json(&format!("/apps/{app}")).await?);
        }
        show_app(&client.app(&app).await?);
        return Ok(());
    }
    if conn.json {
        return json(&client.get_json("/status").await?);
    }
    let s = client.status().await?;
    outln!(
        "wharf {}  up {}s  gateway {}  memory {}{}",
        s.version,
        s.uptime_seconds,
        s.gateway,
        bytes(s.rss_bytes),
        // Shown to those with a role everywhere only.
        if s.data_dir.is_empty() {
            String::new()
        } else {
            format!("  data {}", s.data_dir)
        }
    );
    if s.apps.is_empty() {
        outln!("no apps yet");
        return Ok(());
    }
    outln!();
    let rows = s
        .apps
        .iter()
        .map(|a| {
            let cpu: f64 = a.instances.iter().filter_map(|i| i.cpu_seconds).sum();
            let mem: u64 = a.instances.iter().filter_map(|i| i.rss_bytes).sum();
            let restarts: u32 = a.instances.iter().map(|i| i.restarts).sum();
            vec![
                a.name.clone(),
                a.state.clone(),
                a.instances.len().to_string(),
                a.url.clone(),
                if a.instances.is_empty() {
                    "-".into()
                } else {
                    format!("{cpu:.1}s")
                },
                if a.instances.is_empty() {
                    "-".into()
                } else {
                    bytes(Some(mem))
                },
                restarts.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "INSTANCES",
            "URL",
            "CPU",
            "MEM",
            "RESTARTS",
        ],
        rows,
    );
    Ok(())
}

pub(crate) fn show_app(a: &AppView) {
    // A container app's kind is its runtime: what a user chose it by.
    let kind = if a.runtime == "process" {
        &a.kind
    } else {
        &a.runtime
    };
    outln!("{} ({}, {}): {}", a.name, kind, a.availability, a.state);
    if let Some(why) = &a.failure {
        // A failed change while the previous instances keep serving is not a failed app.
        let label = if a.state == "failed" {
            "failed"
        } else {
            "last change failed:"
        };
        outln!("  {label:<9} {}", why.replace('\n', "\n            "));
    }
    outln!("  url       {}", a.url);
    outln!("  hosts     {}", a.hosts.join(", "));
    if let Some(run) = &a.run {
        outln!("  run       {run}");
        outln!("  workdir   {}", a.workdir);
    }
    if let Some(root) = &a.root {
        outln!("  root      {root}");
    }
    if let Some(node) = &a.node {
        // Its volume, user and sandbox are the node's agent's.
        outln!("  node      {node}");
    } else {
        outln!("  volume    {}", a.volume);
    }
    if a.runtime != "process" {
        let mut opts = vec![format!("port {}", a.port.unwrap_or(8000))];
        if a.read_only {
            opts.push("read-only root".into());
        }
        outln!("  runtime   {} ({})", a.runtime, opts.join(", "));
    }
    // Containers run as their image's user; the app's uid is for processes and builds.
    match (a.uid, &a.users_note) {
        _ if a.runtime != "process" || a.node.is_some() => {}
        (Some(uid), _) => outln!("  user      uid {uid} (the app's own)"),
        (None, Some(why)) => outln!("  user      per-app users: off ({why})"),
        (None, None) => {}
    }
    outln!(
        "  env       {}",
        if a.env.is_empty() {
            "-".to_string()
        } else {
            a.env.join(", ")
        }
    );
    if a.kind == "process" {
        let mut limits = Vec::new();
        if let Some(m) = a.memory_bytes {
            limits.push(format!("memory {}", bytes(Some(m))));
        }
        if let Some(c) = a.cpu {
            limits.push(format!("cpu {c}"));
        }
        outln!("  replicas  {}", a.replicas);
        outln!(
            "  limits    {}",
            if limits.is_empty() {
                "none".to_string()
            } else {
                limits.join(", ")
            }
        );
        if let Some(note) = &a.limits_note {
            outln!("            ({note})");
        }
        if let Some(sandbox) = &a.sandbox_status
            && a.runtime == "process"
            && a.node.is_none()
        {
            outln!("  sandbox   {sandbox}");
        }
    }
    if !a.instances.is_empty() {
        outln!();
        let containers = a.runtime != "process";
        let rows = a
            .instances
            .iter()
            .map(|i| {
                let short = |id: &Option<String>| {
                    id.as_deref()
                        .map_or("-".to_string(), |s| s.chars().take(12).collect())
                };
                vec![
                    i.name.clone(),
                    i.state.clone(),
                    if containers {
                        short(&i.id)
                    } else {
                        i.pid.map_or("-".into(), |p| p.to_string())
                    },
                    match (&i.addr, &i.node) {
                        (Some(addr), Some(node)) => format!("{addr} on {node}"),
                        (Some(addr), None) => addr.clone(),
                        (None, _) => "-".into(),
                    },
                    i.uptime_seconds.map_or("-".into(), |s| format!("{s}s")),
                    i.cpu_seconds.map_or("-".into(), |c| format!("{c:.1}s")),
                    bytes(i.rss_bytes),
                    i.restarts.to_string(),
                    i.last_exit.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(
            &[
                "INSTANCE",
                "STATE",
                if containers { "ID" } else { "PID" },
                "ADDRESS",
                "UPTIME",
                "CPU",
                "MEM",
                "RESTARTS",
                "LAST EXIT",
            ],
            rows,
        );
    }
}

pub(crate) async fn logs(
    client: &Client,
    app: &str,
    lines: u32,
    follow: bool,
) -> anyhow::Result<()> {
    if !follow {
        out!("{}", client.logs(app, lines).await?);
        return Ok(());
    }
    let mut stream = Box::pin(client.follow_logs(app, lines).await?);
    while let Some(chunk) = stream.next().await {
        crate::out::bytes(&chunk?);
    }
    Ok(())
}

pub(crate) async fn ops(
    client: &Client,
    conn: &Conn,
    app: Option<String>,
    limit: u32,
) -> anyhow::Result<()> {
    let ops = client.operations(app.as_deref(), limit).await?;
    if conn.json {
        return json(&ops);
    }
    if ops.is_empty() {
        outln!("no operations yet");
    }
    for op in ops.iter().rev() {
        let took = op
            .finished_at
            .map(|end| format!(", took {} s", (end - op.started_at).max(0)))
            .unwrap_or_default();
        let by = if op.actor.is_empty() { "-" } else { &op.actor };
        outln!(
            "#{} {} {} [{}] by {by} {} UTC{took}",
            op.id,
            op.app.as_deref().unwrap_or("-"),
            op.kind,
            op.status,
            super::print::when(op.started_at),
        );
        operation(op);
        outln!();
    }
    Ok(())
}
