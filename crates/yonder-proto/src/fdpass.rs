//! Passing open file descriptors between processes of one user over a unix
//! socket (`SCM_RIGHTS`), so that bytes can skip a relay process.
//!
//! The daemon listens on a second socket, `fdpass.sock`, next to
//! `daemon.sock` in the same private (0700) runtime directory, and checks the
//! peer's uid besides. Each connection carries one request:
//!
//! ```text
//! proxy  -> daemon   b"S" + [stdin, stdout] fds + message(SessionEnv)
//!                                                   serve HTTP/2 on these fds
//! daemon -> proxy    b"Y" (then holds the socket open while it serves) | b"N"
//!
//! client -> daemon   b"C" + u16 length + "HOST:PORT"   connect for me
//! daemon -> client   b"Y" + [socket fd]  |  b"N" + u16 length + reason
//!
//! client -> daemon   b"X" + message(ExecStart)          run this for me
//! daemon -> client   b"Y" + [stdin, stdout, stderr] fds + u32 pid
//!                  | b"N" + message(ErrorDetail)
//! then, while it runs:
//! client -> daemon   b"K" + i32 signal      (any number of times)
//! daemon -> client   message(ExecExit)      (once, when it has ended)
//! ```
//!
//! `message(M)` is a u32 big-endian length, at most [`MAX_FD_MESSAGE`], then
//! the protobuf encoding of `M`. For `X`, the socket's end of file (the
//! client went away) kills the program, as dropping an `Exec` call does.
//!
//! `yonder server proxy` (what ssh or `podman exec` runs) hands its stdio to
//! the daemon instead of copying every byte through itself; a `yonder
//! forward` on the daemon's own machine receives sockets the daemon connected
//! (so "as seen from the server" still holds, network namespace included)
//! and relays them without an HTTP/2 stream; the SSH bridge on the daemon's
//! machine runs programs (the SFTP server, `ssh HOST cmd`) with their pipes
//! in its own hands, so no byte of theirs crosses the daemon.

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// Request: serve a connection on the two passed fds (read, write).
pub const SERVE: u8 = b'S';
/// Request: connect to the `HOST:PORT` that follows and pass the socket back.
pub const CONNECT: u8 = b'C';
/// Request: run the program of the `ExecStart` that follows and pass its
/// stdio pipes back.
pub const EXEC: u8 = b'X';
/// After [`EXEC`]: send the program the signal (an i32) that follows.
pub const SIGNAL: u8 = b'K';
/// Reply: done.
pub const YES: u8 = b'Y';
/// Reply: refused (for [`CONNECT`], a length-prefixed reason follows).
pub const NO: u8 = b'N';

/// Room for the fds of one message. Messages carry at most three; a message
/// with more is refused. (If a same-user peer sends more than fit here, the
/// kernel truncates and the ones that fit stay open in this process: bounded
/// by this number per hostile message, never a crash.)
const MAX_FDS: usize = 8;

/// Largest length-prefixed message on the socket ([`write_message`]): an
/// `ExecStart` carries a command line and an environment, far below this.
pub const MAX_FD_MESSAGE: usize = 1 << 20;

/// Writes `msg` as a u32 big-endian length and its protobuf encoding.
pub async fn write_message<W, M>(w: &mut W, msg: &M) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    M: prost::Message,
{
    use tokio::io::AsyncWriteExt;
    let body = msg.encode_to_vec();
    if body.len() > MAX_FD_MESSAGE {
        return Err(std::io::Error::other(format!(
            "a {}-byte request is over the {MAX_FD_MESSAGE}-byte limit",
            body.len()
        )));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await
}

/// Reads one message written by [`write_message`]; refuses one announced
/// over [`MAX_FD_MESSAGE`] before reading its body.
pub async fn read_message<R, M>(r: &mut R) -> std::io::Result<M>
where
    R: tokio::io::AsyncRead + Unpin,
    M: prost::Message + Default,
{
    use tokio::io::AsyncReadExt;
    let len = r.read_u32().await? as usize;
    if len > MAX_FD_MESSAGE {
        return Err(std::io::Error::other(format!(
            "a {len}-byte message is over the {MAX_FD_MESSAGE}-byte limit"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    M::decode(body.as_slice()).map_err(|e| std::io::Error::other(format!("malformed message: {e}")))
}

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
    async fn messages_round_trip_and_oversized_ones_are_refused_unread() {
        use tokio::io::AsyncWriteExt;
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let exit = crate::pb::ExecExit {
            code: Some(3),
            signal: None,
        };
        write_message(&mut a, &exit).await.unwrap();
        let got: crate::pb::ExecExit = read_message(&mut b).await.unwrap();
        assert_eq!(got, exit);
        // A length past the cap is refused before any body is read.
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = read_message::<_, crate::pb::ExecExit>(&mut b)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("over the"), "{err}");
        // A body that is not the message is an error, not a panic.
        let mut c = UnixStream::pair().unwrap();
        c.0.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
        assert!(
            read_message::<_, crate::pb::ExecStart>(&mut c.1)
                .await
                .is_err()
        );
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
