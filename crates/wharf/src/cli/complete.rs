//! Shell completions that know the server: app names are asked of the API as they are typed
//! (`wharf deploy bl<TAB>`), through clap's completer driven by `COMPLETE=<shell> wharf`.

use std::ffi::OsStr;
use std::time::Duration;

use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use wharf_client::AppsQuery;

use super::{Conn, connect};

/// A shell waits for completions: a server that does not answer by then gives none.
const PATIENCE: Duration = Duration::from_secs(2);
/// More than a screen of names helps nobody; type more letters.
const MOST: u32 = 200;

/// Completes an app name from the apps whose names start with what is typed.
pub(crate) fn app_names() -> ArgValueCompleter {
    ArgValueCompleter::new(complete_app)
}

fn complete_app(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(prefix) = current.to_str() else {
        return Vec::new();
    };
    // Completion runs before arguments are parsed: the connection comes from the environment,
    // the login file or the local admin token, as for any verb without flags.
    let conn = Conn {
        url: std::env::var("WHARF_URL").ok(),
        token: std::env::var("WHARF_TOKEN").ok(),
        json: false,
    };
    let Ok(client) = connect::client(&conn) else {
        return Vec::new();
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let query = AppsQuery {
        limit: Some(MOST),
        prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
        ..Default::default()
    };
    match rt.block_on(async { tokio::time::timeout(PATIENCE, client.apps_page(&query)).await }) {
        Ok(Ok(page)) => page
            .items
            .into_iter()
            .map(|a| CompletionCandidate::new(a.name))
            .collect(),
        _ => Vec::new(),
    }
}

/// The script that makes `shell` ask wharf for completions (`wharf completions bash`).
pub(crate) fn registration(shell: clap_complete::Shell) -> anyhow::Result<Vec<u8>> {
    let name = shell.to_string();
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells
        .completer(&name)
        .ok_or_else(|| anyhow::anyhow!("no completions for {name}"))?;
    let mut script = Vec::new();
    completer.write_registration("COMPLETE", "wharf", "wharf", "wharf", &mut script)?;
    Ok(script)
}
