//! The agent's side of the link: its identity (enrolment once), then one outbound connection
//! to the server, kept up with exponential backoff. Each state change is logged once.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_link::frame::{read_msg, write_msg};
use wharf_link::proto::{Hello, Reply, ToServer};
use wharf_link::{Identity, JoinUrl, LinkError, Opener};

use crate::serve::Link;
use crate::{AgentError, Node, Result};

/// The file wharf-link keeps the identity in.
const IDENTITY: &str = "identity.json";

/// The agent's identity: loaded, or made by enrolling with `join` (the token is used once and
/// never written anywhere).
pub(crate) async fn identity(dir: &Path, join: Option<(JoinUrl, String)>) -> Result<Identity> {
    let file = dir.join(IDENTITY);
    let loaded = Identity::load(dir).map_err(|source| AgentError::Identity {
        dir: dir.to_path_buf(),
        source,
    })?;
    match (loaded, join) {
        (Some(id), None) => Ok(id),
        (Some(id), Some(_)) => Err(AgentError::AlreadyJoined {
            node: id.node,
            file,
        }),
        (None, None) => Err(AgentError::NotJoined { file }),
        (None, Some((url, token))) => {
            tracing::info!(server = %url.server, "joining the server");
            let id = wharf_link::enrol::enrol(&url, &token)
                .await
                .map_err(|source| AgentError::Enrol {
                    server: url.server.clone(),
                    source,
                })?;
            id.save(dir).map_err(|source| AgentError::IdentityNotKept {
                node: id.node.clone(),
                dir: dir.to_path_buf(),
                source: Box::new(source),
            })?;
            tracing::info!(node = id.node, file = %file.display(), "joined the server");
            Ok(id)
        }
    }
}

/// Keeps one connection to the server, for ever.
pub(crate) async fn keep_linked(
    node: Arc<Node>,
    identity: Identity,
    docker_host: Option<String>,
) -> Infallible {
    let mut backoff = Backoff::default();
    let mut state = State::Starting;
    loop {
        match connection(&node, &identity, docker_host.as_deref(), &mut state).await {
            Ok(linked) => {
                state.change(State::Lost, &identity.server);
                // A link that held for a while was a success: start the backoff over.
                if linked.elapsed() > Backoff::RESET_AFTER {
                    backoff.reset();
                }
            }
            Err(e) => state.change(State::Failing(e.to_string()), &identity.server),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One connection, from connect to its end: `Ok` (with when it was established) once an
/// established link ended.
async fn connection(
    node: &Arc<Node>,
    identity: &Identity,
    docker_host: Option<&str>,
    state: &mut State,
) -> Result<Instant, LinkError> {
    let session = wharf_link::enrol::connect(identity).await?;
    let (opener, mut incoming) = session.split();
    // An engine that started since the last connection is offered in this Hello.
    node.connect_docker(docker_host, &identity.node).await;
    if let Err(e) = hello(&opener, node).await {
        opener.close();
        return Err(e);
    }
    state.change(State::Linked, &identity.server);
    let linked = Instant::now();
    let link = Link::new(node.clone(), opener);
    while let Some(stream) = incoming.next().await {
        tokio::spawn(link.clone().serve_stream(stream));
    }
    link.close();
    Ok(linked)
}

/// How an error the server answered the hello with begins.
const REFUSED: &str = "the server refused: ";

/// The first stream of each connection: who the agent is.
async fn hello(opener: &Opener, node: &Node) -> Result<(), LinkError> {
    let hello = Hello {
        version: env!("CARGO_PKG_VERSION").to_string(),
        runtimes: node.runtime_names(),
    };
    // A server that took the connection but never answers is as good as none.
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = opener.open().await?;
        write_msg(&mut s, &ToServer::Hello(hello)).await?;
        read_msg::<Reply>(&mut s).await
    })
    .await
    .map_err(|_| LinkError::Other("the server did not answer the hello in 10 s".into()))?;
    match answer? {
        Some(Reply::Done) => Ok(()),
        Some(Reply::Error(why)) => Err(LinkError::Other(format!("{REFUSED}{why}"))),
        other => Err(LinkError::Other(format!(
            "unexpected answer to Hello: {other:?}"
        ))),
    }
}

/// What the link is doing, to log changes only (not every retry).
#[derive(Debug, PartialEq)]
enum State {
    Starting,
    Linked,
    Lost,
    Failing(String),
}

impl State {
    fn change(&mut self, next: State, server: &str) {
        if *self == next {
            return;
        }
        match &next {
            State::Linked => tracing::info!(server, "linked to the server"),
            State::Lost => {
                tracing::warn!(
                    server,
                    "link to the server lost; reconnecting (apps keep running)"
                )
            }
            State::Failing(why) if why.starts_with(REFUSED) => {
                tracing::error!(server, error = %why, "the server refused this node; retrying with backoff")
            }
            State::Failing(why) => {
                tracing::warn!(server, error = %why, "cannot reach the server; retrying with backoff")
            }
            State::Starting => {}
        }
        *self = next;
    }
}

/// Exponential backoff with jitter: 200 ms doubling up to 5 s.
#[derive(Debug)]
struct Backoff {
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            current: Backoff::INITIAL,
        }
    }
}

impl Backoff {
    const INITIAL: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(5);
    const RESET_AFTER: Duration = Duration::from_secs(10);

    /// The next wait: between half and all of the current step (so agents that lost the
    /// server together do not all come back at the same instant), then the step doubles.
    fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (step * 2).min(Backoff::MAX);
        step / 2 + step.mul_f64(rand::random::<f64>() / 2.0)
    }

    fn reset(&mut self) {
        self.current = Backoff::INITIAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        let steps: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let caps = [200, 400, 800, 1600, 3200, 5000, 5000, 5000];
        for (d, cap) in steps.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(
                *d >= cap / 2 && *d <= cap,
                "{d:?} not within {cap:?}/2..={cap:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }
}
