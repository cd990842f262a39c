//! A runtime on another machine: the agent runs instances with its own runtime (process or
//! Docker); the server reaches each through a relay, a loopback listener here whose
//! connections travel over the link to the instance's address there. The gateway therefore
//! proxies to remote instances like to local ones, and a node that goes away only empties
//! the addresses its instances publish ([`Instances::unreachable`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};
use wharf_link::proto::{self, Reply, ToAgent};
use wharf_runtime::{
    BoxFuture, InstanceSpec, InstanceState, InstanceStatus, Result, Runtime, RuntimeError, Workload,
};
use wharf_store::RuntimeKind;

use super::Node;

/// The instances the server runs on one node, with their relays.
#[derive(Default)]
pub(crate) struct Instances {
    map: Mutex<HashMap<String, Entry>>,
    /// Stopped while the node was unreachable: stopped there once it is back.
    pending_stops: Mutex<HashSet<String>>,
}

struct Entry {
    kind: RuntimeKind,
    /// Addresses on the node.
    remote: Vec<SocketAddr>,
    relays: Vec<Relay>,
    tx: watch::Sender<Vec<SocketAddr>>,
}

struct Relay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Entry {
    fn local(&self) -> Vec<SocketAddr> {
        self.relays.iter().map(|r| r.addr).collect()
    }
}

impl Instances {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The link went away: the node's instances publish no address until it is back (their
    /// apps' routes lose them; apps with nothing else answer 503).
    pub(crate) fn unreachable(&self) {
        for e in self.lock().values() {
            e.tx.send_replace(Vec::new());
        }
    }

    /// Forgets everything (node removed): every follower sees its instance end.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// The link is back: instances still running there publish their relays again; those
    /// gone (the agent restarted) are forgotten, so the reconciler replaces them; those
    /// stopped meanwhile are stopped there now.
    pub(crate) async fn reconnected(&self, node: &Arc<Node>) -> Result<(), String> {
        let pending: Vec<String> = self
            .pending_stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for instance in pending {
            for kind in ["process", "docker"] {
                let _ = node
                    .call(&ToAgent::Stop {
                        runtime: kind.to_string(),
                        instance: instance.clone(),
                    })
                    .await;
            }
        }
        // Without the listing nothing would publish the instances again: the caller ends the
        // link, and the agent's next connection tries again.
        let listed = match node.call(&ToAgent::List).await {
            Ok(Reply::Instances(l)) => l,
            Ok(other) => return Err(format!("unexpected answer to a listing: {other:?}")),
            Err(e) => return Err(format!("cannot list the node's instances: {e}")),
        };
        let mut map = self.lock();
        map.retain(|name, e| {
            match listed.iter().find(|i| &i.instance == name) {
                Some(i) if i.addr.is_none_or(|a| e.remote.contains(&a)) => {
                    e.tx.send_replace(e.local());
                    true
                }
                // Gone, or a new instance of that name elsewhere: the follower heals.
                _ => false,
            }
        });
        Ok(())
    }
}

/// The runtime of `kind` on a node.
pub(crate) struct RemoteRuntime {
    pub(crate) node: Arc<Node>,
    pub(crate) kind: RuntimeKind,
    /// This server's engine, which builds container apps' images: a node that lacks one gets
    /// it from here.
    pub(crate) engine: Option<Arc<wharf_docker::Engine>>,
}

fn err(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Engine(msg.into())
}

impl RemoteRuntime {
    fn kind_str(&self) -> String {
        self.kind.as_str().to_string()
    }

    /// Relays to `remote` addresses, one loopback listener each.
    async fn relays(&self, remote: &[SocketAddr]) -> Result<Vec<Relay>> {
        let mut out = Vec::new();
        for addr in remote {
            let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(|source| RuntimeError::Io {
                    context: "cannot open a relay to a node".into(),
                    source,
                })?;
            let local = listener.local_addr().map_err(|source| RuntimeError::Io {
                context: "cannot read a relay's address".into(),
                source,
            })?;
            let node = Arc::downgrade(&self.node);
            let target = *addr;
            let task = tokio::spawn(async move {
                loop {
                    let tcp = match listener.accept().await {
                        Ok((tcp, _)) => tcp,
                        Err(e) => {
                            // Out of file descriptors, most likely: the relay stays, and
                            // takes connections again once some are free.
                            tracing::warn!(%target, error = %e, "relay accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Some(node) = node.upgrade() else { return };
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(async move { relay(&node, tcp, target).await });
                }
            });
            out.push(Relay { addr: local, task });
        }
        Ok(out)
    }

    /// Sends the release's folder unless the node has it.
    async fn ship(&self, app: &str, n: u32, folder: &Path) -> Result<()> {
        if let Ok(Reply::Has(true)) = self
            .node
            .call(&ToAgent::HasRelease {
                app: app.to_string(),
                release: n,
            })
            .await
        {
            return Ok(());
        }
        let stream = self
            .node
            .open(&ToAgent::PutRelease {
                app: app.to_string(),
                release: n,
                sealed: true,
            })
            .await
            .map_err(err)?;
        let folder = folder.to_path_buf();
        let handle = tokio::runtime::Handle::current();
        let stream = tokio::task::spawn_blocking(move || {
            let mut bridge = tokio_util::io::SyncIoBridge::new_with_handle(stream, handle);
            let mut counted = Counted {
                inner: &mut bridge,
                bytes: 0,
            };
            let mut tar = tar::Builder::new(&mut counted);
            tar.follow_symlinks(false);
            tar.append_dir_all(".", &folder)?;
            tar.finish()?;
            drop(tar);
            // The seal: without it, the agent keeps nothing (a failure above ends the stream
            // before it).
            let length = counted.bytes;
            std::io::Write::write_all(&mut bridge, wharf_link::proto::RELEASE_SEAL)?;
            std::io::Write::write_all(&mut bridge, &length.to_le_bytes())?;
            std::io::Write::flush(&mut bridge)?;
            bridge.shutdown()?;
            Ok::<_, std::io::Error>(bridge.into_inner())
        })
        .await
        .map_err(|e| err(format!("sending the release failed: {e}")))?
        .map_err(|source| RuntimeError::Io {
            context: format!(
                "cannot send release {n} of {app} to node {}",
                self.node.name
            ),
            source,
        })?;
        let mut stream = stream;
        match wharf_link::frame::read_msg::<Reply>(&mut stream).await {
            Ok(Some(Reply::Done)) => Ok(()),
            Ok(Some(Reply::Error(e))) => Err(err(format!("node {}: {e}", self.node.name))),
            Ok(other) => Err(err(format!(
                "node {} answered {other:?} to a release",
                self.node.name
            ))),
            Err(e) => Err(err(format!("node {}: {e}", self.node.name))),
        }
    }

    /// Sends `image` from this server's engine unless the node's engine has it. The transfer
    /// has no time limit (images can be large) but ends with the link.
    async fn ship_image(&self, image: &str) -> Result<()> {
        let name = &self.node.name;
        let _one_at_a_time = self.node.image_lock.lock().await;
        let has = self
            .node
            .call(&ToAgent::HasImage {
                image: image.to_string(),
            })
            .await
            .map_err(err)?;
        match has {
            Reply::Has(true) => return Ok(()),
            Reply::Has(false) => {}
            other => {
                return Err(err(format!(
                    "node {name} answered {other:?} to an image lookup"
                )));
            }
        }
        let cannot = |why: String| {
            err(format!(
                "node {name} has no image {image} and this server's engine cannot give it: {why}"
            ))
        };
        let Some(engine) = &self.engine else {
            return Err(cannot("this server has no Docker engine".into()));
        };
        match engine.has_image(image).await {
            Ok(true) => {}
            Ok(false) => return Err(cannot("it has no image of that name either".into())),
            Err(e) => return Err(cannot(e.to_string())),
        }
        let lost = self.node.lost();
        let stream = self
            .node
            .open(&ToAgent::PutImage {
                image: image.to_string(),
            })
            .await
            .map_err(err)?;
        tracing::info!(node = %name, image, "sending the image to the node");
        let started = std::time::Instant::now();
        tokio::select! {
            sent = send_image(engine, image, stream) => sent.map_err(|why| {
                err(format!("cannot send the image {image} to node {name}: {why}"))
            })?,
            () = lost => {
                return Err(err(format!(
                    "lost the link to node {name} while sending it the image {image}"
                )));
            }
        }
        tracing::info!(node = %name, image, took = ?started.elapsed(), "image sent to the node");
        Ok(())
    }

    fn status(&self, i: proto::Instance, addr: Option<SocketAddr>) -> InstanceStatus {
        let state = match i.state.as_str() {
            "running" => InstanceState::Running,
            "backoff" => InstanceState::Backoff,
            "failed" => InstanceState::Failed,
            _ => InstanceState::Stopped,
        };
        let mut s = InstanceStatus::new(&i.app, &i.instance, state);
        s.addr = addr;
        s.pid = i.pid;
        s.restarts = i.restarts;
        s.started_at = i
            .started_at
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t));
        s.rss_bytes = i.rss_bytes;
        s.cpu_seconds = i.cpu_seconds;
        s.last_exit = i.last_exit;
        s.fingerprint = i.fingerprint;
        // A process instance's "release" there names its folder copy, not the app's release.
        s.release = if self.kind == RuntimeKind::Process {
            None
        } else {
            i.release
        };
        s.node = Some(self.node.name.clone());
        s.id = i.id;
        s.image = i.image;
        s
    }

    async fn listed(&self) -> Result<Vec<proto::Instance>> {
        match self.node.call(&ToAgent::List).await.map_err(err)? {
            Reply::Instances(l) => Ok(l
                .into_iter()
                .filter(|i| i.runtime == self.kind.as_str())
                .collect()),
            other => Err(err(format!("unexpected answer {other:?}"))),
        }
    }
}

/// The folder a process instance runs in on the node, named by what the server's folder is:
/// its path and when it was made (a release folder is written once, so an app deleted and
/// created again gets a new name for its new release 1), and for an app that runs from a
/// plain folder (`--dir`, no release), also what runs (the fingerprint), so a change sends it
/// again. Replicas and a switch's old instances share one.
fn folder_key(spec: &InstanceSpec, folder: &Path) -> u32 {
    use sha2::Digest;
    let made = std::fs::metadata(folder)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut h = sha2::Sha256::new();
    h.update(folder.as_os_str().as_encoded_bytes());
    h.update(made.to_be_bytes());
    if spec.release.is_none() {
        h.update(spec.fingerprint.as_bytes());
    }
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) | 1
}

/// Streams `docker save` of `image` over `stream`, ends the write side and waits for the
/// agent's answer; an early answer (the agent refused the archive) stops the sending.
async fn send_image(
    engine: &wharf_docker::Engine,
    image: &str,
    stream: wharf_link::Stream,
) -> std::result::Result<(), String> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    let (mut rd, mut wr) = tokio::io::split(stream);
    let send = async {
        let body = engine.save_image(image);
        futures_util::pin_mut!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            wr.write_all(&chunk)
                .await
                .map_err(|e| format!("the link failed: {e}"))?;
        }
        wr.shutdown()
            .await
            .map_err(|e| format!("the link failed: {e}"))
    };
    let answer = wharf_link::frame::read_msg::<Reply>(&mut rd);
    tokio::pin!(answer);
    let answer = tokio::select! {
        sent = send => {
            sent?;
            answer.await
        }
        early = &mut answer => early,
    };
    match answer {
        Ok(Some(Reply::Done)) => Ok(()),
        Ok(Some(Reply::Error(e))) => Err(e),
        Ok(Some(other)) => Err(format!("it answered {other:?}")),
        Ok(None) => Err("the node closed the stream without an answer".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// One connection through a relay: a stream to the node, then bytes both ways.
async fn relay(node: &Node, mut tcp: tokio::net::TcpStream, target: SocketAddr) {
    // Refused or unreachable: the connection closes and the gateway tries elsewhere.
    if let Ok((mut stream, _permit)) = node.connect(target).await {
        let _ = wharf_link::mux::splice(&mut tcp, &mut stream).await;
    }
}

impl Runtime for RemoteRuntime {
    fn name(&self) -> &'static str {
        self.kind.as_str()
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            let mut folder = spec.release;
            let workload = match &spec.workload {
                Workload::Process { command, workdir } => {
                    let key = folder_key(&spec, workdir);
                    folder = Some(key);
                    self.ship(&spec.app, key, workdir).await?;
                    proto::Workload::Process {
                        command: command.clone(),
                    }
                }
                Workload::Image { image, command } => {
                    self.ship_image(image).await?;
                    proto::Workload::Image {
                        image: image.clone(),
                        command: command.clone(),
                    }
                }
            };
            let remote = proto::Spec {
                runtime: self.kind_str(),
                app: spec.app.clone(),
                instance: spec.instance.clone(),
                release: folder,
                fingerprint: spec.fingerprint.clone(),
                workload,
                env: spec.env.clone(),
                port: spec.port,
                replicas: spec.replicas,
                memory_bytes: spec.limits.memory_bytes,
                cpu_millis: spec.limits.cpu_millis,
                stop_grace_ms: spec.stop_grace.as_millis() as u64,
                read_only: spec.container.read_only,
                user: spec.isolation.user.map(|u| u.uid),
                sandbox: spec.isolation.sandbox.is_some(),
                server_path: match &spec.workload {
                    Workload::Process { workdir, .. } => Some(workdir.display().to_string()),
                    Workload::Image { .. } => None,
                },
            };
            let addrs = match self.node.call(&ToAgent::Start(remote)).await.map_err(err)? {
                Reply::Started(a) => a,
                other => return Err(err(format!("unexpected answer {other:?}"))),
            };
            let relays = self.relays(&addrs).await?;
            let local: Vec<SocketAddr> = relays.iter().map(|r| r.addr).collect();
            let (tx, _) = watch::channel(local.clone());
            self.node.instances.lock().insert(
                spec.instance.clone(),
                Entry {
                    kind: self.kind,
                    remote: addrs,
                    relays,
                    tx,
                },
            );
            Ok(local)
        })
    }

    fn stop<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.node.instances.lock().remove(instance);
            let stopped = self
                .node
                .call(&ToAgent::Stop {
                    runtime: self.kind_str(),
                    instance: instance.to_string(),
                })
                .await;
            if let Err(e) = stopped {
                if self.node.link().is_none() {
                    // Stopped there once the node is back, before anything else runs.
                    self.node
                        .instances
                        .pending_stops
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(instance.to_string());
                    return Ok(());
                }
                return Err(err(e));
            }
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>> {
        Box::pin(async move {
            let listed = self.listed().await?;
            let map = self.node.instances.lock();
            Ok(listed
                .into_iter()
                .map(|i| {
                    let addr = map
                        .get(&i.instance)
                        .and_then(|e| e.relays.first().map(|r| r.addr));
                    self.status(i, addr)
                })
                .collect())
        })
    }

    fn adopt(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>> {
        Box::pin(async move {
            let listed = self.listed().await?;
            let mut out = Vec::new();
            for i in listed {
                let known = self
                    .node
                    .instances
                    .lock()
                    .get(&i.instance)
                    .map(|e| e.local());
                let local = match known {
                    Some(l) => l,
                    None => {
                        let remote: Vec<SocketAddr> = i.addr.into_iter().collect();
                        let relays = self.relays(&remote).await?;
                        let local: Vec<SocketAddr> = relays.iter().map(|r| r.addr).collect();
                        self.node.instances.lock().insert(
                            i.instance.clone(),
                            Entry {
                                kind: self.kind,
                                remote,
                                relays,
                                tx: watch::channel(local.clone()).0,
                            },
                        );
                        local
                    }
                };
                out.push(self.status(i, local.first().copied()));
            }
            Ok(out)
        })
    }

    fn outlives_server(&self) -> bool {
        true
    }

    fn addresses(&self, instance: &str) -> Option<watch::Receiver<Vec<SocketAddr>>> {
        self.node
            .instances
            .lock()
            .get(instance)
            .filter(|e| e.kind == self.kind)
            .map(|e| e.tx.subscribe())
    }

    fn logs<'a>(&'a self, app: &'a str, lines: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            match self
                .node
                .call(&ToAgent::Logs {
                    runtime: self.kind_str(),
                    app: app.to_string(),
                    lines,
                })
                .await
                .map_err(err)?
            {
                Reply::Lines(l) => Ok(l),
                other => Err(err(format!("unexpected answer {other:?}"))),
            }
        })
    }

    fn subscribe_logs(&self, app: &str) -> broadcast::Receiver<String> {
        let (tx, rx) = broadcast::channel(256);
        let node = self.node.clone();
        let req = ToAgent::FollowLogs {
            runtime: self.kind_str(),
            app: app.to_string(),
        };
        tokio::spawn(async move {
            let Ok(mut stream) = node.open(&req).await else {
                return;
            };
            // Ends when the agent ends it or when nobody listens any more (checked also while
            // the app is quiet, so a follower that left does not hold a stream).
            loop {
                let next = tokio::select! {
                    next = wharf_link::frame::read_msg::<Reply>(&mut stream) => next,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {
                        if tx.receiver_count() == 0 {
                            return;
                        }
                        continue;
                    }
                };
                match next {
                    Ok(Some(Reply::Line(line))) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        rx
    }

    fn exited<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let req = ToAgent::Exited {
                runtime: self.kind_str(),
                instance: instance.to_string(),
            };
            let Ok(mut stream) = self.node.open(&req).await else {
                return Some(format!("node {} is unreachable", self.node.name));
            };
            // No time limit: it answers when the instance ends.
            match wharf_link::frame::read_msg::<Reply>(&mut stream).await {
                Ok(Some(Reply::Exit(e))) => e,
                _ => Some(format!("lost the link to node {}", self.node.name)),
            }
        })
    }

    fn recent_output<'a>(&'a self, instance: &'a str, lines: usize) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            match self
                .node
                .call(&ToAgent::RecentOutput {
                    runtime: self.kind_str(),
                    instance: instance.to_string(),
                    lines,
                })
                .await
            {
                Ok(Reply::Lines(l)) => l,
                _ => Vec::new(),
            }
        })
    }
}

/// Counts what goes through it: a release archive's length, for its seal.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
