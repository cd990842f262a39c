//! Host normalisation and route matching: the first line is the Host, the rest the path. A
//! site is only ever found for a host it claims (checked inside `route`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (host, path) = text.split_once('\n').unwrap_or((&text, "/"));
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let _ = wharf_gateway::fuzz::route(host, &path);
});
