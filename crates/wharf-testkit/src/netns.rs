//! Network test beds: machines as network namespaces on one bridge, for tests of links between
//! the server and its agents. Needs root, `ip` (iproute2) and `nsenter` (util-linux); captures
//! need `tcpdump`, `netem` the kernel's netem queueing discipline.
//!
//! A bed takes a /24 of its own in 198.18.0.0/15, the range reserved for test beds
//! (198.18.0.0/24 is the Swarm test bed's, 198.19.250.0/24 the link bench's): the bridge
//! `wb{slot}` in the root namespace holds `.1`, machine `i` (from 0) is the namespace
//! `wb{slot}n{i}` at `.(10 + i)`, joined to the bridge by the veth `wb{slot}v{i}`. Creating the
//! bridge claims the slot, so beds in concurrent tests and test processes never share one; the
//! bridge's alias names its owner process, so a bed left by a killed test is removed by the next
//! one that meets it. Processes are started in a machine with `nsenter --net`, not
//! `ip netns exec`, which remounts /sys (and hides the cgroup mounts daemons need).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Slots 1..=254 are 198.18.1.0/24 … 198.18.254.0/24; 255..=504 are 198.19.0.0/24 …
/// 198.19.249.0/24 (198.19.250.0/24 and up are left to the bench and to hand-made beds).
const SLOTS: u32 = 504;
/// Machines per bed: their addresses run from .10 to .254.
const MAX_MACHINES: usize = 245;
/// Per process: makes the beds of one test process start their search at different slots.
static NEXT: AtomicU32 = AtomicU32::new(0);
/// Marks the bridges (in their alias) made by this module: only those are ever reclaimed.
const OWNER_TAG: &str = "wharf-testkit";

/// A network test bed: `machines` network namespaces on a bridge in the root namespace, each
/// with `lo` up, `eth0` at [`Bed::ip`] and a default route via [`Bed::host_ip`] (the root
/// namespace's address on the bridge). Dropping it (also while a test panics) kills the processes
/// still running in its namespaces and removes the namespaces, veths, bridge and firewall rule.
pub struct Bed {
    slot: u32,
    net: [u8; 3],
    machines: usize,
}

impl Bed {
    /// Creates a bed of `machines` machines (1 to 245). Fails, saying how to fix it, when not
    /// run as root or when `ip` or `nsenter` is missing.
    pub fn new(machines: usize) -> Result<Bed, String> {
        if machines == 0 || machines > MAX_MACHINES {
            return Err(format!(
                "a test bed has 1 to {MAX_MACHINES} machines, not {machines}"
            ));
        }
        if !rustix::process::geteuid().is_root() {
            return Err(
                "network test beds create namespaces, links and firewall rules, which needs root: \
                 run the tests as root (as CI does), e.g. `sudo -E cargo test …`"
                    .into(),
            );
        }
        run("ip", &["-V"])?;
        run("nsenter", &["--version"])?;
        static RECLAIMED: std::sync::Once = std::sync::Once::new();
        RECLAIMED.call_once(Bed::reclaim_stale);
        let slot = claim_slot()?;
        // From here on, Drop removes whatever was made, also when a later step fails.
        let mut bed = Bed {
            slot,
            net: subnet(slot),
            machines: 0,
        };
        let bridge = bed.bridge();
        let host = format!("{}/24", bed.host_ip());
        run("ip", &["addr", "add", &host, "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        // A Docker engine on the host sets the FORWARD policy to DROP, which also drops bridged
        // traffic between the namespaces: let this bridge forward to itself. No iptables, no
        // engine and no such policy: nothing to do.
        if find_program("iptables").is_some() {
            run("iptables", &forward_rule("-I", &bridge))?;
        }
        for i in 0..machines {
            bed.machines = i + 1;
            bed.add_machine(i)?;
        }
        Ok(bed)
    }

    fn add_machine(&self, i: usize) -> Result<(), String> {
        let (ns, veth, bridge) = (self.ns(i), self.veth(i), self.bridge());
        let addr = format!("{}/24", self.ip(i));
        let gateway = self.host_ip().to_string();
        run("ip", &["netns", "add", &ns])?;
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        run("ip", &["link", "set", &veth, "master", &bridge, "up"])?;
        run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &["-n", &ns, "route", "add", "default", "via", &gateway],
        )?;
        Ok(())
    }

    /// Removes the beds left by test processes that are gone (killed before their beds were
    /// dropped): the bridges whose alias names a process of this module that no longer runs,
    /// with their namespaces (and the processes in them), veths and firewall rules. The first
    /// [`Bed::new`] of each process does it.
    pub fn reclaim_stale() {
        let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
            return;
        };
        for name in dir.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            if let Some(slot) = name.strip_prefix("wb").and_then(|s| s.parse().ok()) {
                reclaim_if_stale(slot);
            }
        }
    }

    /// How many machines the bed has.
    pub fn machines(&self) -> usize {
        self.machines
    }

    /// The root namespace's address on the bridge (198.18.X.1 or 198.19.X.1): what a server
    /// started without `command` listens on to be reached from the machines.
    pub fn host_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.net;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Machine `i`'s address (…X.(10 + i)), on its `eth0`.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.check(i);
        let [a, b, c] = self.net;
        Ipv4Addr::new(a, b, c, 10 + i as u8)
    }

    /// Machine `i`'s network namespace, as `ip netns` names it (its file is `/run/netns/<name>`).
    pub fn ns(&self, i: usize) -> String {
        self.check(i);
        format!("wb{}n{i}", self.slot)
    }

    /// The host-side end of machine `i`'s veth, on the bridge: what [`Bed::capture`] listens on
    /// and [`Bed::cut`] takes down.
    pub fn veth(&self, i: usize) -> String {
        self.check(i);
        format!("wb{}v{i}", self.slot)
    }

    /// The bridge in the root namespace.
    pub fn bridge(&self) -> String {
        format!("wb{}", self.slot)
    }

    /// A command running `program` in machine `i`'s network namespace (through
    /// `nsenter --net=/run/netns/<ns> --`, which execs it: the child is the program itself).
    /// Add arguments, environment and stdio as for any `Command`.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.ns(i)))
            .arg("--")
            .arg(program);
        command
    }

    /// Starts `tcpdump` on machine `i`'s veth (host side, so it sees everything the machine
    /// sends and receives) and returns once tcpdump says it is listening.
    pub fn capture(&self, i: usize) -> Result<Capture, String> {
        Capture::start(self, i)
    }

    /// Puts the netem discipline on machine `i`'s `eth0`, e.g. `"delay 20ms"` or `"loss 100%"`
    /// (`man tc-netem`); it applies to what the machine sends. Replaces an earlier one. Fails,
    /// saying so, on a kernel built without netem (`CONFIG_NET_SCH_NETEM`), as some VM kernels are.
    pub fn netem(&self, i: usize, args: &str) -> Result<(), String> {
        let ns = self.ns(i);
        let mut argv = vec![
            "-n", &ns, "qdisc", "replace", "dev", "eth0", "root", "netem",
        ];
        argv.extend(args.split_whitespace());
        run("tc", &argv).map(drop).map_err(|e| {
            if e.contains("qdisc kind is unknown") {
                format!(
                    "this kernel ({}) has no netem: load it with `modprobe sch_netem`, or use a kernel \
                     built with CONFIG_NET_SCH_NETEM ({e})",
                    kernel_release()
                )
            } else {
                e
            }
        })
    }

    /// Removes the netem discipline from machine `i`'s `eth0`.
    pub fn clear_netem(&self, i: usize) -> Result<(), String> {
        let ns = self.ns(i);
        run("tc", &["-n", &ns, "qdisc", "del", "dev", "eth0", "root"]).map(drop)
    }

    /// Takes machine `i`'s veth down on the host side: the machine is gone from the network
    /// (as if unplugged) while its processes keep running.
    pub fn cut(&self, i: usize) -> Result<(), String> {
        run("ip", &["link", "set", &self.veth(i), "down"]).map(drop)
    }

    /// Brings machine `i`'s veth back up after [`Bed::cut`].
    pub fn restore(&self, i: usize) -> Result<(), String> {
        run("ip", &["link", "set", &self.veth(i), "up"]).map(drop)
    }

    fn check(&self, i: usize) {
        assert!(
            i < self.machines,
            "machine {i} is not in this bed of {} machines (they count from 0)",
            self.machines
        );
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        teardown(self.slot);
    }
}

impl std::fmt::Debug for Bed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bed")
            .field("bridge", &self.bridge())
            .field("host_ip", &self.host_ip())
            .field("machines", &self.machines)
            .finish()
    }
}

/// A running `tcpdump` on one machine's veth, writing a pcap file.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    veth: String,
    from: Ipv4Addr,
    to: Ipv4Addr,
}

impl Capture {
    fn start(bed: &Bed, i: usize) -> Result<Capture, String> {
        let veth = bed.veth(i);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!(
            "wharf-testkit-{}-{veth}-{n}.pcap",
            std::process::id()
        ));
        // -U with --immediate-mode: each packet reaches the file as it is seen. -Z root: tcpdump
        // would otherwise drop to its own user, who may not write where the tests do.
        let mut child = Command::new("tcpdump")
            .args([
                "-i",
                &veth,
                "-n",
                "-U",
                "--immediate-mode",
                "-Z",
                "root",
                "-w",
            ])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error("tcpdump", &e))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        // Keeps reading after readiness too, so tcpdump never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let capture = Capture {
            child: Some(child),
            file,
            veth: veth.clone(),
            from: bed.host_ip(),
            to: bed.ip(i),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut said = Vec::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("listening on") => return Ok(capture),
                Ok(line) => said.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "tcpdump on {veth} did not say it is listening within 10 s; it said: {}",
                        said.join(" / ")
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "tcpdump on {veth} stopped before listening: {}",
                        said.join(" / ")
                    ));
                }
            }
        }
    }

    /// Stops the capture and returns the pcap file's bytes. Everything that crossed the veth
    /// before the call is in it: a marker datagram (UDP to the machine's port 9, the payload
    /// `wharf-testkit capture end …`) is sent after it and awaited in the file first, unless the
    /// veth is down.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush();
        let mut child = self.child.take().expect("a capture is finished once");
        stop(&mut child, Signal::INT);
        let bytes = std::fs::read(&self.file).unwrap_or_else(|e| {
            panic!(
                "cannot read the capture of {} at {}: {e}",
                self.veth,
                self.file.display()
            )
        });
        let _ = std::fs::remove_file(&self.file);
        bytes
    }

    /// Waits (up to 3 s) until a marker sent now is in the file: the kernel hands tcpdump the
    /// packets in order, so all earlier ones are written too.
    fn flush(&self) {
        let up = std::fs::read_to_string(format!("/sys/class/net/{}/operstate", self.veth))
            .is_ok_and(|s| s.trim() == "up");
        if !up {
            return;
        }
        let Ok(socket) = UdpSocket::bind((self.from, 0)) else {
            return;
        };
        let marker = format!(
            "wharf-testkit capture end {}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let _ = socket.send_to(marker.as_bytes(), (self.to, 9));
            let resend = Instant::now() + Duration::from_millis(200);
            while Instant::now() < resend {
                if std::fs::read(&self.file).is_ok_and(|b| contains(&b, marker.as_bytes())) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Signal::TERM);
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

/// Whether `needle` occurs in `haystack` (e.g. a request line in a capture's bytes; an empty
/// needle always does).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails, saying which Debian package to install, when `program` is not on the PATH.
pub fn need_tool(program: &str, package: &str) -> Result<(), String> {
    match find_program(program) {
        Some(_) => Ok(()),
        None => Err(format!(
            "`{program}` is missing: install it with `apt-get install -y {package}`"
        )),
    }
}

/// Signals the child, then waits for it (up to 5 s, then kills it).
fn stop(child: &mut Child, signal: Signal) {
    if let Some(pid) = Pid::from_raw(child.id() as i32) {
        let _ = kill_process(pid, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn subnet(slot: u32) -> [u8; 3] {
    if slot <= 254 {
        [198, 18, slot as u8]
    } else {
        [198, 19, (slot - 255) as u8]
    }
}

/// Claims a slot by creating its bridge (which fails if it exists), starting from one derived
/// from the process id and a counter, so concurrent beds rarely try the same slot first.
fn claim_slot() -> Result<u32, String> {
    let start = std::process::id()
        .wrapping_mul(97)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(13));
    let owner = owner_alias(std::process::id())
        .ok_or("cannot read this process's start time in /proc/self/stat")?;
    for k in 0..SLOTS {
        let slot = (start.wrapping_add(k)) % SLOTS + 1;
        let bridge = format!("wb{slot}");
        if Path::new("/sys/class/net").join(&bridge).exists() {
            reclaim_if_stale(slot);
            continue;
        }
        match run("ip", &["link", "add", &bridge, "type", "bridge"]) {
            Ok(_) => {
                if let Err(e) = run("ip", &["link", "set", &bridge, "alias", &owner]) {
                    teardown(slot);
                    return Err(e);
                }
                return Ok(slot);
            }
            // Another bed took it between the look and the add.
            Err(e) if e.contains("File exists") => continue,
            Err(e) => return Err(e),
        }
    }
    Err(format!(
        "no free test bed subnet: all {SLOTS} bridges wb1…wb{SLOTS} exist (see `ip -br link | grep ^wb`)"
    ))
}

/// "wharf-testkit <pid> <start time>": the start time tells a live owner from a reused pid.
fn owner_alias(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; the command name (field 2) may hold spaces, so count from its closing paren.
    let start = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    Some(format!("{OWNER_TAG} {pid} {start}"))
}

/// Removes the bed in `slot` if this module made it and its process is gone.
fn reclaim_if_stale(slot: u32) {
    let Ok(alias) = std::fs::read_to_string(format!("/sys/class/net/wb{slot}/ifalias")) else {
        return;
    };
    let mut words = alias.split_whitespace();
    if words.next() != Some(OWNER_TAG) {
        return;
    }
    let Some(pid) = words.next().and_then(|p| p.parse::<u32>().ok()) else {
        return;
    };
    if owner_alias(pid).as_deref() != Some(alias.trim()) {
        teardown(slot);
    }
}

/// Removes everything of the bed in `slot`, ignoring what is already gone: kills the processes
/// in its namespaces, deletes the veths (which takes their peers along), the namespaces, the
/// bridge and the firewall rule.
fn teardown(slot: u32) {
    let ns_prefix = format!("wb{slot}n");
    let veth_prefix = format!("wb{slot}v");
    let named = |dir: &str, prefix: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| {
                        n.strip_prefix(prefix)
                            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaces = named("/run/netns", &ns_prefix);
    for ns in &namespaces {
        if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
            for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                if let Some(pid) = Pid::from_raw(pid) {
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
        }
    }
    for veth in named("/sys/class/net", &veth_prefix) {
        let _ = run("ip", &["link", "del", &veth]);
    }
    for ns in &namespaces {
        let _ = run("ip", &["netns", "del", ns]);
    }
    let bridge = format!("wb{slot}");
    let _ = run("ip", &["link", "del", &bridge]);
    if find_program("iptables").is_some() {
        // Inserted once per bed; deleting until none is left also clears a doubled one.
        while run("iptables", &forward_rule("-D", &bridge)).is_ok() {}
    }
}

fn forward_rule<'a>(action: &'a str, bridge: &'a str) -> [&'a str; 8] {
    [
        action, "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
    ]
}

/// Runs a tool to completion; its stdout, or an error with what it said.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(program, &e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn spawn_error(program: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        let package = match program {
            "ip" | "tc" => "iproute2",
            "nsenter" => "util-linux",
            other => other,
        };
        format!("`{program}` is missing: install it with `apt-get install -y {package}`")
    } else {
        format!("cannot run `{program}`: {e}")
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown release".into())
}

fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_map_to_the_test_bed_range_outside_the_swarm_and_bench_subnets() {
        for (slot, net) in [
            (1, [198, 18, 1]),
            (254, [198, 18, 254]),
            (255, [198, 19, 0]),
            (SLOTS, [198, 19, 249]),
        ] {
            assert_eq!(subnet(slot), net, "slot {slot}");
        }
        let all: std::collections::HashSet<_> = (1..=SLOTS).map(subnet).collect();
        assert_eq!(all.len(), SLOTS as usize);
        assert!(!all.contains(&[198, 18, 0]) && !all.contains(&[198, 19, 250]));
    }

    #[test]
    fn contains_finds_a_needle_anywhere() {
        for (hay, needle, want) in [
            (&b"GET /hello HTTP/1.1"[..], &b"/hello"[..], true),
            (b"abc", b"abcd", false),
            (b"abc", b"", true),
            (b"", b"a", false),
        ] {
            assert_eq!(contains(hay, needle), want, "{hay:?} {needle:?}");
        }
    }

    #[test]
    fn owner_alias_names_this_process_with_its_start_time() {
        let alias = owner_alias(std::process::id()).unwrap();
        let words: Vec<_> = alias.split(' ').collect();
        assert_eq!(words.len(), 3, "{alias}");
        assert_eq!(words[1], std::process::id().to_string());
        assert!(words[2].parse::<u64>().is_ok(), "{alias}");
    }
}
