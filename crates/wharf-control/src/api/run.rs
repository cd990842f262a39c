//! `POST /apps/{app}/run`: a one-off command in the app's release (a process app) or in one
//! of its running containers (a docker app), answered as
//! newline-delimited JSON: its output as it comes (`stdout`, `stderr`), then one `exit`, always
//! last. Everything that can be refused is refused before the command starts, with a status;
//! once it runs, the answer is 200 and the `exit` line says how it ended. The command ends
//! when the client goes away. Recorded as an operation of kind `run`: the command (env values
//! masked) and how it ended, never the env nor the output.

use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use wharf_client::dto::{RunEvent, RunExit, RunRequest};
use wharf_store::Caller;

use std::collections::BTreeMap;

use wharf_runtime::{InstanceState, InstanceStatus};
use wharf_store::{App, RuntimeKind};

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use super::views;
use crate::Control;
use crate::oneoff;
use crate::oplog::OpLog;

pub(crate) async fn run(
    State(c): State<Arc<Control>>,
    Path(app): Path<String>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<RunRequest>,
) -> ApiResult<Response> {
    let current = c.store.app(&app)?;
    let (script, shown) = command(&req)?;
    let timeout = match req.timeout_secs {
        None => oneoff::DEFAULT_TIMEOUT,
        Some(s) if (1..=oneoff::MAX_TIMEOUT_SECS).contains(&s) => std::time::Duration::from_secs(s),
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "`timeout_secs` must be between 1 and {}",
                oneoff::MAX_TIMEOUT_SECS
            )));
        }
    };
    if let Some(node) = &current.node {
        return Err(ApiError::conflict(format!(
            "{app} runs on node {node}: one-off commands run for apps on this server only so far"
        )));
    }
    let no_release = || {
        ApiError::conflict(format!(
            "{app} has no release yet, so there is nowhere to run a command: deploy it \
             first (`wharf deploy {app}`)"
        ))
    };
    let target = match current.runtime {
        RuntimeKind::Process => Target::Process(
            c.reconciler
                .one_off(&current)
                .map_err(ApiError::conflict)?
                .ok_or_else(no_release)?,
        ),
        RuntimeKind::Docker if current.release.is_none() => return Err(no_release()),
        RuntimeKind::Docker => container(&c, &current).await?,
        RuntimeKind::Swarm => {
            return Err(ApiError::conflict(format!(
                "{app} runs as a Swarm service: one-off commands run for process apps and \
                 docker-runtime containers only so far"
            )));
        }
    };
    // What the operations log shows: the command, any env value in it masked.
    let (env, place) = match &target {
        Target::Process(one) => (&one.env, one.workdir.display().to_string()),
        Target::Container { env, instance, .. } => (env, format!("container {instance}")),
    };
    let shown = mask(&shown, env.values());
    let op = OpLog::begin(&c.store, Some(&app), "run", &caller.user);
    let stdin = req.stdin.map(String::into_bytes);
    let pid_file = c.data.run_pid(&app, op.id);
    let started = match target {
        Target::Process(one) => {
            oneoff::spawn(c.reconciler.launcher(), one, &script, stdin, pid_file)
                .map_err(|e| (false, e.to_string()))
        }
        Target::Container { engine, id, .. } => {
            oneoff::exec(&engine, &id, &script, stdin, pid_file)
                .await
                .map_err(|e| {
                    let gone = matches!(
                        e,
                        wharf_docker::ExecError::NoContainer(_)
                            | wharf_docker::ExecError::NotRunning(_)
                    );
                    (gone, e.to_string())
                })
        }
    };
    let running = match started {
        Ok(r) => r,
        Err((gone, e)) => {
            let msg = format!("`{shown}` could not start: {e}");
            op.failed("run", &msg);
            op.finish(&Err(msg.clone()));
            return Err(if gone {
                ApiError::conflict(msg)
            } else {
                ApiError::internal(msg)
            });
        }
    };
    op.ok("start", format!("`{shown}` in {place}"));
    // Bounded: a client that reads slowly slows the command down (its pipes fill up).
    let (tx, rx) = tokio::sync::mpsc::channel::<RunEvent>(64);
    let stopping = c.stopping.clone();
    tokio::spawn(async move {
        let ended = oneoff::watch(running, timeout, &tx, &stopping).await;
        let (code, signal, message) = ended.describe();
        let result = if ended.success() {
            op.ok("run", format!("`{shown}`: {message}"));
            Ok(format!("`{shown}`: {message}"))
        } else {
            op.failed("run", format!("`{shown}`: {message}"));
            Err(format!("`{shown}`: {message}"))
        };
        op.finish(&result);
        let _ = tx
            .send(RunEvent::Exit(RunExit {
                code,
                signal,
                message,
                operation: op.id,
            }))
            .await;
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        Some((line(&e), rx))
    });
    let headers = [(http::header::CONTENT_TYPE, "application/x-ndjson")];
    Ok((headers, Body::from_stream(events)).into_response())
}

/// Where a run's command runs.
enum Target {
    /// A process app: as its instances run.
    Process(crate::reconciler::OneOff),
    /// A container app: in one of its running containers (`id`, instance name `instance`).
    Container {
        engine: Arc<wharf_docker::Engine>,
        id: String,
        instance: String,
        /// The app's env, only to mask its values in what is logged.
        env: BTreeMap<String, String>,
    },
}

/// One of a docker-runtime app's running containers to run a command in, found as the
/// instance views find them; refused when there is none, or when its processes cannot be
/// stopped from here (an engine on another machine).
async fn container(c: &Control, app: &App) -> ApiResult<Target> {
    let name = &app.name;
    let engine = c.runtimes.engine().map_err(ApiError::conflict)?;
    if !engine.host().starts_with("unix://") {
        return Err(ApiError::conflict(format!(
            "{name} runs on the Docker engine at {}, which is not on this machine: one-off \
             commands run in containers of a local engine only (the server stops them by \
             their process)",
            engine.host()
        )));
    }
    let mut running: Vec<InstanceStatus> = views::running(c)
        .await
        .into_iter()
        .filter(|i| i.app == *name && i.state == InstanceState::Running && i.id.is_some())
        .collect();
    running.sort_by(|a, b| a.instance.cmp(&b.instance));
    let Some(first) = running.into_iter().next() else {
        return Err(ApiError::conflict(format!(
            "{name} has no running container to run the command in: see `wharf status \
             {name}`, and start or deploy it"
        )));
    };
    let env = c.reconciler.app_env(app).map_err(ApiError::internal)?;
    Ok(Target::Container {
        engine,
        id: first.id.unwrap_or_default(),
        instance: first.instance,
        env,
    })
}

/// The script for `/bin/sh -c` and the command as the log shows it.
fn command(req: &RunRequest) -> ApiResult<(String, String)> {
    let has_nul = |s: &str| s.contains('\0');
    match (&req.command[..], &req.shell) {
        ([], None) => Err(ApiError::invalid(
            "say what to run: `command` (a list of arguments) or `shell` (a command line)",
        )),
        ([_, ..], Some(_)) => Err(ApiError::invalid(
            "give either `command` or `shell`, not both",
        )),
        ([first, ..], None) if first.is_empty() => Err(ApiError::invalid(
            "`command` starts with an empty program name",
        )),
        (argv @ [_, ..], None) if argv.iter().any(|a| has_nul(a)) => Err(ApiError::invalid(
            "`command` holds a NUL character, which no argument can",
        )),
        (argv @ [_, ..], None) => Ok((oneoff::script_of(argv), argv.join(" "))),
        ([], Some(line)) if line.trim().is_empty() => {
            Err(ApiError::invalid("`shell` is empty: say what to run"))
        }
        ([], Some(line)) if has_nul(line) => Err(ApiError::invalid(
            "`shell` holds a NUL character, which no command line can",
        )),
        ([], Some(line)) => Ok((line.clone(), line.clone())),
    }
}

/// `text` with every value of `secrets` (4 characters or more, as deploy output masks them)
/// replaced by `****`.
fn mask<'a>(text: &str, secrets: impl Iterator<Item = &'a String>) -> String {
    let mut secrets: Vec<&String> = secrets.filter(|s| s.len() >= 4).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_string();
    for s in secrets {
        text = text.replace(s.as_str(), "****");
    }
    text
}

fn line(e: &RunEvent) -> Result<Bytes, std::io::Error> {
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}
