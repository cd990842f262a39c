//! The S3 store as a restic backend: opendal's s3 service alone (the engine's own opendal
//! backend brings every service opendal has), over our reqwest client (rustls with ring), with
//! short timeouts and few retries so that a store that goes away fails a backup within about
//! half a minute rather than after minutes of retrying.
//!
//! Objects are laid out as restic's S3 backend does: `config`, `keys/ID`, `snapshots/ID`,
//! `index/ID`, `locks/ID`, `data/XX/ID` under the prefix.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use opendal::blocking::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::options::{ListOptions, ReadOptions};
use opendal::{HttpTransporter, services::S3};
use opendal_http_transport_reqwest::ReqwestTransport;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use crate::{BackupError, S3Location};

/// How long one request may take before it counts as failed: a pack is at most a few tens of
/// MB, so a minute is generous for a working store and short for a dead one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request may see no progress (connect, first byte, between chunks).
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries per request, with backoff 0.5 s, 1 s, 2 s: rides out a blip, gives up on an outage.
const RETRIES: usize = 3;

/// One runtime for every S3 repository in the process: the blocking operator drives its
/// requests on it.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wharf-backup-s3")
            .enable_all()
            .build()
            .expect("a tokio runtime for S3 requests")
    })
}

fn http_client() -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls_platform_verifier::BuilderVerifierExt::with_platform_verifier(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(IO_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        // Packs are large: several HTTP/1.1 connections beat one multiplexed HTTP/2 one.
        .http1_only()
        .build()
        .map_err(|e| e.to_string())
}

#[derive(Clone, Debug)]
pub(crate) struct S3Backend {
    op: Operator,
    /// The repository string, for the engine's messages.
    location: String,
}

impl S3Backend {
    pub(crate) fn new(loc: &S3Location, display: &str) -> Result<S3Backend, BackupError> {
        let setup = |detail: String| BackupError::S3Setup {
            repo: display.to_owned(),
            detail,
        };
        let builder = S3::default()
            .endpoint(&loc.endpoint)
            .bucket(&loc.bucket)
            .root(&format!("/{}", loc.root))
            .region(&loc.region)
            .access_key_id(&loc.access_key)
            .secret_access_key(&loc.secret_key)
            // Only what we were given: no ~/.aws files, no instance metadata service.
            .disable_config_load()
            .disable_ec2_metadata();
        let op = opendal::Operator::new(builder).map_err(|e| setup(e.to_string()))?;
        let transport = HttpTransporter::new(ReqwestTransport::new(http_client().map_err(setup)?));
        let ctx = op.base_context().with_http_transport(transport);
        let op = op
            .with_context(ctx)
            .layer(
                TimeoutLayer::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_io_timeout(IO_TIMEOUT),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(RETRIES)
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(2))
                    .with_jitter(),
            );
        let _guard = runtime().enter();
        let op = Operator::new(op).map_err(|e| setup(e.to_string()))?;
        Ok(S3Backend {
            op,
            location: display.to_owned(),
        })
    }

    fn path(tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => "config".to_owned(),
            FileType::Pack => format!("data/{}/{}", &hex[0..2], &*hex),
            _ => format!("{}/{}", tpe.dirname(), &*hex),
        }
    }

    fn failed(&self, what: &'static str, path: &str, err: opendal::Error) -> Box<RusticError> {
        RusticError::with_source(
            ErrorKind::Backend,
            "{what} `{path}` in `{location}` failed",
            err,
        )
        .attach_context("what", what)
        .attach_context("path", path.to_owned())
        .attach_context("location", self.location.clone())
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            return match self.op.stat("config") {
                Ok(meta) => Ok(vec![(
                    Id::default(),
                    u32::try_from(meta.content_length()).unwrap_or(u32::MAX),
                )]),
                Err(err) if err.kind() == opendal::ErrorKind::NotFound => Ok(Vec::new()),
                Err(err) => Err(self.failed("reading", "config", err)),
            };
        }
        let dir = format!("{}/", tpe.dirname());
        let lister = self
            .op
            .lister_options(
                &dir,
                ListOptions {
                    recursive: true,
                    ..Default::default()
                },
            )
            .map_err(|err| self.failed("listing", &dir, err))?;
        let mut found = Vec::new();
        for entry in lister {
            // A listing error is an error: a partial list would make files look missing.
            let entry = entry.map_err(|err| self.failed("listing", &dir, err))?;
            let meta = entry.metadata();
            if !meta.is_file() {
                continue;
            }
            let Some(id) = Id::parse_some(entry.name(), tpe) else {
                continue;
            };
            let size = u32::try_from(meta.content_length()).map_err(|err| {
                RusticError::with_source(ErrorKind::Backend, "size of `{path}`", err)
                    .attach_context("path", entry.path().to_owned())
            })?;
            found.push((id, size));
        }
        Ok(found)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        self.op
            .read(&path)
            .map(|b| b.to_bytes())
            .map_err(|err| self.failed("reading", &path, err))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        let range = u64::from(offset)..u64::from(offset) + u64::from(length);
        self.op
            .read_options(
                &path,
                ReadOptions {
                    range: range.into(),
                    ..Default::default()
                },
            )
            .map(|b| b.to_bytes())
            .map_err(|err| self.failed("reading", &path, err))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        Self::path(tpe, id)
    }
}

impl WriteBackend for S3Backend {
    /// S3 has no folders: nothing to lay out before the first write (restic's S3 backend makes
    /// none either).
    fn create(&self) -> RusticResult<()> {
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        buf: BytesList,
    ) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        self.op
            .write(&path, buf.into_vec())
            .map(|_| ())
            .map_err(|err| self.failed("writing", &path, err))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        self.op
            .delete(&path)
            .map_err(|err| self.failed("deleting", &path, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_restic() {
        let id = Id::random();
        let hex = id.to_hex();
        assert_eq!(S3Backend::path(FileType::Config, &id), "config");
        assert_eq!(
            S3Backend::path(FileType::Pack, &id),
            format!("data/{}/{}", &hex[..2], &*hex)
        );
        assert_eq!(
            S3Backend::path(FileType::Snapshot, &id),
            format!("snapshots/{}", &*hex)
        );
        assert_eq!(
            S3Backend::path(FileType::Index, &id),
            format!("index/{}", &*hex)
        );
        assert_eq!(
            S3Backend::path(FileType::Key, &id),
            format!("keys/{}", &*hex)
        );
    }
}
