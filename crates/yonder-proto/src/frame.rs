//! Length-prefixed frames for the handshake: a 4-byte big-endian length, then
//! that many bytes. The decoder says "need more bytes" (`Ok(None)`) without
//! error and rejects an oversized length before buffering its body.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of the length prefix.
pub const HEADER: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// Appends one frame holding `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut BytesMut) {
    out.reserve(HEADER + payload.len());
    out.put_u32(u32::try_from(payload.len()).expect("frame payload over 4 GiB"));
    out.put_slice(payload);
}

/// Takes one complete frame off the front of `buf`, or returns `Ok(None)` when
/// `buf` does not hold a whole frame yet.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    buf.advance(HEADER);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Reads exactly one frame from `reader` without reading past it (the bytes
/// after the handshake belong to HTTP/2).
pub async fn read_one<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<Bytes> {
    let mut header = [0u8; HEADER];
    reader.read_exact(&mut header).await?;
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            FrameError::TooLarge { len, max },
        ));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(body.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Encoding frames, splitting the bytes at arbitrary points and feeding
        /// the pieces to the decoder gives back the same frames in order.
        #[test]
        fn split_stream_decodes_to_the_same_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            cuts in proptest::collection::vec(0usize..4000, 0..10),
        ) {
            let mut wire = BytesMut::new();
            for f in &frames {
                encode(f, &mut wire);
            }
            let wire = wire.freeze();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.push(wire.len());
            cuts.sort_unstable();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts {
                buf.extend_from_slice(&wire[at..c]);
                at = c;
                while let Some(f) = decode(&mut buf, 1024).unwrap() {
                    got.push(f.to_vec());
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert!(buf.is_empty());
        }

        /// Arbitrary bytes never panic the decoder, and a length over the cap
        /// is refused before the body is buffered.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            loop {
                match decode(&mut buf, 16) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(FrameError::TooLarge { len, max }) => {
                        prop_assert!(len > max);
                        break;
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn read_one_refuses_an_oversized_length_without_allocating_it() {
        let wire = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = read_one(&mut &wire[..], 1024).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("4294967295"), "{err}");
    }
}
