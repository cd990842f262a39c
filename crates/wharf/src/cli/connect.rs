//! Where the CLI finds the API and its token: flags/env, the login file, or the local server's
//! admin token file.

use std::path::PathBuf;

use anyhow::Context;
use wharf_client::Client;

use super::Conn;

const DEFAULT_URL: &str = "http://127.0.0.1:7070";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct LoginFile {
    url: Option<String>,
    token: Option<String>,
}

fn login_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("wharf").join("cli.toml"))
}

/// The saved login; none if there is no file. One that cannot be read is an error: falling
/// back to the local defaults would send the user after a server that is not the one meant.
fn read_login() -> anyhow::Result<LoginFile> {
    let Some(path) = login_path() else {
        return Ok(LoginFile::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LoginFile::default()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the login in {}: {}; run `wharf login` again (or remove the file)",
            path.display(),
            e.message()
        )
    })
}

pub(crate) fn client(conn: &Conn) -> anyhow::Result<Client> {
    let login = if conn.url.is_some() && conn.token.is_some() {
        LoginFile::default()
    } else {
        read_login()?
    };
    let url = conn
        .url
        .clone()
        .or(login.url)
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let token = conn.token.clone().or(login.token).or_else(|| {
        let data = std::env::var_os("WHARF_DATA")
            .map_or_else(|| PathBuf::from("./wharf-data"), PathBuf::from);
        std::fs::read_to_string(data.join("admin.token"))
            .ok()
            .map(|t| t.trim().to_string())
    });
    Ok(Client::new(&url, token)?)
}

/// `wharf login`: check the URL and token against the API, then remember them.
#[derive(clap::Args)]
pub(crate) struct Login {
    /// API address, e.g. http://127.0.0.1:7070.
    #[arg(long)]
    url: String,
    /// An API token.
    #[arg(long, env = "WHARF_TOKEN", hide_env_values = true)]
    token: String,
}

pub(crate) fn login(args: Login) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = Client::new(&args.url, Some(args.token.clone()))?;
    // The summary: a token with roles on single apps may read it (not every app's state).
    let status = rt.block_on(client.status_summary())?;
    let path =
        login_path().context("cannot tell where to keep the login: set HOME or XDG_CONFIG_HOME")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = toml::to_string(&LoginFile {
        url: Some(args.url.clone()),
        token: Some(args.token),
    })?;
    // Whole or not at all (a full disk keeps the old login), readable by the user only.
    wharf_tls::write_private(&path, text.as_bytes())?;
    outln!(
        "logged in to {} (wharf {}, {} apps); saved in {}",
        args.url,
        status.version,
        status.app_count,
        path.display()
    );
    Ok(())
}
