//! Frames: a 4-byte big-endian length, then that many bytes of JSON (at most 16 MiB).
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::LinkError;

pub async fn write_msg<T: Serialize>(
    _w: &mut (impl AsyncWrite + Unpin),
    _msg: &T,
) -> Result<(), LinkError> {
    unimplemented!()
}

/// `None` at a clean end of stream before a frame.
pub async fn read_msg<T: DeserializeOwned>(
    _r: &mut (impl AsyncRead + Unpin),
) -> Result<Option<T>, LinkError> {
    unimplemented!()
}
