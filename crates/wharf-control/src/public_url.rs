//! Where the world reaches this server: `--public-url`, by default `http://wharf.<base-domain>`
//! on the gateway's port. The gateway serves that host's `/hooks/` (and nothing else of the
//! API) from the API, so git hosts can deliver push webhooks while the API stays on loopback.

use wharf_gateway::config::HostPattern;

/// A parsed public URL: scheme, host and port only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    https: bool,
    host: String,
    /// `scheme://host[:port]`, without a trailing slash.
    base: String,
}

impl PublicUrl {
    /// Parses `http(s)://HOST[:PORT]`; the error names what to fix.
    pub fn parse(raw: &str) -> Result<PublicUrl, String> {
        let bad = |why: &str| {
            format!(
                "public URL `{raw}`: {why} (write http(s)://HOST[:PORT], e.g. https://wharf.example.com)"
            )
        };
        let uri: http::Uri = raw.trim().parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("a user name or password has no place here"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("no path or query: webhooks are served at /hooks/<app>"));
        }
        let host = match HostPattern::parse(authority.host()) {
            Ok(HostPattern::Exact(h)) => h,
            Ok(_) => return Err(bad("the host must be one name, not a pattern")),
            Err(why) => return Err(bad(&why)),
        };
        let port = uri.port_u16();
        Ok(PublicUrl::new(https, host, port))
    }

    /// The default: `http://wharf.<base_domain>`, with the gateway's port unless it is 80.
    pub fn default_for(base_domain: &str, port: u16) -> PublicUrl {
        PublicUrl::new(false, format!("wharf.{base_domain}"), Some(port))
    }

    fn new(https: bool, host: String, port: Option<u16>) -> PublicUrl {
        let scheme = if https { "https" } else { "http" };
        let base = match port {
            Some(p) if p != if https { 443 } else { 80 } => format!("{scheme}://{host}:{p}"),
            _ => format!("{scheme}://{host}"),
        };
        PublicUrl { https, host, base }
    }

    /// The host name the gateway routes.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the URL is HTTPS, so its host needs a certificate.
    pub fn https(&self) -> bool {
        self.https
    }

    /// The URL a git host posts an app's push events to.
    pub fn hook(&self, app: &str) -> String {
        format!("{}/hooks/{app}", self.base)
    }
}

impl std::fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_users_write() {
        let u = PublicUrl::parse("https://Wharf.Example.com/").unwrap();
        assert_eq!(u.hook("blog"), "https://wharf.example.com/hooks/blog");
        assert!(u.https());
        assert_eq!(u.host(), "wharf.example.com");
        let u = PublicUrl::parse("http://hooks.example.com:8080").unwrap();
        assert_eq!(u.hook("a"), "http://hooks.example.com:8080/hooks/a");
        assert_eq!(
            PublicUrl::parse("https://x.example.com:443")
                .unwrap()
                .to_string(),
            "https://x.example.com"
        );
        assert_eq!(
            PublicUrl::default_for("localhost", 8080).hook("site"),
            "http://wharf.localhost:8080/hooks/site"
        );
        assert_eq!(
            PublicUrl::default_for("example.com", 80).to_string(),
            "http://wharf.example.com"
        );
    }

    #[test]
    fn refuses_with_the_reason() {
        for (raw, why) in [
            ("wharf.example.com", "scheme"),
            ("ftp://wharf.example.com", "scheme"),
            ("https://wharf.example.com/api", "no path"),
            ("https://u:p@wharf.example.com", "password"),
            ("https://*.example.com", "not a pattern"),
            ("https://bad_host!.example.com", "not a valid host"),
        ] {
            let e = PublicUrl::parse(raw).unwrap_err();
            assert!(
                e.contains(why) && e.contains("http(s)://HOST"),
                "{raw}: {e}"
            );
        }
    }
}
