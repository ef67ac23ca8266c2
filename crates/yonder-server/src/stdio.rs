//! A byte stream over two inherited file descriptors (a pipe or a socket
//! each): what `yonder server proxy` hands the daemon, so that the daemon
//! reads ssh's (or `podman exec`'s) stdin and writes its stdout itself, with
//! no relay process copying every byte in between.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether `fd` is something the daemon can poll: a pipe or a socket. A
/// terminal (shared with the user's shell) or a regular file is not.
pub fn pollable(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: fstat into a zeroed struct on a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK)
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads from one descriptor, writes to the other.
#[derive(Debug)]
pub struct StdioStream {
    read: AsyncFd<OwnedFd>,
    write: AsyncFd<OwnedFd>,
}

impl StdioStream {
    /// Takes over `read` and `write`, which must be pipes or sockets (see
    /// [`pollable`]); they are switched to non-blocking mode.
    pub fn new(read: OwnedFd, write: OwnedFd) -> std::io::Result<Self> {
        for fd in [&read, &write] {
            if !pollable(fd.as_fd()) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "not a pipe or a socket",
                ));
            }
            set_nonblocking(fd)?;
            // Bigger pipes from sshd or conmon: fewer wake-ups per MiB on
            // both sides. Refused (limits) or not a pipe: no harm done.
            yonder_proto::limits::grow_pipe(fd.as_fd());
        }
        // SAFETY: each OwnedFd is moved into its AsyncFd, which owns it
        // (open, same description, same number) until it is dropped.
        let read = unsafe { AsyncFd::register_with_interest(read, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let write =
            unsafe { AsyncFd::register_with_interest(write, tokio::io::Interest::WRITABLE) }
                .map_err(|e| e.into_parts().1)?;
        Ok(Self { read, write })
    }
}

fn cvt(n: isize) -> std::io::Result<usize> {
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for StdioStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.read.poll_read_ready(cx))?;
            // Not `initialize_unfilled`: h2 hands in its buffer's spare
            // capacity (hundreds of KiB during a transfer), and zeroing it
            // before every read cost more CPU than the read's copy (a profile
            // of `fs put` over ssh: 8.7% of the daemon in memset). read(2)
            // only writes into the buffer, as tokio's own sockets rely on.
            // SAFETY: the bytes are not read here, only written by the kernel.
            let unfilled = unsafe { buf.unfilled_mut() };
            let r = guard.try_io(|fd| {
                // SAFETY: read(2) writes at most `unfilled.len()` bytes there.
                cvt(unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                })
            });
            match r {
                Ok(Ok(n)) => {
                    // SAFETY: read(2) initialised the first `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for StdioStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // writev takes at most IOV_MAX (1024 on Linux) slices.
        let bufs = &bufs[..bufs.len().min(1024)];
        loop {
            let mut guard = ready!(self.write.poll_write_ready(cx))?;
            let r = guard.try_io(|fd| {
                // SAFETY: IoSlice is ABI-compatible with iovec; the count is
                // bounded above.
                cvt(unsafe {
                    libc::writev(
                        fd.as_raw_fd(),
                        bufs.as_ptr().cast(),
                        bufs.len() as libc::c_int,
                    )
                })
            });
            match r {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // End of file for the reader comes when every copy of the write end
        // is closed: ours on drop, the proxy's when it exits.
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_one_pipe_and_writes_the_other() {
        let (in_r, mut in_w) = std::io::pipe().unwrap();
        let (mut out_r, out_w) = std::io::pipe().unwrap();
        let mut s = StdioStream::new(in_r.into(), out_w.into()).unwrap();
        let writer = std::thread::spawn(move || {
            in_w.write_all(&vec![7u8; 1 << 20]).unwrap();
        });
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        writer.join().unwrap();
        assert_eq!(got.len(), 1 << 20);
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            out_r.read_to_end(&mut all).unwrap();
            all
        });
        s.write_all(&vec![9u8; 3 << 20]).await.unwrap();
        drop(s);
        assert_eq!(reader.join().unwrap(), vec![9u8; 3 << 20]);
    }

    #[test]
    fn a_regular_file_is_refused() {
        let f = tempfile::tempfile().unwrap();
        let g = f.try_clone().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _e = rt.enter();
        let e = StdioStream::new(f.into(), g.into()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
    }
}
