//! Helpers the agent's tests share.

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
