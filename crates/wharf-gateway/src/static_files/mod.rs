//! Static sites served by the gateway itself, no process behind them.
//!
//! The pipeline, one module per step:
//! 1. `path`: the request path is decoded and its dot segments removed; a `..` above the root,
//!    encoded slashes, backslashes, NUL and hidden segments are refused before the file system
//!    is touched.
//! 2. `resolve`: nginx's `try_files $uri $uri/ $uri/index.html =404` over the site root, a
//!    containment check on the real path (symlinks may not lead out of the root unless the site
//!    follows links outside it), and the choice of a precompressed `.br`/`.gz` sibling.
//! 3. `conditional`: `If-None-Match` / `If-Modified-Since` → 304.
//! 4. `serve`: single `Range` → 206/416, then the reply (HEAD without body).
//!
//! `cache` keeps small files and their prepared headers; a hit skips steps 2–3's file system
//! work but one `stat` that proves the file unchanged.
//!
//! File system calls are synchronous on the worker for small files: on a warm page cache they
//! take microseconds, which costs less than a hop to the blocking pool per call. Files larger
//! than [`serve::INLINE_MAX`] are streamed from the blocking pool.

mod cache;
mod conditional;
mod path;
mod resolve;
mod serve;

pub(crate) use path::sanitize;
pub(crate) use serve::StaticSite;
