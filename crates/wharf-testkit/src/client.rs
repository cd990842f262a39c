//! One-shot HTTP clients aimed at a gateway address with an explicit Host.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET path` with `Host: host` over HTTP/1.1 on a new connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Result<Reply, String> {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    request(addr, req).await
}

/// Sends any request over HTTP/1.1 on a new connection.
pub async fn request(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Reply, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let resp = tx
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    collect(resp).await
}

/// `GET` over cleartext HTTP/2 (prior knowledge), authority `host`.
pub async fn get_h2(addr: SocketAddr, host: &str, path: &str) -> Result<Reply, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(conn);
    let req = Request::get(format!("http://{host}{path}"))
        .version(http::Version::HTTP_2)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tx
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.version() != http::Version::HTTP_2 {
        return Err(format!("answered over {:?}", resp.version()));
    }
    collect(resp).await
}

pub(crate) async fn collect(resp: http::Response<hyper::body::Incoming>) -> Result<Reply, String> {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
