//! What users restore with the restic tool alone: a dump backed up from its file comes back
//! whole with `restic restore`; snapshots taken in the same second are all copied.

mod support;

use std::path::Path;

use support::*;
use wharf_backup::{Location, Repository};

const T0: i64 = 1_709_210_096; // 2024-02-29 12:34:56 UTC

fn open(dir: &Path) -> (Repository, String) {
    let loc = Location::parse(dir.to_str().unwrap()).unwrap();
    (
        Repository::open_or_init(&loc, PASSWORD).unwrap(),
        loc.to_string(),
    )
}

#[test]
fn a_dump_backed_up_from_its_file_comes_back_whole_with_restic_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, name) = open(&dir.path().join("repo"));
    let dump = noise(11, 2_500_000);
    let file = dir.path().join("spool");
    std::fs::write(&file, &dump).unwrap();
    let snap = repo
        .backup_file(&file, "shop.pgdump", &["target=shop".into()], T0)
        .unwrap();
    assert_eq!(snap.total_bytes, dump.len() as u64);
    let pw = password_file(dir.path());
    let target = dir.path().join("restored");
    restic(
        &name,
        &pw,
        &[],
        &["restore", &snap.id, "--target", target.to_str().unwrap()],
    );
    let back = std::fs::read(target.join("shop.pgdump")).unwrap();
    assert!(back == dump, "restic restore gave {} bytes", back.len());
}

#[test]
fn snapshots_taken_in_the_same_second_are_all_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = open(&dir.path().join("repo"));
    let (copy, copy_name) = open(&dir.path().join("copy"));
    let a = repo
        .backup_stream(&mut &noise(1, 1000)[..], "a.dump", &["n=1".into()], T0)
        .unwrap();
    repo.copy_to(&copy, std::slice::from_ref(&a.id)).unwrap();
    let b = repo
        .backup_stream(&mut &noise(2, 1000)[..], "a.dump", &["n=2".into()], T0)
        .unwrap();
    repo.copy_to(&copy, std::slice::from_ref(&b.id)).unwrap();
    // Copying again adds nothing.
    repo.copy_to(&copy, &[a.id.clone(), b.id.clone()]).unwrap();
    let pw = password_file(dir.path());
    let out = restic(&copy_name, &pw, &[], &["snapshots", "--json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 2, "both copied, once each: {listed:?}");
}

#[test]
fn backups_go_on_after_a_forget_pruned_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, name) = open(&dir.path().join("repo"));
    let src = dir.path().join("volume");
    std::fs::create_dir_all(&src).unwrap();
    let mut ids = Vec::new();
    for i in 0..4usize {
        std::fs::write(src.join(format!("f{i}")), noise(i as u64, 300_000)).unwrap();
        ids.push(
            repo.backup_path(&src, &[], T0 + i as i64 * 3600)
                .unwrap()
                .id,
        );
        if i >= 2 {
            repo.forget(std::slice::from_ref(&ids[i - 2])).unwrap();
        }
    }
    let pw = password_file(dir.path());
    restic(&name, &pw, &[], &["check", "--read-data"]);
}
