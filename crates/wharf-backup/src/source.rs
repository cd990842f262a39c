//! What a backup reads. The engine skips a file it cannot read and still saves the snapshot
//! (as restic does, with a warning); for us a backup with holes is a failed backup, so every
//! source goes through [`Tracked`], which notes each read error for the caller to act on.
//! [`StreamSource`] makes one file of a byte stream (a database dump).

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{ReadSource, ReadSourceEntry, ReadSourceOpen, RusticResult};

/// The read errors seen during one backup.
#[derive(Clone, Default)]
pub(crate) struct Problems(Arc<Mutex<Vec<String>>>);

impl Problems {
    fn add(&self, problem: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(problem);
    }

    /// All problems, or `None` if there were none; long lists are cut.
    pub(crate) fn summary(&self) -> Option<String> {
        let list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if list.is_empty() {
            return None;
        }
        let mut text = list.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
        if list.len() > 5 {
            text.push_str(&format!("; and {} more", list.len() - 5));
        }
        Some(text)
    }
}

/// A source whose read errors are noted in [`Problems`].
pub(crate) struct Tracked<S> {
    inner: S,
    problems: Problems,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, problems: Problems) -> Self {
        Tracked { inner, problems }
    }
}

impl<S> ReadSource for Tracked<S>
where
    S: ReadSource,
    S::Iter: Send,
    S::Open: Send,
{
    type Open = TrackedOpen<S::Open>;
    type Iter = TrackedIter<S::Iter>;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        TrackedIter {
            inner: self.inner.entries(),
            problems: self.problems.clone(),
        }
    }
}

pub(crate) struct TrackedIter<I> {
    inner: I,
    problems: Problems,
}

impl<I, O> Iterator for TrackedIter<I>
where
    I: Iterator<Item = RusticResult<ReadSourceEntry<O>>>,
{
    type Item = RusticResult<ReadSourceEntry<TrackedOpen<O>>>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.inner.next()? {
            Err(err) => {
                self.problems.add(err.display_log());
                Err(err)
            }
            Ok(ReadSourceEntry { path, node, open }) => Ok(ReadSourceEntry {
                open: open.map(|inner| TrackedOpen {
                    inner,
                    path: path.clone(),
                    problems: self.problems.clone(),
                }),
                path,
                node,
            }),
        })
    }
}

pub(crate) struct TrackedOpen<O> {
    inner: O,
    path: PathBuf,
    problems: Problems,
}

impl<O: ReadSourceOpen> ReadSourceOpen for TrackedOpen<O> {
    type Reader = TrackedReader<O::Reader>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self.inner.open() {
            Ok(inner) => Ok(TrackedReader {
                inner,
                path: self.path,
                problems: self.problems,
            }),
            Err(err) => {
                self.problems
                    .add(format!("{}: {}", self.path.display(), err.display_log()));
                Err(err)
            }
        }
    }
}

pub(crate) struct TrackedReader<R> {
    inner: R,
    path: PathBuf,
    problems: Problems,
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|err| {
            if err.kind() != io::ErrorKind::Interrupted {
                self.problems
                    .add(format!("reading {}: {err}", self.path.display()));
            }
        })
    }
}

/// One file, named `path`, whose bytes arrive over a channel: the caller's reader is neither
/// `Send` nor `'static`, so the caller's thread reads it and feeds the backup's threads.
pub(crate) struct StreamSource {
    path: PathBuf,
    mtime: jiff::Timestamp,
    /// The file's size when known up front. The archiver does not record the size it read,
    /// and restic's `restore` writes a file of the recorded size (`dump` reads the content).
    size: Option<u64>,
    rx: Mutex<Option<Receiver<io::Result<Vec<u8>>>>>,
}

impl StreamSource {
    /// The source and the sending end for the bytes (an `Err` ends the stream as failed).
    pub(crate) fn new(
        path: PathBuf,
        mtime: jiff::Timestamp,
        size: Option<u64>,
    ) -> (StreamSource, SyncSender<io::Result<Vec<u8>>>) {
        // A few chunks in flight: enough to keep the chunker busy, little memory.
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let source = StreamSource {
            path,
            mtime,
            size,
            rx: Mutex::new(Some(rx)),
        };
        (source, tx)
    }
}

impl ReadSource for StreamSource {
    type Open = ChannelReader;
    type Iter = std::option::IntoIter<RusticResult<ReadSourceEntry<ChannelReader>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let name = self.path.file_name().unwrap_or(self.path.as_os_str());
        let meta = Metadata {
            mtime: Some(self.mtime),
            mode: Some(0o600),
            size: self.size.unwrap_or(0),
            ..Metadata::default()
        };
        let node = Node::new_node(name, NodeType::File, meta);
        Some(Ok(ReadSourceEntry {
            path: self.path.clone(),
            node,
            open: rx.map(|rx| ChannelReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
            }),
        }))
        .into_iter()
    }
}

pub(crate) struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(err)) => return Err(err),
                // The sender is gone: the stream ended.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
