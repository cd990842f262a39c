//! JSON access log: one line per request, written by a background task so the request path
//! never waits on disk. Lines are dropped (and counted) rather than queued without bound.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::AccessLogTarget;
use crate::error::GatewayError;

#[derive(Serialize)]
pub(crate) struct Entry<'a> {
    pub(crate) ts: f64,
    pub(crate) site: &'a str,
    pub(crate) client: IpAddr,
    pub(crate) method: &'a str,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) upstream: Option<String>,
}

pub(crate) struct AccessLog {
    tx: Option<mpsc::Sender<String>>,
    dropped: AtomicU64,
}

impl AccessLog {
    pub(crate) fn open(target: &AccessLogTarget) -> Result<AccessLog, GatewayError> {
        let writer: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => {
                return Ok(AccessLog {
                    tx: None,
                    dropped: AtomicU64::new(0),
                });
            }
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| GatewayError::AccessLog {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        let (tx, mut rx) = mpsc::channel::<String>(8192);
        // A plain thread: writes block, and this keeps them off the async workers.
        std::thread::Builder::new()
            .name("wharf-access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(writer);
                while let Some(line) = rx.blocking_recv() {
                    let _ = out.write_all(line.as_bytes());
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(more.as_bytes());
                    }
                    let _ = out.flush();
                }
            })
            .map_err(|source| GatewayError::AccessLog {
                path: "<thread>".into(),
                source,
            })?;
        Ok(AccessLog {
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub(crate) fn write(&self, entry: &Entry<'_>) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_string(entry) else {
            return;
        };
        line.push('\n');
        if tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
