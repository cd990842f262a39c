//! Connections on the agent's machine: `Connect` (the server reaches an instance, or any
//! address here) and tunnel listeners (`Listen`: connections accepted here go to the server,
//! each on a stream of its own). Listeners live as long as the link that asked for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use wharf_link::LinkError;
use wharf_link::frame::{read_msg, write_msg};
use wharf_link::proto::{Reply, ToServer};

use crate::AgentError;
use crate::serve::{Link, Listening, OpenStream};

/// How long a `Connect` waits for the TCP connection.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

/// `Connect`: `Done` once connected, then the stream carries the connection both ways.
pub(crate) async fn connect<S>(addr: SocketAddr, mut s: S) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let tcp = match tokio::time::timeout(CONNECT_PATIENCE, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => {
            let why = AgentError::Connect { addr, source }.to_string();
            return write_msg(&mut s, &Reply::Error(why)).await;
        }
        Err(_) => {
            let why = format!(
                "cannot connect to {addr}: no answer within {} s",
                CONNECT_PATIENCE.as_secs()
            );
            return write_msg(&mut s, &Reply::Error(why)).await;
        }
    };
    write_msg(&mut s, &Reply::Done).await?;
    carry(s, tcp).await;
    Ok(())
}

/// Copies both ways until both directions ended (an end of stream on one side shuts the
/// other side's write half: half-closes pass through).
async fn carry<S>(mut s: S, mut tcp: TcpStream)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _ = tcp.set_nodelay(true);
    if let Err(e) = wharf_link::mux::splice(&mut s, &mut tcp).await {
        tracing::debug!(error = %e, "a carried connection ended with an error");
    }
}

impl<O: OpenStream> Link<O> {
    /// `Listen`: binds the tunnel's end here (replacing a listener of the same tunnel).
    pub(crate) async fn listen(
        self: Arc<Self>,
        tunnel: String,
        addr: SocketAddr,
    ) -> Result<Reply, AgentError> {
        self.unlisten(&tunnel).await;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AgentError::Listen {
                tunnel: tunnel.clone(),
                addr,
                source,
            })?;
        if addr.ip().is_loopback() {
            tracing::info!(tunnel, %addr, "tunnel listening");
        } else {
            tracing::warn!(tunnel, %addr, "tunnel listening beyond loopback: other machines can connect to it");
        }
        let stop = self.closed.child_token();
        let task = tokio::spawn(
            self.clone()
                .accept_loop(tunnel.clone(), listener, stop.clone()),
        );
        let old = self
            .tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tunnel, Listening { stop, task });
        // Two `Listen`s of one tunnel at once: the last one stays.
        if let Some(old) = old {
            old.stop.cancel();
        }
        Ok(Reply::Done)
    }

    /// `Unlisten`: closes the tunnel's listener, if any, and returns once its port is free.
    pub(crate) async fn unlisten(&self, tunnel: &str) {
        let old = self
            .tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tunnel);
        if let Some(old) = old {
            old.stop.cancel();
            let _ = old.task.await;
            tracing::info!(tunnel, "tunnel closed");
        }
    }

    async fn accept_loop(
        self: Arc<Self>,
        tunnel: String,
        listener: TcpListener,
        stop: CancellationToken,
    ) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = stop.cancelled() => return,
            };
            match accepted {
                Ok((tcp, _)) => {
                    tokio::spawn(self.clone().forward(tunnel.clone(), tcp));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: give it a moment rather than spin.
                    tracing::debug!(tunnel, error = %e, "tunnel accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// One accepted connection: a stream to the server, `Tunnel`, its `Done`, then the bytes.
    async fn forward(self: Arc<Self>, tunnel: String, tcp: TcpStream) {
        // Past its share of the link's streams, one more would end the link itself (and take
        // every app of this node out of routing): this connection is refused instead.
        let Ok(_slot) = self.tunnel_slots.clone().try_acquire_owned() else {
            return tracing::warn!(
                tunnel,
                limit = wharf_link::mux::AGENT_TUNNEL_STREAMS,
                "a tunnel connection was refused: this node carries its most already"
            );
        };
        let mut s = match self.opener.open().await {
            Ok(s) => s,
            Err(e) => return tracing::debug!(tunnel, error = %e, "cannot open a tunnel stream"),
        };
        let opened = async {
            write_msg(
                &mut s,
                &ToServer::Tunnel {
                    tunnel: tunnel.clone(),
                },
            )
            .await?;
            read_msg::<Reply>(&mut s).await
        };
        match opened.await {
            Ok(Some(Reply::Done)) => carry(s, tcp).await,
            Ok(Some(Reply::Error(why))) => {
                tracing::info!(tunnel, why, "the server refused a tunnel connection");
            }
            Ok(other) => tracing::debug!(tunnel, ?other, "unexpected answer to a tunnel stream"),
            Err(e) => tracing::debug!(tunnel, error = %e, "tunnel stream failed"),
        }
    }
}
