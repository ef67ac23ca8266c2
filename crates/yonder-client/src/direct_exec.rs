//! Programs whose pipes the client holds, for a daemon on this machine.
//!
//! [`Client::exec`] carries a program's stdin, stdout and stderr over
//! HTTP/2 through the daemon. When the client reached the daemon through its
//! unix socket (`local`, or a dev container through its shared folder), the
//! daemon can instead start the program with plain pipes and pass the
//! client their other ends over `fdpass.sock` ([`yonder_proto::fdpass`]):
//! the bytes then go straight between the client and the program, as
//! between sshd and the programs it runs. The daemon still owns the child:
//! it forwards signals, reports the exit, and kills the program when the
//! client drops [`DirectProcess`].

use crate::{Client, ExecRequest, ExitStatus, Result};
use std::io;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::pipe;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;
use yonder_proto::pb::{self, ErrorKind};
use yonder_proto::{RemoteError, fdpass};

/// A running program started by [`Client::exec_direct`]. Dropping it (and
/// every [`DirectControl`] cloned from it) kills the program.
#[derive(Debug)]
pub struct DirectProcess {
    pub pid: u32,
    /// The program's stdin; drop it to close the program's input.
    pub stdin: Option<pipe::Sender>,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    control: DirectControl,
    exit: OwnedReadHalf,
}

/// Sends signals to a [`DirectProcess`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct DirectControl {
    conn: Arc<Mutex<OwnedWriteHalf>>,
}

impl DirectControl {
    /// Sends `signal` to the program (a no-op once it has ended).
    pub async fn signal(&self, signal: i32) -> Result<()> {
        let mut msg = [0u8; 5];
        msg[0] = fdpass::SIGNAL;
        msg[1..].copy_from_slice(&signal.to_be_bytes());
        self.conn
            .lock()
            .await
            .write_all(&msg)
            .await
            .map_err(|e| lost("sending a signal to the program", &e))
    }
}

fn lost(what: &str, e: &io::Error) -> RemoteError {
    RemoteError::new(
        ErrorKind::Io,
        format!("{what}: the connection to the daemon failed: {e}"),
    )
}

impl DirectProcess {
    pub fn control(&self) -> DirectControl {
        self.control.clone()
    }

    /// Waits until the program has ended and says how. (Its output pipes may
    /// still hold bytes: read them to end of file first.)
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let exit: pb::ExecExit = fdpass::read_message(&mut self.exit).await.map_err(|e| {
            RemoteError::new(
                ErrorKind::Io,
                format!("the daemon did not report how the program ended: {e}"),
            )
        })?;
        Ok(ExitStatus {
            code: exit.code,
            signal: exit.signal,
        })
    }
}

impl Client {
    /// Starts `req` with its pipes in this process's hands (see the module
    /// docs). `Ok(None)` when this client has no such path (a daemon behind
    /// ssh, another user's daemon): the caller then uses [`Client::exec`].
    /// Errors are the program's (missing, not executable, bad directory),
    /// as [`Client::exec`] reports them.
    pub async fn exec_direct(&self, req: &ExecRequest) -> Result<Option<DirectProcess>> {
        let Some(path) = self.fdpass.as_deref() else {
            return Ok(None);
        };
        let Ok(mut conn) = UnixStream::connect(path).await else {
            return Ok(None);
        };
        let io = |e: io::Error| lost("starting a program", &e);
        fdpass::send(&conn, fdpass::EXEC, &[]).await.map_err(io)?;
        fdpass::write_message(&mut conn, &req.to_wire())
            .await
            .map_err(io)?;
        let fds = match fdpass::recv(&conn).await.map_err(io)? {
            Some((fdpass::YES, fds)) => fds,
            Some((_, _)) => {
                let detail: pb::ErrorDetail = fdpass::read_message(&mut conn).await.map_err(io)?;
                return Err(RemoteError::from_detail(detail));
            }
            // Closed without an answer: the daemon does not take requests
            // from us (another user); `exec` still works.
            None => return Ok(None),
        };
        let [stdin, stdout, stderr] = <[_; 3]>::try_from(fds).map_err(|fds: Vec<_>| {
            io(io::Error::other(format!(
                "{} file descriptors came back instead of 3",
                fds.len()
            )))
        })?;
        let pid = {
            use tokio::io::AsyncReadExt;
            conn.read_u32().await.map_err(io)?
        };
        let (exit, write) = conn.into_split();
        Ok(Some(DirectProcess {
            pid,
            stdin: Some(pipe::Sender::from_owned_fd(stdin).map_err(io)?),
            stdout: pipe::Receiver::from_owned_fd(stdout).map_err(io)?,
            stderr: pipe::Receiver::from_owned_fd(stderr).map_err(io)?,
            control: DirectControl {
                conn: Arc::new(Mutex::new(write)),
            },
            exit,
        }))
    }
}
