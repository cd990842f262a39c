//! Links on loopback: a real link CA, enrolment, TLS 1.3 links and yamux streams.
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wharf_link::enrol::{Accepted, accept, connect, enrol};
use wharf_link::frame::{read_msg, write_msg};
use wharf_link::proto::{Hello, Reply, ToAgent, ToServer};
use wharf_link::{Authority, Identity, JoinUrl, LinkError, PeerCert, Session};

/// Every test is over well within this; past it, something hangs.
const PATIENCE: Duration = Duration::from_secs(60);
const TOKEN: &str = "good-token";
const NODE: &str = "node-1";

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("the test hung")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wharf-link-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A link server on loopback: it accepts every connection with `accept` and reports each outcome.
struct Server {
    url: JoinUrl,
    authority: Arc<Authority>,
    accepted: mpsc::UnboundedReceiver<Result<Accepted, LinkError>>,
    /// How many times a token was checked.
    checks: Arc<AtomicUsize>,
}

impl Server {
    async fn start(name: &str) -> Server {
        let authority = Arc::new(Authority::load_or_create(&tmp(name)).unwrap());
        let config = authority.server_config().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = JoinUrl {
            server: listener.local_addr().unwrap().to_string(),
            ca_fingerprint: authority.fingerprint(),
        };
        let (tx, accepted) = mpsc::unbounded_channel();
        let checks = Arc::new(AtomicUsize::new(0));
        let (a, c) = (authority.clone(), checks.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (a, c, config, tx) = (a.clone(), c.clone(), config.clone(), tx.clone());
                tokio::spawn(async move {
                    let check = |token: &str| {
                        c.fetch_add(1, Ordering::SeqCst);
                        match token {
                            TOKEN => Ok(NODE.to_string()),
                            "old-token" => Err("it expired".to_string()),
                            _ => Err("no such token".to_string()),
                        }
                    };
                    let _ = tx.send(accept(&a, config, tcp, &check).await);
                });
            }
        });
        Server {
            url,
            authority,
            accepted,
            checks,
        }
    }

    async fn next(&mut self) -> Result<Accepted, LinkError> {
        self.accepted.recv().await.unwrap()
    }

    async fn enrolled(&mut self) -> (Identity, PeerCert) {
        let identity = enrol(&self.url, TOKEN).await.unwrap();
        let Accepted::Enrolled(peer) = self.next().await.unwrap() else {
            panic!("an enrolment should be accepted as one");
        };
        (identity, peer)
    }

    async fn link(&mut self, identity: &Identity) -> (Session, PeerCert, Session) {
        let client = connect(identity).await.unwrap();
        let Accepted::Link { peer, session } = self.next().await.unwrap() else {
            panic!("a link should be accepted as one");
        };
        (client, peer, session)
    }
}

#[tokio::test]
async fn an_agent_enrols_then_links_and_both_ends_open_streams() {
    bounded(async {
        let mut server = Server::start("roundtrip").await;
        let (identity, enrolled) = server.enrolled().await;
        assert_eq!(identity.node, NODE);
        assert_eq!(identity.server, server.url.server);
        assert_eq!(enrolled.node, NODE);
        assert_eq!(enrolled.fingerprint, identity.fingerprint());
        assert_eq!(server.checks.load(Ordering::SeqCst), 1);

        // What the agent keeps is what it links with.
        let dir = tmp("roundtrip-agent");
        assert!(Identity::load(&dir).unwrap().is_none());
        identity.save(&dir).unwrap();
        let identity = Identity::load(&dir).unwrap().unwrap();

        let (client, peer, server_session) = server.link(&identity).await;
        assert_eq!(
            peer, enrolled,
            "the link names the node and pins its certificate"
        );
        let (agent_open, mut agent_in) = client.split();
        let (server_open, mut server_in) = server_session.split();

        // The agent opens a stream; half-closing it still lets the server answer.
        let mut stream = agent_open.open().await.unwrap();
        let hello = ToServer::Hello(Hello {
            version: "test".into(),
            runtimes: vec!["process".into()],
        });
        write_msg(&mut stream, &hello).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut at_server = server_in.next().await.unwrap();
        let got: ToServer = read_msg(&mut at_server).await.unwrap().unwrap();
        assert!(matches!(got, ToServer::Hello(h) if h.version == "test"));
        assert!(
            read_msg::<ToServer>(&mut at_server)
                .await
                .unwrap()
                .is_none(),
            "the agent's shutdown reads as the end of the stream"
        );
        write_msg(&mut at_server, &Reply::Done).await.unwrap();
        at_server.shutdown().await.unwrap();
        let reply: Reply = read_msg(&mut stream).await.unwrap().unwrap();
        assert!(matches!(reply, Reply::Done));
        assert!(read_msg::<Reply>(&mut stream).await.unwrap().is_none());

        // The server opens one too.
        let mut stream = server_open.open().await.unwrap();
        write_msg(&mut stream, &ToAgent::Ping).await.unwrap();
        let mut at_agent = agent_in.next().await.unwrap();
        let got: ToAgent = read_msg(&mut at_agent).await.unwrap().unwrap();
        assert!(matches!(got, ToAgent::Ping));
        write_msg(&mut at_agent, &Reply::Pong).await.unwrap();
        let reply: Reply = read_msg(&mut stream).await.unwrap().unwrap();
        assert!(matches!(reply, Reply::Pong));
    })
    .await;
}

#[tokio::test]
async fn a_refused_token_tells_the_agent_why() {
    bounded(async {
        let mut server = Server::start("refused").await;
        let err = enrol(&server.url, "old-token").await.unwrap_err();
        assert!(matches!(err, LinkError::Refused(_)), "{err:?}");
        assert_eq!(err.to_string(), "the server refused the token: it expired");
        assert!(server.next().await.is_err());
    })
    .await;
}

#[tokio::test]
async fn an_agent_pinned_to_another_ca_refuses_the_server_before_sending_its_token() {
    bounded(async {
        let mut server = Server::start("pinned").await;
        let other = Authority::load_or_create(&tmp("pinned-other")).unwrap();
        let url = JoinUrl {
            server: server.url.server.clone(),
            ca_fingerprint: other.fingerprint(),
        };
        let err = enrol(&url, TOKEN).await.unwrap_err();
        assert!(matches!(err, LinkError::CaMismatch { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&other.fingerprint()), "{message}");
        assert!(
            message.contains(&server.authority.fingerprint()),
            "{message}"
        );
        // The handshake failed on the server's side too: no token was ever read.
        assert!(server.next().await.is_err());
        assert_eq!(server.checks.load(Ordering::SeqCst), 0);
    })
    .await;
}

#[tokio::test]
async fn a_link_without_a_client_certificate_is_refused() {
    bounded(async {
        let mut server = Server::start("no-cert").await;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                rustls::pki_types::pem::PemObject::from_pem_slice(
                    server.authority.ca_pem().as_bytes(),
                )
                .unwrap(),
            )
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![wharf_link::ALPN_LINK.to_vec()];
        let tcp = tokio::net::TcpStream::connect(&server.url.server)
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from(wharf_link::SERVER_NAME).unwrap();
        // With TLS 1.3 the client is done before the server looks at what it sent.
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let err = server.next().await.unwrap_err();
        assert!(
            err.to_string().contains("without a client certificate"),
            "{err}"
        );
        let mut buf = [0; 1];
        assert!(
            !matches!(tls.read(&mut buf).await, Ok(1)),
            "the server hung up"
        );
    })
    .await;
}

#[tokio::test]
async fn a_link_with_a_certificate_of_another_ca_is_refused() {
    bounded(async {
        let mut server = Server::start("other-ca").await;
        // An agent enrolled with another wharf server ...
        let mut elsewhere = Server::start("other-ca-elsewhere").await;
        let (mut identity, _) = elsewhere.enrolled().await;
        // ... that trusts this server, and tries to link with its certificate.
        identity.server = server.url.server.clone();
        identity.ca_pem = server.authority.ca_pem().to_string();
        if let Ok(session) = connect(&identity).await {
            let (opener, _incoming) = session.split();
            opener.closed().await;
        }
        let err = server.next().await.unwrap_err();
        assert!(err.to_string().contains("TLS handshake"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn closing_the_link_on_the_server_ends_the_agents_session_and_streams() {
    bounded(async {
        let mut server = Server::start("close").await;
        let (identity, _) = server.enrolled().await;
        let (client, _, server_session) = server.link(&identity).await;
        let (agent_open, mut agent_in) = client.split();
        let (server_open, mut server_in) = server_session.split();

        let mut agent_stream = agent_open.open().await.unwrap();
        write_msg(&mut agent_stream, &ToServer::Tunnel { tunnel: "t".into() })
            .await
            .unwrap();
        let mut server_stream = server_in.next().await.unwrap();
        let _: ToServer = read_msg(&mut server_stream).await.unwrap().unwrap();
        // Both ends wait for more on the stream when the server closes the link.
        let agent_reader = tokio::spawn(async move {
            let mut rest = Vec::new();
            let _ = agent_stream.read_to_end(&mut rest).await;
            rest
        });
        let server_reader = tokio::spawn(async move {
            let mut rest = Vec::new();
            let _ = server_stream.read_to_end(&mut rest).await;
            rest
        });

        server_open.close();
        assert!(server_open.is_closed());
        agent_open.closed().await;
        assert!(agent_open.is_closed());
        assert!(
            agent_reader.await.unwrap().is_empty(),
            "the agent's stream ended"
        );
        assert!(agent_in.next().await.is_none());
        assert!(matches!(agent_open.open().await, Err(LinkError::Closed)));
        // The server's own end is gone as well, streams included.
        server_open.closed().await;
        assert!(
            server_reader.await.unwrap().is_empty(),
            "the server's stream ended"
        );
        assert!(server_in.next().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn two_hundred_streams_echo_64_kib_each_intact() {
    const STREAMS: usize = 200;
    const SIZE: usize = 64 * 1024;
    bounded(async {
        let mut server = Server::start("many").await;
        let (identity, _) = server.enrolled().await;
        let (client, _, server_session) = server.link(&identity).await;
        let (agent_open, _agent_in) = client.split();
        let (_server_open, mut server_in) = server_session.split();
        tokio::spawn(async move {
            while let Some(stream) = server_in.next().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tokio::io::split(stream);
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                    w.shutdown().await.unwrap();
                });
            }
        });

        let mut echoes = tokio::task::JoinSet::new();
        for i in 0..STREAMS {
            let opener = agent_open.clone();
            echoes.spawn(async move {
                let sent: Vec<u8> = (0..SIZE).map(|j| (i * 31 + j * 7) as u8).collect();
                let stream = opener.open().await.unwrap();
                let (mut r, mut w) = tokio::io::split(stream);
                let data = sent.clone();
                let writer = tokio::spawn(async move {
                    w.write_all(&data).await.unwrap();
                    w.shutdown().await.unwrap();
                });
                let mut back = Vec::new();
                r.read_to_end(&mut back).await.unwrap();
                writer.await.unwrap();
                (i, back == sent)
            });
        }
        let mut intact = 0;
        while let Some(result) = echoes.join_next().await {
            let (i, same) = result.unwrap();
            assert!(same, "stream {i} came back changed");
            intact += 1;
        }
        assert_eq!(intact, STREAMS);
    })
    .await;
}

#[test]
fn secrets_are_written_mode_0600_and_kept_out_of_debug() {
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tmp("files");
    let authority = Authority::load_or_create(&dir).unwrap();
    assert_eq!(mode(dir.join("ca.key")), 0o600);
    assert_eq!(
        Authority::load_or_create(&dir).unwrap().fingerprint(),
        authority.fingerprint(),
        "the CA is loaded again, not replaced"
    );

    let identity = Identity {
        node: NODE.into(),
        server: "127.0.0.1:7443".into(),
        ca_pem: authority.ca_pem().into(),
        cert_pem: authority.ca_pem().into(),
        key_pem: std::fs::read_to_string(dir.join("ca.key")).unwrap(),
    };
    let agent = tmp("files-agent");
    identity.save(&agent).unwrap();
    assert_eq!(mode(agent.join("identity.json")), 0o600);
    let shown = format!("{identity:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains(NODE), "{shown}");

    // A CA certificate without its key is not silently replaced by a new CA.
    std::fs::remove_file(dir.join("ca.key")).unwrap();
    let err = Authority::load_or_create(&dir).unwrap_err().to_string();
    assert!(err.contains("ca.key is missing"), "{err}");
}
