//! The network test bed (run as root): machines in namespaces reach each other over the bridge,
//! a capture sees their traffic, netem and cuts take a machine off the network and back, and
//! nothing of the bed is left after it is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wharf_testkit::{Bed, contains, need_tool};

fn need(program: &str, package: &str) {
    need_tool(program, package).unwrap_or_else(|e| panic!("{e}"));
}

fn bed(machines: usize) -> Bed {
    need("tcpdump", "tcpdump");
    need("curl", "curl");
    need("python3", "python3");
    Bed::new(machines).unwrap_or_else(|e| panic!("{e}"))
}

/// A folder of its own with `hello.txt` holding `body`, removed on drop.
struct Site(PathBuf);

impl Site {
    fn new(name: &str, body: &str) -> Site {
        let dir = std::env::temp_dir().join(format!("wharf-netns-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello.txt"), body).unwrap();
        Site(dir)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `python3 -m http.server` on machine `i` port 8000, returned once it says it is serving. It
/// binds all addresses: given the machine's address it would first look its name up, and name
/// servers are out of a bed's reach (the lookup times out).
fn serve(bed: &Bed, i: usize, site: &Site) -> Child {
    let mut child = bed
        .command(i, "python3")
        .args(["-u", "-m", "http.server", "8000", "--bind", "0.0.0.0"])
        .current_dir(&site.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nsenter runs python3");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("Serving HTTP") => return child,
            Ok(_) => {}
            Err(e) => panic!("python3 -m http.server in {} did not start: {e}", bed.ns(i)),
        }
    }
}

/// curl from machine `from`: Some(body) if it answered 200 within `seconds`.
fn fetch(bed: &Bed, from: usize, url: &str, seconds: u32) -> Option<String> {
    let out = bed
        .command(from, "curl")
        .args(["-sf", "--max-time", &seconds.to_string(), url])
        .output()
        .expect("nsenter runs curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls (up to 10 s) until machine `from` gets `want` from `url`.
fn fetch_eventually(bed: &Bed, from: usize, url: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if fetch(bed, from, url, 1).as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never got {url} back within 10 s",
            bed.ns(from)
        );
    }
}

/// Waits (up to 5 s) for a child that should have been killed.
fn ended(child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn machines_reach_each_other_are_captured_cut_and_restored_and_leave_nothing_behind() {
    let needle = format!("netns bed works {}", std::process::id());
    let site = Site::new("reach", &needle);
    let bed = bed(2);
    assert_eq!(bed.machines(), 2);
    assert_ne!(bed.ip(0), bed.ip(1));
    let mut server = serve(&bed, 1, &site);
    let url = format!("http://{}:8000/hello.txt", bed.ip(1));

    // Machine 0 reaches machine 1 by its address; the capture on machine 1's veth sees it.
    let capture = bed.capture(1).unwrap();
    assert_eq!(fetch(&bed, 0, &url, 5).as_deref(), Some(needle.as_str()));
    let pcap = capture.finish();
    assert!(
        contains(&pcap, b"GET /hello.txt HTTP/1.1"),
        "the request is not in the capture"
    );
    assert!(
        contains(&pcap, needle.as_bytes()),
        "the answer is not in the capture"
    );

    // The root namespace reaches the machines too (a server there is reached at host_ip).
    let out = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "5", &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), needle);

    // Machine 1 unplugged: unreachable while its server still runs; plugged back: reachable.
    bed.cut(1).unwrap();
    assert_eq!(fetch(&bed, 0, &url, 1), None, "answered while cut");
    assert!(server.try_wait().unwrap().is_none(), "the server stopped");
    bed.restore(1).unwrap();
    fetch_eventually(&bed, 0, &url, &needle);

    let (namespaces, bridge) = ([bed.ns(0), bed.ns(1)], bed.bridge());
    drop(bed);
    for ns in &namespaces {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} left"
        );
    }
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} left"
    );
    assert!(
        ended(&mut server),
        "the server in the dropped bed still runs"
    );
}

#[test]
fn netem_loses_packets_or_says_the_kernel_has_none() {
    let needle = format!("netem {}", std::process::id());
    let site = Site::new("netem", &needle);
    let bed = bed(2);
    let mut server = serve(&bed, 1, &site);
    let url = format!("http://{}:8000/hello.txt", bed.ip(1));
    match bed.netem(0, "loss 100%") {
        Ok(()) => {
            // All of machine 0's packets lost: no answer; cleared: answers again.
            assert_eq!(fetch(&bed, 0, &url, 1), None, "answered through 100% loss");
            bed.clear_netem(0).unwrap();
            fetch_eventually(&bed, 0, &url, &needle);
        }
        // Kernels built without netem (some VM kernels) cannot run it: the error says why.
        Err(e) => assert!(
            e.contains("has no netem") && e.contains("CONFIG_NET_SCH_NETEM"),
            "{e}"
        ),
    }
    assert_eq!(fetch(&bed, 0, &url, 5).as_deref(), Some(needle.as_str()));
    drop(bed);
    assert!(
        ended(&mut server),
        "the server in the dropped bed still runs"
    );
}

#[test]
fn beds_at_the_same_time_get_their_own_subnets_and_names() {
    let beds: Vec<Bed> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| bed(1))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut subnets: Vec<_> = beds.iter().map(|b| b.host_ip()).collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 3, "{beds:?}");
    for bed in &beds {
        let [a, b, c, _] = bed.host_ip().octets();
        assert!(
            (a, b) == (198, 18) && c != 0 || (a, b) == (198, 19) && c < 250,
            "{bed:?} outside the test bed range"
        );
        for name in [bed.bridge(), bed.ns(0), bed.veth(0)] {
            assert!(name.len() <= 15, "{name} is too long for an interface");
        }
        // Each machine reaches its own bed's host address.
        let out = bed
            .command(0, "python3")
            .args([
                "-c",
                "import socket,sys; socket.create_connection((sys.argv[1], 9), 2)",
            ])
            .arg(bed.host_ip().to_string())
            .output()
            .unwrap();
        // Nothing listens on port 9: a refusal proves the host answered (a timeout would not).
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("ConnectionRefused"), "{bed:?}: {said}");
    }
}

#[test]
fn a_bed_left_by_a_killed_test_is_removed_and_others_are_not() {
    need("ip", "iproute2");
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A process that has ended stands for the killed test.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    // Two slots from the top (the beds' search rarely gets there), claimed by making their
    // bridges: a stale bed of this module's, and a bridge of the same form that is not this
    // module's. The stale bed's alias comes last: until then a bed made here and now (by a test
    // beside this one) takes it for someone else's and leaves it alone.
    let claim = |below: u32| {
        (400..below)
            .rev()
            .find(|s| {
                std::process::Command::new("ip")
                    .args(["link", "add", &format!("wb{s}"), "type", "bridge"])
                    .output()
                    .unwrap()
                    .status
                    .success()
            })
            .expect("a free slot among wb400…wb504")
    };
    let stale = claim(505);
    let foreign = claim(stale);
    let (bridge, ns, veth, other) = (
        format!("wb{stale}"),
        format!("wb{stale}n0"),
        format!("wb{stale}v0"),
        format!("wb{foreign}"),
    );
    ip(&["link", "set", &other, "alias", "made by hand"]);
    ip(&["netns", "add", &ns]);
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ]);
    ip(&[
        "link",
        "set",
        &bridge,
        "alias",
        &format!("wharf-testkit {} 1", gone.id()),
    ]);

    Bed::reclaim_stale();
    let exists = |dir: &str, name: &str| Path::new(dir).join(name).exists();
    let left_stale = (
        exists("/sys/class/net", &bridge),
        exists("/sys/class/net", &veth),
        exists("/run/netns", &ns),
    );
    let foreign_kept = exists("/sys/class/net", &other);
    ip(&["link", "del", &other]);
    assert_eq!(
        left_stale,
        (false, false, false),
        "the stale bed's bridge, veth, namespace left"
    );
    assert!(
        foreign_kept,
        "a bridge this module did not make was removed"
    );
}
