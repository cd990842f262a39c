//! Mock upstreams: real HTTP servers on loopback port 0 that say who they are and count requests.
//!
//! Paths: `/up` (health: 200, or 500 after `set_healthy(false)`), `/headers` (the request headers
//! as `name: value` lines), `/body` (the request body's length), `/sse` (events pushed by the
//! test through [`SseFeed`]), `/ws` (WebSocket echo), `/hold` (answers once `release_held` is
//! called); anything else answers the upstream's name.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::Role;

type Body = BoxBody<Bytes, Infallible>;

struct State {
    name: String,
    healthy: AtomicBool,
    requests: AtomicUsize,
    connections: AtomicUsize,
    sse: Mutex<Option<mpsc::Receiver<String>>>,
    held: AtomicUsize,
    held_arrived: Notify,
    release: Notify,
    released: AtomicBool,
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    tasks: JoinSet<()>,
}

/// Pushes server-sent events to the client connected on `/sse`.
pub struct SseFeed(mpsc::Sender<String>);

impl SseFeed {
    pub async fn send(&self, data: &str) {
        self.0
            .send(format!("data: {data}\n\n"))
            .await
            .expect("no SSE client");
    }

    /// Resolves once the `/sse` answer is gone: the connection it went out on was closed.
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

impl MockUpstream {
    pub async fn start(name: &str) -> MockUpstream {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on a given address (to bring an upstream back on the port it had).
    pub async fn start_on(name: &str, addr: SocketAddr) -> MockUpstream {
        let listener = TcpListener::bind(addr).await.expect("bind mock upstream");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            name: name.to_string(),
            healthy: AtomicBool::new(true),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            sse: Mutex::new(None),
            held: AtomicUsize::new(0),
            held_arrived: Notify::new(),
            release: Notify::new(),
            released: AtomicBool::new(false),
        });
        let mut tasks = JoinSet::new();
        let st = state.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::Relaxed);
                let st = st.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        MockUpstream { addr, state, tasks }
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far (a reused keep-alive connection counts once).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Opens the `/sse` channel; call before the client connects.
    pub async fn sse_feed(&self) -> SseFeed {
        let (tx, rx) = mpsc::channel(16);
        *self.state.sse.lock().await = Some(rx);
        SseFeed(tx)
    }

    /// Waits until `n` requests are parked on `/hold`.
    pub async fn until_held(&self, n: usize) {
        loop {
            let arrived = self.state.held_arrived.notified();
            if self.state.held.load(Ordering::Acquire) >= n {
                return;
            }
            arrived.await;
        }
    }

    /// Lets every `/hold` request (present and future) answer.
    pub fn release_held(&self) {
        self.state.released.store(true, Ordering::Release);
        self.state.release.notify_waiters();
    }

    /// Stops listening and drops every open connection, like a killed process.
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r
}

async fn handle(st: Arc<State>, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    st.requests.fetch_add(1, Ordering::Relaxed);
    let resp = match req.uri().path() {
        "/up" if st.healthy.load(Ordering::Relaxed) => text(StatusCode::OK, "up"),
        "/up" => text(StatusCode::INTERNAL_SERVER_ERROR, "down"),
        "/headers" => {
            let mut out = String::new();
            for (k, v) in req.headers() {
                out.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            text(StatusCode::OK, out)
        }
        "/body" => {
            let n = req.into_body().collect().await.map(|b| b.to_bytes().len());
            match n {
                Ok(n) => text(StatusCode::OK, n.to_string()),
                Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        "/sse" => {
            let rx = st.sse.lock().await.take();
            let Some(rx) = rx else {
                return Ok(text(StatusCode::CONFLICT, "no feed"));
            };
            let events = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|e| (Ok::<_, Infallible>(Frame::data(Bytes::from(e))), rx))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(events)));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
        "/ws" => websocket(&mut req),
        "/hold" => {
            let released = st.release.notified();
            st.held.fetch_add(1, Ordering::AcqRel);
            st.held_arrived.notify_waiters();
            if !st.released.load(Ordering::Acquire) {
                released.await;
            }
            text(StatusCode::OK, format!("{} held", st.name))
        }
        _ => {
            let mut r = text(StatusCode::OK, st.name.clone());
            r.headers_mut()
                .insert("x-upstream", st.name.parse().unwrap());
            r
        }
    };
    Ok(resp)
}

fn websocket(req: &mut Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return text(StatusCode::BAD_REQUEST, "not a websocket request");
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    let mut r = text(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = r.headers_mut();
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    r
}
