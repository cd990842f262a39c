//! Where alerts go: the settings as given, their validation, and the parsed forms the senders
//! use.

use std::fmt;
use std::str::FromStr;

use http::Uri;
use lettre::message::Mailbox;

use crate::NotifyError;

/// Where alerts go. A channel left `None` is not used.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// An `http://` or `https://` URL that alerts are POSTed to as JSON.
    pub webhook: Option<String>,
    pub email: Option<EmailSettings>,
}

// By hand: a webhook's path is often its secret.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("webhook", &self.webhook.as_ref().map(|_| "<hidden>"))
            .field("email", &self.email)
            .finish()
    }
}

/// Alerts by email, through an SMTP server.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EmailSettings {
    /// `smtp://host[:port]` (port 25 by default; STARTTLS when the server offers it, and
    /// required when credentials are given, so that they never travel in the clear) or
    /// `smtps://host[:port]` (TLS from the first byte, port 465 by default).
    pub smtp: String,
    /// The sender, `alerts@example.com` or `wharf <alerts@example.com>`.
    pub from: String,
    /// At least one recipient, each as `from`.
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

// By hand, so that the password never reaches a log line through `{:?}`.
impl fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailSettings")
            .field("smtp", &self.smtp)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Settings {
    /// Checks every setting, with an error naming the one to fix.
    pub fn validate(&self) -> Result<(), NotifyError> {
        if let Some(url) = &self.webhook {
            WebhookUrl::parse(url)?;
        }
        if let Some(email) = &self.email {
            EmailRoute::parse(email)?;
        }
        Ok(())
    }
}

/// A validated webhook URL.
#[derive(Clone)]
pub(crate) struct WebhookUrl {
    pub(crate) uri: Uri,
    /// `scheme://host[:port]` only: what errors show, since the path is often the secret.
    pub(crate) shown: String,
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebhookUrl").field(&self.shown).finish()
    }
}

impl WebhookUrl {
    pub(crate) fn parse(url: &str) -> Result<WebhookUrl, NotifyError> {
        let bad = |why: &str| NotifyError::Webhook(why.to_owned());
        if url.trim().is_empty() {
            return Err(bad(
                "empty: give an http:// or https:// URL, or leave it unset",
            ));
        }
        if !url.contains("://") {
            return Err(bad(
                "not an absolute URL: give http://host/path or https://host/path",
            ));
        }
        let uri = Uri::from_str(url).map_err(|e| {
            NotifyError::Webhook(format!(
                "not a URL ({e}): give http://host/path or https://host/path"
            ))
        })?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => {
                return Err(NotifyError::Webhook(format!(
                    "scheme {other:?} is not supported: use http:// or https://"
                )));
            }
            None => {
                return Err(bad(
                    "not an absolute URL: give http://host/path or https://host/path",
                ));
            }
        }
        let authority = uri.authority().ok_or_else(|| bad("the URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "user:password@ in the URL is not supported: use the token in the path or query that the service gives",
            ));
        }
        if authority.host().is_empty() {
            return Err(bad("the URL has no host"));
        }
        let shown = format!("{}://{}", uri.scheme_str().unwrap_or("http"), authority);
        Ok(WebhookUrl { uri, shown })
    }
}

/// Validated email settings.
#[derive(Clone)]
pub(crate) struct EmailRoute {
    pub(crate) server: SmtpServer,
    pub(crate) from: Mailbox,
    pub(crate) to: Vec<Mailbox>,
    pub(crate) credentials: Option<(String, String)>,
}

impl fmt::Debug for EmailRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailRoute")
            .field("server", &self.server)
            .field("from", &self.from)
            .field("to", &self.to)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "<hidden>")),
            )
            .finish()
    }
}

/// A validated SMTP server address.
#[derive(Debug, Clone)]
pub(crate) struct SmtpServer {
    /// Without IPv6 brackets, as connected to and as the TLS name.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `smtps://`: TLS from the first byte rather than STARTTLS.
    pub(crate) implicit_tls: bool,
    /// `smtp(s)://host:port`, what errors name.
    pub(crate) shown: String,
}

impl EmailRoute {
    pub(crate) fn parse(email: &EmailSettings) -> Result<EmailRoute, NotifyError> {
        let server = SmtpServer::parse(&email.smtp)?;
        let from = mailbox("email.from", &email.from)?;
        if email.to.is_empty() {
            return Err(NotifyError::Email(
                "email.to: give at least one recipient".to_owned(),
            ));
        }
        let to = email
            .to
            .iter()
            .enumerate()
            .map(|(i, to)| mailbox(&format!("email.to[{i}]"), to))
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = match (&email.username, &email.password) {
            (Some(user), Some(password)) if !user.is_empty() => {
                Some((user.clone(), password.clone()))
            }
            (None, None) => None,
            (Some(user), None) if !user.is_empty() => {
                return Err(NotifyError::Email(
                    "email.password: a username is given without a password".to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(NotifyError::Email(
                    "email.username: a password is given without a username".to_owned(),
                ));
            }
            _ => {
                return Err(NotifyError::Email(
                    "email.username: empty: give the user name, or leave it unset".to_owned(),
                ));
            }
        };
        Ok(EmailRoute {
            server,
            from,
            to,
            credentials,
        })
    }
}

fn mailbox(field: &str, value: &str) -> Result<Mailbox, NotifyError> {
    value.parse().map_err(|source| NotifyError::Address {
        field: field.to_owned(),
        value: value.to_owned(),
        source,
    })
}

impl SmtpServer {
    pub(crate) fn parse(url: &str) -> Result<SmtpServer, NotifyError> {
        const HOW: &str =
            "give smtp://host:port (STARTTLS when offered) or smtps://host:port (TLS)";
        let bad = |why: String| NotifyError::Smtp(why);
        // First, and without quoting the URL: what is before an `@` is a password.
        if url.contains('@') {
            return Err(bad(
                "put the user name and password in email.username and email.password, not in the URL"
                    .to_owned(),
            ));
        }
        if !url.contains("://") {
            return Err(bad(format!("{url:?} has no scheme: {HOW}")));
        }
        let uri =
            Uri::from_str(url).map_err(|e| bad(format!("{url:?} is not a URL ({e}): {HOW}")))?;
        let implicit_tls = match uri.scheme_str() {
            Some("smtp") => false,
            Some("smtps") => true,
            Some(other) => return Err(bad(format!("scheme {other:?} is not supported: {HOW}"))),
            None => return Err(bad(format!("{url:?} has no scheme: {HOW}"))),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| bad(format!("{url:?} has no host: {HOW}")))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad(format!("{url:?} has a path or query: {HOW}")));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad(format!("{url:?} has no host: {HOW}")));
        }
        let port = authority
            .port_u16()
            .unwrap_or(if implicit_tls { 465 } else { 25 });
        let scheme = if implicit_tls { "smtps" } else { "smtp" };
        Ok(SmtpServer {
            host: host.to_owned(),
            port,
            implicit_tls,
            shown: format!("{scheme}://{}:{port}", authority.host()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(smtp: &str, from: &str, to: &[&str]) -> Settings {
        Settings {
            webhook: None,
            email: Some(EmailSettings {
                smtp: smtp.to_owned(),
                from: from.to_owned(),
                to: to.iter().map(|s| (*s).to_owned()).collect(),
                username: None,
                password: None,
            }),
        }
    }

    fn webhook(url: &str) -> Settings {
        Settings {
            webhook: Some(url.to_owned()),
            email: None,
        }
    }

    /// `expected` is None for valid settings, else a fragment of the error.
    fn check(settings: Settings, expected: Option<&str>) {
        match (settings.validate(), expected) {
            (Ok(()), None) => {}
            (Err(e), Some(fragment)) => assert!(
                e.to_string().contains(fragment),
                "{settings:?}: error {e:?} should contain {fragment:?}"
            ),
            (got, want) => panic!("{settings:?}: got {got:?}, want an error with {want:?}"),
        }
    }

    #[test]
    fn webhook_urls() {
        check(
            webhook("https://hooks.example.com/services/T0/B0/secret"),
            None,
        );
        check(webhook("http://127.0.0.1:8080/alerts?key=1"), None);
        check(webhook("http://[::1]:8080/"), None);
        check(webhook(""), Some("webhook: empty"));
        check(
            webhook("hooks.example.com/x"),
            Some("webhook: not an absolute URL"),
        );
        check(
            webhook("ftp://example.com/x"),
            Some("webhook: scheme \"ftp\" is not supported"),
        );
        check(
            webhook("https://user:pw@example.com/x"),
            Some("user:password@"),
        );
        check(webhook("https://exa mple.com/"), Some("webhook: not a URL"));
    }

    #[test]
    fn webhook_errors_never_show_the_path() {
        let e = WebhookUrl::parse("ftp://example.com/T0/B0/secret").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = WebhookUrl::parse("https://u:secret@example.com/").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let ok = WebhookUrl::parse("https://example.com:8443/T0/secret").unwrap();
        assert_eq!(ok.shown, "https://example.com:8443");
    }

    #[test]
    fn smtp_servers() {
        let to = &["ops@example.com"];
        check(
            email("smtp://mail.example.com:587", "a@example.com", to),
            None,
        );
        check(
            email("smtps://mail.example.com", "wharf <a@example.com>", to),
            None,
        );
        check(email("smtp://[::1]:2525", "a@example.com", to), None);
        check(
            email("http://mail.example.com", "a@example.com", to),
            Some("email.smtp: scheme \"http\""),
        );
        check(
            email("mail.example.com:25", "a@example.com", to),
            Some("email.smtp: \"mail.example.com:25\" has no scheme"),
        );
        check(
            email("smtp://u:p@mail.example.com", "a@example.com", to),
            Some("email.username and email.password"),
        );
        // A password with an `@` in it is not quoted back either.
        let err = email("smtp://u:p@ss@mail", "a@example.com", to)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("p@ss"), "{err}");
        check(
            email("smtp://mail.example.com/x", "a@example.com", to),
            Some("has a path or query"),
        );
        check(
            email("smtp://mail.example.com", "not an address", to),
            Some("email.from: \"not an address\" is not an email address"),
        );
        check(
            email("smtp://mail.example.com", "a@example.com", &[]),
            Some("email.to: give at least one recipient"),
        );
        check(
            email(
                "smtp://mail.example.com",
                "a@example.com",
                &["ops@example.com", "nope"],
            ),
            Some("email.to[1]: \"nope\""),
        );
    }

    #[test]
    fn default_ports_and_tls() {
        let s = SmtpServer::parse("smtp://mail.example.com").unwrap();
        assert_eq!(
            (s.port, s.implicit_tls, s.shown.as_str()),
            (25, false, "smtp://mail.example.com:25")
        );
        let s = SmtpServer::parse("smtps://mail.example.com").unwrap();
        assert_eq!((s.port, s.implicit_tls), (465, true));
        let s = SmtpServer::parse("smtp://[::1]:2525").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 2525));
    }

    #[test]
    fn credentials_come_in_pairs() {
        let mut s = email(
            "smtp://mail.example.com",
            "a@example.com",
            &["b@example.com"],
        );
        let e = s.email.as_mut().unwrap();
        e.username = Some("alerts".into());
        check(
            s.clone(),
            Some("email.password: a username is given without a password"),
        );
        let e = s.email.as_mut().unwrap();
        e.username = None;
        e.password = Some("hunter2".into());
        check(
            s.clone(),
            Some("email.username: a password is given without a username"),
        );
        let e = s.email.as_mut().unwrap();
        e.username = Some("alerts".into());
        check(s.clone(), None);
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "Debug shows the password"
        );
    }
}
