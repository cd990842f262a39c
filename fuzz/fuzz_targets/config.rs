//! The standalone gateway's TOML file: any text is refused with an error or accepted, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = wharf_gateway::config::GatewayConfig::from_toml(
            text,
            std::path::Path::new("/nonexistent-wharf-fuzz"),
        );
    }
});
