//! Shared by the integration tests: the restic tool as an independent reader, an S3 server
//! (moto) on a loopback port, test folders and their comparison.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery staple";

/// A password file for restic (`RESTIC_PASSWORD_FILE`).
pub fn password_file(dir: &Path) -> PathBuf {
    let path = dir.join("password");
    std::fs::write(&path, PASSWORD).unwrap();
    path
}

/// `restic -r REPO ARGS...` with the password file, no cache, and `env` added; panics with
/// restic's output if it fails.
pub fn restic(repo: &str, password_file: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let out = restic_status(repo, password_file, env, args);
    assert!(
        out.status.success(),
        "restic {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn restic_status(
    repo: &str,
    password_file: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    let program = "/usr/bin/restic";
    assert!(
        Path::new(program).exists(),
        "restic is missing: install it with `apt-get install -y restic`"
    );
    let mut cmd = Command::new(program);
    cmd.arg("-r")
        .arg(repo)
        .arg("--no-cache")
        .args(args)
        .env("RESTIC_PASSWORD_FILE", password_file)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running restic")
}

/// Deterministic pseudo-random bytes (xorshift), incompressible like real data.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small tree of the kinds of things an app volume holds.
pub fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::write(root.join("hello.txt"), "hello, wharf\n").unwrap();
    std::fs::write(root.join("empty"), "").unwrap();
    std::fs::write(root.join("sub/data.bin"), noise(1, 700_000)).unwrap();
    std::fs::write(root.join("sub/deeper/repeat.txt"), "abc".repeat(100_000)).unwrap();
    std::fs::write(root.join("sub/deeper/ünïcode name.txt"), "ü").unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
}

/// Every file, folder and symlink below `root`, with contents (files) or targets (links).
pub fn snapshot_of(root: &Path) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let ft = entry.file_type().unwrap();
        if ft.is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            out.push((
                rel,
                "link".into(),
                target.display().to_string().into_bytes(),
            ));
        } else if ft.is_dir() {
            out.push((rel, "dir".into(), Vec::new()));
            walk(root, &path, out);
        } else {
            out.push((rel, "file".into(), std::fs::read(&path).unwrap()));
        }
    }
}

/// Asserts two trees hold the same names, kinds and bytes.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = snapshot_of(expected);
    let b = snapshot_of(actual);
    let names = |v: &[(String, String, Vec<u8>)]| {
        v.iter()
            .map(|(n, k, _)| format!("{k} {n}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b), "different entries");
    for ((name, _, x), (_, _, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{name}: contents differ ({} vs {} bytes)",
            x.len(),
            y.len()
        );
    }
}

/// Sum of the sizes of the files below `dir`.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            total += disk_usage(&entry.path());
        } else {
            total += meta.len();
        }
    }
    total
}

/// The pack files of a local repository.
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(repo.join("data")).unwrap() {
        for pack in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            out.push(pack.unwrap().path());
        }
    }
    out.sort();
    out
}

/// An S3 server (moto) on a free loopback port; killed on drop.
pub struct Moto {
    pub port: u16,
    child: Option<Child>,
}

pub const ACCESS_KEY: &str = "wharf-test-access";
pub const SECRET_KEY: &str = "wharf-test-SECRET-do-not-print";

impl Moto {
    pub fn start() -> Moto {
        let program = std::env::var("WHARF_MOTO_SERVER")
            .unwrap_or_else(|_| "/opt/moto/bin/moto_server".into());
        assert!(
            Path::new(&program).exists(),
            "{program} is missing: install it with \
             `python3 -m venv /opt/moto && /opt/moto/bin/pip install 'moto[server]'` \
             (or set WHARF_MOTO_SERVER)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let moto = Moto {
            port,
            child: Some(child),
        };
        // Ready once it answers HTTP.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = moto.http("GET", "/") {
                assert!(status < 500, "moto answers {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        let status = self
            .http("PUT", &format!("/{bucket}"))
            .expect("moto answers");
        assert_eq!(status, 200, "creating bucket {bucket}");
    }

    /// How many objects the bucket holds under `prefix`.
    pub fn count_objects(&self, bucket: &str, prefix: &str) -> usize {
        let body = self
            .http_body("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"))
            .unwrap_or_default();
        body.matches("<Key>").count()
    }

    /// A plain HTTP/1.0 request; the status, or None if the server does not answer.
    fn http(&self, method: &str, path: &str) -> Option<u16> {
        let reply = self.raw(method, path)?;
        reply.split(' ').nth(1)?.parse().ok()
    }

    fn http_body(&self, method: &str, path: &str) -> Option<String> {
        let reply = self.raw(method, path)?;
        Some(reply.split_once("\r\n\r\n")?.1.to_owned())
    }

    fn raw(&self, method: &str, path: &str) -> Option<String> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            conn,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply).ok()?;
        Some(reply)
    }

    /// Kills the server at once (SIGKILL), as an outage would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}
