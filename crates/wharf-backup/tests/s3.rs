//! S3 repositories against a local S3 server (moto), read back with the restic tool; an
//! outage in the middle of a backup fails it within a bounded time.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;
use wharf_backup::{Location, Repository};

const T0: i64 = 1_709_210_096;

fn s3_env(name: &str) -> Option<String> {
    match name {
        "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY.into()),
        "AWS_SECRET_ACCESS_KEY" => Some(SECRET_KEY.into()),
        _ => None,
    }
}

const RESTIC_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
];

#[test]
fn s3_repository_round_trip_read_by_restic() {
    let moto = Moto::start();
    moto.create_bucket("backups");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("volume");
    make_tree(&src);

    let url = format!("s3:{}/backups/wharf/host1", moto.endpoint());
    let loc = Location::parse_with(&url, s3_env).unwrap();
    assert_eq!(loc.to_string(), url);
    let repo = Repository::open_or_init(&loc, PASSWORD).unwrap();
    let snap = repo.backup_path(&src, &["s3".into()], T0).unwrap();
    let dump = noise(9, 1_500_000);
    let stream = repo
        .backup_stream(&mut &dump[..], "db.dump", &[], T0 + 1)
        .unwrap();
    assert_eq!(
        repo.snapshots().unwrap(),
        vec![snap.clone(), stream.clone()]
    );
    repo.verify(&snap.id).unwrap();
    repo.check().unwrap();
    assert!(moto.count_objects("backups", "wharf/host1/data/") > 0);

    // A second handle (as after a restart) opens the same repository.
    let again = Repository::open_or_init(&loc, PASSWORD).unwrap();
    let restored = dir.path().join("restored");
    again.restore(&snap.id, &restored).unwrap();
    assert_same_tree(&src, &restored);

    let pw = password_file(dir.path());
    let out = restic(&url, &pw, &RESTIC_ENV, &["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], snap.id.as_str());
    assert_eq!(list[1]["id"], stream.id.as_str());
    restic(&url, &pw, &RESTIC_ENV, &["check", "--read-data"]);
    let out = restic(&url, &pw, &RESTIC_ENV, &["dump", &stream.id, "/db.dump"]);
    assert!(out.stdout == dump);

    // Forget and prune work on S3 too.
    again.forget(std::slice::from_ref(&snap.id)).unwrap();
    assert_eq!(again.snapshots().unwrap(), vec![stream.clone()]);
    restic(&url, &pw, &RESTIC_ENV, &["check", "--read-data"]);

    // Off-site copy from a local repository into this S3 one.
    let local =
        Repository::open_or_init(&Location::Local(dir.path().join("local")), PASSWORD).unwrap();
    let l = local.backup_path(&src, &[], T0 + 2).unwrap();
    local.copy_to(&again, std::slice::from_ref(&l.id)).unwrap();
    let copied = again.snapshots().unwrap();
    assert_eq!(copied.len(), 2);
    assert_eq!(copied[1].original.as_deref(), Some(l.id.as_str()));
    again.verify(&copied[1].id).unwrap();
}

#[test]
fn s3_outage_mid_backup_fails_within_bounded_time_and_names_the_repository() {
    let mut moto = Moto::start();
    moto.create_bucket("backups");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("volume");
    std::fs::create_dir_all(&src).unwrap();
    // Enough incompressible data for several packs (about 32 MB each), so that the backup
    // is still running when the first one has arrived.
    for i in 0..80 {
        std::fs::write(src.join(format!("f{i:02}.bin")), noise(100 + i, 1_000_000)).unwrap();
    }
    let url = format!("s3:{}/backups/outage", moto.endpoint());
    let loc = Location::parse_with(&url, s3_env).unwrap();
    let repo = Repository::open_or_init(&loc, PASSWORD).unwrap();

    let (tx, rx) = mpsc::channel();
    let worker = {
        let repo = repo.clone();
        let src = src.clone();
        std::thread::spawn(move || {
            let _ = tx.send(repo.backup_path(&src, &[], T0));
        })
    };
    // Kill the store once the first packs have arrived.
    let deadline = Instant::now() + Duration::from_secs(60);
    while moto.count_objects("backups", "outage/data/") == 0 {
        assert!(Instant::now() < deadline, "no pack uploaded within 60 s");
        if let Ok(result) = rx.try_recv() {
            panic!("backup ended before the outage: {result:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    moto.kill();
    let killed = Instant::now();
    // Bounded: the backend gives up after a few short retries, not minutes of them.
    let result = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("backup_path did not return within 90 s of the outage");
    let took = killed.elapsed();
    worker.join().unwrap();
    eprintln!("backup failed {took:?} after the S3 server was killed");
    eprintln!(
        "error: {}",
        result
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    let err = result.expect_err("a backup whose store died must fail");
    let msg = err.to_string();
    assert!(msg.contains(&url), "the error names the repository: {msg}");
    assert!(
        !msg.contains(SECRET_KEY) && !msg.contains(PASSWORD),
        "{msg}"
    );
    assert!(!format!("{err:?}").contains(SECRET_KEY), "{err:?}");
}
