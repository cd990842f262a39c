//! A Swarm app end to end on the two-engine test Swarm (`swarm-nodes.sh up 2`: manager at
//! unix:///run/wn1.sock, registry 198.18.0.1:5000): one task per node, the gateway routing to
//! both tasks, and a node drained under load with no failed request. Fails (never skips) when
//! the test Swarm is not up, naming the recipe (see docs/testing.md).

mod support;

use std::collections::BTreeSet;

use support::docker::{
    Cleanup, PYTHON_IMAGE_DOCKERFILE, SWARM_MANAGER, SWARM_REGISTRY, docker, eventually,
    python_image_on, require_swarm, running_task_nodes, services_of, swarm_nodes, unique,
};
use support::{ServerProc, TempDir, free_port};
use wharf_testkit::{Load, get};

/// Puts a drained node back to work when the test ends, passed or not.
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = support::docker::docker_try(
            SWARM_MANAGER,
            &["node", "update", "--availability", "active", &self.0],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_spread_over_both_nodes_and_a_drain_under_load_fails_nothing() {
    require_swarm();
    let app = unique("spread");
    let _cleanup = Cleanup::new(SWARM_MANAGER, &[&app]);
    python_image_on(SWARM_MANAGER).await;
    let nodes = swarm_nodes();
    assert_eq!(nodes.len(), 2, "the test Swarm has two nodes: {nodes:?}");
    let worker = nodes
        .iter()
        .find(|n| !n.2)
        .expect("one node is a worker")
        .0
        .clone();
    let manager = nodes.iter().find(|n| n.2).expect("one manager").0.clone();

    let tmp = TempDir::new("swarm");
    let repo = support::docker::python_repo(&tmp.0, &app, "s1", PYTHON_IMAGE_DOCKERFILE);
    let server = ServerProc::start_args(
        &tmp.0.join("data"),
        free_port(),
        &["--docker-host", SWARM_MANAGER, "--registry", SWARM_REGISTRY],
        &[],
    )
    .await;
    let host = format!("{app}.localhost");
    server
        .ok(&[
            "apps",
            "create",
            &app,
            "--runtime",
            "swarm",
            "--replicas",
            "2",
            "--git",
            &repo.url(),
        ])
        .await;
    server.ok(&["deploy", &app]).await;
    assert_eq!(services_of(&app).len(), 1, "one Swarm service for the app");

    // One task per node, as the engine and `wharf nodes` tell.
    let mut both = vec![manager.clone(), worker.clone()];
    both.sort();
    assert_eq!(running_task_nodes(&app), both, "one task on each node");
    let listing = server.ok(&["nodes"]).await;
    for (id, addr, _) in &nodes {
        assert!(
            listing.contains(&id[..12]) || listing.contains(addr.as_str()),
            "wharf nodes lists node {id} ({addr}):\n{listing}"
        );
    }
    assert!(
        listing.matches(app.as_str()).count() >= 2,
        "wharf nodes lists the app's task on each node:\n{listing}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&server.ok(&["status", &app, "--json"]).await).unwrap();
    // By address: the test Swarm's engines share the machine's host name.
    let status_nodes: BTreeSet<&str> = status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["node"].is_string())
        .filter_map(|i| i["addr"].as_str()?.split(':').next())
        .collect();
    assert_eq!(
        status_nodes.len(),
        2,
        "wharf status shows two instances on two nodes: {status}"
    );

    // The gateway routes to each task (not through Swarm's virtual IP): both answer.
    let mut hosts = BTreeSet::new();
    for _ in 0..20 {
        let r = get(server.http, &host, "/")
            .await
            .expect("the gateway answers");
        assert_eq!(r.status, 200, "{}", r.text());
        hosts.insert(r.text());
    }
    assert_eq!(hosts.len(), 2, "requests reach both tasks: {hosts:?}");

    // Drain the worker under load: its task moves to the manager, no request fails.
    let _restore = Restore(worker.clone());
    let load = Load::start(server.http, &host, "/", 4, 200_000);
    load.until_sent(50).await;
    docker(
        SWARM_MANAGER,
        &["node", "update", "--availability", "drain", &worker],
    );
    eventually(
        120,
        "both tasks run on the manager after the drain",
        || async { running_task_nodes(&app) == vec![manager.clone(), manager.clone()] },
    )
    .await;
    // And the gateway follows: the route table holds the moved task once it is healthy.
    let sent = load.sent();
    load.until_sent(sent + 200).await;
    let report = load.finish().await;
    assert_eq!(
        report.failed, 0,
        "failed requests while a node drained: {:?}",
        report.failures
    );
    assert!(
        report.ok > 250,
        "the load really ran: {} requests",
        report.ok
    );
    let mut after = BTreeSet::new();
    for _ in 0..20 {
        after.insert(
            get(server.http, &host, "/")
                .await
                .expect("the gateway answers")
                .text(),
        );
    }
    assert_eq!(
        after.len(),
        2,
        "both tasks (now on the manager) are routed to: {after:?}"
    );
    docker(
        SWARM_MANAGER,
        &["node", "update", "--availability", "active", &worker],
    );

    // A service removed behind wharf's back is replaced, and the app answers again.
    let before = services_of(&app);
    assert_eq!(before.len(), 1, "one service runs the app: {before:?}");
    docker(SWARM_MANAGER, &["service", "rm", &before[0]]);
    eventually(
        90,
        "wharf starts a new service and serves again",
        || async {
            let now = services_of(&app);
            now.len() == 1
                && now[0] != before[0]
                && get(server.http, &host, "/")
                    .await
                    .is_ok_and(|r| r.status == 200)
        },
    )
    .await;

    server
        .ok(&["apps", "delete", &app, "--purge", "--yes"])
        .await;
    eventually(30, "purge removes the app's service", || async {
        services_of(&app).is_empty()
    })
    .await;
    server.stop().await;
}
