//! The CLI asks before it destroys: `wharf apps delete` in a terminal asks for the app's name;
//! in a script (no terminal) it needs `--yes`.

mod support;

use support::{ServerProc, TempDir, free_port, require_tool};

/// Runs `wharf ARGS` on a pseudo-terminal (util-linux `script`) with `typed` as its input.
fn in_terminal(server: &ServerProc, args: &str, typed: &str) -> (bool, String) {
    use std::io::Write;
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_wharf"));
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("WHARF_URL", format!("http://{}", server.api))
        .env("WHARF_TOKEN", &server.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_delete_asks_in_a_terminal_and_needs_yes_in_a_script() {
    require_tool("script", "bsdutils");
    let tmp = TempDir::new("cli-prompts");
    let server = ServerProc::start(&tmp.0.join("data"), free_port()).await;
    server.ok(&["apps", "create", "docs", "--static"]).await;

    // A script: refused, saying how to confirm.
    let (ok, _, err) = server.cli(&["apps", "delete", "docs"]).await;
    assert!(!ok && err.contains("add --yes to confirm"), "{err}");

    // A terminal: the wrong name keeps the app; its name deletes it.
    let (ok, out) =
        tokio::task::block_in_place(|| in_terminal(&server, "apps delete docs", "doc\n"));
    assert!(
        !ok && out.contains("Type the app's name to confirm") && out.contains("not deleted"),
        "{out}"
    );
    assert!(server.ok(&["apps", "list"]).await.contains("docs"));
    let (ok, out) =
        tokio::task::block_in_place(|| in_terminal(&server, "apps delete docs", "docs\n"));
    assert!(ok && out.contains("app removed"), "{out}");
    assert!(!server.ok(&["apps", "list"]).await.contains("docs"));
    server.stop().await;
}
