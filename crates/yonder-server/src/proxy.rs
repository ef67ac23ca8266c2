//! `yonder server proxy`: relays its own stdin/stdout to the daemon's socket,
//! starting the daemon first when none runs.
//!
//! This is what an SSH session or `docker exec -i` runs on the target. The
//! proxy is disposable: when the network drops, it dies with its ssh session,
//! and the daemon (with every terminal and process) lives on for the next one.
//! The handshake and HTTP/2 run end to end between the client and the daemon.
//!
//! When its stdin and stdout are pipes or sockets (always, under sshd or
//! `podman exec`), the proxy hands them to the daemon over `fdpass.sock`
//! ([`yonder_proto::fdpass`]) and only waits: the daemon reads and writes
//! them itself, so no byte is copied through this process. Otherwise (or
//! when the daemon declines) it relays them over `daemon.sock`.

use crate::rundir::{RunDir, RunDirError};
use std::path::Path;
use yonder_proto::fdpass;

/// Relay buffer: large enough that a bulk transfer costs few syscalls.
const RELAY_BUFFER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Start(#[from] RunDirError),
    #[error("relaying to the daemon failed: {0}")]
    Relay(std::io::Error),
}

pub async fn run(run: &RunDir, exe: &Path, daemon_args: &[String]) -> Result<(), ProxyError> {
    use std::os::fd::AsFd;
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    if crate::stdio::pollable(stdin.as_fd()) && crate::stdio::pollable(stdout.as_fd()) {
        let mut conn = run.connect_or_start_fdpass(exe, daemon_args).await?;
        match hand_over(&mut conn, stdin.as_fd(), stdout.as_fd()).await {
            // Served: the daemon is done with the connection when it closes
            // this socket (or the proxy is killed with its session).
            Ok(true) => {
                let _ = fdpass::recv(&conn).await;
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => tracing::debug!("handing stdio to the daemon failed, relaying: {e}"),
        }
    }
    let sock = run.connect_or_start(exe, daemon_args).await?;
    // The relay itself is two plain threads doing blocking reads and writes:
    // tokio's stdin/stdout hand every read to its blocking pool, which cost
    // a thread hop per chunk on the hottest path of every SSH transfer.
    let sock = sock.into_std().map_err(ProxyError::Relay)?;
    sock.set_nonblocking(false).map_err(ProxyError::Relay)?;
    tokio::task::spawn_blocking(move || relay(sock))
        .await
        .map_err(|e| ProxyError::Relay(std::io::Error::other(e.to_string())))?
        .map_err(ProxyError::Relay)
}

/// A connection to the daemon on this machine that carries this process's
/// environment as its session's, as a proxy's does: one end of a socket
/// pair is handed over as a proxy hands its stdio, the other is returned.
/// So programs a local client starts see the environment of the shell that
/// ran it, not the one that once started the daemon. `None` when the
/// daemon declines (an older one): connect to its socket instead.
pub async fn session_stream(
    run: &RunDir,
    exe: &Path,
    daemon_args: &[String],
) -> Result<Option<HandedStream>, ProxyError> {
    use std::os::fd::AsFd;
    let mut conn = run.connect_or_start_fdpass(exe, daemon_args).await?;
    let (ours, theirs) = tokio::net::UnixStream::pair().map_err(ProxyError::Relay)?;
    let handed = hand_over(&mut conn, theirs.as_fd(), theirs.as_fd())
        .await
        .map_err(ProxyError::Relay)?;
    Ok(handed.then(|| HandedStream::new(ours, conn)))
}

/// The client's end of a connection handed to the daemon, keeping the fd
/// socket open: the daemon watches it to know the client is still there.
pub type HandedStream =
    yonder_proto::guarded::Guarded<tokio::net::UnixStream, tokio::net::UnixStream>;

/// Sends stdin, stdout and this session's environment to the daemon;
/// `false` if it declined them.
async fn hand_over(
    conn: &mut tokio::net::UnixStream,
    stdin: std::os::fd::BorrowedFd<'_>,
    stdout: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<bool> {
    fdpass::send(conn, fdpass::SERVE, &[stdin, stdout]).await?;
    fdpass::write_message(conn, &crate::session::SessionEnv::current()).await?;
    match fdpass::recv(conn).await? {
        Some((fdpass::YES, _)) => Ok(true),
        Some(_) => Ok(false),
        None => Err(std::io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Copies stdin to `sock` and `sock` to stdout until the daemon closes its
/// side. Our stdin reaching end of file only half-closes the socket, since
/// replies may still be on their way.
fn relay(sock: std::os::unix::net::UnixStream) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    // Duplicates of fds 0 and 1 as plain Files: unbuffered, and closing a
    // duplicate leaves the original alone.
    let stdin = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let mut stdout = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    let mut up_sock = sock.try_clone()?;
    std::thread::spawn(move || {
        let _ = pump(stdin, &mut up_sock);
        let _ = up_sock.shutdown(std::net::Shutdown::Write);
    });
    pump(sock, &mut stdout)
}

/// Chunks in flight between the reading and the writing thread of one
/// direction: reading the next chunk overlaps writing the last one.
const PIPELINE: usize = 4;

/// Copies `from` to `to` until end of file, reading on a helper thread so
/// that reads and writes overlap (a plain read-then-write loop cut the
/// download rate over ssh by almost half). Buffers go back to the reader
/// after their write, so a transfer allocates (and zeroes) `PIPELINE + 1`
/// buffers in all instead of one per read.
fn pump<R, W>(mut from: R, to: &mut W) -> std::io::Result<()>
where
    R: std::io::Read + Send + 'static,
    W: std::io::Write + ?Sized,
{
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(PIPELINE);
    let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPELINE + 1);
    std::thread::spawn(move || {
        loop {
            let mut buf = free_rx
                .try_recv()
                .unwrap_or_else(|_| vec![0u8; RELAY_BUFFER]);
            match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.send(Ok((buf, n))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    for chunk in rx {
        let (buf, n) = chunk?;
        to.write_all(&buf[..n])?;
        // Full means the reader has spares already: drop this one.
        let _ = free_tx.try_send(buf);
    }
    to.flush()
}
