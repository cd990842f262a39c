//! Archive uploads (tar.gz, or zip when the first byte is odd): refused or unpacked, never a
//! file outside the destination folder (at any depth above it), and no link inside it leading
//! out.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;

/// Every path below `dir`, links not followed.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let base = std::env::temp_dir().join(format!("wharf-fuzz-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    // Two levels between the base and the destination, so `../../x` would land in sight.
    let dest = base.join("a/b/out");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let _ = wharf_control::fuzz::archive(bytes, &dest, kind % 2 == 1);

    let mut all = Vec::new();
    walk(&base, &mut all);
    let escaped: Vec<_> = all
        .iter()
        .filter(|p| !p.starts_with(&dest) && **p != base.join("a") && **p != base.join("a/b"))
        .collect();
    assert!(
        escaped.is_empty(),
        "written outside the destination: {escaped:?}"
    );
    let root = std::fs::canonicalize(&dest).unwrap_or(dest.clone());
    for p in all.iter().filter(|p| p.is_symlink()) {
        if let Ok(real) = std::fs::canonicalize(p) {
            assert!(real.starts_with(&root), "{p:?} leads out to {real:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&base);
});
