//! Many streams over one connection (yamux); either end opens streams.
use tokio::io::{AsyncRead, AsyncWrite};

use crate::LinkError;

/// A stream of a session: tokio `AsyncRead + AsyncWrite + Unpin + Send + 'static`; shutting down
/// its write side tells the other end "end of stream" while it can still be read.
/// (Placeholder type until the yamux session lands.)
pub type Stream = tokio::io::DuplexStream;

/// One multiplexed connection, driven by a task of its own.
pub struct Session {}

impl Session {
    pub fn client<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(_io: T) -> Session {
        unimplemented!()
    }
    pub fn server<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(_io: T) -> Session {
        unimplemented!()
    }
    pub fn split(self) -> (Opener, Incoming) {
        unimplemented!()
    }
}

/// Opens streams; cheap to clone.
#[derive(Clone)]
pub struct Opener {}

impl Opener {
    pub async fn open(&self) -> Result<Stream, LinkError> {
        unimplemented!()
    }
    /// Closes the whole connection (both ends see their streams end).
    pub fn close(&self) {
        unimplemented!()
    }
    pub fn is_closed(&self) -> bool {
        unimplemented!()
    }
    /// Resolves once the connection is gone (closed by either end, or failed).
    pub async fn closed(&self) {
        unimplemented!()
    }
}

/// Streams the other end opens.
pub struct Incoming {}

impl Incoming {
    /// `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<Stream> {
        unimplemented!()
    }
}
