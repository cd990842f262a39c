//! Local-folder repositories, read back with the restic tool as an independent reader.

mod support;

use std::io::Read;
use std::path::Path;

use support::*;
use wharf_backup::{BackupError, Location, Repository};

const T0: i64 = 1_709_210_096; // 2024-02-29 12:34:56 UTC

fn open(dir: &Path) -> (Repository, String) {
    let repo_dir = dir.join("repo");
    let loc = Location::parse(repo_dir.to_str().unwrap()).unwrap();
    (
        Repository::open_or_init(&loc, PASSWORD).unwrap(),
        loc.to_string(),
    )
}

fn restic_json(repo: &str, pw: &Path, args: &[&str]) -> serde_json::Value {
    let out = restic(repo, pw, &[], args);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn folder_backup_is_read_back_by_restic() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("volume");
    make_tree(&src);
    let (repo, name) = open(dir.path());
    let tags = vec!["app:blog".to_string(), "schedule:nightly".to_string()];
    let snap = repo.backup_path(&src, &tags, T0).unwrap();
    assert_eq!(snap.id.len(), 64);
    assert_eq!(snap.time, T0);
    assert_eq!(snap.tags, tags);
    assert_eq!(snap.paths, vec![src.display().to_string()]);
    assert_eq!(snap.files, 6);
    assert_eq!(snap.total_bytes, 13 + 700_000 + 300_000 + 2);
    assert!(snap.bytes_added > 700_000, "{snap:?}");
    assert_eq!(repo.snapshots().unwrap(), vec![snap.clone()]);

    let pw = password_file(dir.path());
    let list = restic_json(&name, &pw, &["snapshots", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], snap.id.as_str());
    let time: jiff::Timestamp = list[0]["time"].as_str().unwrap().parse().unwrap();
    assert_eq!(time.as_second(), T0);
    assert_eq!(list[0]["tags"], serde_json::json!(tags));
    assert_eq!(
        list[0]["paths"],
        serde_json::json!([src.display().to_string()])
    );

    restic(&name, &pw, &[], &["check", "--read-data"]);
    let target = dir.path().join("restic-restore");
    restic(
        &name,
        &pw,
        &[],
        &["restore", &snap.id, "--target", target.to_str().unwrap()],
    );
    // restic puts the folder back under its absolute path.
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    // Ours puts the folder's content straight into the target.
    let ours = dir.path().join("ours");
    repo.restore(&snap.id[..8], &ours).unwrap();
    assert_same_tree(&src, &ours);
    repo.verify(&snap.id).unwrap();
    repo.check().unwrap();
}

#[test]
fn stream_backup_is_dumped_by_restic_and_by_us() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, name) = open(dir.path());
    let dump = noise(7, 3_000_000);
    let snap = repo
        .backup_stream(&mut &dump[..], "db.dump", &["db:main".into()], T0)
        .unwrap();
    assert_eq!(snap.total_bytes, dump.len() as u64);
    assert_eq!(snap.files, 1);
    assert_eq!(snap.paths, vec!["db.dump".to_string()]);

    let pw = password_file(dir.path());
    let out = restic(&name, &pw, &[], &["dump", &snap.id, "/db.dump"]);
    assert!(
        out.stdout == dump,
        "restic dump gave {} bytes",
        out.stdout.len()
    );
    restic(&name, &pw, &[], &["check", "--read-data"]);

    let mut ours = Vec::new();
    assert_eq!(
        repo.dump(&snap.id, "db.dump", &mut ours).unwrap(),
        dump.len() as u64
    );
    assert!(ours == dump);
    let err = repo
        .dump(&snap.id, "other.dump", &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(err, BackupError::FileNotInSnapshot { .. }),
        "{err}"
    );

    let target = dir.path().join("restored");
    repo.restore(&snap.id, &target).unwrap();
    assert!(std::fs::read(target.join("db.dump")).unwrap() == dump);
    repo.verify(&snap.id).unwrap();
}

/// A reader that fails after some bytes, like a dump process that dies.
struct Failing(usize);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("pg_dump exited with status 1"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(b'x');
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn failing_stream_fails_the_backup_and_keeps_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, name) = open(dir.path());
    let err = repo
        .backup_stream(&mut Failing(2_500_000), "db.dump", &[], T0)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BackupError::SourceUnreadable { .. }), "{msg}");
    assert!(
        msg.contains(&name) && msg.contains("pg_dump exited"),
        "{msg}"
    );
    assert_eq!(repo.snapshots().unwrap(), vec![]);
    let pw = password_file(dir.path());
    let list = restic_json(&name, &pw, &["snapshots", "--json"]);
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn verify_detects_a_corrupted_pack() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("volume");
    make_tree(&src);
    let (repo, name) = open(dir.path());
    let snap = repo.backup_path(&src, &[], T0).unwrap();
    repo.verify(&snap.id).unwrap();

    // Flip bytes in the middle of the biggest pack (the data, not the header).
    let pack = packs(&dir.path().join("repo"))
        .into_iter()
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&pack, bytes).unwrap();

    let err = repo.verify(&snap.id).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BackupError::Damaged { .. }), "{msg}");
    assert!(msg.contains(&name), "{msg}");
    // restic agrees that the data is damaged.
    let pw = password_file(dir.path());
    let out = restic_status(&name, &pw, &[], &["check", "--read-data"]);
    assert!(!out.status.success());
}

#[test]
fn forget_removes_only_the_given_snapshot_and_prunes_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("volume");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("kept.bin"), noise(1, 1_000_000)).unwrap();
    std::fs::write(src.join("old.bin"), noise(2, 4_000_000)).unwrap();
    let (repo, name) = open(dir.path());
    let first = repo.backup_path(&src, &[], T0).unwrap();
    std::fs::remove_file(src.join("old.bin")).unwrap();
    std::fs::write(src.join("new.bin"), noise(3, 500_000)).unwrap();
    let second = repo.backup_path(&src, &[], T0 + 3600).unwrap();
    let third = repo.backup_path(&src, &[], T0 + 7200).unwrap();
    let repo_dir = dir.path().join("repo");
    let before = disk_usage(&repo_dir.join("data"));
    assert!(before > 5_400_000, "{before}");

    repo.forget(std::slice::from_ref(&first.id)).unwrap();
    let left: Vec<String> = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, vec![second.id.clone(), third.id.clone()]);
    let after = disk_usage(&repo_dir.join("data"));
    // old.bin's 4 MB went; kept.bin and new.bin stayed.
    assert!(
        after < before - 3_900_000 && after > 1_500_000,
        "{before} -> {after}"
    );

    let pw = password_file(dir.path());
    restic(&name, &pw, &[], &["check", "--read-data"]);
    let target = dir.path().join("restored");
    repo.restore(&second.id, &target).unwrap();
    assert_same_tree(&src, &target);

    // An unknown id removes nothing and says which.
    let err = repo
        .forget(&[third.id.clone(), "deadbeef".into()])
        .unwrap_err();
    assert!(err.to_string().contains("deadbeef"), "{err}");
    assert_eq!(repo.snapshots().unwrap().len(), 2);
}

#[test]
fn restore_wants_a_new_or_empty_target() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("volume");
    make_tree(&src);
    let (repo, _) = open(dir.path());
    let snap = repo.backup_path(&src, &[], T0).unwrap();

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    repo.restore(&snap.id, &empty).unwrap();
    assert_same_tree(&src, &empty);

    let err = repo.restore(&snap.id, &empty).unwrap_err();
    assert!(matches!(err, BackupError::TargetNotEmpty { .. }), "{err}");
    let err = repo.restore("0123abcd", &dir.path().join("x")).unwrap_err();
    assert!(matches!(err, BackupError::SnapshotNotFound { .. }), "{err}");
}

#[test]
fn copy_to_a_second_repository_gives_new_ids_and_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("volume");
    make_tree(&src);
    let (repo, _) = open(dir.path());
    let a = repo.backup_path(&src, &["x".into()], T0).unwrap();
    std::fs::write(src.join("later.txt"), "later").unwrap();
    let b = repo.backup_path(&src, &[], T0 + 60).unwrap();

    let offsite_dir = dir.path().join("offsite");
    let offsite_loc = Location::Local(offsite_dir.clone());
    let offsite = Repository::open_or_init(&offsite_loc, "another password").unwrap();
    repo.copy_to(&offsite, std::slice::from_ref(&a.id)).unwrap();
    let copies = offsite.snapshots().unwrap();
    assert_eq!(copies.len(), 1);
    let copy = &copies[0];
    assert_ne!(copy.id, a.id, "a copy is a new snapshot file");
    assert_eq!(copy.original.as_deref(), Some(a.id.as_str()));
    assert_eq!(
        (copy.time, &copy.tags, &copy.paths),
        (a.time, &a.tags, &a.paths)
    );

    // Copying again adds nothing; the other one is added.
    repo.copy_to(&offsite, &[a.id.clone(), b.id.clone()])
        .unwrap();
    let copies = offsite.snapshots().unwrap();
    assert_eq!(copies.len(), 2);
    offsite.verify(&copies[1].id).unwrap();

    // restic reads the copy with the off-site password.
    let pwfile = dir.path().join("offsite-password");
    std::fs::write(&pwfile, "another password").unwrap();
    let target = dir.path().join("from-offsite");
    restic(
        offsite_dir.to_str().unwrap(),
        &pwfile,
        &[],
        &[
            "restore",
            &copies[1].id,
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    restic(
        offsite_dir.to_str().unwrap(),
        &pwfile,
        &[],
        &["check", "--read-data"],
    );
}

#[test]
fn opening_errors_name_the_repository_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let (_, name) = open(dir.path());
    let loc = Location::parse(&name).unwrap();
    let err = Repository::open_or_init(&loc, "wrong password").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&name) && msg.contains("password"), "{msg}");
    assert!(!msg.contains("wrong password"), "{msg}");
    // Reopening with the right one works and finds the same repository.
    Repository::open_or_init(&loc, PASSWORD).unwrap();

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let err = Repository::open_or_init(&Location::Local(foreign.clone()), PASSWORD).unwrap_err();
    assert!(matches!(err, BackupError::NotARepository { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(&foreign).unwrap().count(),
        1,
        "nothing written"
    );
}
