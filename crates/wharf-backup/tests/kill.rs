//! `kill -9` in the middle of a backup: the repository stays sound for restic, and the next
//! backup works. The backup runs in a child process: this test executable itself, started
//! with `WHARF_BACKUP_KILL_CHILD` so that only `child_backup` does anything.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use wharf_backup::{Location, Repository};

const T0: i64 = 1_709_210_096;
const CHILD_ENV: &str = "WHARF_BACKUP_KILL_CHILD";

/// The child's part; does nothing in a normal test run.
#[test]
fn child_backup() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (repo, src) = spec.split_once('|').unwrap();
    let repo = Repository::open_or_init(&Location::Local(repo.into()), PASSWORD).unwrap();
    repo.backup_path(Path::new(src), &[], T0).unwrap();
}

#[test]
fn killed_backup_leaves_a_sound_repository_and_the_next_backup_works() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("volume");
    std::fs::create_dir_all(&src).unwrap();
    // Several packs' worth, so that the child is still busy when the first pack lands.
    for i in 0..160 {
        std::fs::write(src.join(format!("f{i:03}.bin")), noise(1000 + i, 1_000_000)).unwrap();
    }
    let repo_dir = dir.path().join("repo");
    // Created here, so the child only backs up.
    let repo = Repository::open_or_init(&Location::Local(repo_dir.clone()), PASSWORD).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_backup", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{}|{}", repo_dir.display(), src.display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while packs(&repo_dir).is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child backup ended ({status}) before writing a pack");
        }
        assert!(Instant::now() < deadline, "no pack written within 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the child finished before it could be killed mid-backup"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        repo.snapshots().unwrap(),
        vec![],
        "no snapshot from the killed run"
    );

    let name = repo_dir.display().to_string();
    let pw = password_file(dir.path());
    restic(&name, &pw, &[], &["check"]);
    repo.check().unwrap();

    let snap = repo.backup_path(&src, &[], T0 + 60).unwrap();
    repo.verify(&snap.id).unwrap();
    restic(&name, &pw, &[], &["check", "--read-data"]);
    let target = dir.path().join("restored");
    repo.restore(&snap.id, &target).unwrap();
    assert_same_tree(&src, &target);
}
