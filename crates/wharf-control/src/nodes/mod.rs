//! Other machines: agents joined by links (crate `wharf-link`). The hub listens on the link
//! port, enrols agents with one-time tokens, admits enrolled ones whose certificate is the one
//! pinned at enrolment, watches each link with a heartbeat, and gives each node a runtime
//! ([`remote::RemoteRuntime`]) the reconciler drives like a local one. Tunnels carry TCP
//! between machines over the links ([`tunnels`]).

pub(crate) mod remote;
pub(crate) mod tunnels;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wharf_link::proto::{Reply, ToAgent, ToServer};
use wharf_link::{Authority, Opener, frame};
use wharf_store::Store;

/// How often the server pings each agent.
const PING_EVERY: Duration = Duration::from_millis(500);
/// A link whose pong is this late is declared gone: with a ping every 500 ms, a node that
/// went silent is out of routing within 2 s.
const PING_PATIENCE: Duration = Duration::from_millis(1200);
/// How long a request to an agent may take (a container start included).
const CALL_PATIENCE: Duration = Duration::from_secs(60);
/// How long a new connection to a node waits for one of its stream slots.
const SLOT_PATIENCE: Duration = Duration::from_secs(10);
/// Connections carried at once per node (see [`Node::carried`]).
const CARRIED_STREAMS: usize = wharf_link::mux::MAX_STREAMS * 3 / 4;
/// How long opening a stream and sending its request may take.
const OPEN_PATIENCE: Duration = Duration::from_secs(10);
/// Join tokens work this long.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Sent when a node's link comes up, so its apps are adopted and brought up.
pub(crate) type Arrivals = tokio::sync::mpsc::UnboundedSender<String>;

pub(crate) struct Hub {
    store: Arc<Store>,
    authority: Authority,
    /// `host:port` agents reach the link at (in join URLs).
    public: String,
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    pub(crate) tunnels: tunnels::Tunnels,
    arrivals: Mutex<Option<Arrivals>>,
}

/// A node's live state. Lasts across its connections, so instances and their relays survive
/// a link that comes and goes.
pub(crate) struct Node {
    pub(crate) name: String,
    link: watch::Sender<Option<Link>>,
    /// Streams that carry connections (relays, tunnels) take a permit: the agent ends the whole
    /// link when a peer opens more streams than it allows (wharf-link's `MAX_STREAMS`), so
    /// these wait for a permit instead, leaving room for the server's own requests.
    pub(crate) carried: Arc<tokio::sync::Semaphore>,
    pub(crate) info: Mutex<NodeInfo>,
    rtt_us: AtomicU64,
    pub(crate) instances: remote::Instances,
    /// Held while an image is checked for and sent, so replicas starting together send it once.
    pub(crate) image_lock: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) opener: Opener,
    id: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct NodeInfo {
    pub(crate) version: Option<String>,
    pub(crate) runtimes: Vec<String>,
    pub(crate) last_contact: Option<SystemTime>,
    pub(crate) peer: Option<SocketAddr>,
}

/// The link's address as agents should dial it: a wildcard address is replaced by this
/// machine's host name.
pub(crate) fn default_public(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        format!("{host}:{}", bound.port())
    } else {
        bound.to_string()
    }
}

/// Node names: short, lowercase letters, digits and `-` (they appear in certificates, logs and
/// commands); `server` names the server's own machine in tunnels.
pub(crate) fn valid_name(name: &str) -> bool {
    // The same rule as app names.
    name != tunnels::SERVER && wharf_store::validate_app_name(name).is_ok()
}

impl Hub {
    pub(crate) fn new(store: Arc<Store>, authority: Authority, public: String) -> Arc<Hub> {
        Arc::new(Hub {
            store,
            authority,
            public,
            nodes: Mutex::new(HashMap::new()),
            tunnels: tunnels::Tunnels::default(),
            arrivals: Mutex::new(None),
        })
    }

    pub(crate) fn on_arrival(&self, tx: Arrivals) {
        *self.arrivals.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    pub(crate) fn join_url(&self) -> wharf_link::JoinUrl {
        wharf_link::JoinUrl {
            server: self.public.clone(),
            ca_fingerprint: self.authority.fingerprint(),
        }
    }

    /// The node's state (made on first use).
    pub(crate) fn node(&self, name: &str) -> Arc<Node> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Node {
                    name: name.to_string(),
                    link: watch::channel(None).0,
                    carried: Arc::new(tokio::sync::Semaphore::new(CARRIED_STREAMS)),
                    info: Mutex::new(NodeInfo::default()),
                    rtt_us: AtomicU64::new(0),
                    instances: remote::Instances::default(),
                    image_lock: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// Nodes with a live link.
    pub(crate) fn connected(&self) -> Vec<Arc<Node>> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|n| n.link().is_some())
            .cloned()
            .collect()
    }

    /// Closes a removed node's link at once; its certificate is refused from now on (the
    /// store no longer knows it).
    pub(crate) fn forget(&self, name: &str) {
        let node = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(node) = node {
            if let Some(link) = node.link() {
                link.opener.close();
            }
            node.instances.clear();
            node.link.send_replace(None);
        }
    }

    /// Accepts link connections until `stop`.
    pub(crate) async fn serve(
        self: Arc<Hub>,
        listener: tokio::net::TcpListener,
        stop: CancellationToken,
    ) {
        let config = match self.authority.server_config() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the link cannot start");
                return;
            }
        };
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "link accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let hub = self.clone();
            let config = config.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                hub.admit(tcp, peer, config, stop).await;
            });
        }
    }

    async fn admit(
        self: Arc<Hub>,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        config: Arc<rustls::ServerConfig>,
        stop: CancellationToken,
    ) {
        let store = self.store.clone();
        let check = move |token: &str| match store.redeem_node_token(&crate::auth::hash(token)) {
            Ok(verdict) => verdict.map_err(|r| r.to_string()),
            Err(e) => Err(format!("the server cannot check tokens now: {e}")),
        };
        let accepted = wharf_link::enrol::accept(&self.authority, config, tcp, &check).await;
        match accepted {
            Ok(wharf_link::enrol::Accepted::Enrolled(cert)) => {
                match self.store.node_joined(&cert.node, &cert.fingerprint) {
                    Ok(()) => tracing::info!(node = %cert.node, %peer, "node joined"),
                    Err(e) => {
                        tracing::error!(node = %cert.node, error = %e, "cannot record a joined node")
                    }
                }
            }
            Ok(wharf_link::enrol::Accepted::Link {
                peer: cert,
                session,
            }) => {
                let pinned = self.store.node(&cert.node).ok().and_then(|n| n.fingerprint);
                if pinned.as_deref() != Some(cert.fingerprint.as_str()) {
                    // Removed, or a certificate other than the one it enrolled with.
                    tracing::warn!(node = %cert.node, %peer, "link refused: the node is not (or no longer) known with this certificate");
                    let (opener, mut incoming) = session.split();
                    // Said on its hello, so the agent's operator reads what to do instead of
                    // "the link is closed" at every retry.
                    let why = format!(
                        "this server does not know node `{}` with this agent's certificate (the \
                         node was removed, or added again): on the agent, remove identity.json \
                         from its data folder and join again with the command `wharf nodes add {}` \
                         prints",
                        cert.node, cert.node
                    );
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        if let Some(mut s) = incoming.next().await {
                            let _ = frame::read_msg::<ToServer>(&mut s).await;
                            let _ = frame::write_msg(&mut s, &Reply::Error(why)).await;
                        }
                    })
                    .await;
                    opener.close();
                    return;
                }
                self.run_link(&cert.node, peer, session, stop).await;
            }
            Err(e) => tracing::warn!(%peer, error = %e, "link connection refused"),
        }
    }

    /// Serves one connection of a node until it ends.
    async fn run_link(
        self: &Arc<Hub>,
        name: &str,
        peer: SocketAddr,
        session: wharf_link::Session,
        stop: CancellationToken,
    ) {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let node = self.node(name);
        let (opener, mut incoming) = session.split();
        let link = Link {
            opener: opener.clone(),
            id: IDS.fetch_add(1, Ordering::Relaxed),
        };
        // A newer connection of the same node replaces the old one (an agent that restarted
        // before the old link timed out).
        if let Some(old) = node.link.send_replace(Some(link.clone())) {
            old.opener.close();
        }
        // Removed between admission and now (`forget` ran before this link was installed):
        // nothing else would close it.
        if self
            .store
            .node(name)
            .ok()
            .and_then(|n| n.fingerprint)
            .is_none()
        {
            opener.close();
            node.link.send_if_modified(|l| clear_if(l, link.id));
            return;
        }
        {
            let mut info = node.info.lock().unwrap_or_else(|p| p.into_inner());
            info.last_contact = Some(SystemTime::now());
            info.peer = Some(peer);
        }
        tracing::info!(node = name, %peer, "node connected");
        // The agent's own streams: its hello, tunnel connections.
        let hub = self.clone();
        let n = node.clone();
        let streams = tokio::spawn(async move {
            while let Some(stream) = incoming.next().await {
                let (hub, n) = (hub.clone(), n.clone());
                tokio::spawn(async move { hub.agent_stream(&n, stream).await });
            }
        });
        // The heartbeat first: the agent takes a server that does not ping for a dead one.
        let mut beat = tokio::spawn({
            let (node, opener) = (node.clone(), opener.clone());
            async move { heartbeat(&node, &opener).await }
        });
        // What runs there now: instances are re-enlisted (or found gone), then the reconciler
        // brings up its apps and adopts what it does not know.
        if let Err(e) = node.instances.reconnected(&node).await {
            tracing::warn!(node = name, error = %e, "closing the link to try again");
            opener.close();
            streams.abort();
            beat.abort();
            if node.link.send_if_modified(|l| clear_if(l, link.id)) {
                node.instances.unreachable();
            }
            return;
        }
        self.tunnels.node_up(self, &node).await;
        if let Some(tx) = self
            .arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            let _ = tx.send(name.to_string());
        }
        tokio::select! {
            _ = &mut beat => {
                tracing::warn!(node = name, "node unreachable: no answer to the link's heartbeat");
            }
            _ = opener.closed() => tracing::warn!(node = name, "node link closed"),
            _ = stop.cancelled() => {}
        }
        opener.close();
        streams.abort();
        beat.abort();
        // Only if no newer connection took over meanwhile.
        if node.link.send_if_modified(|l| clear_if(l, link.id)) {
            node.instances.unreachable();
        }
    }

    async fn agent_stream(self: &Arc<Hub>, node: &Arc<Node>, mut stream: wharf_link::Stream) {
        let first: Option<ToServer> = match frame::read_msg(&mut stream).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(node = %node.name, error = %e, "bad stream from agent");
                return;
            }
        };
        match first {
            Some(ToServer::Hello(hello)) => {
                {
                    let mut info = node.info.lock().unwrap_or_else(|p| p.into_inner());
                    info.version = Some(hello.version);
                    info.runtimes = hello.runtimes;
                }
                let _ = frame::write_msg(&mut stream, &Reply::Done).await;
            }
            Some(ToServer::Tunnel { tunnel }) => {
                self.tunnels
                    .accepted_on_node(self, node, &tunnel, stream)
                    .await;
            }
            None => {}
        }
    }

    /// The link's round trip, as last measured.
    pub(crate) fn rtt(node: &Node) -> Option<Duration> {
        match node.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

impl Node {
    pub(crate) fn link(&self) -> Option<Link> {
        self.link.borrow().clone()
    }

    pub(crate) fn info(&self) -> NodeInfo {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Resolves once the link up now is gone (dropped, replaced by a new connection, or the
    /// node removed): what runs over it without a time limit races this.
    pub(crate) fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.link.subscribe();
        let id = rx.borrow().as_ref().map(|l| l.id);
        async move {
            let _ = rx.wait_for(|l| l.as_ref().map(|l| l.id) != id).await;
        }
    }

    /// One request and its one reply, on a stream of its own.
    pub(crate) async fn call(&self, req: &ToAgent) -> Result<Reply, String> {
        let mut stream = self.open(req).await?;
        let reply = tokio::time::timeout(CALL_PATIENCE, frame::read_msg::<Reply>(&mut stream))
            .await
            .map_err(|_| format!("node {} did not answer in time", self.name))?
            .map_err(|e| format!("node {}: {e}", self.name))?;
        match reply {
            Some(Reply::Error(e)) => Err(format!("node {}: {e}", self.name)),
            Some(r) => Ok(r),
            None => Err(format!("node {} closed the request", self.name)),
        }
    }

    /// A connection to `addr` on the node, carried by a stream, with the permit it holds
    /// (see [`Node::carried`]): keep both while the connection lives.
    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<(wharf_link::Stream, tokio::sync::OwnedSemaphorePermit), String> {
        // Every slot held (busy relays and tunnels, or the gateway's idle connections): an
        // error after a while rather than a client that hangs.
        let permit = tokio::time::timeout(
            SLOT_PATIENCE,
            self.carried.clone().acquire_owned(),
        )
        .await
        .map_err(|_| {
            format!(
                "node {} carries {CARRIED_STREAMS} connections already; try again when some end",
                self.name
            )
        })?
        .map_err(|_| format!("node {} is gone", self.name))?;
        let mut stream = self.open(&ToAgent::Connect { addr }).await?;
        match frame::read_msg::<Reply>(&mut stream).await {
            Ok(Some(Reply::Done)) => Ok((stream, permit)),
            Ok(Some(Reply::Error(e))) => Err(format!("node {}: {e}", self.name)),
            Ok(other) => Err(format!("node {} answered {other:?}", self.name)),
            Err(e) => Err(format!("node {}: {e}", self.name)),
        }
    }

    /// Opens a stream and sends the request on it.
    pub(crate) async fn open(&self, req: &ToAgent) -> Result<wharf_link::Stream, String> {
        let link = self
            .link()
            .ok_or_else(|| format!("node {} is unreachable", self.name))?;
        // A link whose streams stopped moving (the peer no longer acknowledges) must not hold
        // a change up forever.
        let opened = tokio::time::timeout(OPEN_PATIENCE, async {
            let mut stream = link.opener.open().await?;
            frame::write_msg(&mut stream, req).await?;
            Ok::<_, wharf_link::LinkError>(stream)
        })
        .await;
        match opened {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(format!("node {}: {e}", self.name)),
            Err(_) => Err(format!("node {} did not take a request in time", self.name)),
        }
    }
}

/// Pings over one long-lived stream; returns when a pong is late or the stream fails.
async fn heartbeat(node: &Node, opener: &Opener) {
    let Ok(mut stream) = opener.open().await else {
        return;
    };
    if frame::write_msg(&mut stream, &ToAgent::Ping).await.is_err() {
        return;
    }
    loop {
        let sent = std::time::Instant::now();
        match tokio::time::timeout(PING_PATIENCE, frame::read_msg::<Reply>(&mut stream)).await {
            Ok(Ok(Some(Reply::Pong))) => {}
            _ => return,
        }
        let rtt = sent.elapsed();
        node.rtt_us
            .store((rtt.as_micros() as u64).max(1), Ordering::Relaxed);
        node.info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_contact = Some(SystemTime::now());
        tokio::time::sleep(PING_EVERY.saturating_sub(rtt)).await;
        // A write blocks when the path is cut with data queued: it counts against the same
        // patience as the answer.
        match tokio::time::timeout(PING_PATIENCE, frame::write_msg(&mut stream, &ToAgent::Ping))
            .await
        {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// Clears the node's link if it is still the one with this id.
fn clear_if(link: &mut Option<Link>, id: u64) -> bool {
    if link.as_ref().is_some_and(|l| l.id == id) {
        *link = None;
        true
    } else {
        false
    }
}
