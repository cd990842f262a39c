//! Build detection on hostile `wharf.toml` / `Procfile` / `package.json` / `pyproject.toml`
//! contents (the first byte picks the file).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("wharf-fuzz-manifest-{}", std::process::id()));
    let _ = wharf_control::fuzz::manifest(&dir, data);
});
