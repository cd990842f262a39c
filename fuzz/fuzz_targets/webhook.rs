//! Webhook requests: header lines (`name: value`) up to an empty line, then the body. Checked
//! against the secret, then read; never a panic, and a wrong signature never gets through.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let result = wharf_control::fuzz::webhook(&headers, body.as_bytes(), "fuzz-secret");
    // HMAC signatures cannot be forged from fuzz input, so anything accepted must carry
    // GitLab's plain token, equal to the secret.
    if result.is_ok() {
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "x-gitlab-token" && v == "fuzz-secret"),
            "accepted without the secret: {headers:?}"
        );
    }
});
