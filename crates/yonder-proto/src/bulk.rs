//! The bulk channel: whole files moved on a session of their own, beside
//! the HTTP/2 connection, for large `fs put` and `fs get` over SSH.
//!
//! Over SSH every byte of the main connection pays for HTTP/2 framing, a
//! copy out of and into tonic's messages, and a hop through the remote
//! daemon. For a big file the client instead asks yonder's ssh master for
//! one more session running `yonder server bulk` on the target (as the
//! user, like every session), and the file's bytes go between the file and
//! that session's pipes with `sendfile(2)`/`splice(2)`: no copy through user
//! space on the side that reads the file, one (into the page cache) on the
//! side that writes it. scp, which now speaks SFTP, copies through user space
//! on both sides and splits the file into 32 KiB requests.
//!
//! On the session's stdin and stdout, after nothing else (the remote
//! program prints nothing of its own; a login shell's noise goes to stderr
//! or precedes `exec`, see below):
//!
//! ```text
//! server: MAGIC (first, whatever the request)
//! client: message(BulkRequest { path, write: false })
//! server: message(BulkReply { metadata })  then exactly metadata.size bytes
//!      or message(BulkReply { error })     and exit
//!
//! client: message(BulkRequest { path, write: true, size, mode })
//!         then exactly `size` bytes
//! server: message(BulkReply { metadata }) after the file was renamed into place
//!      or message(BulkReply { error })    (possibly before all bytes were read)
//! ```
//!
//! Text a login shell prints before it runs the server is skipped up to
//! [`MAGIC`]. A message is a u32 big-endian length and its protobuf encoding, at most
//! [`MAX_MESSAGE`] bytes (refused before reading the body). A write goes to
//! a temp file next to the destination that is renamed over it only once
//! all `size` bytes arrived: a cut connection leaves the old file as it
//! was. A read sends the size it found when it opened the file; a file that
//! shrinks meanwhile ends the session early, which the client reports.

use crate::pb;
use prost::Message;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};

/// What the server writes first on stdout, before its reply: a login
/// shell may print text of its own before it runs the server (a `.bashrc`
/// that echoes), which the client skips up to this line ([`skip_to_magic`]).
pub const MAGIC: &[u8] = b"\nYONDER-BULK-1\n";

/// Most bytes of shell noise skipped before [`MAGIC`].
pub const MAX_NOISE: usize = 64 * 1024;

/// Reads `r` up to and including [`MAGIC`] (one byte per read: nothing
/// after it is consumed). Fails after [`MAX_NOISE`] bytes without it, or at
/// end of file.
pub fn skip_to_magic(r: &mut impl Read) -> io::Result<()> {
    let mut seen = Vec::with_capacity(MAGIC.len());
    let mut total = 0usize;
    let mut b = [0u8; 1];
    while !seen.ends_with(MAGIC) {
        r.read_exact(&mut b)?;
        total += 1;
        if total > MAX_NOISE + MAGIC.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no bulk channel greeting in the first {MAX_NOISE} bytes"),
            ));
        }
        seen.push(b[0]);
        if seen.len() > MAGIC.len() {
            seen.remove(0);
        }
    }
    Ok(())
}

/// Largest request or reply: a path and a few numbers.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Files from this size up go through the bulk channel when there is one;
/// below it the cost of one more ssh session (a few milliseconds) is not
/// worth it.
pub const MIN_SIZE: u64 = 8 << 20;

/// Into a file, writeback of what was written so far starts after every
/// this many bytes (`sync_file_range(SYNC_FILE_RANGE_WRITE)`: started, not
/// waited for). The file is renamed over its destination at the end, and
/// ext4 then flushes every dirty page of it before the rename returns (its
/// `auto_da_alloc` safety for programs that do not fsync): 0.4 s of a
/// 2.6 s 1 GiB download here. Started early, that writeback overlaps the
/// transfer instead.
const FLUSH_EVERY: u64 = 8 << 20;

/// Bytes one `sendfile`/`splice` call may move, and the buffer of the
/// read/write fallback: between progress updates.
const CHUNK: usize = 4 << 20;

/// Writes `msg` as a u32 big-endian length and its protobuf encoding.
pub fn write_message(w: &mut impl Write, msg: &impl Message) -> io::Result<()> {
    let body = msg.encode_to_vec();
    if body.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a {}-byte message is over the {MAX_MESSAGE}-byte limit",
                body.len()
            ),
        ));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one message written by [`write_message`], exactly: not a byte of
/// what follows it (so `r` must not be a buffered reader that reads ahead).
pub fn read_message<M: Message + Default>(r: &mut impl Read) -> io::Result<M> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {len}-byte message is over the {MAX_MESSAGE}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    M::decode(body.as_slice()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed message: {e}"),
        )
    })
}

/// A reply carrying `err`.
pub fn error_reply(err: &crate::RemoteError) -> pb::BulkReply {
    pb::BulkReply {
        error: Some(err.to_detail()),
        metadata: None,
    }
}

/// How [`move_bytes`] moved the data (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `sendfile(2)` from a regular file.
    Sendfile,
    /// `splice(2)` from a pipe into a file.
    Splice,
    /// `read(2)` and `write(2)` through a buffer.
    Copy,
}

/// The file type bits of `fd` (`S_IFREG`, `S_IFIFO`, ...); 0 when fstat fails.
fn file_type(fd: BorrowedFd<'_>) -> libc::mode_t {
    // SAFETY: fstat into a zeroed struct on a descriptor the caller holds.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return 0;
    }
    st.st_mode & libc::S_IFMT
}

fn is_file(fd: BorrowedFd<'_>) -> bool {
    file_type(fd) == libc::S_IFREG
}

/// One kernel-side transfer of at most `len` bytes; `Ok(0)` at end of file.
fn kernel_move(
    method: Method,
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    loop {
        // SAFETY: plain descriptors the caller holds; null offsets use and
        // advance the files' own positions.
        let n = unsafe {
            match method {
                Method::Sendfile => {
                    libc::sendfile(to.as_raw_fd(), from.as_raw_fd(), std::ptr::null_mut(), len)
                }
                Method::Splice => libc::splice(
                    from.as_raw_fd(),
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    len,
                    libc::SPLICE_F_MOVE,
                ),
                Method::Copy => unreachable!("not a kernel transfer"),
            }
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Moves exactly `len` bytes from `from` to `to` (both blocking), calling
/// `progress` with each step's byte count. `sendfile` when `from` is a
/// regular file, `splice` from a pipe into a regular file, a buffered copy
/// otherwise or where the kernel refuses the first call (`EINVAL`, e.g. a
/// file system without splice support). Fails with `UnexpectedEof` when
/// `from` ends early.
pub fn move_bytes(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    len: u64,
    mut progress: impl FnMut(u64),
) -> io::Result<Method> {
    let mut method = if is_file(from) {
        Method::Sendfile
    } else if file_type(from) == libc::S_IFIFO && is_file(to) {
        Method::Splice
    } else {
        Method::Copy
    };
    let flush_every = if is_file(to) { FLUSH_EVERY } else { 0 };
    let mut unflushed = 0u64;
    let mut left = len;
    let mut buf = Vec::new();
    let mut first = true;
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        let n = if method == Method::Copy {
            if buf.is_empty() {
                buf = vec![0u8; CHUNK];
            }
            let n = retry(|| {
                // SAFETY: a read into a live buffer of at least `want` bytes.
                let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), want) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            })?;
            write_all(to, &buf[..n])?;
            n
        } else {
            match kernel_move(method, from, to, want) {
                Err(e)
                    if first && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) =>
                {
                    method = Method::Copy;
                    continue;
                }
                r => r?,
            }
        };
        first = false;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the data ended after {} of {len} bytes", len - left),
            ));
        }
        left -= n as u64;
        progress(n as u64);
        if flush_every > 0 {
            unflushed += n as u64;
            if unflushed >= flush_every {
                // SAFETY: a hint on a descriptor the caller holds; offset 0
                // and nbytes 0 mean the whole file, and pages under
                // writeback already are skipped.
                unsafe { libc::sync_file_range(to.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
                unflushed = 0;
            }
        }
    }
    Ok(method)
}

fn retry(mut f: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

fn write_all(to: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: a write from a live slice to a descriptor the caller holds.
        let n = unsafe { libc::write(to.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n as usize..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_file_goes_through_a_pipe_into_a_file_and_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let want = data((9 << 20) + 123);
        std::fs::write(&src, &want).unwrap();
        let (r, w) = std::io::pipe().unwrap();
        let f = std::fs::File::open(&src).unwrap();
        let len = want.len() as u64;
        let sender = std::thread::spawn(move || {
            let mut seen = 0;
            let m = move_bytes(f.as_fd(), w.as_fd(), len, |n| seen += n).unwrap();
            (m, seen)
        });
        let out = std::fs::File::create(dir.path().join("dst")).unwrap();
        let m = move_bytes(r.as_fd(), out.as_fd(), len, |_| {}).unwrap();
        assert_eq!(m, Method::Splice);
        assert_eq!(sender.join().unwrap(), (Method::Sendfile, len));
        assert!(std::fs::read(dir.path().join("dst")).unwrap() == want);
    }

    #[test]
    fn a_short_source_is_an_error_not_a_short_file() {
        let (r, mut w) = std::io::pipe().unwrap();
        w.write_all(b"only this").unwrap();
        drop(w);
        let (r2, w2) = std::io::pipe().unwrap();
        let e = move_bytes(r.as_fd(), w2.as_fd(), 100, |_| {}).unwrap_err();
        drop(r2);
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("after 9 of 100 bytes"), "{e}");
    }

    #[test]
    fn shell_noise_before_the_greeting_is_skipped_and_bounded() {
        let mut out = b"Welcome!\nlast login...\n".to_vec();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(b"reply");
        let mut r = out.as_slice();
        skip_to_magic(&mut r).unwrap();
        assert_eq!(r, b"reply");
        let mut r = MAGIC;
        skip_to_magic(&mut r).unwrap();
        let noise = vec![b'x'; MAX_NOISE + 100];
        assert!(skip_to_magic(&mut noise.as_slice()).is_err());
        assert!(skip_to_magic(&mut &b"short"[..]).is_err());
    }

    #[test]
    fn messages_are_exact_and_bounded() {
        let req = pb::BulkRequest {
            path: bytes::Bytes::from_static(b"/a/b"),
            write: true,
            size: 7,
            mode: Some(0o644),
            offset: 0,
        };
        let mut buf = Vec::new();
        write_message(&mut buf, &req).unwrap();
        buf.extend_from_slice(b"rawdata");
        let mut r = buf.as_slice();
        let got: pb::BulkRequest = read_message(&mut r).unwrap();
        assert_eq!(got, req);
        assert_eq!(r, b"rawdata", "nothing after the message was consumed");
        let huge = ((MAX_MESSAGE + 1) as u32).to_be_bytes();
        let e = read_message::<pb::BulkRequest>(&mut &huge[..]).unwrap_err();
        assert!(e.to_string().contains("over the"), "{e}");
        let e =
            read_message::<pb::BulkRequest>(&mut &[0, 0, 0, 3, 0xff, 0xff, 0xff][..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
