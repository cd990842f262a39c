//! `wharf deploy`, `wharf releases`, `wharf rollback`, `wharf hooks`.

use std::path::Path;

use futures_util::StreamExt;
use wharf_client::Client;
use wharf_client::dto::{DeployEvent, DeployRequest};

use super::Conn;
use super::print::{json, table};

#[derive(clap::Args, Clone)]
pub(crate) struct DeployArgs {
    #[arg(add = crate::cli::complete::app_names())]
    app: String,
    /// Git repository URL (default: the app's saved one).
    #[arg(long, value_name = "URL", conflicts_with_all = ["dir", "archive"])]
    git: Option<String>,
    /// Branch, tag or commit to deploy (default: the app's branch, then main).
    #[arg(long = "ref", value_name = "REF", conflicts_with_all = ["dir", "archive"])]
    reference: Option<String>,
    /// Deploy this local folder (honours .gitignore and .wharfignore).
    #[arg(long, value_name = "PATH", conflicts_with = "archive")]
    dir: Option<String>,
    /// Deploy a tar.gz or zip archive.
    #[arg(long, value_name = "FILE")]
    archive: Option<String>,
    /// Deploy an existing image as it is (apps on docker or swarm).
    #[arg(long, value_name = "REF", conflicts_with_all = ["git", "reference", "dir", "archive"])]
    image: Option<String>,
}

#[derive(clap::Subcommand)]
pub(crate) enum ReleasesCmd {
    /// One release: what it was built from, how it ended, and its whole build log (kept with
    /// the release, so a failed build's error can be read again).
    Show {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
        release: u32,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum HooksCmd {
    /// Turn push webhooks on: prints the URL (and a new secret, unless you give one) to put in
    /// your git host's webhook settings. The previous secret stops working.
    Enable {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
        /// Use this secret instead of a random one (at least 16 characters), e.g. the one your
        /// git host already has.
        #[arg(long, conflicts_with = "secret_stdin")]
        secret: Option<String>,
        /// Read the secret from the first line of stdin, so it stays out of the shell history.
        #[arg(long)]
        secret_stdin: bool,
    },
    /// Turn push webhooks off: pushes are refused until `hooks enable`.
    Disable {
        #[arg(add = crate::cli::complete::app_names())]
        app: String,
    },
}

pub(crate) async fn deploy(client: &Client, conn: &Conn, args: DeployArgs) -> anyhow::Result<()> {
    let archive = match (&args.dir, &args.archive) {
        (Some(dir), _) => Some((pack(Path::new(dir))?, "application/gzip")),
        (None, Some(file)) => {
            let bytes =
                std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?;
            let kind = if file.ends_with(".zip") {
                "application/zip"
            } else {
                "application/gzip"
            };
            Some((bytes, kind))
        }
        _ => None,
    };
    let req = DeployRequest {
        git: args.git,
        reference: args.reference,
        image: args.image,
    };
    let mut events = Box::pin(client.deploy(&args.app, &req, archive).await?);
    let mut outcome = None;
    // The output streams as it comes. Its last line is the result: a failure is said once,
    // as the error at the end (stderr), and a success is not repeated.
    let mut last: Option<String> = None;
    while let Some(event) = events.next().await {
        match event? {
            DeployEvent::Log(line) if !conn.json => {
                if !line.starts_with("deploy failed: ") {
                    crate::out::bytes(format!("{line}\n").as_bytes());
                }
                last = Some(line);
            }
            DeployEvent::Log(_) => {}
            DeployEvent::Done(op) => outcome = Some(op),
        }
    }
    let op = outcome.ok_or_else(|| {
        anyhow::anyhow!("the server stopped answering before the deploy finished")
    })?;
    if conn.json {
        json(&op)?;
    }
    if op.status == "failed" {
        anyhow::bail!("{}", op.message);
    }
    if !conn.json && last.as_deref() != Some(op.message.as_str()) {
        outln!("{}", op.message);
    }
    Ok(())
}

/// A tar.gz of `dir`, leaving out what .gitignore/.wharfignore leave out, and `.git`.
fn pack(dir: &Path) -> anyhow::Result<Vec<u8>> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a folder", dir.display());
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let walk = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .git_ignore(true)
        .require_git(false)
        .add_custom_ignore_filename(".wharfignore")
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut files = 0;
    for entry in walk {
        let entry = entry?;
        let rel = entry.path().strip_prefix(dir)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.file_type();
        if kind.is_some_and(|k| k.is_dir()) {
            tar.append_dir(rel, entry.path())?;
        } else {
            tar.append_path_with_name(entry.path(), rel)?;
            files += 1;
        }
    }
    let bytes = tar.into_inner()?.finish()?;
    let limit = wharf_client::dto::MAX_ARCHIVE_BYTES;
    if bytes.len() > limit {
        anyhow::bail!(
            "{} packs to {} MiB, over the {} MiB a deploy may upload: leave out what the build \
             makes again (node_modules, target, build output) in a .wharfignore, or deploy from git",
            dir.display(),
            bytes.len() >> 20,
            limit >> 20
        );
    }
    eprintln!(
        "packed {files} files from {} ({} KiB)",
        dir.display(),
        bytes.len() / 1024
    );
    Ok(bytes)
}

pub(crate) async fn releases(
    client: &Client,
    conn: &Conn,
    app: &str,
    limit: Option<u32>,
) -> anyhow::Result<()> {
    let releases = client.releases_page(app, limit, None).await?.items;
    if conn.json {
        return json(&releases);
    }
    if releases.is_empty() {
        outln!("{app} has no releases yet: wharf deploy {app} --git URL (or --dir .)");
        return Ok(());
    }
    let rows = releases
        .iter()
        .map(|r| {
            vec![
                r.number.to_string(),
                r.status.clone(),
                super::print::when(r.created_at),
                r.commit
                    .as_deref()
                    .map_or("-".into(), |c| c[..c.len().min(7)].to_string()),
                r.build.clone(),
                short_source(&r.source),
                r.message.clone(),
            ]
        })
        .collect();
    table(
        &[
            "RELEASE",
            "STATUS",
            "CREATED (UTC)",
            "COMMIT",
            "BUILD",
            "SOURCE",
            "MESSAGE",
        ],
        rows,
    );
    Ok(())
}

/// A release's source in a table: `git URL REF` as `repo@ref` (the full one is in `releases
/// show`).
fn short_source(source: &str) -> String {
    let mut words = source.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("git"), Some(url), Some(reference)) => {
            let repo = url.trim_end_matches('/').rsplit('/').next().unwrap_or(url);
            // A pushed commit is named by its hash: the short form, as git shows it.
            let reference =
                if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
                    &reference[..7]
                } else {
                    reference
                };
            format!("{}@{reference}", repo.trim_end_matches(".git"))
        }
        _ => source.to_string(),
    }
}

pub(crate) async fn release_show(
    client: &Client,
    conn: &Conn,
    app: &str,
    number: u32,
) -> anyhow::Result<()> {
    let release = client.release(app, number).await?;
    // A release built before logs were kept has none: said, not an error.
    let log = match client.release_log(app, number).await {
        Ok(log) => Some(log),
        Err(wharf_client::ClientError::Api { status: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if conn.json {
        return json(&serde_json::json!({ "release": release, "log": log }));
    }
    outln!("release {} of {app}: {}", release.number, release.status);
    outln!("source   {}", release.source);
    if let Some(commit) = &release.commit {
        outln!("commit   {commit}");
    }
    if !release.build.is_empty() {
        outln!("build    {}", release.build);
    }
    if !release.message.is_empty() {
        outln!("result   {}", release.message);
    }
    outln!();
    match log {
        Some(log) => out!("{log}"),
        None => outln!("(no build log kept for this release)"),
    }
    Ok(())
}

pub(crate) async fn hooks(client: &Client, conn: &Conn, cmd: HooksCmd) -> anyhow::Result<()> {
    match cmd {
        HooksCmd::Enable {
            app,
            secret,
            secret_stdin,
        } => {
            let secret = match (secret, secret_stdin) {
                (Some(s), _) => Some(s),
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| anyhow::anyhow!("cannot read the secret from stdin: {e}"))?;
                    Some(line.trim_end_matches(['\r', '\n']).to_string())
                }
                (None, false) => None,
            };
            let hook = client.enable_webhook(&app, secret.as_deref()).await?;
            if conn.json {
                return json(&hook);
            }
            outln!("payload URL   {}", hook.url);
            if let Some(secret) = &hook.secret {
                outln!("secret        {secret}");
            }
            outln!("branch        {}", hook.branch);
            outln!();
            if hook.secret.is_some() {
                outln!(
                    "Give both to your git host (content type application/json). The secret is shown only now;"
                );
                outln!("run this again to replace it.");
            } else {
                outln!(
                    "Give the URL and your secret to your git host (content type application/json)."
                );
            }
            Ok(())
        }
        HooksCmd::Disable { app } => {
            let said = client.disable_webhook(&app).await?;
            if conn.json {
                return json(&said);
            }
            outln!("{}", said.message);
            Ok(())
        }
    }
}
