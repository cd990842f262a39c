//! A cache of small static files: a hit costs one `stat` instead of open, fstat, read and close,
//! and the reply's headers are built once per file version instead of once per request.
//!
//! Correctness rests on two checks. Every hit re-stats the file it came from and is used only if
//! device, inode, size, mtime and ctime are unchanged, so an edit, a replacement or a deleted file
//! is seen at once; because the inode must match, a hit is always the very file that was opened
//! beneath the root, whatever the path now leads to. The resolution itself (which index file,
//! which precompressed sibling) is trusted for [`RESOLVE_TTL`] and then made again, so a newly
//! added `index.html` or `.br` file takes effect within a second.
//!
//! One cache serves every static site of the process (a deploy opens a new root, whose entries
//! are new keys); its byte budget bounds memory however many sites there are.

use std::hash::Hash;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quick_cache::Equivalent;
use quick_cache::sync::Cache;

use super::serve::Prepared;

/// Only files up to this size are kept in memory.
pub(crate) const MAX_FILE: u64 = 64 * 1024;
/// What all cached files together may hold.
const BUDGET: u64 = 32 * 1024 * 1024;
/// How long a resolution (index file, precompressed sibling) is trusted before it is redone.
const RESOLVE_TTL: Duration = Duration::from_secs(1);
/// Per-entry cost beyond the file's bytes: key, headers, bookkeeping.
const ENTRY_OVERHEAD: u64 = 512;

static CACHE: LazyLock<Cache<Key, Arc<Entry>, Weight>> =
    LazyLock::new(|| Cache::with_weighter(1024, BUDGET, Weight));

/// The identity of one version of a file: any write, rename over it or delete changes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Version {
        Version {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn of_stat(st: &rustix::fs::Stat) -> Version {
        Version {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        }
    }
}

/// A request as the cache sees it: which root, which path, how it may be encoded.
#[derive(Hash, PartialEq, Eq)]
struct Key {
    root: u64,
    flags: u8,
    path: String,
}

/// The borrowed form of [`Key`], so a lookup allocates nothing. Hashes exactly as `Key` does.
#[derive(Hash)]
pub(crate) struct Lookup<'a> {
    pub(crate) root: u64,
    pub(crate) flags: u8,
    pub(crate) path: &'a str,
}

impl Equivalent<Key> for Lookup<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.root == key.root && self.flags == key.flags && self.path == key.path
    }
}

pub(crate) struct Entry {
    /// The file actually served, relative to the root (an index file, a `.br` sibling).
    pub(crate) file: String,
    pub(crate) version: Version,
    pub(crate) prepared: Prepared,
    pub(crate) body: Bytes,
    resolved_at: Instant,
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Key, Arc<Entry>> for Weight {
    fn weight(&self, key: &Key, val: &Arc<Entry>) -> u64 {
        ENTRY_OVERHEAD + key.path.len() as u64 + val.file.len() as u64 + val.body.len() as u64
    }
}

/// The cached file for this request if it is still current. `stat` is relative to the root.
pub(crate) fn get(
    lookup: &Lookup<'_>,
    stat: impl FnOnce(&str) -> Option<rustix::fs::Stat>,
) -> Option<Arc<Entry>> {
    let entry = CACHE.get(lookup)?;
    if entry.resolved_at.elapsed() > RESOLVE_TTL {
        return None;
    }
    let now = Version::of_stat(&stat(&entry.file)?);
    (now == entry.version).then_some(entry)
}

pub(crate) fn put(
    lookup: &Lookup<'_>,
    file: String,
    version: Version,
    prepared: Prepared,
    body: Bytes,
) -> Arc<Entry> {
    let entry = Arc::new(Entry {
        file,
        version,
        prepared,
        body,
        resolved_at: Instant::now(),
    });
    CACHE.insert(
        Key {
            root: lookup.root,
            flags: lookup.flags,
            path: lookup.path.to_string(),
        },
        entry.clone(),
    );
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, RandomState};

    #[test]
    fn lookup_hashes_like_the_key() {
        let s = RandomState::new();
        let key = Key {
            root: 7,
            flags: 3,
            path: "a/b.html".into(),
        };
        let lookup = Lookup {
            root: 7,
            flags: 3,
            path: "a/b.html",
        };
        assert_eq!(s.hash_one(&key), s.hash_one(&lookup));
        assert!(lookup.equivalent(&key));
    }
}
