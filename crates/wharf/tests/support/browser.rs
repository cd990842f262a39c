//! Headless Chromium driven over WebDriver (chromedriver + fantoccini), for the dashboard's
//! browser tests, and the page checks they share.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

use super::{free_port, require_tool};

pub struct Driver {
    _child: Child,
    pub browser: Client,
}

/// Desktop and phone window sizes the pages are checked (and shot) at.
pub const WIDTHS: [(&str, u32, u32); 2] = [("desktop", 1280, 900), ("phone", 390, 844)];

pub async fn browser(profile: &std::path::Path) -> Driver {
    require_tool("chromium", "chromium");
    require_tool("chromedriver", "chromium-driver");
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://{addr}"))
        .await
        .expect("a Chromium session");
    Driver {
        _child: child,
        browser,
    }
}

/// Waits (bounded) until the element's text satisfies `pred`; returns the text.
pub async fn text_until(b: &Client, css: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        if let Ok(el) = b.find(Locator::Css(css)).await
            && let Ok(t) = el.text().await
        {
            if pred(&t) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{css}` never showed what was expected; last text: {last:?}");
}

pub async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
        .click()
        .await
        .unwrap();
}

pub async fn fill(b: &Client, css: &str, text: &str) {
    let el = b
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"));
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

/// With `WHARF_SCREENSHOTS=DIR` set, saves the page as `DIR/{name}-desktop.png` and
/// `DIR/{name}-phone.png`.
pub async fn shoot(b: &Client, name: &str) {
    shoot_at(b, name, None).await;
}

/// As [`shoot`], with the element `anchor` (a CSS selector) scrolled to the top of the window.
pub async fn shoot_at(b: &Client, name: &str, anchor: Option<&str>) {
    let Ok(dir) = std::env::var("WHARF_SCREENSHOTS") else {
        return;
    };
    for (label, w, h) in WIDTHS {
        b.set_window_size(w, h).await.unwrap();
        if let Some(css) = anchor {
            b.execute(
                "document.querySelector(arguments[0]).scrollIntoView()",
                vec![serde_json::json!(css)],
            )
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = b.screenshot().await.unwrap();
        std::fs::write(format!("{dir}/{name}-{label}.png"), png).unwrap();
    }
    b.set_window_size(1280, 900).await.unwrap();
}

/// Table headers wrapped inside a word on the page as it is laid out now: for each `th`, each
/// word of its text is a DOM range that must fit one line box (one client rect). Returns
/// `"header text: word"` for each that does not.
const WRAPPED_HEADERS: &str = r#"
const bad = [];
for (const th of document.querySelectorAll("th")) {
  if (th.getClientRects().length === 0) continue; // hidden (e.g. an optional column on a phone)
  const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const re = /\S+/g;
    let m;
    while ((m = re.exec(node.data)) !== null) {
      const r = document.createRange();
      r.setStart(node, m.index);
      r.setEnd(node, m.index + m[0].length);
      const rects = Array.from(r.getClientRects()).filter((x) => x.width > 0);
      if (rects.length !== 1) bad.push(th.textContent.trim() + ": " + m[0] + " (" + rects.length + " boxes)");
    }
  }
}
return bad;
"#;

/// Checks the page at both widths: no table header wraps inside a word. `page` names it in
/// the failure.
pub async fn headers_whole(b: &Client, page: &str) {
    let mut failed = Vec::new();
    let mut headers = 0;
    for (label, w, h) in WIDTHS {
        b.set_window_size(w, h).await.unwrap();
        let width = b
            .execute("return document.documentElement.clientWidth", vec![])
            .await
            .unwrap();
        assert!(
            width.as_u64().is_some_and(|x| x <= u64::from(w)),
            "the window did not take the {label} width: {width}"
        );
        headers += b
            .execute("return document.querySelectorAll('th').length", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(0);
        let bad = b.execute(WRAPPED_HEADERS, vec![]).await.unwrap();
        for item in bad.as_array().cloned().unwrap_or_default() {
            failed.push(format!("{label}: {}", item.as_str().unwrap_or_default()));
        }
    }
    b.set_window_size(1280, 900).await.unwrap();
    assert!(
        failed.is_empty(),
        "on {page}, table headers wrap inside a word: {failed:?}"
    );
    let _ = headers;
}
