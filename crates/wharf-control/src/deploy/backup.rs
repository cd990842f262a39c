//! Pre-deploy backups: what a build cannot make again, as one tar.gz with its SHA-256. That is
//! the app's volume, whole (what the app wrote), and the current release's code without what a
//! build recreates (`RECREATABLE`: dependencies, virtualenvs, caches; and `.git`) or the
//! manifest excludes. Written under a temporary name (`.tmp`) and renamed once complete.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Left out of a release's code wherever they appear: a build makes them again (releases built
/// before the build cache had `HOME` in the release, hence `.npm` and `.cache`).
const RECREATABLE: [&str; 6] = [
    "node_modules",
    ".venv",
    "__pycache__",
    ".npm",
    ".cache",
    ".git",
];

/// Writes `out` with `volume/` (all of it) and `release/` (the code, see the module doc);
/// returns the archive's SHA-256 (hex).
pub(crate) fn write(
    out: &Path,
    volume: &Path,
    release: Option<&Path>,
    exclude: &[String],
) -> Result<String, String> {
    let tmp = out.with_extension("tmp");
    let written = write_to(out, &tmp, volume, release, exclude);
    if written.is_err() {
        // A full disk is the usual cause: the partial archive would only make it fuller.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_to(
    out: &Path,
    tmp: &Path,
    volume: &Path,
    release: Option<&Path>,
    exclude: &[String],
) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("backup {}: {e}", out.display());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let file = File::create(tmp).map_err(fail)?;
    let gz = flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    if volume.is_dir() {
        add_dir(&mut tar, volume, Path::new("volume"), Path::new(""), None).map_err(fail)?;
    }
    if let Some(code) = release.filter(|d| d.is_dir()) {
        add_dir(
            &mut tar,
            code,
            Path::new("release"),
            Path::new(""),
            Some(exclude),
        )
        .map_err(fail)?;
    }
    let gz = tar.into_inner().map_err(fail)?;
    let mut buf = gz.finish().map_err(fail)?;
    buf.flush().map_err(fail)?;
    buf.into_inner()
        .map_err(|e| fail(e.into_error()))?
        .sync_all()
        .map_err(fail)?;
    std::fs::rename(tmp, out).map_err(fail)?;
    sha256(out).map_err(fail)
}

fn add_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    name: &Path,
    rel: &Path,
    // `Some` for code: leave out `RECREATABLE` and these paths.
    exclude: Option<&[String]>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_name = entry.file_name();
        let child = rel.join(&file_name);
        if let Some(exclude) = exclude
            && (RECREATABLE.iter().any(|x| file_name == *x)
                || exclude.iter().any(|x| Path::new(x) == child))
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
    fn backup_keeps_the_code_and_the_volume_but_nothing_a_build_recreates() {
        let dir = std::env::temp_dir().join(format!("wharf-backup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in [
            "rel/index.js",
            "rel/node_modules/big/x.js",
            "rel/.venv/bin/gunicorn",
            "rel/.npm/_cacache/index",
            "rel/.cache/pip/http/x",
            "rel/pkg/__pycache__/m.pyc",
            "rel/.git/HEAD",
            "rel/tmp/cache.bin",
            "vol/db.sqlite",
            "vol/tmp/upload",
            "vol/node_modules/written-by-the-app",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let out = dir.join("out/b.tar.gz");
        let sum = write(
            &out,
            &dir.join("vol"),
            Some(&dir.join("rel")),
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
        // What the app wrote is kept whole; the code loses only what a build makes again.
        assert_eq!(
            names,
            [
                "release/index.js",
                "volume/db.sqlite",
                "volume/node_modules/written-by-the-app",
                "volume/tmp/upload",
            ]
        );
        assert!(!out.with_extension("tmp").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
