//! A folder backup that cannot read one of its files fails and keeps no snapshot (the engine
//! alone would save the snapshot without the file). Tests run as root, who reads everything,
//! so the backup runs in a child process (this test executable) as `nobody`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;
use wharf_backup::{BackupError, Location, Repository};

const T0: i64 = 1_709_210_096;
const CHILD_ENV: &str = "WHARF_BACKUP_UNREADABLE_CHILD";
const NOBODY: u32 = 65534;

/// The child's part; does nothing in a normal test run.
#[test]
fn child_backup_as_nobody() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (repo, src) = spec.split_once('|').unwrap();
    let repo = Repository::open_or_init(&Location::Local(repo.into()), PASSWORD).unwrap();
    let err = repo.backup_path(Path::new(src), &[], T0).unwrap_err();
    assert!(matches!(err, BackupError::SourceUnreadable { .. }), "{err}");
    println!("{err}");
    assert_eq!(repo.snapshots().unwrap(), vec![]);
}

#[test]
fn unreadable_file_fails_the_folder_backup_and_keeps_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let chmod = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    chmod(dir.path(), 0o755).unwrap();
    let src = dir.path().join("volume");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("readable.txt"), "anyone").unwrap();
    std::fs::write(src.join("secret.txt"), "root only").unwrap();
    chmod(&src.join("secret.txt"), 0o600).unwrap();
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    chmod(&repo_dir, 0o777).unwrap();

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_backup_as_nobody",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            CHILD_ENV,
            format!("{}|{}", repo_dir.display(), src.display()),
        )
        .env("HOME", "/")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("secret.txt") && stdout.contains(&repo_dir.display().to_string()),
        "the error names the file and the repository: {stdout}"
    );

    // As root: the repository holds no snapshot and is sound.
    let repo = Repository::open_or_init(&Location::Local(repo_dir.clone()), PASSWORD).unwrap();
    assert_eq!(repo.snapshots().unwrap(), vec![]);
    let pw = password_file(dir.path());
    let list = restic(
        &repo_dir.display().to_string(),
        &pw,
        &[],
        &["snapshots", "--json"],
    );
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
}
