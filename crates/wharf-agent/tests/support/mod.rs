//! Helpers the agent's tests share.

use wharf_link::proto::{Spec, Workload};

/// A release's tar with `index.html` saying `text`.
pub(crate) fn site_tar(text: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "index.html", text.as_bytes())
        .unwrap();
    b.into_inner().unwrap()
}

/// A process instance of app `blog` serving its release folder with Python.
pub(crate) fn http_server_spec(instance: &str, release: u32) -> Spec {
    Spec {
        runtime: "process".into(),
        app: "blog".into(),
        instance: instance.into(),
        release: Some(release),
        fingerprint: "fp-1".into(),
        workload: Workload::Process {
            command: "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1".into(),
        },
        env: Default::default(),
        port: None,
        replicas: 1,
        memory_bytes: None,
        cpu_millis: None,
        stop_grace_ms: 2000,
        read_only: false,
        user: None,
        sandbox: false,
        server_path: None,
    }
}
