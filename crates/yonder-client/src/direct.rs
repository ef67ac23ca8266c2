//! Forwarded connections without a tunnel, for a daemon on this machine.
//!
//! When the client reached the daemon through its unix socket, the daemon
//! can connect to `HOST:PORT` itself (as seen from the server: its network
//! namespace, its resolver) and pass the connected socket back over
//! `fdpass.sock` ([`yonder_proto::fdpass`]). The client then joins it to the
//! local connection with `splice(2)`: bytes move between the two sockets in
//! the kernel, with no HTTP/2 framing and no copy through user space.

use crate::forward::Relayed;
use crate::{Client, Result};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use yonder_proto::pb::ErrorKind;
use yonder_proto::{RemoteError, fdpass};

/// Bytes one `splice` call may move: as much as the pipe between the two
/// sockets holds (its size is raised to this where the system allows).
const SPLICE_CHUNK: usize = yonder_proto::limits::PIPE_SIZE as usize;

impl Client {
    /// The daemon's fd socket, when this client can use it (see the module
    /// docs).
    pub fn with_fdpass(mut self, path: std::path::PathBuf) -> Self {
        self.fdpass = Some(std::sync::Arc::new(path));
        self
    }

    /// Connects to `host:port` as seen from the server and returns the
    /// socket itself; `Ok(None)` when this client has no direct path (the
    /// caller then uses [`Client::dial`]).
    pub async fn dial_direct(&self, host: &str, port: u16) -> Result<Option<TcpStream>> {
        let Some(path) = self.fdpass.as_deref() else {
            return Ok(None);
        };
        let Ok(mut conn) = UnixStream::connect(path).await else {
            return Ok(None);
        };
        let target = yonder_proto::host_port(host, port);
        let io = |e: io::Error| {
            RemoteError::new(
                ErrorKind::Io,
                format!("asking the daemon to connect to {target}: {e}"),
            )
        };
        fdpass::send(&conn, fdpass::CONNECT, &[])
            .await
            .map_err(io)?;
        let len = u16::try_from(target.len())
            .map_err(|_| RemoteError::new(ErrorKind::InvalidArgument, "host name too long"))?;
        conn.write_u16(len).await.map_err(io)?;
        conn.write_all(target.as_bytes()).await.map_err(io)?;
        match fdpass::recv(&conn).await.map_err(io)? {
            Some((fdpass::YES, fds)) => {
                let fd = fds
                    .into_iter()
                    .next()
                    .ok_or_else(|| io(io::Error::other("no socket came back")))?;
                let sock = std::net::TcpStream::from(fd);
                sock.set_nonblocking(true).map_err(io)?;
                Ok(Some(TcpStream::from_std(sock).map_err(io)?))
            }
            Some((_, _)) => {
                let len = conn.read_u16().await.map_err(io)?;
                let mut reason = vec![0u8; usize::from(len)];
                conn.read_exact(&mut reason).await.map_err(io)?;
                Err(RemoteError::new(
                    ErrorKind::Io,
                    String::from_utf8_lossy(&reason).into_owned(),
                ))
            }
            // Closed without an answer: the daemon does not take requests
            // from us (another user); the tunnel still works.
            None => Ok(None),
        }
    }
}

/// A pipe between two sockets, for `splice`.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        // A bigger pipe means fewer calls; the default (64 KiB) still works.
        let (read, write) = yonder_proto::limits::pipe()?;
        Ok(Self { read, write })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: plain fds, null offsets (sockets and a pipe).
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
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

/// Moves bytes from `from` to `to` until end of file, then shuts down
/// `to`'s writing (half-close travels on). Blocking: it runs on its own
/// thread, which sleeps in the kernel between chunks, with no readiness
/// round trip through the runtime per chunk.
fn splice_one_way(from: &std::net::TcpStream, to: &std::net::TcpStream) -> io::Result<u64> {
    let pipe = Pipe::new()?;
    let mut total = 0u64;
    loop {
        let n = splice(from.as_raw_fd(), pipe.write.as_raw_fd(), SPLICE_CHUNK)?;
        if n == 0 {
            let _ = to.shutdown(std::net::Shutdown::Write);
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            left -= splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left)?;
        }
        total += n as u64;
    }
}

/// Stack of a relay thread: it holds a few locals, no buffers.
const RELAY_STACK: usize = 64 * 1024;

/// Joins two connected sockets both ways until both have reached end of
/// file, honouring half-close each way. Each direction is a thread; on an
/// error both sockets are shut down, which ends the other direction too.
pub async fn relay_sockets(a: TcpStream, b: TcpStream) -> io::Result<Relayed> {
    let (a, b) = (a.into_std()?, b.into_std()?);
    a.set_nonblocking(false)?;
    b.set_nonblocking(false)?;
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    let one_way = move |from: std::net::TcpStream, to: std::net::TcpStream| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("yonder-relay".into())
            .stack_size(RELAY_STACK)
            .spawn(move || {
                let r = splice_one_way(&from, &to);
                if r.is_err() {
                    let _ = from.shutdown(std::net::Shutdown::Both);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                }
                let _ = tx.send(r);
            });
        (spawned, rx)
    };
    let (up, up_rx) = one_way(a, b);
    up?;
    let (down, down_rx) = one_way(b2, a2);
    down?;
    let gone = || io::Error::other("relay thread ended without a result");
    let sent = up_rx.await.map_err(|_| gone())??;
    let received = down_rx.await.map_err(|_| gone())??;
    Ok(Relayed { sent, received })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close() {
        let (mut left, left_inner) = pair().await;
        let (right_inner, mut right) = pair().await;
        let relay = tokio::spawn(relay_sockets(left_inner, right_inner));
        let data: Vec<u8> = (0..(5u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
        let up = data.clone();
        let w = tokio::spawn(async move {
            left.write_all(&up).await.unwrap();
            left.shutdown().await.unwrap();
            // Half-closed: the other direction still works.
            let mut back = Vec::new();
            left.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        right.read_to_end(&mut got).await.unwrap();
        assert!(got == data, "upload arrived intact");
        right.write_all(b"reply after eof").await.unwrap();
        right.shutdown().await.unwrap();
        assert_eq!(w.await.unwrap(), b"reply after eof");
        let r = relay.await.unwrap().unwrap();
        assert_eq!(r.sent, data.len() as u64);
        assert_eq!(r.received, 15);
    }
}
