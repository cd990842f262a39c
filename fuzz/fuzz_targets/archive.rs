//! Archive uploads (tar.gz, or zip when the first byte is odd): refused or unpacked, and never a
//! file outside the destination folder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let base = std::env::temp_dir().join(format!("wharf-fuzz-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let dest = base.join("out");
    let _ = wharf_control::fuzz::archive(bytes, &dest, kind % 2 == 1);
    let escaped: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "out")
        .collect();
    assert!(
        escaped.is_empty(),
        "written outside the destination: {escaped:?}"
    );
    let _ = std::fs::remove_dir_all(&base);
});
