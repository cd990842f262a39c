//! `wharf server`: the whole platform in one process: store, API, reconciler, process runtime
//! and gateway. Every default is embedded; flags and `WHARF_*` variables change them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use wharf_control::{EngineSettings, Runtimes, Server, ServerConfig};
use wharf_runtime::ProcessRuntime;

use super::signals::{Event, Signals, runtime};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Data folder: database, app folders, volumes, logs, the admin token.
    #[arg(long, default_value = "./wharf-data", env = "WHARF_DATA")]
    data: PathBuf,
    /// Address of the REST API (keep it on loopback unless a proxy with TLS is in front).
    #[arg(long, default_value = "127.0.0.1:7070", env = "WHARF_API")]
    api: SocketAddr,
    /// Address of the gateway's Host-routed HTTP listener (e.g. 0.0.0.0:80).
    #[arg(long, default_value = "0.0.0.0:8080", env = "WHARF_HTTP")]
    http: SocketAddr,
    /// Address of the gateway's HTTPS listener (e.g. 0.0.0.0:443); certificates by SNI.
    #[arg(long, default_value = "0.0.0.0:8443", env = "WHARF_HTTPS")]
    https: SocketAddr,
    /// The domain whose certificate answers HTTPS clients that name no host (an
    /// https://<ip address>/ URL, `openssl s_time`); without it their handshakes are refused.
    #[arg(long, value_name = "HOST", env = "WHARF_DEFAULT_SNI", value_parser = wharf_gateway::config::HostPattern::parse_exact)]
    default_sni: Option<String>,
    /// ACME directory for `--tls acme` domains: `staging` (Let's Encrypt staging: try a set-up
    /// here first), `production` (Let's Encrypt), or any directory URL.
    #[arg(long, default_value = "production", env = "WHARF_ACME_DIRECTORY")]
    acme_directory: String,
    /// Contact address given to the ACME server (expiry notices).
    #[arg(long, env = "WHARF_ACME_EMAIL")]
    acme_email: Option<String>,
    /// Extra root certificate (PEM) trusted for the ACME directory's HTTPS, for test CAs.
    #[arg(long, env = "WHARF_ACME_ROOT")]
    acme_root: Option<PathBuf>,
    /// ACME challenge: `http-01` (answered on the HTTP listener, which must be port 80 to the
    /// world) or `tls-alpn-01` (on the HTTPS listener, port 443 to the world).
    #[arg(long, default_value = "http-01", env = "WHARF_ACME_CHALLENGE")]
    acme_challenge: String,
    /// Address of the gateway's admin listener (/metrics, /healthz).
    #[arg(long, default_value = "127.0.0.1:9901", env = "WHARF_ADMIN")]
    admin: SocketAddr,
    /// Apps answer at <app>.<base-domain>; `localhost` works in browsers and curl with no DNS.
    #[arg(long, default_value = "localhost", env = "WHARF_BASE_DOMAIN", value_parser = wharf_gateway::config::HostPattern::parse_exact)]
    base_domain: String,
    /// How long new instances have to pass their health check (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", env = "WHARF_HEALTH_TIMEOUT", value_parser = duration)]
    health_timeout: std::time::Duration,
    /// The Docker engine for apps on the docker and swarm runtimes: unix:///path or
    /// tcp://HOST:PORT (default: DOCKER_HOST, then the local socket). Without one, only the
    /// process runtime is available.
    #[arg(long, value_name = "URL", env = "WHARF_DOCKER_HOST")]
    docker_host: Option<String>,
    /// The registry images of Swarm apps are pushed to (every node pulls from it), e.g.
    /// registry.example.com or 10.0.0.5:5000.
    #[arg(long, value_name = "HOST[:PORT]", env = "WHARF_REGISTRY")]
    registry: Option<String>,
    /// Where agents on other machines connect (`wharf agent`), or `off`. Only this port must be
    /// reachable from them; every link is TLS 1.3 with both ends' certificates checked.
    #[arg(
        long,
        value_name = "ADDR:PORT|off",
        default_value = "0.0.0.0:7443",
        env = "WHARF_LINK"
    )]
    link: String,
    /// The HOST:PORT agents reach the link at, put in the join commands `wharf nodes add`
    /// prints (default: the link's address, or this machine's host name).
    #[arg(long, value_name = "HOST:PORT", env = "WHARF_LINK_PUBLIC", value_parser = wharf_link::server_address)]
    link_public: Option<String>,
    /// The backup repository (restic format): a folder, or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]
    /// with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set (default: <data>/repository).
    #[arg(long, value_name = "FOLDER|s3:URL", env = "WHARF_BACKUP_REPO")]
    backup_repo: Option<String>,
    /// A second repository (e.g. off-site S3) every verified backup is copied to.
    #[arg(long, value_name = "FOLDER|s3:URL", env = "WHARF_BACKUP_COPY")]
    backup_copy: Option<String>,
    /// Backup alerts (failure, stale, recovered) are POSTed as JSON to this URL.
    #[arg(
        long,
        value_name = "URL",
        env = "WHARF_ALERT_WEBHOOK",
        hide_env_values = true
    )]
    alert_webhook: Option<String>,
    /// Backup alerts are mailed to this address (repeat for more).
    #[arg(
        long,
        value_name = "ADDRESS",
        env = "WHARF_ALERT_EMAIL",
        value_delimiter = ','
    )]
    alert_email: Vec<String>,
    /// The SMTP server alerts are sent through: smtp://HOST:PORT (STARTTLS when offered) or
    /// smtps://HOST:PORT; user and password from WHARF_SMTP_USER and WHARF_SMTP_PASSWORD.
    #[arg(
        long,
        value_name = "URL",
        default_value = "smtp://127.0.0.1:25",
        env = "WHARF_SMTP"
    )]
    smtp: String,
    /// The sender of alert emails.
    #[arg(
        long,
        value_name = "ADDRESS",
        default_value = "wharf@localhost",
        env = "WHARF_SMTP_FROM"
    )]
    smtp_from: String,
    /// Where git hosts reach this server's push webhooks: http(s)://HOST[:PORT]. The gateway
    /// serves that host's /hooks/ (only) from the API; an https URL gets an ACME certificate.
    /// Default: http://wharf.<base-domain> on the HTTP listener's port.
    #[arg(long, value_name = "URL", env = "WHARF_PUBLIC_URL", value_parser = public_url)]
    public_url: Option<wharf_control::PublicUrl>,
    /// For tests: schedules run by the time (unix seconds) written in this file.
    #[arg(long, hide = true, env = "WHARF_CLOCK_FILE")]
    clock_file: Option<PathBuf>,
}

fn public_url(s: &str) -> Result<wharf_control::PublicUrl, String> {
    wharf_control::PublicUrl::parse(s)
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    wharf_gateway::config::parse_duration(s)
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    // Before the runtime's threads exist, so none of them, and no app, keeps them.
    wharf_control::drop_inherited_capabilities()
        .context("cannot clear the ambient capabilities apps would inherit")?;
    super::raise_open_file_limit();
    runtime(0)?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let directory = match args.acme_directory.as_str() {
        "staging" => wharf_tls::acme::LETS_ENCRYPT_STAGING.to_string(),
        "production" => wharf_tls::acme::LETS_ENCRYPT.to_string(),
        url if url.starts_with("https://") => url.to_string(),
        other => anyhow::bail!(
            "--acme-directory `{other}`: use staging, production or an https:// directory URL"
        ),
    };
    let challenge: wharf_tls::Challenge = args
        .acme_challenge
        .parse()
        .map_err(|e| anyhow::anyhow!("--acme-challenge: {e}"))?;
    let link = match args.link.as_str() {
        "off" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!("--link `{addr}`: use ADDR:PORT (e.g. 0.0.0.0:7443) or off")
        })?),
    };
    // This very binary confines apps: `wharf sandbox-exec` (see `cmd::sandbox_exec`).
    let launcher = std::env::current_exe().context("cannot find the wharf binary's path")?;
    let mut config = ServerConfig {
        data_dir: args.data.clone(),
        api: args.api,
        http: vec![args.http],
        https: vec![args.https],
        default_sni: args.default_sni.clone(),
        acme: Some(wharf_tls::AcmeSettings {
            directory,
            email: args.acme_email.clone(),
            directory_root: args.acme_root.clone(),
            challenge,
            ..Default::default()
        }),
        renew: Default::default(),
        admin: Some(args.admin),
        base_domain: args.base_domain.clone(),
        health_timeout: args.health_timeout,
        sandbox_launcher: Some(launcher.clone()),
        engine: None,
        link,
        link_public: args.link_public.clone(),
        backups: wharf_control::BackupSettings {
            repository: args.backup_repo.clone(),
            copy: args.backup_copy.clone(),
            alert_webhook: args.alert_webhook.clone(),
            alert_email: args.alert_email.clone(),
            smtp: Some(args.smtp.clone()),
            smtp_from: Some(args.smtp_from.clone()),
            smtp_user: std::env::var("WHARF_SMTP_USER").ok(),
            smtp_password: std::env::var("WHARF_SMTP_PASSWORD").ok(),
            clock: args
                .clock_file
                .clone()
                .map_or(wharf_control::Clock::System, wharf_control::Clock::File),
        },
        public_url: args.public_url.clone(),
    };
    wharf_control::create_data_dir(&args.data)
        .with_context(|| format!("cannot create the data folder {}", args.data.display()))?;
    let processes = Arc::new(
        ProcessRuntime::with_pid_dir(args.data.join("run"))
            .context("cannot create the folder for instance pids")?
            .with_launcher(launcher)
            .with_log_root(args.data.join("logs")),
    );
    let reaped = processes.reap_orphans();
    if reaped > 0 {
        tracing::warn!(
            reaped,
            "stopped app processes a previous server left running (it was killed)"
        );
    }
    let engine = EngineSettings {
        host: args.docker_host.clone(),
        registry: args.registry.clone(),
        owner: wharf_control::server_id(&args.data).context("cannot read the server's id")?,
    };
    let runtimes = Runtimes::process(processes.clone());
    // Not there yet is no reason to wait: the server keeps looking in the background.
    if !runtimes.connect(&engine).await {
        let why = runtimes.engine_note().unwrap_or_default();
        if args.docker_host.is_some() {
            tracing::warn!(error = %why, "container runtimes unavailable for now; still looking");
        } else {
            tracing::info!(error = %why, "container runtimes unavailable for now; still looking");
        }
    }
    config.engine = Some(engine);
    let server = Server::start(config, runtimes)
        .await
        .context("cannot start wharf server")?;
    if let Some(file) = server.new_token_file() {
        tracing::info!(file = %file.display(), "created the admin API token (mode 0600); the CLI finds it there");
    }
    let list = |addrs: Vec<std::net::SocketAddr>| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut signals = Signals::new()?;
    tracing::info!(
        api = %server.api_addr(),
        dashboard = %format!("http://{}/", server.api_addr()),
        http = %list(server.http_addrs()),
        https = %list(server.https_addrs()),
        data = %args.data.display(),
        link = %server.link_addr().map_or("off".to_string(), |a| a.to_string()),
        "wharf server ready"
    );
    notify_ready();
    while let Event::Reload = signals.next(std::future::pending()).await {
        tracing::info!("SIGHUP: nothing to reload; state lives in the database");
    }
    tracing::info!("stopping: apps and open requests are given time to finish");
    server.shutdown().await;
    processes.shutdown().await;
    Ok(())
}

/// Tells systemd (`Type=notify`) that the server is ready, when it runs under it.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "cannot notify systemd"),
    };
    let sent = match path.to_str().and_then(|p| p.strip_prefix('@')) {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
                .and_then(|addr| sock.send_to_addr(b"READY=1", &addr))
        }
        None => sock.send_to(b"READY=1", &path),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
