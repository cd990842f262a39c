//! Build logs kept with their release: a failed build's error can be read again with
//! `wharf releases show APP N`, after the server restarted, with env values masked.

mod support;

use support::{Repo, ServerProc, TempDir, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_builds_error_is_kept_with_its_release_across_a_restart() {
    let tmp = TempDir::new("build-logs");
    let data = tmp.0.join("data");
    let repo = Repo::new(&tmp.0, "site", &[("index.html", "v1")]);
    let server = ServerProc::start(&data, free_port()).await;
    server
        .ok(&["apps", "create", "site", "--git", &repo.url()])
        .await;
    server
        .ok(&["env", "set", "site", "API_TOKEN=s3cret-value-42"])
        .await;
    let out = server.ok(&["deploy", "site"]).await;
    assert_eq!(
        out.matches("is live at").count(),
        1,
        "a deploy says its result once:\n{out}"
    );

    repo.commit(
        &[(
            "wharf.toml",
            "build = \"echo compiling step one; echo token=$API_TOKEN; \
             echo 'error[E0425]: cannot find value x in src/main.rs:3' >&2; exit 7\"\n\
             static = \".\"\n",
        )],
        "broken",
    );
    let (ok, out, err) = server.cli(&["deploy", "site"]).await;
    assert!(!ok, "the broken build fails: {err}");
    assert_eq!(
        format!("{out}{err}")
            .matches("the build failed (exit status 7)")
            .count(),
        1,
        "a failed deploy says why once:\n{out}{err}"
    );

    // The server restarts: the logs are on disk, not in its memory.
    let port = server.http.port();
    server.stop().await;
    let server = ServerProc::start(&data, port).await;

    let shown = server.ok(&["releases", "show", "site", "2"]).await;
    for expected in [
        "release 2 of site: failed",
        "the build failed (exit status 7)",
        "$ echo compiling step one",
        "compiling step one",
        "error[E0425]: cannot find value x in src/main.rs:3",
        "deploy failed:",
    ] {
        assert!(
            shown.contains(expected),
            "missing `{expected}` in:\n{shown}"
        );
    }
    assert!(
        !shown.contains("s3cret-value-42"),
        "an env value leaked into the build log:\n{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with('[') && l.contains("s] ")),
        "each line carries its time since the deploy began:\n{shown}"
    );

    // The good release keeps its own log; an unknown one is a clear error.
    let first = server.ok(&["releases", "show", "site", "1"]).await;
    assert!(
        first.contains("release 1 of site") && first.contains("detected a static app"),
        "{first}"
    );
    let (ok, _, err) = server.cli(&["releases", "show", "site", "9"]).await;
    assert!(!ok && err.contains("9"), "{err}");
    // The list still works beside `show`.
    let list = server.ok(&["releases", "site"]).await;
    assert!(list.contains("failed") && list.contains("active"), "{list}");
    server.stop().await;
}
