//! Nodes for the link tests: inviting a machine and reading what `wharf nodes` says of it.

use super::ServerProc;

/// `wharf nodes add NAME [EXTRA…]`: (url, token) from the command it prints.
pub async fn invite(server: &ServerProc, name: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["nodes", "add", name];
    args.extend_from_slice(extra);
    let out = server.ok(&args).await;
    let line = out
        .lines()
        .find(|l| l.contains("wharf agent --join"))
        .unwrap_or_else(|| panic!("nodes add prints the command to run: {out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        let i = words.iter().position(|w| *w == flag).unwrap();
        words[i + 1].to_string()
    };
    (after("--join"), after("--token"))
}

/// The node as `wharf nodes --json` shows it.
pub async fn node(server: &ServerProc, name: &str) -> Option<serde_json::Value> {
    let (ok, out, _) = server.cli(&["nodes", "--json"]).await;
    if !ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["agents"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
}
