//! Entry points for the fuzz targets in `fuzz/`: the parsers that take outside input (deploy
//! manifests, archives, webhook requests), reachable without a running server. Not an API.

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Build detection on a project holding one file: the first byte of `data` picks which
/// (`wharf.toml`, `Procfile`, `package.json`, `pyproject.toml`), the rest is its text. One file
/// at a time, since `wharf.toml` would otherwise decide every case.
pub fn manifest(dir: &Path, data: &[u8]) -> Result<(), String> {
    const NAMES: [&str; 4] = ["wharf.toml", "Procfile", "package.json", "pyproject.toml"];
    let Some((&pick, text)) = data.split_first() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for name in NAMES {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let name = NAMES[pick as usize % NAMES.len()];
    std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    crate::deploy::manifest::detect(dir).map(|_| ())
}

/// Unpacks an uploaded archive into `dest` (which must not exist yet).
pub fn archive(bytes: &[u8], dest: &Path, zip: bool) -> Result<(), String> {
    if zip {
        crate::deploy::source::unpack_zip(bytes, dest)
    } else {
        crate::deploy::source::unpack_targz(bytes, dest)
    }
}

/// Checks a webhook's signature against `secret`, then reads what it asks for.
pub fn webhook(headers: &[(String, String)], body: &[u8], secret: &str) -> Result<String, String> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            map.append(k, v);
        }
    }
    crate::api::hooks::verify(&map, secret, body).map_err(|e| e.message)?;
    crate::api::hooks::interpret(&map, body, "main").map(|p| format!("{p:?}"))
}
