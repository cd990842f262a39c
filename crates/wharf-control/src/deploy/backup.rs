//! Pre-deploy backups: the current release and the app's volume as one tar.gz, leaving out
//! `node_modules`, `.git` and the manifest's excludes, written under a temporary name and renamed
//! once complete, with its SHA-256.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

const ALWAYS_EXCLUDED: [&str; 2] = ["node_modules", ".git"];

/// Writes `out` from `(name in archive, folder)` pairs; returns the archive's SHA-256 (hex).
pub(crate) fn write(
    out: &Path,
    parts: &[(&str, &Path)],
    exclude: &[String],
) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("backup {}: {e}", out.display());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = out.with_extension("tmp");
    let file = File::create(&tmp).map_err(fail)?;
    let gz = flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    for (name, dir) in parts {
        if dir.is_dir() {
            add_dir(&mut tar, dir, Path::new(name), Path::new(""), exclude).map_err(fail)?;
        }
    }
    let gz = tar.into_inner().map_err(fail)?;
    let mut buf = gz.finish().map_err(fail)?;
    buf.flush().map_err(fail)?;
    buf.into_inner()
        .map_err(|e| fail(e.into_error()))?
        .sync_all()
        .map_err(fail)?;
    std::fs::rename(&tmp, out).map_err(fail)?;
    sha256(out).map_err(fail)
}

fn add_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    name: &Path,
    rel: &Path,
    exclude: &[String],
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_name = entry.file_name();
        let child = rel.join(&file_name);
        if ALWAYS_EXCLUDED.iter().any(|x| file_name == *x)
            || exclude.iter().any(|x| Path::new(x) == child)
        {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            tar.append_dir(name.join(&child), entry.path())?;
            add_dir(tar, root, name, &child, exclude)?;
        } else if kind.is_file() || kind.is_symlink() {
            tar.append_path_with_name(entry.path(), name.join(&child))?;
        }
    }
    Ok(())
}

pub(crate) fn sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_leaves_out_dependencies_and_excludes() {
        let dir = std::env::temp_dir().join(format!("wharf-backup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in [
            "rel/index.js",
            "rel/node_modules/big/x.js",
            "rel/.git/HEAD",
            "rel/tmp/cache.bin",
            "vol/db.sqlite",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let out = dir.join("out/b.tar.gz");
        let sum = write(
            &out,
            &[("release", &dir.join("rel")), ("volume", &dir.join("vol"))],
            &["tmp".into()],
        )
        .unwrap();
        assert_eq!(sum, sha256(&out).unwrap());
        let gz = flate2::read::GzDecoder::new(File::open(&out).unwrap());
        let mut names: Vec<String> = tar::Archive::new(gz)
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type().is_file())
            .map(|e| e.path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["release/index.js", "volume/db.sqlite"]);
        assert!(!out.with_extension("tmp").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
