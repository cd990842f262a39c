//! A bounded load generator: a few keep-alive clients sending GETs until told to stop or a
//! request budget runs out, counting every answer that is not a 2xx as a failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: usize,
    pub failed: usize,
    /// The first few failures, to say what went wrong.
    pub failures: Vec<String>,
    /// Bodies seen, to tell which upstream answered.
    pub bodies: std::collections::BTreeMap<String, usize>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    tasks: JoinSet<LoadReport>,
}

impl Load {
    /// Starts `clients` concurrent keep-alive clients, at most `budget` requests in all.
    pub fn start(addr: SocketAddr, host: &str, path: &str, clients: usize, budget: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..clients {
            let client: Client<_, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let (stop, sent) = (stop.clone(), sent.clone());
            let uri = format!("http://{addr}{path}");
            let host = host.to_string();
            tasks.spawn(async move {
                let mut report = LoadReport::default();
                while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < budget
                {
                    let req = Request::get(&uri)
                        .header("host", &host)
                        .body(Empty::new())
                        .unwrap();
                    let outcome = match client.request(req).await {
                        Ok(resp) if resp.status().is_success() => {
                            match resp.into_body().collect().await {
                                Ok(b) => Ok(String::from_utf8_lossy(&b.to_bytes()).into_owned()),
                                Err(e) => Err(format!("body: {e}")),
                            }
                        }
                        Ok(resp) => Err(format!("status {}", resp.status())),
                        Err(e) => Err(format!("request: {e:?}")),
                    };
                    match outcome {
                        Ok(body) => {
                            report.ok += 1;
                            *report.bodies.entry(body).or_default() += 1;
                        }
                        Err(e) => {
                            report.failed += 1;
                            if report.failures.len() < 5 {
                                report.failures.push(e);
                            }
                        }
                    }
                }
                report
            });
        }
        Load { stop, sent, tasks }
    }

    /// Requests sent so far (to wait until the load is really running).
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` requests went out, so a test acts while load is flowing.
    pub async fn until_sent(&self, n: usize) {
        while self.sent() < n {
            tokio::task::yield_now().await;
        }
    }

    pub async fn finish(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoadReport::default();
        while let Some(r) = self.tasks.join_next().await {
            let r = r.expect("load client panicked");
            all.ok += r.ok;
            all.failed += r.failed;
            all.failures.extend(r.failures);
            for (k, v) in r.bodies {
                *all.bodies.entry(k).or_default() += v;
            }
        }
        all
    }
}
