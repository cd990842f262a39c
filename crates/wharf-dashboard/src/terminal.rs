//! The terminal (`/apps/{app}/terminal`): a page with xterm.js and a WebSocket to the
//! dashboard. The dashboard keeps the line being typed (printable characters, backspace,
//! Ctrl-U, Ctrl-C) and echoes it; Enter runs the line through the API's
//! `POST /apps/{app}/run` with the session's token, so the API decides who may, runs it as
//! `wharf run` does and records it, and its output comes back as it comes, then its exit
//! status and a new prompt. Ctrl-C while a command runs drops that request: the API stops the
//! command.
//!
//! The socket is opened only for a live session whose CSRF token the page passes along, from a
//! page of this same origin (`Origin` must name the host the request was sent to): another
//! site cannot open it with the user's cookie.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::html;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use wharf_client::Client;
use wharf_client::dto::{RunEvent, RunRequest};

use crate::Dashboard;
use crate::layout::{Flash, page};
use crate::session::{Sessions, same};

/// The vendored xterm.js release, part of its assets' URLs (they are cached for good).
pub(crate) const XTERM_VERSION: &str = "6.0.0";
/// Longest command line the terminal keeps.
const MAX_LINE: usize = 4096;

type State_ = State<Arc<Dashboard>>;

/// `GET /apps/{app}/terminal`
pub(crate) async fn show(
    State(d): State_,
    headers: HeaderMap,
    Path(app): Path<String>,
) -> Response {
    let Some(s) = d.sessions.get(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let vendor = format!("/assets/vendor/xterm-{XTERM_VERSION}");
    let body = html! {
        link rel="stylesheet" href={ (vendor) "/xterm.css" };
        link rel="stylesheet" href="/assets/terminal.css";
        div.terminal-head {
            h1 { "Terminal · " (app) }
            a href={ "/apps/" (app) } { "Back to " (app) }
        }
        p.muted {
            "Each line runs in " (app) "'s current release folder, with its environment, as its \
             user and in its sandbox, like " code { "wharf run " (app) " -- CMD" } ". Ctrl-C stops \
             a running command. Every command is recorded in the operations log."
        }
        noscript {
            p.flash.err { "The terminal needs JavaScript; " code { "wharf run " (app) " -- CMD" } " does the same from a shell." }
        }
        div #terminal data-app=(app) data-csrf=(s.csrf) data-state="connecting" {}
        script src={ (vendor) "/xterm.js" } {}
        script src={ (vendor) "/addon-fit.js" } {}
        script src="/assets/terminal.js" {}
    };
    page(
        &format!("Terminal · {app}"),
        Some(&s.csrf),
        Flash::None,
        body,
    )
    .into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct SocketQuery {
    #[serde(default)]
    csrf: String,
}

/// `GET /apps/{app}/terminal/socket`: the WebSocket.
pub(crate) async fn socket(
    State(d): State_,
    Path(app): Path<String>,
    Query(q): Query<SocketQuery>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    let Some(s) = d.sessions.get(headers) else {
        return refuse("not logged in (or the session expired): log in again");
    };
    if !same(&q.csrf, &s.csrf) {
        return refuse("the terminal must be opened from its dashboard page (reload it)");
    }
    if !same_origin(headers) {
        return refuse("the terminal opens only from a page of this dashboard");
    }
    let Some(key) = websocket_key(headers) else {
        return (
            StatusCode::BAD_REQUEST,
            "this address is the terminal's WebSocket: open /apps/APP/terminal instead",
        )
            .into_response();
    };
    let client = match Client::new(&d.api, Some(s.token.clone())) {
        Ok(c) => c,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let Some(id) = Sessions::id(headers) else {
        return refuse("not logged in (or the session expired): log in again");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        session(ws, client, app, d, id).await;
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

fn refuse(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

/// `Origin` names the host the request was sent to (scheme aside: behind wharf's HTTPS
/// gateway the page is `https` while this hop is plain). No `Origin` is refused: browsers
/// always send it on WebSocket requests.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (origin, host) else {
        return false;
    };
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    authority.eq_ignore_ascii_case(host)
}

/// The client's key, when the request asks for a WebSocket (version 13) upgrade.
fn websocket_key(headers: &HeaderMap) -> Option<String> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    (has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket") && version)
        .then(|| headers.get(header::SEC_WEBSOCKET_KEY)?.to_str().ok())
        .flatten()
        .map(str::to_string)
}

type Ws = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// What the socket does until it closes: edit a line, run it, repeat. Each line runs only
/// while the dashboard session `id` stands: a logout or its expiry ends the terminal too.
async fn session(ws: Ws, client: Client, app: String, d: Arc<Dashboard>, id: String) {
    let (mut tx, mut rx) = ws.split();
    let prompt = format!("\x1b[1;32m{app}\x1b[0m$ ");
    let hello = format!(
        "\x1b[2mCommands run in {app}'s release folder, with its env, as its user. Ctrl-C stops one.\x1b[0m\r\n{prompt}"
    );
    if tx.send(Message::text(hello)).await.is_err() {
        return;
    }
    let mut editor = LineEditor::default();
    while let Some(Ok(msg)) = rx.next().await {
        let input = match msg {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            Message::Close(_) => return,
            _ => continue,
        };
        let mut echo = String::new();
        for c in input.chars() {
            match editor.key(c, &mut echo) {
                Key::Edited => {}
                Key::Cancelled => echo.push_str(&format!("^C\r\n{prompt}")),
                Key::Enter(line) => {
                    echo.push_str("\r\n");
                    if !d.sessions.live(&id) {
                        echo.push_str(
                            "\x1b[31m[the session ended: log in again to use the terminal]\x1b[0m\r\n",
                        );
                        let _ = tx.send(Message::text(echo)).await;
                        let _ = tx.send(Message::Close(None)).await;
                        return;
                    }
                    if tx
                        .send(Message::text(std::mem::take(&mut echo)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if !line.trim().is_empty() && !run(&client, &app, line, &mut tx, &mut rx).await
                    {
                        return;
                    }
                    echo.push_str(&prompt);
                }
            }
        }
        if !echo.is_empty() && tx.send(Message::text(echo)).await.is_err() {
            return;
        }
    }
}

/// Runs one line; false when the socket closed meanwhile. Keys typed while it runs are ignored,
/// but Ctrl-C, which stops it.
async fn run(
    client: &Client,
    app: &str,
    line: String,
    tx: &mut futures_util::stream::SplitSink<Ws, Message>,
    rx: &mut futures_util::stream::SplitStream<Ws>,
) -> bool {
    let req = RunRequest {
        shell: Some(line),
        ..Default::default()
    };
    let say = |text: String| Message::text(text);
    let events = match client.run(app, &req).await {
        Ok(e) => e,
        Err(e) => {
            let text = terminal_text(&e.to_string());
            return tx
                .send(say(format!("\x1b[31m{text}\x1b[0m\r\n")))
                .await
                .is_ok();
        }
    };
    let mut events = std::pin::pin!(events);
    loop {
        tokio::select! {
            event = events.next() => {
                let text = match event {
                    Some(Ok(RunEvent::Stdout(t))) => terminal_text(&t),
                    Some(Ok(RunEvent::Stderr(t))) => format!("\x1b[31m{}\x1b[0m", terminal_text(&t)),
                    Some(Ok(RunEvent::Exit(x))) => {
                        let colour = if x.status() == 0 { "2" } else { "31" };
                        let text = format!("\x1b[{colour}m[{}]\x1b[0m\r\n", x.message);
                        return tx.send(say(text)).await.is_ok();
                    }
                    Some(Err(e)) => {
                        let text = format!("\x1b[31m{}\x1b[0m\r\n", terminal_text(&e.to_string()));
                        return tx.send(say(text)).await.is_ok();
                    }
                    None => {
                        let text = "\x1b[31m[the server stopped answering]\x1b[0m\r\n".to_string();
                        return tx.send(say(text)).await.is_ok();
                    }
                };
                if tx.send(say(text)).await.is_err() {
                    return false;
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) if t.contains('\x03') => {
                    // Dropping the request stops the command (the API sees its client go).
                    return tx.send(say("^C\r\n".into())).await.is_ok();
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A terminal moves down a line on `\n` but stays in its column: lines end with `\r\n`.
fn terminal_text(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// What a key did to the line being typed.
enum Key {
    Edited,
    Cancelled,
    Enter(String),
}

/// The line being typed; escape sequences (arrows, function keys) are skipped.
#[derive(Default)]
struct LineEditor {
    line: String,
    escape: Escape,
}

#[derive(Default, PartialEq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Started,
    /// Inside `ESC [` or `ESC O`, until the final byte.
    Sequence,
}

impl LineEditor {
    /// Applies one key; what the terminal should show is added to `echo`.
    fn key(&mut self, c: char, echo: &mut String) -> Key {
        match self.escape {
            Escape::Started => {
                self.escape = if c == '[' || c == 'O' {
                    Escape::Sequence
                } else {
                    Escape::None
                };
                return Key::Edited;
            }
            Escape::Sequence => {
                if ('\x40'..='\x7e').contains(&c) {
                    self.escape = Escape::None;
                }
                return Key::Edited;
            }
            Escape::None => {}
        }
        match c {
            '\r' | '\n' => return Key::Enter(std::mem::take(&mut self.line)),
            '\x03' => {
                self.line.clear();
                return Key::Cancelled;
            }
            '\x7f' | '\x08' if self.line.pop().is_some() => echo.push_str("\x08 \x08"),
            '\x15' => {
                for _ in self.line.chars() {
                    echo.push_str("\x08 \x08");
                }
                self.line.clear();
            }
            '\x1b' => self.escape = Escape::Started,
            c if !c.is_control() && self.line.len() + c.len_utf8() <= MAX_LINE => {
                self.line.push(c);
                echo.push(c);
            }
            _ => {}
        }
        Key::Edited
    }
}

/// `/assets/terminal.js`, `/assets/terminal.css`.
pub(crate) async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/terminal.js"),
    )
}

pub(crate) async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/terminal.css"),
    )
}

/// `/assets/vendor/xterm-VERSION/{file}`: the vendored xterm.js, cached for good (the version
/// is in the address).
pub(crate) async fn vendor(Path((version, file)): Path<(String, String)>) -> Response {
    let (kind, body) = match file.as_str() {
        "xterm.js" => (
            "text/javascript; charset=utf-8",
            include_str!("assets/vendor/xterm/xterm.js"),
        ),
        "addon-fit.js" => (
            "text/javascript; charset=utf-8",
            include_str!("assets/vendor/xterm/addon-fit.js"),
        ),
        "xterm.css" => (
            "text/css; charset=utf-8",
            include_str!("assets/vendor/xterm/xterm.css"),
        ),
        "LICENSE" => (
            "text/plain; charset=utf-8",
            include_str!("assets/vendor/xterm/LICENSE"),
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    if version != format!("xterm-{XTERM_VERSION}") {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(keys: &str) -> (Vec<String>, String) {
        let mut e = LineEditor::default();
        let mut echo = String::new();
        let mut lines = Vec::new();
        for c in keys.chars() {
            match e.key(c, &mut echo) {
                Key::Enter(l) => lines.push(l),
                Key::Cancelled => lines.push("^C".into()),
                Key::Edited => {}
            }
        }
        lines.push(e.line);
        (lines, echo)
    }

    #[test]
    fn the_line_is_edited_as_typed() {
        assert_eq!(typed("echo hx\x7fi\r").0, ["echo hi", ""]);
        assert_eq!(typed("ab\x7f").1, "ab\x08 \x08");
        assert_eq!(typed("rm -rf\x03ls\r").0, ["^C", "ls", ""]);
        assert_eq!(typed("abc\x15ls\r").0, ["ls", ""]);
        // Arrow keys do not type `[A`.
        assert_eq!(typed("l\x1b[As\x1bOD\r").0, ["ls", ""]);
    }

    #[test]
    fn only_a_page_of_this_origin_opens_the_socket() {
        let check = |origin: Option<&str>, host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            same_origin(&h)
        };
        assert!(check(Some("http://127.0.0.1:7070"), "127.0.0.1:7070"));
        assert!(check(Some("https://Dash.example.com"), "dash.example.com"));
        assert!(!check(Some("https://evil.example"), "dash.example.com"));
        assert!(!check(Some("http://127.0.0.1:7071"), "127.0.0.1:7070"));
        assert!(!check(Some("null"), "127.0.0.1:7070"));
        assert!(!check(None, "127.0.0.1:7070"));
    }
}
