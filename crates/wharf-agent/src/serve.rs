//! Answers the server's requests: one stream per request, its first frame a [`ToAgent`], the
//! answer [`Reply`] frames (see `wharf_link::proto` for each exchange). Generic over the
//! stream and over what opens streams to the server ([`OpenStream`]), so it runs the same over
//! the link and over in-memory pipes in tests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wharf_link::LinkError;
use wharf_link::frame::{read_msg, write_msg};
use wharf_link::proto::{self, Reply, ToAgent};
use wharf_runtime::{
    ContainerOptions, InstanceSpec, InstanceStatus, Isolation, Limits, RestartPolicy, Workload,
};

use crate::releases::{check_app, check_image, check_instance};
use crate::{AgentError, Node};

/// Opens streams to the server: the link's [`wharf_link::Opener`], or a fake in tests.
pub trait OpenStream: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn open(&self) -> impl Future<Output = Result<Self::Stream, LinkError>> + Send;
    /// Ends the whole connection (the agent then connects again).
    fn close_connection(&self) {}
}

impl OpenStream for wharf_link::Opener {
    type Stream = wharf_link::Stream;
    fn open(&self) -> impl Future<Output = Result<Self::Stream, LinkError>> + Send {
        wharf_link::Opener::open(self)
    }
    fn close_connection(&self) {
        self.close();
    }
}

/// The server pings every 500 ms: this long without one, the connection is taken for dead
/// (a path cut without a word: no FIN or RST ever comes) and the agent connects again.
const SILENT_SERVER: std::time::Duration = std::time::Duration::from_secs(3);

/// One connection to the server as the agent serves it: the node's runtimes, plus what lives
/// only as long as the connection (tunnel listeners).
pub struct Link<O> {
    pub(crate) node: Arc<Node>,
    pub(crate) opener: O,
    /// Tunnel listeners by tunnel name.
    pub(crate) tunnels: Mutex<HashMap<String, Listening>>,
    /// Cancelled when the connection ends: its tunnel listeners and waits end with it.
    pub(crate) closed: CancellationToken,
    /// Tunnel connections carried at once, all tunnels together (see
    /// [`wharf_link::mux::AGENT_TUNNEL_STREAMS`]).
    pub(crate) tunnel_slots: Arc<tokio::sync::Semaphore>,
}

pub(crate) struct Listening {
    pub(crate) stop: CancellationToken,
    pub(crate) task: JoinHandle<()>,
}

/// A write or read on the request's stream failed: the server went away; nothing to answer.
type Gone = LinkError;

impl<O: OpenStream> Link<O> {
    pub fn new(node: Arc<Node>, opener: O) -> Arc<Link<O>> {
        Arc::new(Link {
            node,
            opener,
            tunnels: Mutex::default(),
            closed: CancellationToken::new(),
            tunnel_slots: Arc::new(tokio::sync::Semaphore::new(
                wharf_link::mux::AGENT_TUNNEL_STREAMS,
            )),
        })
    }

    /// The connection is gone: closes its tunnel listeners (the server asks again on the next
    /// connection). Instances keep running.
    pub fn close(&self) {
        self.closed.cancel();
        self.tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Serves one stream the server opened: reads its request and answers it.
    pub async fn serve_stream<S>(self: Arc<Self>, mut stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let request = match read_msg::<ToAgent>(&mut stream).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable request");
                let _ = write_msg(&mut stream, &Reply::Error(format!("bad request: {e}"))).await;
                return;
            }
        };
        tracing::debug!(?request, "request");
        if let Err(e) = self.answer(request, stream).await {
            tracing::debug!(error = %e, "the server's end of a stream went away");
        }
    }

    async fn answer<S>(self: Arc<Self>, request: ToAgent, mut s: S) -> Result<(), Gone>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let node = &self.node;
        let reply = match request {
            ToAgent::Ping => return self.pings(s).await,
            ToAgent::HasRelease { app, release } => {
                crate::releases::has(node, &app, release).map(Reply::Has)
            }
            ToAgent::PutRelease {
                app,
                release,
                sealed,
            } => {
                let (back, done) = crate::releases::put(node, &app, release, sealed, s).await;
                s = back;
                match &done {
                    Ok(()) => {
                        node.received(&app, release);
                        tracing::info!(app, release, "release received")
                    }
                    Err(e) => tracing::warn!(error = %e, "release refused"),
                }
                done.map(|()| Reply::Done)
            }
            ToAgent::HasImage { image } => self.has_image(&image).await,
            ToAgent::PutImage { image } => return self.put_image(image, s).await,
            ToAgent::Start(spec) => self.start(spec).await.map(Reply::Started),
            ToAgent::Stop { runtime, instance } => self.stop(&runtime, &instance).await,
            ToAgent::List => Ok(Reply::Instances(self.list().await)),
            ToAgent::Logs {
                runtime,
                app,
                lines,
            } => match self.logs_runtime(&runtime, &app) {
                Ok(rt) => rt
                    .logs(&app, lines)
                    .await
                    .map(Reply::Lines)
                    .map_err(AgentError::from),
                Err(e) => Err(e),
            },
            ToAgent::FollowLogs { runtime, app } => match self.logs_runtime(&runtime, &app) {
                Ok(rt) => return self.follow_logs(rt.subscribe_logs(&app), s).await,
                Err(e) => Err(e),
            },
            ToAgent::Exited { runtime, instance } => {
                match self.instance_runtime(&runtime, &instance) {
                    Ok(rt) => return self.exited(rt, instance, s).await,
                    Err(e) => Err(e),
                }
            }
            ToAgent::RecentOutput {
                runtime,
                instance,
                lines,
            } => match self.instance_runtime(&runtime, &instance) {
                Ok(rt) => Ok(Reply::Lines(rt.recent_output(&instance, lines).await)),
                Err(e) => Err(e),
            },
            ToAgent::Connect { addr } => return crate::tunnel::connect(addr, s).await,
            ToAgent::Listen { tunnel, addr } => self.clone().listen(tunnel, addr).await,
            ToAgent::Unlisten { tunnel } => {
                self.unlisten(&tunnel).await;
                Ok(Reply::Done)
            }
        };
        let reply = reply.unwrap_or_else(|e| Reply::Error(e.to_string()));
        write_msg(&mut s, &reply).await?;
        s.shutdown()
            .await
            .map_err(|e| LinkError::Other(e.to_string()))
    }

    /// The heartbeat: a `Pong` per `Ping`, for as long as the stream lasts.
    async fn pings<S>(&self, mut s: S) -> Result<(), Gone>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        write_msg(&mut s, &Reply::Pong).await?;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(SILENT_SERVER, read_msg::<ToAgent>(&mut s)) => match next {
                    Ok(next) => next?,
                    Err(_) => {
                        tracing::warn!("no heartbeat from the server for {SILENT_SERVER:?}; connecting again");
                        self.opener.close_connection();
                        return Ok(());
                    }
                },
                () = self.closed.cancelled() => return Ok(()),
            };
            match next {
                // A pong that cannot leave (the path cut with data queued) is a dead link too.
                Some(ToAgent::Ping) => {
                    match tokio::time::timeout(SILENT_SERVER, write_msg(&mut s, &Reply::Pong)).await
                    {
                        Ok(written) => written?,
                        Err(_) => {
                            self.opener.close_connection();
                            return Ok(());
                        }
                    }
                }
                Some(other) => {
                    let why = format!("only Ping goes on a heartbeat stream, not {other:?}");
                    return write_msg(&mut s, &Reply::Error(why)).await;
                }
                None => return Ok(()),
            }
        }
    }

    /// Whether the Docker engine holds `image`; no engine holds nothing.
    async fn has_image(&self, image: &str) -> Result<Reply, AgentError> {
        check_image(image)?;
        let Ok(engine) = self.node.docker_engine() else {
            return Ok(Reply::Has(false));
        };
        engine
            .has_image(image)
            .await
            .map(Reply::Has)
            .map_err(|source| AgentError::Image {
                image: image.to_string(),
                source,
            })
    }

    /// Loads the `docker save` archive the rest of the stream carries into the engine, then
    /// answers. Ends without an answer if the connection goes first.
    async fn put_image<S>(&self, image: String, s: S) -> Result<(), Gone>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (rd, mut wr) = tokio::io::split(s);
        let loaded = tokio::select! {
            loaded = self.load_image(&image, rd) => loaded,
            () = self.closed.cancelled() => return Ok(()),
        };
        let reply = match loaded {
            Ok(()) => {
                tracing::info!(image, "image received");
                Reply::Done
            }
            Err(e) => {
                tracing::warn!(error = %e, "image refused");
                Reply::Error(e.to_string())
            }
        };
        write_msg(&mut wr, &reply).await?;
        wr.shutdown()
            .await
            .map_err(|e| LinkError::Other(e.to_string()))
    }

    async fn load_image<R>(&self, image: &str, body: R) -> Result<(), AgentError>
    where
        R: AsyncRead + Send + 'static,
    {
        check_image(image)?;
        let engine = self.node.docker_engine()?;
        let failed = |source| AgentError::Image {
            image: image.to_string(),
            source,
        };
        let body = tokio_util::io::ReaderStream::with_capacity(body, 64 << 10);
        let loaded = engine.load_image(body).await.map_err(failed)?;
        // The archive is the server's word for what it holds: checked, so a start never
        // meets a missing image after a `Done`.
        if !engine.has_image(image).await.map_err(failed)? {
            return Err(AgentError::ImageMissing {
                image: image.to_string(),
                loaded: loaded.join(", "),
            });
        }
        Ok(())
    }

    fn logs_runtime(
        &self,
        runtime: &str,
        app: &str,
    ) -> Result<Arc<dyn wharf_runtime::Runtime>, AgentError> {
        check_app(app)?;
        self.node.runtime(runtime)
    }

    fn instance_runtime(
        &self,
        runtime: &str,
        instance: &str,
    ) -> Result<Arc<dyn wharf_runtime::Runtime>, AgentError> {
        check_instance(instance)?;
        self.node.runtime(runtime)
    }

    async fn start(&self, spec: proto::Spec) -> Result<Vec<std::net::SocketAddr>, AgentError> {
        let runtime = self.node.runtime(&spec.runtime)?;
        let name = spec.instance.clone();
        let (app, process) = (spec.app.clone(), spec.runtime == "process");
        let spec = self.instance_spec(spec)?;
        let addrs = runtime.start(spec).await?;
        tracing::info!(instance = name, addrs = ?addrs, "instance started");
        if process {
            // Before the answer: the server sends the app's next release only after it.
            self.node.prune_releases(&app).await;
        }
        Ok(addrs)
    }

    /// The server's spec in this machine's terms: its folders, the runtime's defaults.
    fn instance_spec(&self, spec: proto::Spec) -> Result<InstanceSpec, AgentError> {
        check_app(&spec.app)?;
        check_instance(&spec.instance)?;
        let node = &self.node;
        let mut isolation = Isolation::default();
        let mut env = spec.env;
        let mut port = spec.port;
        let workload = match spec.workload {
            proto::Workload::Process { command } => {
                let release = spec.release.ok_or_else(|| AgentError::NoReleaseGiven {
                    app: spec.app.clone(),
                })?;
                let copy = node.release_dir(&spec.app, release);
                if !copy.is_dir() {
                    return Err(AgentError::NoRelease {
                        app: spec.app,
                        release,
                    });
                }
                // Run it where the server built it, when that path can lead to the copy.
                let workdir = spec
                    .server_path
                    .as_deref()
                    .and_then(|p| crate::releases::lead_to(std::path::Path::new(p), &copy))
                    .unwrap_or_else(|| copy.clone());
                // As on the server: the app's own user when the agent may switch users, and
                // the sandbox (its code read-only, its volume and tmp writable, its port)
                // unless the app opted out.
                let app = &spec.app;
                if let Some(uid) = spec.user.filter(|_| node.switches_users()) {
                    node.give(app, uid)?;
                    isolation.user = Some(wharf_runtime::AppUser { uid, gid: uid });
                    env.entry("HOME".into())
                        .or_insert_with(|| node.tmp(app).display().to_string());
                }
                if spec.sandbox && node.sandboxes() {
                    std::fs::create_dir_all(node.volume(app))
                        .and_then(|()| std::fs::create_dir_all(node.tmp(app)))
                        .map_err(|e| {
                            AgentError::io("cannot create the app's folders", node.tmp(app), e)
                        })?;
                    let p = match port {
                        Some(p) => p,
                        None => wharf_runtime::free_port()
                            .map_err(|e| AgentError::io("no free port", node.tmp(app), e))?,
                    };
                    port = Some(p);
                    isolation.sandbox = Some(wharf_runtime::SandboxPolicy {
                        read: vec![workdir.clone(), copy.clone()],
                        write: vec![node.volume(app), node.tmp(app)],
                        bind_ports: vec![p],
                    });
                }
                if isolation.user.is_some() || isolation.sandbox.is_some() {
                    env.insert("TMPDIR".into(), node.tmp(app).display().to_string());
                }
                Workload::Process { command, workdir }
            }
            proto::Workload::Image { image, command } => Workload::Image { image, command },
        };
        Ok(InstanceSpec {
            volume: node.volume(&spec.app),
            log_dir: node.log_dir(&spec.app),
            app: spec.app,
            instance: spec.instance,
            release: spec.release,
            fingerprint: spec.fingerprint,
            workload,
            env,
            port,
            replicas: spec.replicas.max(1),
            limits: Limits {
                memory_bytes: spec.memory_bytes,
                cpu_millis: spec.cpu_millis,
            },
            restart: RestartPolicy::default(),
            stop_grace: Duration::from_millis(spec.stop_grace_ms),
            isolation,
            container: ContainerOptions {
                read_only: spec.read_only,
                constraints: Vec::new(),
            },
        })
    }

    async fn stop(&self, runtime: &str, instance: &str) -> Result<Reply, AgentError> {
        let rt = self.instance_runtime(runtime, instance)?;
        rt.stop(instance).await?;
        tracing::info!(instance, "instance stopped");
        Ok(Reply::Done)
    }

    async fn list(&self) -> Vec<proto::Instance> {
        self.node
            .list()
            .await
            .into_iter()
            .map(|(runtime, s)| instance(runtime, s))
            .collect()
    }

    /// Live lines until either end closes.
    async fn follow_logs<S>(
        &self,
        mut lines: tokio::sync::broadcast::Receiver<String>,
        s: S,
    ) -> Result<(), Gone>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (mut rd, mut wr) = tokio::io::split(s);
        // Anything from the server (its end of stream, most likely) ends the follow.
        let server_done = read_msg::<ToAgent>(&mut rd);
        tokio::pin!(server_done);
        loop {
            tokio::select! {
                line = lines.recv() => match line {
                    Ok(line) => write_msg(&mut wr, &Reply::Line(line)).await?,
                    // A slow link misses lines rather than holding the app up.
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "log follower lagged");
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = &mut server_done => break,
                () = self.closed.cancelled() => break,
            }
        }
        let _ = wr.shutdown().await;
        Ok(())
    }

    /// Answers once the instance ended, unless the server stops asking first.
    async fn exited<S>(
        &self,
        rt: Arc<dyn wharf_runtime::Runtime>,
        instance: String,
        mut s: S,
    ) -> Result<(), Gone>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let how = tokio::select! {
            how = rt.exited(&instance) => how,
            _ = read_msg::<ToAgent>(&mut s) => return Ok(()),
            () = self.closed.cancelled() => return Ok(()),
        };
        write_msg(&mut s, &Reply::Exit(how)).await?;
        s.shutdown()
            .await
            .map_err(|e| LinkError::Other(e.to_string()))
    }
}

/// An instance as the server is told of it.
fn instance(runtime: &str, s: InstanceStatus) -> proto::Instance {
    proto::Instance {
        runtime: runtime.to_string(),
        app: s.app,
        instance: s.instance,
        addr: s.addr,
        state: s.state.as_str().to_string(),
        pid: s.pid,
        restarts: s.restarts,
        started_at: s
            .started_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        rss_bytes: s.rss_bytes,
        cpu_seconds: s.cpu_seconds,
        last_exit: s.last_exit,
        fingerprint: s.fingerprint,
        release: s.release,
        id: s.id,
        image: s.image,
    }
}
