//! The agent as a whole against a link server on loopback: it joins with a token, says Hello,
//! answers over the link, comes back after the link drops, and refuses a second join.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use support::{http_server_spec, site_tar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use wharf_agent::{AgentConfig, AgentError};
use wharf_link::enrol::{Accepted, accept};
use wharf_link::frame::{read_msg, write_msg};
use wharf_link::proto::{Reply, ToAgent, ToServer};
use wharf_link::{Authority, Incoming, JoinUrl, Opener};

const TOKEN: &str = "one-time-secret-7c1d";
/// Every step is well within this; past it, something hangs.
const PATIENCE: Duration = Duration::from_secs(30);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("the test hung")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wharf-agent-link-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A link server on loopback that hands over each agent link.
async fn server(dir: &Path) -> (JoinUrl, mpsc::UnboundedReceiver<(Opener, Incoming)>) {
    let authority = Arc::new(Authority::load_or_create(dir).unwrap());
    let config = authority.server_config().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = JoinUrl {
        server: listener.local_addr().unwrap().to_string(),
        ca_fingerprint: authority.fingerprint(),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (authority, config, tx) = (authority.clone(), config.clone(), tx.clone());
            tokio::spawn(async move {
                let check = |token: &str| match token {
                    TOKEN => Ok("worker-1".to_string()),
                    _ => Err("no such token".to_string()),
                };
                if let Ok(Accepted::Link { peer, session }) =
                    accept(&authority, config, tcp, &check).await
                {
                    assert_eq!(peer.node, "worker-1");
                    let _ = tx.send(session.split());
                }
            });
        }
    });
    (url, rx)
}

/// The Hello that opens every link: the agent's version and runtimes.
async fn hello(incoming: &mut Incoming) {
    let mut s = bounded(incoming.next()).await.expect("a Hello stream");
    let Some(ToServer::Hello(hello)) = read_msg::<ToServer>(&mut s).await.unwrap() else {
        panic!("the first stream is not a Hello")
    };
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(hello.runtimes, ["process"], "no Docker engine here");
    write_msg(&mut s, &Reply::Done).await.unwrap();
}

async fn ask(opener: &Opener, request: ToAgent) -> Reply {
    let mut s = opener.open().await.unwrap();
    write_msg(&mut s, &request).await.unwrap();
    bounded(read_msg::<Reply>(&mut s))
        .await
        .unwrap()
        .expect("an answer")
}

fn files_hold(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            files_hold(&p, needle)
        } else {
            std::fs::read(&p)
                .map(|b| String::from_utf8_lossy(&b).contains(needle))
                .unwrap_or(false)
        }
    })
}

#[tokio::test]
async fn an_agent_joins_links_and_comes_back_after_the_link_drops() {
    let root = tmp("join");
    let (url, mut links) = server(&root.join("ca")).await;
    let data = root.join("agent");
    let config = AgentConfig {
        launcher: None,
        data_dir: data.clone(),
        join: Some((url.clone(), TOKEN.to_string())),
        // No engine: the agent offers processes only.
        docker_host: Some(format!("unix://{}", root.join("no-docker.sock").display())),
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let agent = tokio::spawn(wharf_agent::run_until(config.clone(), async {
        let _ = stop_rx.await;
    }));

    let (opener, mut incoming) = bounded(links.recv()).await.unwrap();
    hello(&mut incoming).await;
    assert!(data.join("identity.json").is_file());
    assert!(!files_hold(&data, TOKEN), "the token is stored nowhere");

    // Heartbeats over the link.
    let mut ping = opener.open().await.unwrap();
    write_msg(&mut ping, &ToAgent::Ping).await.unwrap();
    assert!(matches!(
        read_msg::<Reply>(&mut ping).await.unwrap(),
        Some(Reply::Pong)
    ));
    let has = ToAgent::HasRelease {
        app: "blog".into(),
        release: 1,
    };
    assert!(matches!(ask(&opener, has).await, Reply::Has(false)));

    // The server ends the link: the agent comes back on its own, and says Hello again.
    opener.close();
    drop((opener, incoming, ping));
    let (opener, mut incoming) = bounded(links.recv()).await.unwrap();
    hello(&mut incoming).await;
    assert!(matches!(ask(&opener, ToAgent::List).await, Reply::Instances(l) if l.is_empty()));

    // An app over the link: its release, an instance, a request carried to it.
    let mut s = opener.open().await.unwrap();
    let put = ToAgent::PutRelease {
        app: "blog".into(),
        release: 1,
        sealed: false,
    };
    write_msg(&mut s, &put).await.unwrap();
    s.write_all(&site_tar("served over the link"))
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let reply = bounded(read_msg::<Reply>(&mut s)).await.unwrap();
    assert!(matches!(reply, Some(Reply::Done)), "{reply:?}");
    let spec = http_server_spec("blog-11aa22", 1);
    let Reply::Started(addrs) = ask(&opener, ToAgent::Start(spec)).await else {
        panic!("not started")
    };
    let addr = addrs[0];
    let mut response = String::new();
    for _ in 0..200 {
        let mut s = opener.open().await.unwrap();
        write_msg(&mut s, &ToAgent::Connect { addr }).await.unwrap();
        if let Some(Reply::Done) = bounded(read_msg::<Reply>(&mut s)).await.unwrap() {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            s.shutdown().await.unwrap();
            bounded(s.read_to_string(&mut response)).await.unwrap();
            break;
        }
        // Not listening yet: python is still starting.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.ends_with("served over the link"), "{response}");

    // A second agent on the same folder with --join is refused, naming the node.
    let again = wharf_agent::run(config).await;
    match again {
        Err(e @ AgentError::AlreadyJoined { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("worker-1") && msg.contains("identity.json"),
                "{msg}"
            );
        }
        other => panic!("a second join was not refused: {other:?}"),
    }

    // Stopping the agent stops its processes.
    stop_tx.send(()).unwrap();
    bounded(agent).await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "{addr} is stopped"
    );
    let _ = std::fs::remove_dir_all(&root);
}
