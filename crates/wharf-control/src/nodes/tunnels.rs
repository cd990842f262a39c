//! TCP tunnels over the links (what stunnel does, with the links' keys): connections to the
//! listening end, on the server or a node, reach the other end's address, on the server or a
//! node. Every byte between machines travels inside a link.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use wharf_link::frame;
use wharf_link::proto::{Reply, ToAgent};
use wharf_store::Tunnel;

use super::{Hub, Node};

/// The name that stands for the server's own machine in tunnel ends.
pub(crate) const SERVER: &str = "server";

/// The tunnels' listening ends on the server, and what ends each tunnel's connections.
#[derive(Default)]
pub(crate) struct Tunnels {
    listeners: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Cancelled when the tunnel is removed: its open connections end with it.
    ends: Mutex<HashMap<String, CancellationToken>>,
}

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::JoinHandle<()>>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end_of(&self, tunnel: &str) -> CancellationToken {
        self.ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tunnel.to_string())
            .or_default()
            .clone()
    }

    /// Opens the tunnel's listening end: here, or on its node if that node is connected (else
    /// once it connects).
    pub(crate) async fn open(&self, hub: &Arc<Hub>, t: &Tunnel) -> Result<(), String> {
        let addr: SocketAddr = t
            .listen_addr
            .parse()
            .map_err(|_| format!("bad listen address {}", t.listen_addr))?;
        if !addr.ip().is_loopback() {
            tracing::warn!(tunnel = %t.name, node = %t.listen_node, %addr, "tunnel listens on a non-loopback address: reachable from other machines");
        }
        if t.listen_node == SERVER {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} for tunnel {}: {e}", t.name))?;
            let (hub2, t2) = (hub.clone(), t.clone());
            let end = self.end_of(&t.name);
            let task = tokio::spawn(async move {
                loop {
                    let tcp = match listener.accept().await {
                        Ok((tcp, _)) => tcp,
                        Err(e) => {
                            // Out of file descriptors, most likely: the tunnel stays, and
                            // takes connections again once some are free.
                            tracing::warn!(tunnel = %t2.name, error = %e, "tunnel accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let (hub, t, end) = (hub2.clone(), t2.clone(), end.clone());
                    tokio::spawn(async move {
                        match dial(&hub, &t.to_node, &t.to_addr).await {
                            Ok((mut far, _permit)) => {
                                let mut tcp = tcp;
                                tokio::select! {
                                    _ = wharf_link::mux::splice(&mut tcp, &mut far) => {}
                                    () = end.cancelled() => {}
                                }
                            }
                            Err(e) => {
                                tracing::warn!(tunnel = %t.name, error = %e, "tunnel connection failed")
                            }
                        }
                    });
                }
            });
            if let Some(old) = self.lock().insert(t.name.clone(), task) {
                old.abort();
            }
            return Ok(());
        }
        let node = hub.node(&t.listen_node);
        if node.link().is_none() {
            return Ok(());
        }
        listen_on(&node, t).await
    }

    /// Closes the tunnel's listening end.
    pub(crate) async fn close(&self, hub: &Arc<Hub>, t: &Tunnel) {
        if let Some(task) = self.lock().remove(&t.name) {
            task.abort();
        }
        if let Some(end) = self
            .ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&t.name)
        {
            end.cancel();
        }
        if t.listen_node != SERVER {
            let _ = hub
                .node(&t.listen_node)
                .call(&ToAgent::Unlisten {
                    tunnel: t.name.clone(),
                })
                .await;
        }
    }

    /// Opens every tunnel's listening end on the server (at start).
    pub(crate) async fn start(&self, hub: &Arc<Hub>) {
        let Ok(all) = hub.store.tunnels() else { return };
        for t in all.iter().filter(|t| t.listen_node == SERVER) {
            if let Err(e) = self.open(hub, t).await {
                tracing::error!(tunnel = %t.name, error = %e, "tunnel not open");
            }
        }
    }

    /// A node connected: its listening ends are (re)opened there.
    pub(crate) async fn node_up(&self, hub: &Arc<Hub>, node: &Arc<Node>) {
        let Ok(all) = hub.store.tunnels() else { return };
        for t in all.iter().filter(|t| t.listen_node == node.name) {
            if let Err(e) = listen_on(node, t).await {
                tracing::error!(tunnel = %t.name, node = %node.name, error = %e, "tunnel not open");
            }
        }
    }

    /// A connection accepted by a listening end on a node.
    pub(crate) async fn accepted_on_node(
        &self,
        hub: &Arc<Hub>,
        node: &Arc<Node>,
        tunnel: &str,
        mut stream: wharf_link::Stream,
    ) {
        let t = hub
            .store
            .tunnels()
            .ok()
            .and_then(|all| all.into_iter().find(|t| t.name == tunnel))
            .filter(|t| t.listen_node == node.name);
        let Some(t) = t else {
            let _ = frame::write_msg(
                &mut stream,
                &Reply::Error(format!("no tunnel {tunnel} listens on this node")),
            )
            .await;
            return;
        };
        match dial(hub, &t.to_node, &t.to_addr).await {
            Ok((mut far, _permit)) => {
                if frame::write_msg(&mut stream, &Reply::Done).await.is_ok() {
                    let end = self.end_of(&t.name);
                    tokio::select! {
                        _ = wharf_link::mux::splice(&mut stream, &mut far) => {}
                        () = end.cancelled() => {}
                    }
                }
            }
            Err(e) => {
                let _ = frame::write_msg(&mut stream, &Reply::Error(e)).await;
            }
        }
    }
}

async fn listen_on(node: &Node, t: &Tunnel) -> Result<(), String> {
    let addr: SocketAddr = t
        .listen_addr
        .parse()
        .map_err(|_| format!("bad listen address {}", t.listen_addr))?;
    match node
        .call(&ToAgent::Listen {
            tunnel: t.name.clone(),
            addr,
        })
        .await?
    {
        Reply::Done => Ok(()),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// Reaches a tunnel's far end: a TCP connection here, or a stream to a node that connects
/// there.
/// A permit (see `Node::carried`) comes with a stream to a node: keep it while the
/// connection lives.
type Dialed = (
    Box<dyn DuplexBox>,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

async fn dial(hub: &Arc<Hub>, node: &str, addr: &str) -> Result<Dialed, String> {
    let addr: SocketAddr = addr.parse().map_err(|_| format!("bad address {addr}"))?;
    if node == SERVER {
        let tcp = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| format!("{addr} did not answer in time"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        return Ok((Box::new(tcp), None));
    }
    let (stream, permit) = hub.node(node).connect(addr).await?;
    Ok((Box::new(stream), Some(permit)))
}

pub(crate) trait DuplexBox: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> DuplexBox for T {}
