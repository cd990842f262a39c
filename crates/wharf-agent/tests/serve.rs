//! The agent's answers to the server's requests, over in-memory streams (the link's TLS and
//! multiplexing are wharf-link's), with real releases, processes and TCP on loopback.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use support::{http_server_spec, site_tar};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use wharf_agent::{Link, Node, OpenStream};
use wharf_link::LinkError;
use wharf_link::frame::{read_msg, write_msg};
use wharf_link::proto::{Instance, Reply, Spec, ToAgent, ToServer, Workload};
use wharf_testkit::assert_eventually;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("wharf-agent-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    Dir(d)
}

/// Stands in for the link: every stream the agent opens to the server arrives on `rx`.
#[derive(Clone)]
struct FakeServer {
    tx: mpsc::UnboundedSender<DuplexStream>,
}

impl OpenStream for FakeServer {
    type Stream = DuplexStream;
    async fn open(&self) -> Result<DuplexStream, LinkError> {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        self.tx
            .send(theirs)
            .map_err(|_| LinkError::Other("the server is gone".into()))?;
        Ok(ours)
    }
}

struct Agent {
    link: Arc<Link<FakeServer>>,
    node: Arc<Node>,
    /// Streams the agent opened to the "server".
    opened: Mutex<mpsc::UnboundedReceiver<DuplexStream>>,
    data: PathBuf,
}

fn agent(d: &Dir) -> Agent {
    let node = Arc::new(Node::open(d.0.clone()).unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    Agent {
        link: Link::new(node.clone(), FakeServer { tx }),
        node,
        opened: Mutex::new(rx),
        data: d.0.clone(),
    }
}

impl Agent {
    /// Opens a stream to the agent, as the server does, and sends `request` on it.
    async fn request(&self, request: ToAgent) -> DuplexStream {
        let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(self.link.clone().serve_stream(theirs));
        write_msg(&mut ours, &request).await.unwrap();
        ours
    }

    /// One request, one answer.
    async fn ask(&self, request: ToAgent) -> Reply {
        let mut s = self.request(request).await;
        read_msg::<Reply>(&mut s).await.unwrap().expect("an answer")
    }

    async fn put_release(&self, app: &str, release: u32, tar: &[u8]) -> Reply {
        self.put(app, release, false, tar).await
    }

    /// `bytes` as they are: with `sealed`, the archive and its seal, or what a cut left.
    async fn put(&self, app: &str, release: u32, sealed: bool, bytes: &[u8]) -> Reply {
        let tar = bytes;
        let mut s = self
            .request(ToAgent::PutRelease {
                app: app.into(),
                release,
                sealed,
            })
            .await;
        // The agent may refuse before it read everything: its answer says so.
        let _ = s.write_all(tar).await;
        let _ = s.shutdown().await;
        read_msg::<Reply>(&mut s).await.unwrap().expect("an answer")
    }

    async fn list(&self) -> Vec<Instance> {
        match self.ask(ToAgent::List).await {
            Reply::Instances(list) => list,
            other => panic!("List answered {other:?}"),
        }
    }
}

/// A tar whose one entry is named `name` as given (the tar crate's builder refuses `..`, a
/// hostile sender does not).
fn raw_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0; 1024]);
    out
}

async fn start(agent: &Agent, spec: Spec) -> SocketAddr {
    match agent.ask(ToAgent::Start(spec)).await {
        Reply::Started(addrs) => {
            assert_eq!(addrs.len(), 1, "one address per instance: {addrs:?}");
            addrs[0]
        }
        other => panic!("Start answered {other:?}"),
    }
}

async fn answers(addr: SocketAddr) -> Option<String> {
    wharf_testkit::get(addr, "blog", "/")
        .await
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.text())
}

#[tokio::test]
async fn a_release_sent_is_held() {
    let d = dir("put");
    let agent = agent(&d);
    let has = |release| ToAgent::HasRelease {
        app: "blog".into(),
        release,
    };
    assert!(matches!(agent.ask(has(1)).await, Reply::Has(false)));
    let reply = agent.put_release("blog", 1, &site_tar("release one")).await;
    assert!(matches!(reply, Reply::Done), "{reply:?}");
    assert!(matches!(agent.ask(has(1)).await, Reply::Has(true)));
    assert!(matches!(agent.ask(has(2)).await, Reply::Has(false)));
    let file = agent.data.join("apps/blog/releases/1/index.html");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "release one");
}

#[tokio::test]
async fn a_tar_entry_climbing_out_is_refused() {
    let d = dir("escape");
    let agent = agent(&d);
    let reply = agent
        .put_release("blog", 1, &raw_tar("../evil.txt", b"gotcha"))
        .await;
    let Reply::Error(why) = reply else {
        panic!("a tar with ../ was accepted: {reply:?}")
    };
    assert!(
        why.contains("../evil.txt") && why.contains("outside"),
        "{why}"
    );
    let releases = agent.data.join("apps/blog/releases");
    assert!(!releases.join("evil.txt").exists());
    assert!(
        std::fs::read_dir(&releases).unwrap().next().is_none(),
        "nothing is left in {}",
        releases.display()
    );
    let has = ToAgent::HasRelease {
        app: "blog".into(),
        release: 1,
    };
    assert!(matches!(agent.ask(has).await, Reply::Has(false)));
    // An app name that is a path is refused before anything is written.
    let reply = agent.put_release("../x", 1, &site_tar("x")).await;
    assert!(
        matches!(&reply, Reply::Error(why) if why.contains("not a valid app name")),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_process_instance_runs_in_its_release_and_is_reached_listed_and_stopped() {
    let d = dir("process");
    let agent = agent(&d);
    let reply = agent
        .put_release("blog", 3, &site_tar("hello from release 3"))
        .await;
    assert!(matches!(reply, Reply::Done), "{reply:?}");

    let addr = start(&agent, http_server_spec("blog-a1b2c3", 3)).await;
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_eventually!(
        answers(addr).await.is_some(),
        "the instance answers HTTP on {addr}"
    );
    assert_eq!(answers(addr).await.unwrap(), "hello from release 3");

    let list = agent.list().await;
    let me = list
        .iter()
        .find(|i| i.instance == "blog-a1b2c3")
        .unwrap_or_else(|| panic!("List shows the instance: {list:?}"));
    assert_eq!(
        (me.runtime.as_str(), me.app.as_str(), me.state.as_str()),
        ("process", "blog", "running")
    );
    assert_eq!(me.fingerprint, "fp-1");
    assert_eq!(me.release, Some(3));
    assert_eq!(me.addr, Some(addr));

    // The server reaches the instance through the agent.
    let mut s = agent.request(ToAgent::Connect { addr }).await;
    let reply = read_msg::<Reply>(&mut s).await.unwrap();
    assert!(matches!(reply, Some(Reply::Done)), "{reply:?}");
    s.write_all(b"GET / HTTP/1.0\r\nHost: blog\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.ends_with("hello from release 3"), "{response}");

    let stop = ToAgent::Stop {
        runtime: "process".into(),
        instance: "blog-a1b2c3".into(),
    };
    assert!(matches!(agent.ask(stop).await, Reply::Done));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the stopped instance no longer listens on {addr}"
    );
    assert!(
        agent
            .list()
            .await
            .iter()
            .all(|i| i.instance != "blog-a1b2c3")
    );
}

#[tokio::test]
async fn release_copies_no_instance_runs_from_are_removed() {
    let d = dir("prune");
    let agent = agent(&d);
    for n in 1..=3 {
        let reply = agent
            .put_release("blog", n, &site_tar(&format!("release {n}")))
            .await;
        assert!(matches!(reply, Reply::Done), "{reply:?}");
    }
    let releases = agent.data.join("apps/blog/releases");
    // A switch from 1 to 2: both run for a while, so both stay; 3 was received and waits to
    // be started.
    start(&agent, http_server_spec("blog-one111", 1)).await;
    start(&agent, http_server_spec("blog-two222", 2)).await;
    for n in ["1", "2", "3"] {
        assert!(releases.join(n).is_dir(), "release {n} is kept");
    }
    let stop = ToAgent::Stop {
        runtime: "process".into(),
        instance: "blog-one111".into(),
    };
    assert!(matches!(agent.ask(stop).await, Reply::Done));
    // The next start removes what the stopped instance ran from; the server sends a release
    // again when it needs one.
    let reply = agent.put_release("blog", 4, &site_tar("release 4")).await;
    assert!(matches!(reply, Reply::Done), "{reply:?}");
    start(&agent, http_server_spec("blog-fou444", 4)).await;
    assert!(
        !releases.join("1").exists(),
        "a copy nothing runs from any more is removed"
    );
    for n in ["2", "3", "4"] {
        assert!(releases.join(n).is_dir(), "release {n} is kept");
    }
    let has = ToAgent::HasRelease {
        app: "blog".into(),
        release: 1,
    };
    assert!(matches!(agent.ask(has).await, Reply::Has(false)));
}

#[tokio::test]
async fn requests_that_cannot_be_met_say_why() {
    let d = dir("refusals");
    let agent = agent(&d);
    // A process needs its release here first.
    let reply = agent
        .ask(ToAgent::Start(http_server_spec("blog-000001", 9)))
        .await;
    assert!(
        matches!(&reply, Reply::Error(why) if why.contains("release 9 of blog is not on this agent")),
        "{reply:?}"
    );
    // Docker without an engine (none configured in tests).
    let mut spec = http_server_spec("blog-000002", 9);
    spec.runtime = "docker".into();
    let reply = agent.ask(ToAgent::Start(spec)).await;
    assert!(
        matches!(&reply, Reply::Error(why) if why.contains("no `docker` runtime")),
        "{reply:?}"
    );
    // A refused connection.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let reply = agent.ask(ToAgent::Connect { addr: closed }).await;
    assert!(
        matches!(&reply, Reply::Error(why) if why.contains(&closed.to_string())),
        "{reply:?}"
    );
    // Heartbeats: a Pong per Ping on the same stream.
    let mut s = agent.request(ToAgent::Ping).await;
    for _ in 0..3 {
        assert!(matches!(
            read_msg::<Reply>(&mut s).await.unwrap(),
            Some(Reply::Pong)
        ));
        write_msg(&mut s, &ToAgent::Ping).await.unwrap();
    }
    assert!(matches!(
        read_msg::<Reply>(&mut s).await.unwrap(),
        Some(Reply::Pong)
    ));
}

/// Asks the agent to listen for `tunnel` on a free loopback port; returns the address.
async fn listening(agent: &Agent, tunnel: &str) -> SocketAddr {
    let addr: SocketAddr = format!("127.0.0.1:{}", wharf_runtime::free_port().unwrap())
        .parse()
        .unwrap();
    let listen = ToAgent::Listen {
        tunnel: tunnel.into(),
        addr,
    };
    assert!(matches!(agent.ask(listen).await, Reply::Done));
    addr
}

#[tokio::test]
async fn a_tunnel_listener_brings_connections_to_the_server() {
    let d = dir("tunnel");
    let agent = agent(&d);
    let addr = listening(&agent, "db").await;

    // A client on the agent's machine connects; the server gets a stream for the tunnel.
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut s = agent.opened.lock().await.recv().await.unwrap();
    let opening = read_msg::<ToServer>(&mut s).await.unwrap();
    assert!(
        matches!(&opening, Some(ToServer::Tunnel { tunnel }) if tunnel == "db"),
        "{opening:?}"
    );
    write_msg(&mut s, &Reply::Done).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    let mut got = [0; 4];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    s.write_all(b"pong").await.unwrap();
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong");
    drop(s);
    assert_eq!(
        client.read(&mut got).await.unwrap(),
        0,
        "the server's end closes the client's"
    );

    // The server refuses one: the client's connection is closed.
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut s = agent.opened.lock().await.recv().await.unwrap();
    read_msg::<ToServer>(&mut s).await.unwrap();
    write_msg(&mut s, &Reply::Error("no such tunnel".into()))
        .await
        .unwrap();
    assert_eq!(client.read(&mut got).await.unwrap_or(0), 0);

    let unlisten = ToAgent::Unlisten {
        tunnel: "db".into(),
    };
    assert!(matches!(agent.ask(unlisten).await, Reply::Done));
    assert!(TcpStream::connect(addr).await.is_err(), "{addr} is closed");

    // Listeners go with the link.
    let listen = ToAgent::Listen {
        tunnel: "db".into(),
        addr,
    };
    assert!(matches!(agent.ask(listen).await, Reply::Done));
    agent.link.close();
    assert_eventually!(
        TcpStream::connect(addr).await.is_err(),
        "{addr} is closed once the link is"
    );
    // A port taken: the reason comes back.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = ToAgent::Listen {
        tunnel: "x".into(),
        addr: taken.local_addr().unwrap(),
    };
    let reply = agent.ask(listen).await;
    assert!(
        matches!(&reply, Reply::Error(why) if why.contains("cannot listen")),
        "{reply:?}"
    );
}

/// A sealed release is kept only when its seal arrived: a link cut after a whole number of
/// entries reads like an end of stream, and would otherwise leave a release with files missing.
#[tokio::test]
async fn a_release_cut_short_is_not_kept() {
    let d = dir("sealed");
    let agent = agent(&d);
    let tar = raw_tar("index.html", b"whole");
    let mut sealed = tar.clone();
    sealed.extend_from_slice(wharf_link::proto::RELEASE_SEAL);
    sealed.extend_from_slice(&(tar.len() as u64).to_le_bytes());

    // The archive's entries and end blocks, but no seal: refused, nothing kept.
    let reply = agent.put("blog", 1, true, &tar).await;
    assert!(
        matches!(&reply, Reply::Error(why) if why.contains("cut short")),
        "{reply:?}"
    );
    let has = ToAgent::HasRelease {
        app: "blog".into(),
        release: 1,
    };
    assert!(matches!(agent.ask(has.clone()).await, Reply::Has(false)));

    let reply = agent.put("blog", 1, true, &sealed).await;
    assert!(matches!(reply, Reply::Done), "{reply:?}");
    assert!(matches!(agent.ask(has).await, Reply::Has(true)));
}

/// Tunnel connections past the agent's share of the link are refused one by one: one more
/// stream would end the link (and every app of the node with it).
#[tokio::test]
async fn tunnel_connections_past_the_agents_share_are_refused_not_the_link() {
    let d = dir("tunnel-cap");
    let agent = agent(&d);
    let addr = listening(&agent, "db").await;
    let mut held = Vec::new();
    for _ in 0..wharf_link::mux::AGENT_TUNNEL_STREAMS {
        let client = TcpStream::connect(addr).await.unwrap();
        let s = agent.opened.lock().await.recv().await.unwrap();
        held.push((client, s));
    }
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let mut got = [0; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), refused.read(&mut got));
    assert_eq!(
        read.await
            .expect("the connection past the share is closed, not carried")
            .unwrap_or(0),
        0,
        "the connection past the share is closed"
    );
    // One ends: the next is carried again.
    held.pop();
    assert_eventually!(
        {
            let _c = TcpStream::connect(addr).await.unwrap();
            tokio::time::timeout(std::time::Duration::from_millis(200), async {
                agent.opened.lock().await.recv().await
            })
            .await
            .is_ok_and(|s| s.is_some())
        },
        "a connection is carried once a slot is free"
    );
}

/// An agent killed with -9 leaves its processes running: the next agent stops them before it
/// serves, so the server's restart never makes a duplicate.
#[test]
fn processes_a_killed_agent_left_are_stopped_at_start() {
    let d = dir("leftovers");
    let spec = http_server_spec("blog-dead01", 1);
    // The first agent, in a runtime of its own that is then dropped without stopping
    // anything: its supervisors vanish, its child processes stay, as after kill -9.
    let killed = tokio::runtime::Runtime::new().unwrap();
    let addr = killed.block_on(async {
        let first = agent(&d);
        assert!(matches!(
            first.put_release("blog", 1, &site_tar("old")).await,
            Reply::Done
        ));
        let addr = start(&first, spec).await;
        assert_eventually!(
            answers(addr).await.is_some(),
            "the first agent's instance answers"
        );
        addr
    });
    killed.shutdown_background();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // (Its output pipes broke with the agent, so it may not answer HTTP well: it listens.)
        assert!(
            TcpStream::connect(addr).await.is_ok(),
            "the orphan still runs"
        );
        let second = agent(&d);
        assert_eventually!(
            TcpStream::connect(addr).await.is_err(),
            "the orphan on {addr} is stopped by the next agent"
        );
        assert!(second.list().await.is_empty());
        assert!(
            matches!(
                second
                    .ask(ToAgent::HasRelease {
                        app: "blog".into(),
                        release: 1
                    })
                    .await,
                Reply::Has(true)
            ),
            "releases stay"
        );
        second.node.shutdown().await;
    });
}

#[tokio::test]
async fn output_and_exits_reach_the_server() {
    let d = dir("output");
    let agent = agent(&d);
    assert!(matches!(
        agent.put_release("blog", 1, &site_tar("x")).await,
        Reply::Done
    ));
    let mut spec = http_server_spec("blog-0f0f0f", 1);
    spec.workload = Workload::Process {
        command: "while true; do echo tick; sleep 0.05; done".into(),
    };
    start(&agent, spec).await;
    let follow = ToAgent::FollowLogs {
        runtime: "process".into(),
        app: "blog".into(),
    };
    let mut s = agent.request(follow).await;
    let line = read_msg::<Reply>(&mut s).await.unwrap();
    assert!(
        matches!(&line, Some(Reply::Line(l)) if l.contains("tick")),
        "{line:?}"
    );
    // Our end closing ends the follow: the agent closes its end too.
    s.shutdown().await.unwrap();
    while let Some(reply) = read_msg::<Reply>(&mut s).await.unwrap() {
        assert!(matches!(reply, Reply::Line(_)), "{reply:?}");
    }
    let logs = ToAgent::Logs {
        runtime: "process".into(),
        app: "blog".into(),
        lines: 5,
    };
    let reply = agent.ask(logs).await;
    assert!(
        matches!(&reply, Reply::Lines(l) if l.iter().any(|l| l.contains("blog-0f0f0f out| tick"))),
        "{reply:?}"
    );
    let stop = ToAgent::Stop {
        runtime: "process".into(),
        instance: "blog-0f0f0f".into(),
    };
    assert!(matches!(agent.ask(stop).await, Reply::Done));

    // An instance that fails: how it ended and what it said.
    let mut spec = http_server_spec("blog-dead02", 1);
    spec.workload = Workload::Process {
        command: "echo cannot find config.toml; exit 3".into(),
    };
    start(&agent, spec).await;
    let exited = ToAgent::Exited {
        runtime: "process".into(),
        instance: "blog-dead02".into(),
    };
    let reply = agent.ask(exited).await;
    assert!(
        matches!(&reply, Reply::Exit(Some(how)) if how.contains("status 3")),
        "{reply:?}"
    );
    let recent = ToAgent::RecentOutput {
        runtime: "process".into(),
        instance: "blog-dead02".into(),
        lines: 10,
    };
    let reply = agent.ask(recent).await;
    assert!(
        matches!(&reply, Reply::Lines(l) if l.contains(&"cannot find config.toml".to_string())),
        "{reply:?}"
    );
    agent.node.shutdown().await;
}
