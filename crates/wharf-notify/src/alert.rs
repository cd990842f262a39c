//! What an alert says, and how it reads as a webhook's JSON and as an email.

use std::fmt;

/// Why an alert is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// Something failed (a backup, its verification, an upload).
    Failure,
    /// Something that should have happened recently has not (a schedule's newest backup is old).
    Stale,
    /// What failed or went stale is fine again.
    Recovery,
}

impl AlertKind {
    /// The word used on the wire: `failure`, `stale`, `recovery`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Failure => "failure",
            AlertKind::Stale => "stale",
            AlertKind::Recovery => "recovery",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert, sent the same way to every channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    /// One line, e.g. "backup of app db1 failed": the email's subject.
    pub subject: String,
    /// The details, plain text.
    pub body: String,
    /// What it is about: an app or database name.
    pub target: String,
    /// When it happened, unix seconds.
    pub at: i64,
}

impl Alert {
    /// The webhook's JSON. `text` repeats subject and body for chat services (Slack, Discord,
    /// Mattermost incoming webhooks) that show only that field.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "subject": self.subject,
            "body": self.body,
            "target": self.target,
            "at": self.at,
            "text": self.text(),
        })
    }

    fn text(&self) -> String {
        if self.body.is_empty() {
            self.subject.clone()
        } else {
            format!("{}\n{}", self.subject, self.body)
        }
    }

    /// The email's plain-text body: the details, then what and when in a footer.
    pub(crate) fn email_text(&self) -> String {
        let when = time::OffsetDateTime::from_unix_timestamp(self.at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.at.to_string());
        format!(
            "{}\n\n-- \nwharf alert: {} of {} at {when}\n",
            self.body.trim_end(),
            self.kind,
            self.target
        )
    }
}
