//! Terminal calls (see the `Terminal` service in the schema).
//!
//! A terminal lives on the server; a [`TerminalSession`] is one attachment to
//! it. Dropping the session detaches (the shell keeps running); attach again
//! with [`Client::attach_terminal`], optionally from the last offset you saw
//! to receive exactly the bytes you missed.

use crate::{Client, ExitStatus, Result, remote};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use yonder_proto::RemoteError;
use yonder_proto::limits::STREAM_QUEUE;
use yonder_proto::paths::to_wire;
use yonder_proto::pb::{self, ErrorKind, terminal_input, terminal_output};

pub use yonder_proto::pb::TerminalInfo;

/// What to run in a new terminal.
#[derive(Debug, Clone, Default)]
pub struct OpenTerminal {
    /// `None`: the user's login shell.
    pub program: Option<std::path::PathBuf>,
    pub args: Vec<std::ffi::OsString>,
    pub cwd: Option<std::path::PathBuf>,
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    pub rows: u16,
    pub cols: u16,
}

/// One thing a terminal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalEvent {
    /// Output starting at absolute byte `offset`.
    Data {
        offset: u64,
        data: Bytes,
    },
    /// This client fell behind by more than the scrollback: bytes dropped.
    Lost(u64),
    Exit(ExitStatus),
}

/// Sends input and resizes to a terminal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TerminalWriter {
    tx: mpsc::Sender<pb::TerminalInput>,
}

impl TerminalWriter {
    async fn send(&self, m: terminal_input::Message) -> Result<()> {
        self.tx
            .send(pb::TerminalInput { message: Some(m) })
            .await
            .map_err(|_| {
                RemoteError::new(ErrorKind::Cancelled, "the terminal attachment has ended")
            })
    }
    /// Input, as if typed.
    pub async fn write(&self, data: impl Into<Bytes>) -> Result<()> {
        self.send(terminal_input::Message::Data(data.into())).await
    }
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        self.send(terminal_input::Message::Resize(pb::TerminalSize {
            rows: rows.into(),
            cols: cols.into(),
        }))
        .await
    }
}

/// One client's attachment to a terminal.
pub struct TerminalSession {
    /// The terminal as it was when this attachment began.
    pub info: TerminalInfo,
    writer: TerminalWriter,
    output: tonic::Streaming<pb::TerminalOutput>,
    done: bool,
}

impl std::fmt::Debug for TerminalSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalSession")
            .field("id", &self.info.id)
            .finish()
    }
}

impl TerminalSession {
    pub fn writer(&self) -> TerminalWriter {
        self.writer.clone()
    }

    /// The next event; `None` after the exit. An error means the connection
    /// was lost: the terminal itself keeps running on the server.
    pub async fn next(&mut self) -> Option<Result<TerminalEvent>> {
        crate::next_until_exit(
            &mut self.output,
            &mut self.done,
            "the terminal stream ended without an exit status",
            |m| match m.message {
                Some(terminal_output::Message::Data(d)) => Some((
                    TerminalEvent::Data {
                        offset: d.offset,
                        data: d.data,
                    },
                    false,
                )),
                Some(terminal_output::Message::Lost(n)) => Some((TerminalEvent::Lost(n), false)),
                Some(terminal_output::Message::Exit(e)) => Some((
                    TerminalEvent::Exit(ExitStatus {
                        code: e.code,
                        signal: e.signal,
                    }),
                    true,
                )),
                Some(terminal_output::Message::Attached(_)) | None => None,
            },
        )
        .await
    }
}

impl Client {
    /// Starts a terminal on the server; attach to see it.
    pub async fn open_terminal(&self, req: OpenTerminal) -> Result<TerminalInfo> {
        use std::os::unix::ffi::OsStrExt;
        let b = |s: &std::ffi::OsStr| Bytes::copy_from_slice(s.as_bytes());
        let req = pb::OpenTerminalRequest {
            program: req.program.as_deref().map(to_wire).unwrap_or_default(),
            args: req.args.iter().map(|a| b(a)).collect(),
            cwd: req.cwd.as_deref().map(to_wire),
            env: crate::env_to_wire(&req.env),
            size: Some(pb::TerminalSize {
                rows: req.rows.max(1).into(),
                cols: req.cols.max(1).into(),
            }),
        };
        Ok(self
            .terminal
            .clone()
            .open(req)
            .await
            .map_err(remote)?
            .into_inner())
    }

    /// Attaches to a terminal: the retained output from `from_offset` (or
    /// all of it), then live output.
    pub async fn attach_terminal(
        &self,
        id: &str,
        from_offset: Option<u64>,
    ) -> Result<TerminalSession> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let attach = pb::AttachTerminal {
            id: id.to_string(),
            from_offset,
        };
        tx.send(pb::TerminalInput {
            message: Some(terminal_input::Message::Attach(attach)),
        })
        .await
        .expect("receiver alive");
        let mut output = self
            .terminal
            .clone()
            .attach(ReceiverStream::new(rx))
            .await
            .map_err(remote)?
            .into_inner();
        let info = match output.message().await.map_err(remote)? {
            Some(pb::TerminalOutput {
                message: Some(terminal_output::Message::Attached(info)),
            }) => info,
            _ => {
                return Err(RemoteError::new(
                    ErrorKind::Internal,
                    "the server did not confirm the attachment",
                ));
            }
        };
        Ok(TerminalSession {
            info,
            writer: TerminalWriter { tx },
            output,
            done: false,
        })
    }

    pub async fn list_terminals(&self) -> Result<Vec<TerminalInfo>> {
        self.retrying(|| {
            let mut t = self.terminal.clone();
            async move {
                t.list(pb::ListTerminalsRequest {})
                    .await
                    .map(|r| r.into_inner().terminals)
            }
        })
        .await
    }

    /// Ends a terminal: `signal` 0 sends SIGHUP (then SIGKILL if it lingers).
    pub async fn kill_terminal(&self, id: &str, signal: i32) -> Result<()> {
        self.terminal
            .clone()
            .kill(pb::KillTerminalRequest {
                id: id.to_string(),
                signal,
            })
            .await
            .map_err(remote)?;
        Ok(())
    }
}
