//! Getting a release's code: from a git repository (fetched into a per-app cache, the exact
//! commit recorded) or from an uploaded tar.gz archive (entries that could land outside the
//! release folder are refused).

use std::path::{Component, Path};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::Output;

const GIT_TIMEOUT: Duration = Duration::from_secs(300);

async fn git(args: &[&str], out: &Output) -> Result<String, String> {
    git_with(args, &[], out).await
}

async fn git_with(args: &[&str], env: &[(&str, String)], out: &Output) -> Result<String, String> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Never wait for a password prompt nobody can answer.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let run = tokio::time::timeout(GIT_TIMEOUT, cmd.output());
    let output = match run.await {
        Err(_) => return Err(format!("git {} took longer than {GIT_TIMEOUT:?}", args[0])),
        Ok(Err(e)) => {
            return Err(format!(
                "cannot run git (is it installed? apt-get install -y git): {e}"
            ));
        }
        Ok(Ok(o)) => o,
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        out.line(&format!("git: {line}"));
    }
    if !output.status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed");
        return Err(last.trim().trim_start_matches("fatal: ").to_string());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Checks user input that becomes git arguments: nothing that git could take as an option.
pub(crate) fn check_git(url: &str, reference: &str) -> Result<(), String> {
    if url.is_empty()
        || url.starts_with('-')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("`{}` is not a git URL", redact_git(url)));
    }
    if reference.is_empty()
        || reference.starts_with('-')
        || reference.contains("..")
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
    {
        return Err(format!("`{reference}` is not a branch, tag or commit"));
    }
    Ok(())
}

/// The secret part of a git URL, if it has one: the whole user-info of `https://TOKEN@host/…`
/// or `https://user:TOKEN@host/…` (hosts take tokens in either place), the password of any
/// other `scheme://user:pass@host/…`. (`git@host:path` names a user, no secret.)
pub(crate) fn git_credentials(url: &str) -> Option<std::ops::Range<usize>> {
    let (scheme, rest) = url.split_once("://")?;
    let start = scheme.len() + 3;
    let authority = rest.split(['/', '?', '#']).next()?;
    let at = authority.rfind('@')?;
    let userinfo = &authority[..at];
    if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return (!userinfo.is_empty()).then(|| start..start + at);
    }
    let colon = userinfo.find(':')?;
    (colon + 1 < at).then(|| start + colon + 1..start + at)
}

/// A repository as git's command line gets it, and the environment that carries its
/// credentials instead. Anyone on the machine can read a process's command line
/// (`/proc/<pid>/cmdline`, `ps`); only its own user can read its environment. So an http(s)
/// URL's user-info leaves the URL, and a credential helper set in the environment (ahead of
/// any the machine has) answers git with it, as git would have used it from the URL (a token
/// alone as the user name, with an empty password).
struct Remote {
    url: String,
    env: Vec<(&'static str, String)>,
}

/// Prints the user name and password from the environment when git asks (`get`).
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get || exit 0; \
     printf 'username=%s\\npassword=%s\\n' \"$WHARF_GIT_USERNAME\" \"$WHARF_GIT_PASSWORD\"; }; f";

fn remote(url: &str) -> Result<Remote, String> {
    let as_is = || Remote {
        url: url.to_string(),
        env: Vec::new(),
    };
    let http = url.split_once("://").is_some_and(|(scheme, _)| {
        matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
    });
    // For http(s), the whole user-info, which an '@' follows.
    let (true, Some(secret)) = (http, git_credentials(url)) else {
        return Ok(as_is());
    };
    let userinfo = &url[secret.clone()];
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .ok()
            .filter(|v| !v.chars().any(char::is_control))
            .map(|v| v.into_owned())
            .ok_or_else(|| {
                format!(
                    "the credentials in `{}` are not text git can pass on (percent-encoded \
                     control characters or bytes that are not UTF-8)",
                    redact_git(url)
                )
            })
    };
    Ok(Remote {
        url: format!("{}{}", &url[..secret.start], &url[secret.end + 1..]),
        env: vec![
            ("GIT_CONFIG_COUNT", "2".into()),
            // An empty value first: the helpers the machine's git configuration names are
            // not asked (nor told the credentials).
            ("GIT_CONFIG_KEY_0", "credential.helper".into()),
            ("GIT_CONFIG_VALUE_0", String::new()),
            ("GIT_CONFIG_KEY_1", "credential.helper".into()),
            ("GIT_CONFIG_VALUE_1", CREDENTIAL_HELPER.into()),
            ("WHARF_GIT_USERNAME", decode(user)?),
            ("WHARF_GIT_PASSWORD", decode(password)?),
        ],
    })
}

/// `url` with its credentials (see [`git_credentials`]) shown as `***`: what users, logs and
/// the API see of a repository's address.
pub(crate) fn redact_git(url: &str) -> String {
    match git_credentials(url) {
        Some(r) => format!("{}***{}", &url[..r.start], &url[r.end..]),
        None => url.to_string(),
    }
}

/// Fetches `reference` of `url` into the app's cache and writes its files into `dest`.
/// Returns the exact commit. Errors never hold the URL's credentials (git may quote it).
pub(crate) async fn fetch_git(
    cache: &Path,
    url: &str,
    reference: &str,
    dest: &Path,
    out: &Output,
) -> Result<String, String> {
    let fetched = fetch_git_as_is(cache, url, reference, dest, out).await;
    fetched.map_err(|e| match git_credentials(url) {
        Some(r) => e.replace(&url[r], "***"),
        None => e,
    })
}

async fn fetch_git_as_is(
    cache: &Path,
    url: &str,
    reference: &str,
    dest: &Path,
    out: &Output,
) -> Result<String, String> {
    check_git(url, reference)?;
    let cache_s = cache.to_str().ok_or("the data folder path is not UTF-8")?;
    if !cache.join("HEAD").exists() {
        std::fs::create_dir_all(cache)
            .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
        git(&["init", "--bare", "--quiet", cache_s], out).await?;
    }
    out.line(&format!("fetching {reference} from {}", redact_git(url)));
    let remote = remote(url)?;
    let fetched = git_with(
        &[
            "-C",
            cache_s,
            "fetch",
            "--quiet",
            "--no-tags",
            "--depth",
            "1",
            "--",
            &remote.url,
            reference,
        ],
        &remote.env,
        out,
    )
    .await;
    let commit = match fetched {
        Ok(_) => git(&["-C", cache_s, "rev-parse", "FETCH_HEAD^{commit}"], out).await?,
        // Servers refuse to hand out an unadvertised commit by its hash; fetch the branches
        // and tags and look the commit up instead.
        Err(first) if reference.len() >= 7 && reference.chars().all(|c| c.is_ascii_hexdigit()) => {
            git_with(
                &[
                    "-C",
                    cache_s,
                    "fetch",
                    "--quiet",
                    "--",
                    &remote.url,
                    "+refs/heads/*:refs/remotes/src/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                &remote.env,
                out,
            )
            .await
            .map_err(|e| format!("cannot fetch from {}: {e}", redact_git(url)))?;
            git(
                &[
                    "-C",
                    cache_s,
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{reference}^{{commit}}"),
                ],
                out,
            )
            .await
            .map_err(|_| format!("{reference} is not a commit of {url} ({first})"))?
        }
        Err(e) => return Err(format!("cannot fetch {reference} from {url}: {e}")),
    };
    // Beside the cache (wharf's alone), not beside `dest`: the releases folder is the app's,
    // and a link it left at `<n>.tar` would have this write the archive wherever it points.
    let tar = cache.with_extension("tar");
    let tar_s = tar.to_str().ok_or("the data folder path is not UTF-8")?;
    git(
        &[
            "-C",
            cache_s,
            "archive",
            "--format=tar",
            "-o",
            tar_s,
            &commit,
        ],
        out,
    )
    .await?;
    let file = std::fs::File::open(&tar).map_err(|e| format!("cannot read the checkout: {e}"))?;
    let unpacked = unpack(tar::Archive::new(file), dest);
    let _ = std::fs::remove_file(&tar);
    unpacked?;
    out.line(&format!("checked out {}", &commit[..commit.len().min(12)]));
    Ok(commit)
}

/// Unpacks a tar.gz upload into `dest`.
pub(crate) fn unpack_targz(bytes: &[u8], dest: &Path) -> Result<(), String> {
    let gz = flate2::read::GzDecoder::new(bytes);
    unpack(tar::Archive::new(gz), dest)
}

/// Unpacks a zip upload into `dest`, refusing it whole if any entry could land outside.
pub(crate) fn unpack_zip(bytes: &[u8], dest: &Path) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a valid zip archive: {e}"))?;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| format!("not a valid zip archive: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("archive entry with a bad name: {e}"))?
            .to_string();
        if name.contains('\\') || !is_inside(Path::new(&name)) {
            return Err(format!(
                "archive entry `{name}` has an absolute path or `..`: refused"
            ));
        }
        if entry.is_symlink() {
            return Err(format!("archive entry `{name}` is a link: refused"));
        }
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| format!("not a valid zip archive: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("archive entry with a bad name: {e}"))?
            .to_string();
        let target = dest.join(&name);
        let fail = |e: std::io::Error| format!("cannot unpack `{name}`: {e}");
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(fail)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let mut out = std::fs::File::create(&target).map_err(fail)?;
        std::io::copy(&mut entry, &mut out).map_err(fail)?;
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o755));
        }
    }
    Ok(())
}

/// Refuses the whole archive if any entry could write outside `dest`: absolute paths, `..`,
/// links that point out, devices.
fn unpack<R: std::io::Read>(mut archive: tar::Archive<R>, dest: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a valid archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a valid archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("archive entry with a bad name: {e}"))?
            .into_owned();
        if !is_inside(&path) {
            return Err(format!(
                "archive entry `{}` has an absolute path or `..`: refused",
                path.display()
            ));
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let resolved = path.parent().unwrap_or(Path::new("")).join(&target);
            if target.is_absolute() || !is_inside(&normalize(&resolved)) {
                return Err(format!(
                    "archive link `{}` points outside the archive: refused",
                    path.display()
                ));
            }
        } else if !(kind.is_file()
            || kind.is_dir()
            || kind == tar::EntryType::GNULongName
            || kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions())
        {
            return Err(format!(
                "archive entry `{}` is not a file, folder or link: refused",
                path.display()
            ));
        }
        entry
            .unpack_in(dest)
            .map_err(|e| format!("cannot unpack `{}`: {e}", path.display()))?;
    }
    Ok(())
}

fn is_inside(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Lexically resolves `..` (for link targets); an escape leaves a `..` behind.
fn normalize(path: &Path) -> std::path::PathBuf {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Path::new("..").to_path_buf();
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.iter().collect()
}

/// An image reference as the engine takes it (`name[:tag]`, `registry/name@sha256:…`):
/// refuses what could be read as an option or holds spaces or control characters.
pub(crate) fn check_image(image: &str) -> Result<(), String> {
    let ok = !image.is_empty()
        && image.len() <= 512
        && !image.starts_with('-')
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{image}` is not an image reference: use NAME[:TAG] or REGISTRY/NAME[:TAG]"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_credentials_are_never_shown() {
        for (url, shown) in [
            (
                "https://oauth2:glpat-123@gitlab.com/a/b.git",
                "https://***@gitlab.com/a/b.git",
            ),
            (
                "https://ghp_token@github.com/a/b",
                "https://***@github.com/a/b",
            ),
            ("ssh://git:secret@host/r.git", "ssh://git:***@host/r.git"),
            ("ssh://git@host/r.git", "ssh://git@host/r.git"),
            ("git@github.com:a/b.git", "git@github.com:a/b.git"),
            ("https://github.com/a/b@v1", "https://github.com/a/b@v1"),
            ("/srv/repo", "/srv/repo"),
        ] {
            assert_eq!(redact_git(url), shown, "{url}");
        }
        // Nor on git's command line: the credentials travel in its environment.
        let r = remote("https://ci:glpat%2F1@git.example/a.git").unwrap();
        assert_eq!(r.url, "https://git.example/a.git");
        let env = |r: &Remote, k: &str| r.env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(env(&r, "WHARF_GIT_USERNAME"), "ci");
        assert_eq!(env(&r, "WHARF_GIT_PASSWORD"), "glpat/1");
        let r = remote("https://ghp_token@github.com/a/b").unwrap();
        assert_eq!(r.url, "https://github.com/a/b");
        assert_eq!(env(&r, "WHARF_GIT_USERNAME"), "ghp_token");
        assert_eq!(env(&r, "WHARF_GIT_PASSWORD"), "");
        for plain in [
            "/srv/repo",
            "git@github.com:a/b.git",
            "https://github.com/a/b@v1",
        ] {
            let r = remote(plain).unwrap();
            assert_eq!((r.url.as_str(), r.env.len()), (plain, 0));
        }
        let err = remote("https://u:p%0Aq@h/x").err().unwrap();
        assert!(err.contains("https://***@h/x"), "{err}");
        // Nor in the refusal of a URL pasted with a stray space.
        let err = check_git("https://ghp_token@github.com/a/b c", "main").unwrap_err();
        assert!(
            !err.contains("ghp_token") && err.contains("***@github.com"),
            "{err}"
        );
    }

    fn targz(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Write the raw name so hostile paths survive the builder's own checks.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        for (path, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, path, target).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn hostile_archives_are_refused_whole() {
        let dest = std::env::temp_dir().join(format!("wharf-unpack-{}", std::process::id()));
        let ok = targz(
            &[("index.html", b"hi"), ("a/b.txt", b"b")],
            &[("a/link", "b.txt")],
        );
        unpack_targz(&ok, &dest.join("ok")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("ok/a/b.txt")).unwrap(),
            "b"
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                targz(&[("../evil.txt", b"x")], &[]),
                "absolute path or `..`",
            ),
            (
                targz(&[("/etc/evil.txt", b"x")], &[]),
                "absolute path or `..`",
            ),
            (
                targz(&[("a/../../evil.txt", b"x")], &[]),
                "absolute path or `..`",
            ),
            (targz(&[], &[("link", "/etc/passwd")]), "points outside"),
            (
                targz(&[], &[("a/link", "../../etc/passwd")]),
                "points outside",
            ),
            (b"not an archive".to_vec(), "not a valid archive"),
        ];
        for (bytes, says) in cases {
            let err = unpack_targz(&bytes, &dest.join("bad")).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        assert!(!dest.join("evil.txt").exists() && !std::env::temp_dir().join("evil.txt").exists());
        std::fs::remove_dir_all(dest).unwrap();
    }

    #[test]
    fn zip_archives() {
        use std::io::Write;
        let make = |names: &[&str]| {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            for n in names {
                w.start_file(*n, zip::write::SimpleFileOptions::default())
                    .unwrap();
                w.write_all(b"x").unwrap();
            }
            w.finish().unwrap().into_inner()
        };
        let dest = std::env::temp_dir().join(format!("wharf-unzip-{}", std::process::id()));
        unpack_zip(&make(&["index.html", "css/a.css"]), &dest.join("ok")).unwrap();
        assert!(dest.join("ok/css/a.css").is_file());
        for bad in ["../evil", "/abs", "a/../../evil"] {
            let err = unpack_zip(&make(&["ok.txt", bad]), &dest.join("bad")).unwrap_err();
            assert!(err.contains("refused"), "{bad}: {err}");
            assert!(
                !dest.join("bad/ok.txt").exists(),
                "nothing unpacked from a refused archive"
            );
        }
        std::fs::remove_dir_all(dest).unwrap();
    }

    #[test]
    fn git_arguments_cannot_become_options() {
        assert!(check_git("file:///srv/app.git", "main").is_ok());
        assert!(check_git("--upload-pack=touch /tmp/x", "main").is_err());
        assert!(check_git("file:///x", "--output=/tmp/x").is_err());
        assert!(check_git("file:///x", "a b").is_err());
        assert!(check_git("file:///x", "main..evil").is_err());
    }
}
