//! The email channel against a real SMTP server: Debian's aiosmtpd storing what it receives in
//! a maildir. Also: a server that is down, credentials with a server that offers no STARTTLS,
//! and the two channels failing independently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tokio::net::{TcpListener, TcpStream};
use wharf_notify::{Alert, AlertKind, Delivery, EmailSettings, Notifier, Settings};
use wharf_testkit::assert_eventually;

/// Debian's interpreter, where `python3-aiosmtpd` installs (another `python3` may come first
/// on PATH).
const PYTHON: &str = "/usr/bin/python3";

/// An aiosmtpd server on a loopback port, storing every message in a maildir.
struct SmtpSink {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl SmtpSink {
    async fn start(name: &str) -> SmtpSink {
        let found = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "the SMTP sink is missing: apt-get install python3-aiosmtpd (for {PYTHON})"
        );
        let dir = std::env::temp_dir().join(format!("wharf-notify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let port = free_port().await;
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("aiosmtpd does not start");
        let mut sink = SmtpSink { port, dir, child };
        assert_eventually!(
            TcpStream::connect(("127.0.0.1", port)).await.is_ok() || sink.exited(),
            "aiosmtpd listens on port {port}"
        );
        assert!(!sink.exited(), "aiosmtpd exited before listening");
        sink
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages received so far, raw.
    fn messages(&self) -> Vec<String> {
        read_dir(&self.dir.join("new"))
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_dir(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

/// A loopback port nothing listens on (it was free a moment ago).
async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn alert() -> Alert {
    Alert {
        kind: AlertKind::Stale,
        subject: "backups of app db1 are stale".into(),
        body: "The newest verified backup is 30 hours old (warn at 25 h).".into(),
        target: "db1".into(),
        at: 1_700_000_000,
    }
}

fn email(smtp: String) -> EmailSettings {
    EmailSettings {
        smtp,
        from: "wharf <wharf@example.com>".into(),
        to: vec!["ops@example.com".into(), "oncall@example.net".into()],
        username: None,
        password: None,
    }
}

fn notifier(webhook: Option<String>, email: EmailSettings) -> Notifier {
    Notifier::new(Settings {
        webhook,
        email: Some(email),
    })
    .unwrap()
}

#[tokio::test]
async fn the_alert_arrives_with_subject_and_body() {
    let sink = SmtpSink::start("arrives").await;
    let deliveries = notifier(None, email(sink.url())).send(&alert()).await;
    assert_eq!(
        deliveries,
        vec![Delivery {
            channel: "email".into(),
            ok: true,
            error: None
        }]
    );

    // The server has the message once the transaction is over; the maildir write is its own.
    assert_eventually!(!sink.messages().is_empty(), "the message is in the maildir");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert!(
        message.contains("Subject: backups of app db1 are stale"),
        "{message}"
    );
    assert!(
        message.contains("From: wharf <wharf@example.com>"),
        "{message}"
    );
    assert!(
        message.contains("ops@example.com") && message.contains("oncall@example.net"),
        "{message}"
    );
    assert!(
        message.contains("The newest verified backup is 30 hours old (warn at 25 h)."),
        "{message}"
    );
    assert!(
        message.contains("wharf alert: stale of db1 at 2023-11-14T22:13:20Z"),
        "{message}"
    );
}

#[tokio::test]
async fn a_server_that_is_down_is_named_in_the_error() {
    let port = free_port().await;
    let deliveries = notifier(None, email(format!("smtp://127.0.0.1:{port}")))
        .send(&alert())
        .await;
    assert_eq!(deliveries.len(), 1);
    assert!(!deliveries[0].ok);
    let error = deliveries[0].error.as_deref().unwrap();
    assert!(
        error.contains(&format!("smtp://127.0.0.1:{port}")),
        "{error}"
    );
    assert!(error.to_lowercase().contains("refused"), "{error}");
}

#[tokio::test]
async fn credentials_are_never_sent_without_starttls() {
    // aiosmtpd as started here offers no STARTTLS.
    let sink = SmtpSink::start("no-starttls").await;
    let mut settings = email(sink.url());
    settings.username = Some("alerts".into());
    settings.password = Some("hunter2".into());
    let deliveries = notifier(None, settings).send(&alert()).await;
    assert!(!deliveries[0].ok);
    let error = deliveries[0].error.as_deref().unwrap();
    assert!(error.contains("STARTTLS"), "{error}");
    assert!(error.contains(&sink.url()), "{error}");
    assert!(!error.contains("hunter2"), "the password leaked: {error}");
    assert!(sink.messages().is_empty(), "a message went out anyway");
}

#[tokio::test]
async fn one_channel_failing_does_not_stop_the_other() {
    let sink = SmtpSink::start("independent").await;
    let dead_hook = format!("http://127.0.0.1:{}/hook", free_port().await);
    let deliveries = notifier(Some(dead_hook), email(sink.url()))
        .send(&alert())
        .await;
    let summary: Vec<_> = deliveries
        .iter()
        .map(|d| (d.channel.as_str(), d.ok))
        .collect();
    assert_eq!(
        summary,
        [("webhook", false), ("email", true)],
        "{deliveries:?}"
    );
    assert_eventually!(sink.messages().len() == 1, "the email arrived");
}
