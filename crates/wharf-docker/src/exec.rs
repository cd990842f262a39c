//! A command run inside a running container, as `docker exec` runs it: `/bin/sh -c SCRIPT`
//! with the container's user, folder and env, its output attached (standard output and error
//! apart, no terminal), its standard input optionally. The engine's exec API has no way to
//! stop it: [`Exec::pid`] is its process as the engine's machine sees it, for the caller to
//! signal when the engine is on this machine.

use std::pin::Pin;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use tokio::io::AsyncWrite;

use crate::Engine;

/// Chunks of output as the engine attaches them: no terminal, so up to this much per frame.
const OUTPUT_CAPACITY: usize = 16 << 10;
/// How long the engine is given to record an exec's start (its pid) and, once its output
/// closed, its end.
const EXIT_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no container {0}: it may have just been replaced (try again)")]
    NoContainer(String),
    #[error("the container {0} is not running")]
    NotRunning(String),
    #[error("{context}: {reason}")]
    Engine { context: String, reason: String },
}

/// One chunk of an exec's output.
pub struct Chunk {
    /// From its standard error, else its standard output.
    pub stderr: bool,
    pub bytes: Bytes,
}

/// A command started in a container, and what is attached to it.
pub struct Started {
    pub exec: Exec,
    /// Its output as it comes; ends when the command closed it (normally: when it ended).
    pub output: BoxStream<'static, Chunk>,
    /// Its standard input, when asked for: shut it down to give the command end of file.
    pub input: Option<Pin<Box<dyn AsyncWrite + Send>>>,
}

/// A command started in a container.
pub struct Exec {
    docker: Docker,
    id: String,
    /// Its process on the engine's machine, if the engine said.
    pub pid: Option<u32>,
}

impl Engine {
    /// Starts `/bin/sh -c script` in the running container `container` (id or name), its
    /// standard input attached when `stdin`.
    pub async fn exec(
        &self,
        container: &str,
        script: &str,
        stdin: bool,
    ) -> Result<Started, ExecError> {
        let options = CreateExecOptions {
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                script.to_string(),
            ]),
            ..Default::default()
        };
        let created =
            self.docker
                .create_exec(container, options)
                .await
                .map_err(|e| match status(&e) {
                    Some(404) => ExecError::NoContainer(container.to_string()),
                    Some(409) => ExecError::NotRunning(container.to_string()),
                    _ => engine("cannot create the command in the container", e),
                })?;
        let start = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: Some(OUTPUT_CAPACITY),
        };
        let started = self
            .docker
            .start_exec(&created.id, Some(start))
            .await
            .map_err(|e| match status(&e) {
                Some(409) => ExecError::NotRunning(container.to_string()),
                _ => engine("cannot start the command in the container", e),
            })?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(ExecError::Engine {
                context: "cannot start the command in the container".into(),
                reason: "the engine did not attach its output".into(),
            });
        };
        let output = output
            // A broken attachment ends the output like the command's end does; the exit
            // code then tells.
            .take_while(|frame| std::future::ready(frame.is_ok()))
            .filter_map(|frame| {
                std::future::ready(match frame {
                    Ok(LogOutput::StdErr { message }) => Some(Chunk {
                        stderr: true,
                        bytes: message,
                    }),
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        Some(Chunk {
                            stderr: false,
                            bytes: message,
                        })
                    }
                    _ => None,
                })
            })
            .boxed();
        let pid = started_pid(&self.docker, &created.id).await;
        Ok(Started {
            exec: Exec {
                docker: self.docker.clone(),
                id: created.id,
                pid,
            },
            output,
            input: stdin.then_some(input),
        })
    }
}

impl Exec {
    /// Its exit code, once it ended. Called when its output closed: the engine records the
    /// end a moment after, so it is asked again for a while; `None` if it still runs then.
    pub async fn exit_code(&self) -> Result<Option<i64>, ExecError> {
        let deadline = tokio::time::Instant::now() + EXIT_PATIENCE;
        let mut pause = Duration::from_millis(10);
        loop {
            let inspect = self
                .docker
                .inspect_exec(&self.id)
                .await
                .map_err(|e| engine("cannot ask the engine how the command ended", e))?;
            if inspect.running != Some(true) {
                return Ok(inspect.exit_code);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

/// The exec's process on the engine's machine: the engine answers the attach before it starts
/// the process, so it is asked until it says (`None` if the command ended first, or the engine
/// does not say within a few seconds).
async fn started_pid(docker: &Docker, id: &str) -> Option<u32> {
    let deadline = tokio::time::Instant::now() + EXIT_PATIENCE;
    let mut pause = Duration::from_millis(5);
    loop {
        let inspect = docker.inspect_exec(id).await.ok()?;
        if let Some(pid) = inspect
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
        {
            return Some(pid);
        }
        if inspect.exit_code.is_some() || tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn engine(context: &str, e: BollardError) -> ExecError {
    let reason = match e {
        BollardError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        e => e.to_string(),
    };
    ExecError::Engine {
        context: context.to_string(),
        reason,
    }
}
