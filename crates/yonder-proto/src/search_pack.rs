//! The packed form of search results (`SearchResults.packed`).
//!
//! A search matching a million lines spent more of the daemon's time
//! building, encoding and freeing one protobuf message per line (a path
//! copy, a line copy, a vector of ranges, two encoding passes) than finding
//! the lines. A batch is therefore one byte string of records written
//! straight from the search's buffer, and the path of a file is written once
//! per batch rather than once per line:
//!
//! ```text
//! PATH     0x01 len:varint path-bytes           the file of the lines that follow
//! MATCH    0x02 line_number:varint n:varint (start:varint len:varint)×n
//!               len:varint line-bytes           a matching line and its match ranges
//! CONTEXT  0x03 line_number:varint len:varint line-bytes
//! ```
//!
//! Varints are protobuf's (LEB128). Ranges are byte offsets into the line,
//! the line is without its terminator. Decoding returns the lines as slices
//! of the received buffer, without copying them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{decode_varint, encode_varint};

const PATH: u8 = 1;
const MATCH: u8 = 2;
const CONTEXT: u8 = 3;

/// A packed batch that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("packed search results end in the middle of a record")]
    Truncated,
    #[error("packed search results hold an unknown record kind {0}")]
    UnknownRecord(u8),
    #[error("packed search results have a line before any path")]
    NoPath,
    #[error("packed search results have a match range {start}+{len} outside its line")]
    BadRange { start: u64, len: u64 },
}

/// Writes one batch.
#[derive(Debug, Default)]
pub struct PackWriter {
    buf: BytesMut,
    /// The path of the last PATH record in `buf`.
    path: Vec<u8>,
}

impl PackWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn set_path(&mut self, path: &[u8]) {
        if self.buf.is_empty() || self.path != path {
            self.buf.put_u8(PATH);
            encode_varint(path.len() as u64, &mut self.buf);
            self.buf.put_slice(path);
            self.path.clear();
            self.path.extend_from_slice(path);
        }
    }

    /// A matching line with the byte ranges of its matches.
    pub fn push_match(
        &mut self,
        path: &[u8],
        line_number: u64,
        line: &[u8],
        ranges: &[(u32, u32)],
    ) {
        self.set_path(path);
        self.buf.reserve(line.len() + 32 + 10 * ranges.len());
        self.buf.put_u8(MATCH);
        encode_varint(line_number, &mut self.buf);
        encode_varint(ranges.len() as u64, &mut self.buf);
        for &(start, end) in ranges {
            encode_varint(u64::from(start), &mut self.buf);
            encode_varint(u64::from(end.saturating_sub(start)), &mut self.buf);
        }
        encode_varint(line.len() as u64, &mut self.buf);
        self.buf.put_slice(line);
    }

    /// A context line around a match.
    pub fn push_context(&mut self, path: &[u8], line_number: u64, line: &[u8]) {
        self.set_path(path);
        self.buf.reserve(line.len() + 16);
        self.buf.put_u8(CONTEXT);
        encode_varint(line_number, &mut self.buf);
        encode_varint(line.len() as u64, &mut self.buf);
        self.buf.put_slice(line);
    }

    /// The batch written so far; the writer starts a new one (which names
    /// its first path again).
    pub fn take(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

/// One line read back from a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedLine {
    pub path: Bytes,
    pub line_number: u64,
    pub line: Bytes,
    /// `(start, end)` byte offsets in `line`; empty for context lines.
    pub ranges: Vec<(u32, u32)>,
    pub is_context: bool,
}

/// Reads the lines of a batch in order.
#[derive(Debug)]
pub struct Unpack {
    buf: Bytes,
    path: Option<Bytes>,
    failed: bool,
}

/// The lines of a batch written by [`PackWriter`]; an error ends it.
pub fn unpack(buf: Bytes) -> Unpack {
    Unpack {
        buf,
        path: None,
        failed: false,
    }
}

fn varint(buf: &mut Bytes) -> Result<u64, PackError> {
    decode_varint(buf).map_err(|_| PackError::Truncated)
}

fn bytes(buf: &mut Bytes) -> Result<Bytes, PackError> {
    let len = varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(PackError::Truncated);
    }
    Ok(buf.split_to(len as usize))
}

impl Unpack {
    fn record(&mut self) -> Result<Option<PackedLine>, PackError> {
        loop {
            if !self.buf.has_remaining() {
                return Ok(None);
            }
            let kind = self.buf.get_u8();
            if kind == PATH {
                self.path = Some(bytes(&mut self.buf)?);
                continue;
            }
            if kind != MATCH && kind != CONTEXT {
                return Err(PackError::UnknownRecord(kind));
            }
            let path = self.path.clone().ok_or(PackError::NoPath)?;
            let line_number = varint(&mut self.buf)?;
            let mut ranges = Vec::new();
            if kind == MATCH {
                let n = varint(&mut self.buf)?;
                // Each range takes at least two bytes: a bogus count cannot
                // make this allocate more than the batch's size.
                if n > self.buf.remaining() as u64 / 2 {
                    return Err(PackError::Truncated);
                }
                ranges.reserve(n as usize);
                for _ in 0..n {
                    let start = varint(&mut self.buf)?;
                    let len = varint(&mut self.buf)?;
                    ranges.push((start, len));
                }
            }
            let line = bytes(&mut self.buf)?;
            let ranges = ranges
                .into_iter()
                .map(|(start, len)| {
                    let end = start.saturating_add(len);
                    if end > line.len() as u64 {
                        Err(PackError::BadRange { start, len })
                    } else {
                        Ok((start as u32, end as u32))
                    }
                })
                .collect::<Result<_, _>>()?;
            return Ok(Some(PackedLine {
                path,
                line_number,
                line,
                ranges,
                is_context: kind == CONTEXT,
            }));
        }
    }
}

impl Iterator for Unpack {
    type Item = Result<PackedLine, PackError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.record().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(path: &[u8], n: u64, text: &[u8], ranges: Vec<(u32, u32)>) -> PackedLine {
        PackedLine {
            path: Bytes::copy_from_slice(path),
            line_number: n,
            line: Bytes::copy_from_slice(text),
            is_context: ranges.is_empty(),
            ranges,
        }
    }

    fn write(w: &mut PackWriter, l: &PackedLine) {
        if l.is_context {
            w.push_context(&l.path, l.line_number, &l.line);
        } else {
            w.push_match(&l.path, l.line_number, &l.line, &l.ranges);
        }
    }

    #[test]
    fn a_path_is_written_once_per_run_of_lines_and_per_batch() {
        let mut w = PackWriter::new();
        let a = line(b"/t/a.txt", 1, b"hello", vec![(0, 5)]);
        let b = line(b"/t/a.txt", 2, b"ctx", vec![]);
        let c = line(b"/t/b\xff.txt", 7, b"x hello hello", vec![(2, 7), (8, 13)]);
        for l in [&a, &b, &c] {
            write(&mut w, l);
        }
        let batch = w.take();
        assert_eq!(batch.windows(8).filter(|w| w == b"/t/a.txt").count(), 1);
        let got: Vec<_> = unpack(batch).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![a.clone(), b, c]);
        // The next batch names its path again.
        write(&mut w, &a);
        assert!(!w.is_empty());
        let got: Vec<_> = unpack(w.take()).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![a]);
        assert!(w.is_empty());
    }

    #[test]
    fn malformed_batches_are_errors_not_panics() {
        let cases: &[(&[u8], PackError)] = &[
            (b"\x02\x01\x00\x00", PackError::NoPath),
            (b"\x09", PackError::UnknownRecord(9)),
            (b"\x01\x05ab", PackError::Truncated),
            (
                b"\x01\x01a\x02\x01\x01\x00\x05\x02hi",
                PackError::BadRange { start: 0, len: 5 },
            ),
            (
                b"\x01\x01a\x02\x01\xff\xff\xff\xff\x0f",
                PackError::Truncated,
            ),
            (b"\x01\x01a\x03\x01\x09hi", PackError::Truncated),
        ];
        for (bytes, want) in cases {
            let mut it = unpack(Bytes::from_static(bytes));
            assert_eq!(it.next(), Some(Err(want.clone())), "{bytes:?}");
            assert_eq!(it.next(), None, "an error ends the batch");
        }
    }

    fn any_line() -> impl Strategy<Value = PackedLine> {
        (
            prop::sample::select(vec![&b"/a"[..], b"/b/c.rs", b"/n\xff"]),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..40),
            prop::collection::vec((0u32..40, 0u32..40), 0..4),
        )
            .prop_map(|(p, n, text, raw)| {
                let len = text.len() as u32;
                let ranges: Vec<_> = raw
                    .into_iter()
                    .map(|(a, b)| (a.min(b).min(len), a.max(b).min(len)))
                    .collect();
                line(p, n, &text, ranges)
            })
    }

    proptest! {
        // Any lines, split into batches anywhere, read back the same.
        #[test]
        fn round_trip(lines in prop::collection::vec(any_line(), 0..30), cut in 0usize..30) {
            let mut w = PackWriter::new();
            let mut batches = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                if i == cut {
                    batches.push(w.take());
                }
                write(&mut w, l);
            }
            batches.push(w.take());
            let mut got = Vec::new();
            for b in batches {
                for l in unpack(b) {
                    got.push(l.unwrap());
                }
            }
            prop_assert_eq!(got, lines);
        }

        // Garbage never panics and never yields more lines than it could hold.
        #[test]
        fn garbage_is_survived(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let n = unpack(Bytes::from(bytes.clone())).take(1000).count();
            prop_assert!(n <= bytes.len());
        }
    }
}
