//! Frames: a 4-byte big-endian length, then that many bytes of JSON (at most 16 MiB).
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::LinkError;

/// The largest frame body either end writes or accepts: a frame says its length first, and a
/// peer must not make the other end allocate without bound.
pub const MAX_FRAME: usize = 16 << 20;

/// Writes `msg` as one frame and flushes it.
pub async fn write_msg<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> Result<(), LinkError> {
    // One buffer, so the length and body go out in one write.
    let mut buf = vec![0; 4];
    serde_json::to_writer(&mut buf, msg).map_err(|source| LinkError::Json {
        what: "encoding a message".into(),
        source,
    })?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(LinkError::FrameTooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    w.write_all(&buf)
        .await
        .map_err(LinkError::io("writing a frame"))?;
    w.flush().await.map_err(LinkError::io("writing a frame"))
}

/// `None` at a clean end of stream before a frame.
pub async fn read_msg<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> Result<Option<T>, LinkError> {
    read_msg_within(r, MAX_FRAME).await
}

/// [`read_msg`] for a frame that is small by nature (what a peer sends before it is known,
/// such as an enrolment's request): at most `max` bytes are taken in.
pub async fn read_msg_within<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Option<T>, LinkError> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        let n = r
            .read(&mut head[got..])
            .await
            .map_err(LinkError::io("reading a frame"))?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(LinkError::TruncatedFrame)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > max.min(MAX_FRAME) {
        return Err(LinkError::FrameTooLarge {
            len,
            max: max.min(MAX_FRAME),
        });
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            LinkError::TruncatedFrame
        } else {
            LinkError::io("reading a frame")(e)
        }
    })?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|source| LinkError::Json {
            what: "a frame is not a valid message".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roundtrip_then_clean_end() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &("hello", 7)).await.unwrap();
        write_msg(&mut buf, &vec![1u8; 3]).await.unwrap();
        let mut r = &buf[..];
        let a: (String, u32) = read_msg(&mut r).await.unwrap().unwrap();
        assert_eq!(a, ("hello".to_string(), 7));
        let b: Vec<u8> = read_msg(&mut r).await.unwrap().unwrap();
        assert_eq!(b, vec![1, 1, 1]);
        assert!(read_msg::<Vec<u8>>(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_length_over_the_limit_is_refused_before_reading_the_body() {
        let mut r = &((MAX_FRAME as u32) + 1).to_be_bytes()[..];
        let err = read_msg::<String>(&mut r).await.unwrap_err();
        assert!(matches!(err, LinkError::FrameTooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains("over the limit of 16777216 bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_small_frame_reader_refuses_more_and_says_its_own_limit() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &"a".repeat(100)).await.unwrap();
        let err = read_msg_within::<String>(&mut &buf[..], 64)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("over the limit of 64 bytes"),
            "{err}"
        );
        let back: String = read_msg_within(&mut &buf[..], 128).await.unwrap().unwrap();
        assert_eq!(back.len(), 100);
    }

    #[tokio::test]
    async fn the_limit_itself_is_allowed_and_one_more_byte_is_not() {
        // A JSON string of n chars encodes as n + 2 bytes.
        let fits = "a".repeat(MAX_FRAME - 2);
        let mut buf = Vec::new();
        write_msg(&mut buf, &fits).await.unwrap();
        assert_eq!(buf.len(), MAX_FRAME + 4);
        let back: String = read_msg(&mut &buf[..]).await.unwrap().unwrap();
        assert_eq!(back.len(), fits.len());

        let over = "a".repeat(MAX_FRAME - 1);
        let mut buf = Vec::new();
        let err = write_msg(&mut buf, &over).await.unwrap_err();
        assert!(matches!(err, LinkError::FrameTooLarge { len, .. } if len == MAX_FRAME + 1));
        assert!(buf.is_empty(), "nothing is written for a refused frame");
    }

    #[tokio::test]
    async fn an_end_inside_a_frame_is_an_error_not_a_clean_end() {
        for cut in [1, 3, 4, 6] {
            let mut buf = Vec::new();
            write_msg(&mut buf, &"hello").await.unwrap();
            buf.truncate(cut);
            let err = read_msg::<String>(&mut &buf[..]).await.unwrap_err();
            assert!(
                matches!(err, LinkError::TruncatedFrame),
                "cut at {cut}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_the_message_says_so() {
        let mut buf = 3u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"{x}");
        let err = read_msg::<String>(&mut &buf[..]).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("a frame is not a valid message"),
            "{err}"
        );
    }
}
