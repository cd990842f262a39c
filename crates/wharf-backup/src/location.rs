//! Where a repository lives: a local folder or an S3 bucket (with a prefix), in restic's
//! repository syntax. Keys come from the environment like restic's, and are never displayed.

use std::fmt;
use std::path::PathBuf;

use crate::BackupError;

/// A repository's place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A folder on this machine (absolute path).
    Local(PathBuf),
    /// A bucket (and prefix) on an S3-compatible store.
    S3(S3Location),
}

/// An S3 repository. `Debug` and `Display` leave the keys out.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Scheme, host and port, e.g. `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub bucket: String,
    /// Prefix inside the bucket, without leading or trailing `/`; may be empty.
    pub root: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl fmt::Debug for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Location")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Location {
    /// Reads restic's repository syntax: `/abs/path`, `local:/abs/path`, or
    /// `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]` (`s3:HOST/BUCKET` means https). S3 keys come
    /// from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, the region from `AWS_DEFAULT_REGION`
    /// (default `us-east-1`), as for restic.
    pub fn parse(s: &str) -> Result<Location, BackupError> {
        Location::parse_with(s, |name| std::env::var(name).ok())
    }

    /// [`Location::parse`] with the environment given as a function (for callers that keep the
    /// keys elsewhere, and for tests).
    pub fn parse_with(
        s: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Location, BackupError> {
        let invalid = |reason: &str| BackupError::InvalidLocation {
            input: without_userinfo(s),
            reason: reason.to_owned(),
        };
        let s_trim = s.trim();
        if let Some(rest) = s_trim.strip_prefix("s3:") {
            let (scheme, rest) = match rest.split_once("://") {
                Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
                Some(_) => return Err(invalid("the S3 endpoint's scheme must be http or https")),
                None => ("https", rest),
            };
            let mut parts = rest.splitn(3, '/');
            let host = parts.next().unwrap_or_default();
            let bucket = parts.next().unwrap_or_default();
            let root = parts.next().unwrap_or_default().trim_matches('/');
            // Keys in the URL would show wherever the location does: refused, and not quoted.
            if host.contains('@') {
                return Err(invalid(
                    "put the S3 keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the URL",
                ));
            }
            if host.is_empty() {
                return Err(invalid(
                    "no S3 host; write s3:http(s)://HOST:PORT/BUCKET[/PREFIX]",
                ));
            }
            if bucket.is_empty() {
                return Err(invalid(
                    "no bucket; write s3:http(s)://HOST:PORT/BUCKET[/PREFIX]",
                ));
            }
            let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
            let access_key = nonempty("AWS_ACCESS_KEY_ID")
                .ok_or_else(|| invalid("set AWS_ACCESS_KEY_ID to the S3 access key"))?;
            let secret_key = nonempty("AWS_SECRET_ACCESS_KEY")
                .ok_or_else(|| invalid("set AWS_SECRET_ACCESS_KEY to the S3 secret key"))?;
            let region = nonempty("AWS_DEFAULT_REGION").unwrap_or_else(|| "us-east-1".into());
            return Ok(Location::S3(S3Location {
                endpoint: format!("{scheme}://{host}"),
                bucket: bucket.to_owned(),
                root: root.to_owned(),
                region,
                access_key,
                secret_key,
            }));
        }
        let path = s_trim.strip_prefix("local:").unwrap_or(s_trim);
        if path.is_empty() {
            return Err(invalid(
                "empty; give an absolute folder path or s3:http(s)://HOST:PORT/BUCKET[/PREFIX]",
            ));
        }
        if let Some((scheme, _)) = path.split_once(':')
            && !scheme.contains('/')
        {
            return Err(invalid(
                "unsupported repository kind; use an absolute folder path, local:/path or s3:...",
            ));
        }
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(invalid("a local repository path must be absolute"));
        }
        Ok(Location::Local(path))
    }
}

impl fmt::Display for Location {
    /// The restic repository string (`/path` or `s3:http://host:port/bucket/prefix`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3(s3) => {
                write!(f, "s3:{}/{}", s3.endpoint, s3.bucket)?;
                if !s3.root.is_empty() {
                    write!(f, "/{}", s3.root)?;
                }
                Ok(())
            }
        }
    }
}

/// `s` with whatever precedes an `@` after its scheme shown as `***`: a location quoted in an
/// error must not carry keys someone put in it.
fn without_userinfo(s: &str) -> String {
    let Some(at) = s.rfind('@') else {
        return s.to_owned();
    };
    // A folder's path (no scheme) keeps its '@'.
    let Some(start) = s
        .find("://")
        .map(|i| i + 3)
        .or_else(|| s.find(':').map(|i| i + 1))
    else {
        return s.to_owned();
    };
    if start > at {
        return s.to_owned();
    }
    format!("{}***{}", &s[..start], &s[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "AWS_ACCESS_KEY_ID" => Some("AKID".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("SECRET-KEY".into()),
            _ => None,
        }
    }

    #[test]
    fn local_paths() {
        for (input, path) in [
            ("/var/backups/repo", "/var/backups/repo"),
            ("local:/srv/r", "/srv/r"),
        ] {
            let loc = Location::parse_with(input, env).unwrap();
            assert_eq!(loc, Location::Local(path.into()));
            assert_eq!(loc.to_string(), path);
        }
    }

    #[test]
    fn s3_urls_and_display_without_keys() {
        let loc =
            Location::parse_with("s3:http://127.0.0.1:9000/bucket/some/prefix/", env).unwrap();
        let Location::S3(s3) = &loc else {
            panic!("not s3: {loc:?}")
        };
        assert_eq!(s3.endpoint, "http://127.0.0.1:9000");
        assert_eq!(s3.bucket, "bucket");
        assert_eq!(s3.root, "some/prefix");
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.access_key, "AKID");
        assert_eq!(
            loc.to_string(),
            "s3:http://127.0.0.1:9000/bucket/some/prefix"
        );
        let debug = format!("{loc:?}");
        assert!(
            !debug.contains("SECRET-KEY") && !debug.contains("AKID"),
            "{debug}"
        );

        let bare = Location::parse_with("s3:s3.example.net/b", env).unwrap();
        assert_eq!(bare.to_string(), "s3:https://s3.example.net/b");
    }

    #[test]
    fn errors_say_what_to_fix() {
        let cases = [
            ("relative/path", "absolute"),
            ("", "empty"),
            ("sftp:host:/x", "unsupported"),
            ("s3:http://127.0.0.1:9000", "no bucket"),
            ("s3:ftp://h/b", "http or https"),
        ];
        for (input, needle) in cases {
            let err = Location::parse_with(input, env).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
        let err = Location::parse_with("s3:http://h:1/b", |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        let err = Location::parse_with("s3:https://AKID:s3cr3t@s3.example.net/b", env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AWS_SECRET_ACCESS_KEY") && !err.contains("s3cr3t"),
            "{err}"
        );
        // Whatever else is wrong with such a location, the keys are not quoted.
        for bad in [
            "s3://AKID:s3cr3t@s3.example.net/b",
            "s3:HTTPS://AKID:s3cr3t@h/b",
        ] {
            let err = Location::parse_with(bad, env).unwrap_err().to_string();
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }
}
