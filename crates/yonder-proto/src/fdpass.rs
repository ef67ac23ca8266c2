//! Passing open file descriptors between processes of one user over a unix
//! socket (`SCM_RIGHTS`), so that bytes can skip a relay process.
//!
//! The daemon listens on a second socket, `fdpass.sock`, next to
//! `daemon.sock` in the same private (0700) runtime directory, and checks the
//! peer's uid besides. Each connection carries one request:
//!
//! ```text
//! proxy  -> daemon   b"S" + [stdin, stdout] fds   serve HTTP/2 on these fds
//! daemon -> proxy    b"Y" (then holds the socket open while it serves) | b"N"
//!
//! client -> daemon   b"C" + u16 length + "HOST:PORT"   connect for me
//! daemon -> client   b"Y" + [socket fd]  |  b"N" + u16 length + reason
//! ```
//!
//! `yonder server proxy` (what ssh or `podman exec` runs) hands its stdio to
//! the daemon instead of copying every byte through itself; a `yonder
//! forward` on the daemon's own machine receives sockets the daemon connected
//! (so "as seen from the server" still holds, network namespace included)
//! and relays them without an HTTP/2 stream.

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// Request: serve a connection on the two passed fds (read, write).
pub const SERVE: u8 = b'S';
/// Request: connect to the `HOST:PORT` that follows and pass the socket back.
pub const CONNECT: u8 = b'C';
/// Reply: done.
pub const YES: u8 = b'Y';
/// Reply: refused (for [`CONNECT`], a length-prefixed reason follows).
pub const NO: u8 = b'N';

/// Room for the fds of one message. Requests carry at most two; a message
/// with more is refused. (If a same-user peer sends more than fit here, the
/// kernel truncates and the ones that fit stay open in this process: bounded
/// by this number per hostile message, never a crash.)
const MAX_FDS: usize = 8;

/// Sends `byte` with `fds` attached as one message.
pub async fn send(sock: &UnixStream, byte: u8, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let buf = [byte];
    loop {
        sock.writable().await?;
        let r = sock.try_io(Interest::WRITABLE, || {
            let iov = [IoSlice::new(&buf)];
            let cmsg = [ControlMessage::ScmRights(&raw)];
            let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
            sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
                .map_err(std::io::Error::from)
        });
        match r {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(std::io::ErrorKind::WriteZero.into()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Receives one byte and the fds sent with it (close-on-exec). `None` at end
/// of file.
pub async fn recv(sock: &UnixStream) -> std::io::Result<Option<(u8, Vec<OwnedFd>)>> {
    loop {
        sock.readable().await?;
        let r = sock.try_io(Interest::READABLE, || {
            let mut byte = [0u8; 1];
            let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
            let mut iov = [IoSliceMut::new(&mut byte)];
            let msg = recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let mut fds = Vec::new();
            // Own every fd first, so that any error path closes them.
            let truncated = match msg.cmsgs() {
                Ok(cmsgs) => {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            for fd in raw {
                                // SAFETY: the kernel just installed `fd` in
                                // our table for us; nothing else owns it.
                                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                            }
                        }
                    }
                    false
                }
                Err(_) => true,
            };
            if truncated {
                return Err(std::io::Error::other(
                    "more file descriptors than a yonder request carries",
                ));
            }
            Ok((msg.bytes, byte[0], fds))
        });
        match r {
            Ok((0, _, _)) => return Ok(None),
            Ok((_, b, fds)) => return Ok(Some((b, fds))),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The uid of the process at the other end of `sock`.
pub fn peer_uid(sock: &UnixStream) -> std::io::Result<u32> {
    Ok(sock.peer_cred()?.uid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[tokio::test]
    async fn fds_cross_a_socket_and_stay_usable() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut r, mut w) = std::io::pipe().unwrap();
        send(&a, SERVE, &[r.as_fd(), w.as_fd()]).await.unwrap();
        let (byte, fds) = recv(&b).await.unwrap().unwrap();
        assert_eq!(byte, SERVE);
        assert_eq!(fds.len(), 2);
        // Writing through the received write end reaches the original reader.
        let mut w2 = std::fs::File::from(fds.into_iter().nth(1).unwrap());
        w2.write_all(b"hi").unwrap();
        drop(w2);
        w.write_all(b"!").unwrap();
        drop(w);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi!");
    }

    #[tokio::test]
    async fn a_plain_byte_and_end_of_file() {
        let (a, b) = UnixStream::pair().unwrap();
        send(&a, NO, &[]).await.unwrap();
        let (byte, fds) = recv(&b).await.unwrap().unwrap();
        assert_eq!((byte, fds.len()), (NO, 0));
        drop(a);
        assert!(recv(&b).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn too_many_fds_are_refused_and_closed() {
        let (a, b) = UnixStream::pair().unwrap();
        let pipes: Vec<_> = (0..12).map(|_| std::io::pipe().unwrap()).collect();
        let fds: Vec<BorrowedFd> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
        send(&a, SERVE, &fds).await.unwrap();
        assert!(recv(&b).await.is_err());
    }
}
