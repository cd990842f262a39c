//! `wharf run APP -- CMD [ARGS...]`: a one-off command in the app's release, its output
//! streamed to stdout and stderr as it comes; the CLI exits with the command's status (128 +
//! the signal when it was killed), as `docker exec` does.

use std::io::{Read, Write};

use futures_util::StreamExt;
use wharf_client::Client;
use wharf_client::dto::{RunEvent, RunRequest};

#[derive(clap::Args, Clone)]
pub(crate) struct RunArgs {
    app: String,
    /// Stop the command after this many seconds (default 600).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Give the command this program's standard input (read to its end first).
    #[arg(long)]
    stdin: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Runs the command; ends the program with its status when that is not 0.
pub(crate) async fn run(client: &Client, conn: &super::Conn, args: RunArgs) -> anyhow::Result<()> {
    let stdin = if args.stdin {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input)?;
        Some(input)
    } else {
        None
    };
    let req = RunRequest {
        command: args.command,
        shell: None,
        timeout_secs: args.timeout,
        stdin,
    };
    let mut events = std::pin::pin!(client.run(&args.app, &req).await?);
    while let Some(event) = events.next().await {
        let event = event?;
        if conn.json {
            // The API's events as they are, one a line (the exit status is still the CLI's).
            outln!("{}", serde_json::to_string(&event)?);
        }
        match event {
            RunEvent::Stdout(_) | RunEvent::Stderr(_) if conn.json => {}
            RunEvent::Stdout(text) => crate::out::bytes(text.as_bytes()),
            RunEvent::Stderr(text) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
            }
            RunEvent::Exit(exit) => {
                let status = exit.status();
                if exit.code.is_none() && !conn.json {
                    // Stopped rather than ended: say why (an exit status speaks for itself).
                    eprintln!("wharf run: {}", exit.message);
                }
                if status != 0 {
                    // Whatever is still buffered goes out before the exit, which skips it.
                    crate::out::bytes(b"");
                    std::process::exit(status);
                }
                return Ok(());
            }
        }
    }
    anyhow::bail!("the server stopped answering before the command ended")
}
