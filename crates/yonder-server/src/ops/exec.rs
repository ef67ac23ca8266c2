//! Running programs: the `Process` service.
//!
//! argv is passed to execve exactly as received: no shell ever re-splits it
//! (the bug that bit distant: joining argv into one string loses quoting).
//! stdout and stderr are read by separate tasks into one bounded queue, so
//! each stream arrives complete and in order; when the client reads slowly
//! the queue fills, the pipes fill, and the program waits: nothing is dropped.

use super::request_path;
use crate::session::SessionEnv;
use bytes::{Bytes, BytesMut};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use yonder_proto::RemoteError;
use yonder_proto::limits::{DATA_CHUNK, STREAM_QUEUE};
use yonder_proto::pb::{self, ErrorKind, exec_input, exec_output, process_server::Process};

type OutStream = Pin<Box<dyn futures::Stream<Item = Result<pb::ExecOutput, Status>> + Send>>;

#[derive(Debug, Default, Clone)]
pub struct ProcessService;

fn out(m: exec_output::Message) -> Result<pb::ExecOutput, Status> {
    Ok(pb::ExecOutput { message: Some(m) })
}

/// The command `start` describes, stdio not yet set.
fn command(
    start: &pb::ExecStart,
    session: Option<&SessionEnv>,
) -> Result<(Command, std::path::PathBuf), RemoteError> {
    let program = request_path(&start.program)?;
    let mut cmd = Command::new(&program);
    cmd.args(start.args.iter().map(|a| OsStr::from_bytes(a)));
    if let Some(env) = session {
        env.apply(&mut cmd);
    }
    if start.clear_env {
        cmd.env_clear();
    }
    for var in &start.env {
        if var.name.is_empty() || var.name.contains(&b'=') || var.name.contains(&0) {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "invalid environment variable name {:?}",
                    String::from_utf8_lossy(&var.name)
                ),
            ));
        }
        cmd.env(OsStr::from_bytes(&var.name), OsStr::from_bytes(&var.value));
    }
    if let Some(cwd) = &start.cwd {
        let cwd = request_path(cwd)?;
        // Check first: a missing cwd and a missing program both surface from
        // spawn as ENOENT, and the user needs to know which one it was.
        match std::fs::metadata(&cwd) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(RemoteError::new(
                    ErrorKind::NotADirectory,
                    "the working directory is not a directory",
                )
                .with_path(&cwd));
            }
            Err(e) => return Err(RemoteError::from_io(&e, &cwd)),
        }
        cmd.current_dir(cwd);
    }
    // Dropping the call (client cancelled, connection lost) kills the program.
    cmd.kill_on_drop(true);
    Ok((cmd, program))
}

fn spawn_error(e: &std::io::Error, program: &std::path::Path) -> RemoteError {
    let mut err = RemoteError::from_io(e, program);
    if err.kind == ErrorKind::NotFound {
        err.message = "no such program (looked up in PATH when it has no slash)".into();
    }
    err
}

fn spawn(start: &pb::ExecStart, session: Option<&SessionEnv>) -> Result<Child, RemoteError> {
    let (mut cmd, program) = command(start, session)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().map_err(|e| spawn_error(&e, &program))
}

async fn pump<R: AsyncRead + Unpin>(
    mut r: R,
    tx: mpsc::Sender<Result<pb::ExecOutput, Status>>,
    wrap: fn(Bytes) -> exec_output::Message,
) {
    loop {
        let mut buf = BytesMut::zeroed(DATA_CHUNK);
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.send(out(wrap(buf.freeze()))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Applies the client's input messages until the client closes its side.
/// Fires `broken` when the client broke the stream (cancelled), which ends
/// the program; a clean close of the client's side only means "no more
/// messages".
async fn feed(
    mut input: Streaming<pb::ExecInput>,
    mut stdin: Option<ChildStdin>,
    signals: mpsc::UnboundedSender<i32>,
    broken: tokio::sync::oneshot::Sender<()>,
) {
    loop {
        let msg = match input.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(_) => {
                let _ = broken.send(());
                return;
            }
        };
        match msg.message {
            Some(exec_input::Message::Stdin(data)) => {
                if let Some(s) = stdin.as_mut()
                    && s.write_all(&data).await.is_err()
                {
                    // The program closed its stdin: further input has nowhere
                    // to go, exactly as with a local pipe.
                    stdin = None;
                }
            }
            Some(exec_input::Message::CloseStdin(_)) => stdin = None,
            // In the stream it waits behind stdin; `Signal` does not.
            Some(exec_input::Message::Signal(sig)) => {
                let _ = signals.send(sig);
            }
            Some(exec_input::Message::Start(_)) | None => {}
        }
    }
}

async fn run(
    mut input: Streaming<pb::ExecInput>,
    session: Option<SessionEnv>,
) -> Result<OutStream, RemoteError> {
    let first = input
        .message()
        .await
        .map_err(|s| RemoteError::from_status(&s))?
        .and_then(|m| m.message);
    let Some(exec_input::Message::Start(start)) = first else {
        return Err(RemoteError::new(
            ErrorKind::InvalidArgument,
            "an exec call must begin with its start message",
        ));
    };
    let mut child = spawn(&start, session.as_ref())?;
    let pid = child.id();
    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel();
    let registered = pid.map(|pid| Registered::new(pid, sig_tx.clone()));
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let stdin = child.stdin.take();
    tokio::spawn(async move {
        let _ = tx
            .send(out(exec_output::Message::StartedPid(pid.unwrap_or(0))))
            .await;
        let o = tokio::spawn(pump(stdout, tx.clone(), exec_output::Message::Stdout));
        let e = tokio::spawn(pump(stderr, tx.clone(), exec_output::Message::Stderr));
        let (broken_tx, mut broken_rx) = tokio::sync::oneshot::channel();
        let feeder = tokio::spawn(feed(input, stdin, sig_tx, broken_tx));
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                Some(sig) = sig_rx.recv() => signal_child(&child, sig),
                Ok(()) = &mut broken_rx => {
                    let _ = child.kill().await;
                    feeder.abort();
                    return;
                }
                // The client went away: stop the program instead of leaving it
                // running with nobody to read its output.
                () = tx.closed() => {
                    let _ = child.kill().await;
                    feeder.abort();
                    return;
                }
            }
        };
        // Reaped: no signal may reach the pid any more.
        drop(registered);
        // Both pipes must reach EOF before the exit message, so no output is
        // ever reported after the exit. A daemonised grandchild holding a pipe
        // open keeps it open; that matches what a local shell shows.
        let _ = o.await;
        let _ = e.await;
        feeder.abort();
        let exit = match status {
            Ok(s) => pb::ExecExit {
                code: s.code(),
                signal: s.signal(),
            },
            Err(err) => {
                let _ = tx
                    .send(Err(RemoteError::new(
                        ErrorKind::Io,
                        format!("waiting for the program: {err}"),
                    )
                    .to_status()))
                    .await;
                return;
            }
        };
        let _ = tx.send(out(exec_output::Message::Exit(exit))).await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Sends `sig` to the program, unless it has been reaped (then its pid may
/// be another process's).
fn signal_child(child: &Child, sig: i32) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on a child of ours that tokio has not reaped
        // (`id()` is None once it has); this task alone waits on it.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Running Exec programs by pid, for [`Process::signal`]: each call's task
/// applies the signals itself, so none is sent after the reap.
static RUNNING: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<u32, mpsc::UnboundedSender<i32>>>,
> = std::sync::LazyLock::new(Default::default);

/// A program's entry in [`RUNNING`], removed when dropped.
struct Registered {
    pid: u32,
    tx: mpsc::UnboundedSender<i32>,
}

impl Registered {
    fn new(pid: u32, tx: mpsc::UnboundedSender<i32>) -> Self {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.insert(pid, tx.clone());
        Self { pid, tx }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        // Only our own entry: the pid may belong to a newer program now.
        if running
            .get(&self.pid)
            .is_some_and(|t| t.same_channel(&self.tx))
        {
            running.remove(&self.pid);
        }
    }
}

#[tonic::async_trait]
impl Process for ProcessService {
    async fn signal(&self, req: Request<pb::SignalRequest>) -> Result<Response<pb::Empty>, Status> {
        let pb::SignalRequest { pid, signal } = req.into_inner();
        let tx = RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pid)
            .cloned();
        match tx {
            Some(tx) if tx.send(signal).is_ok() => Ok(Response::new(pb::Empty {})),
            _ => Err(RemoteError::new(
                ErrorKind::NotFound,
                format!(
                    "no program started by this server runs with pid {pid} (it may have ended)"
                ),
            )
            .to_status()),
        }
    }

    type ExecStream = OutStream;
    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let session = SessionEnv::of(&req);
        Ok(Response::new(run(req.into_inner(), session).await?))
    }
}

/// Starts a program for a client on this machine ([`yonder_proto::fdpass`]'s
/// `X` request) and passes the client its stdin, stdout and stderr pipes:
/// the program's bytes never cross the daemon. The daemon keeps the child,
/// forwards the client's signals, reports the exit, and kills the program
/// when the client goes away (as dropping an `Exec` call does).
pub async fn exec_for_peer(mut conn: tokio::net::UnixStream, id: u64) {
    use std::os::fd::AsFd;
    use yonder_proto::fdpass;
    let start = match tokio::time::timeout(
        crate::daemon::HANDSHAKE_TIMEOUT,
        fdpass::read_message::<_, pb::ExecStart>(&mut conn),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(id, "malformed exec request: {e}");
            return;
        }
        Err(_) => return,
    };
    let started = (|| {
        // A client on this machine: the daemon's own environment.
        let (mut cmd, program) = command(&start, None)?;
        let io = |e: std::io::Error| {
            RemoteError::new(
                ErrorKind::Io,
                format!("cannot make the program's pipes: {e}"),
            )
        };
        let (stdin_r, stdin_w) = yonder_proto::limits::pipe().map_err(io)?;
        let (stdout_r, stdout_w) = yonder_proto::limits::pipe().map_err(io)?;
        let (stderr_r, stderr_w) = yonder_proto::limits::pipe().map_err(io)?;
        cmd.stdin(stdin_r).stdout(stdout_w).stderr(stderr_w);
        let child = cmd.spawn().map_err(|e| spawn_error(&e, &program))?;
        // `cmd` holds the child's ends: they must close here, or the
        // client would never see end of file on the program's output.
        drop(cmd);
        Ok::<_, RemoteError>((child, [stdin_w, stdout_r, stderr_r]))
    })();
    let (mut child, fds) = match started {
        Ok(v) => v,
        Err(err) => {
            tracing::info!(id, "exec for a local client failed: {err}");
            if fdpass::send(&conn, fdpass::NO, &[]).await.is_ok() {
                let _ = fdpass::write_message(&mut conn, &err.to_detail()).await;
            }
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    tracing::info!(
        id,
        pid,
        "started a program whose pipes a local client holds"
    );
    let sent = async {
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        fdpass::send(&conn, fdpass::YES, &borrowed).await?;
        conn.write_u32(pid).await
    };
    if sent.await.is_err() {
        // Gone before it got the pipes: dropping the child kills it.
        return;
    }
    drop(fds);
    let (mut rd, mut wr) = conn.into_split();
    let signals = async {
        loop {
            let mut tag = [0u8; 1];
            match rd.read_exact(&mut tag).await {
                Ok(_) if tag[0] == fdpass::SIGNAL => match rd.read_i32().await {
                    // SAFETY: kill(2) on our own child, not yet reaped
                    // (the wait is in this same task).
                    Ok(sig) => unsafe {
                        libc::kill(pid as i32, sig);
                    },
                    Err(_) => return,
                },
                // End of file, an error, or bytes that are not a request:
                // the client is gone or broken either way.
                _ => return,
            }
        }
    };
    let status = tokio::select! {
        s = child.wait() => s,
        () = signals => {
            tracing::info!(id, pid, "the client went away: program killed");
            let _ = child.kill().await;
            return;
        }
    };
    let exit = match status {
        Ok(s) => pb::ExecExit {
            code: s.code(),
            signal: s.signal(),
        },
        Err(e) => {
            tracing::warn!(id, pid, "waiting for the program: {e}");
            return;
        }
    };
    let _ = fdpass::write_message(&mut wr, &exit).await;
}
