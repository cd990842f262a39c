//! Static request paths: decoding and dot-segment removal never hand the file system a segment
//! that could climb out of the root (checked inside `static_path`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wharf_gateway::fuzz::static_path(&String::from_utf8_lossy(data));
});
