//! The yonder client library: a typed async API over one connection.
//!
//! A [`Client`] wraps one byte stream to a yonder server (a unix socket, a
//! child's stdio, loopback TCP) after the handshake. Many calls may run at
//! once on it; each is its own HTTP/2 stream with its own flow control, so a
//! bulk transfer never delays a small request. Dropping a call's future (or a
//! stream it returned) cancels the call on the server: a read stops, a write
//! leaves the file untouched, a process is killed.
//!
//! Every failure of an operation is a [`RemoteError`] with a stable kind and
//! the path it concerns.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};
use yonder_proto::handshake::{self, HandshakeError};
use yonder_proto::limits::{
    CONNECTION_WINDOW, DATA_CHUNK, MAX_MESSAGE, STREAM_QUEUE, STREAM_WINDOW,
};
use yonder_proto::paths::{from_wire, to_wire};
use yonder_proto::pb::{
    self, ErrorKind, exec_input, exec_output, forward_client::ForwardClient, fs_client::FsClient,
    process_client::ProcessClient, search_client::SearchClient, system_client::SystemClient,
    terminal_client::TerminalClient, watch_client::WatchClient,
};

pub mod forward;
pub mod search;
pub mod terminal;
pub mod tree;
pub mod watch;

pub use yonder_proto::RemoteError;
pub use yonder_proto::pb::{DirEntry, FileType, Metadata, SystemInfo, WriteReply};

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// Largest HTTP/2 frame we accept from the server: the data chunk size.
const MAX_FRAME: u32 = 256 * 1024;

/// How long the server has to answer the handshake. Covers starting the
/// daemon on a slow remote; a peer that never answers fails instead of
/// hanging.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/2 keep-alive: notices a dead link even while no call is active.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {endpoint}: {source}")]
    Io {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("{endpoint}: {source}")]
    Handshake {
        endpoint: String,
        source: HandshakeError,
    },
    #[error("{endpoint}: cannot start the protocol: {source}")]
    Transport {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

/// What the server said about itself in the handshake.
#[derive(Debug, Clone)]
pub struct ServerHello {
    pub yonder_version: String,
    pub protocol_version: u32,
    pub capabilities: Vec<String>,
}

/// A connection to a yonder server. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct Client {
    fs: FsClient<Channel>,
    process: ProcessClient<Channel>,
    system: SystemClient<Channel>,
    pub(crate) terminal: TerminalClient<Channel>,
    pub(crate) watch: WatchClient<Channel>,
    pub(crate) search: SearchClient<Channel>,
    pub(crate) forward: ForwardClient<Channel>,
    hello: Arc<ServerHello>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.hello)
            .finish()
    }
}

pub(crate) fn remote(s: tonic::Status) -> RemoteError {
    RemoteError::from_status(&s)
}

/// Options for [`Client::write`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Only write if the file is still at this version (from
    /// [`Metadata::version`]); `Some("")` means "only if it does not exist".
    pub if_version: Option<String>,
    /// Mode for a new file (through the umask); existing files keep theirs.
    pub mode: Option<u32>,
    pub create_parents: bool,
    /// Skip the fsync before the atomic rename (bulk copies, like cp and
    /// rsync); the default is durable.
    pub skip_fsync: bool,
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn as_shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        }
    }
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A program to run with [`Client::exec`].
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub program: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    pub clear_env: bool,
    pub cwd: Option<PathBuf>,
}

impl ExecRequest {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            ..Default::default()
        }
    }
    pub fn arg(mut self, a: impl Into<std::ffi::OsString>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = A>, A: Into<std::ffi::OsString>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
}

/// One thing a running program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(ExitStatus),
}

/// Sends input and signals to a running program. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProcessControl {
    input: mpsc::Sender<pb::ExecInput>,
}

impl ProcessControl {
    async fn send(&self, m: exec_input::Message) -> Result<()> {
        self.input
            .send(pb::ExecInput { message: Some(m) })
            .await
            .map_err(|_| RemoteError::new(ErrorKind::Cancelled, "the program's call has ended"))
    }
    pub async fn write_stdin(&self, data: Bytes) -> Result<()> {
        self.send(exec_input::Message::Stdin(data)).await
    }
    pub async fn close_stdin(&self) -> Result<()> {
        self.send(exec_input::Message::CloseStdin(pb::Empty {}))
            .await
    }
    pub async fn signal(&self, signal: i32) -> Result<()> {
        self.send(exec_input::Message::Signal(signal)).await
    }
}

/// A program running on the server. Dropping it kills the program.
pub struct RemoteProcess {
    pub pid: u32,
    control: ProcessControl,
    output: tonic::Streaming<pb::ExecOutput>,
    exited: bool,
}

impl std::fmt::Debug for RemoteProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteProcess")
            .field("pid", &self.pid)
            .finish()
    }
}

/// Everything a program wrote, and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

impl RemoteProcess {
    pub fn control(&self) -> ProcessControl {
        self.control.clone()
    }

    /// The next output chunk or the exit; `None` after the exit.
    pub async fn next_event(&mut self) -> Option<Result<ProcessEvent>> {
        if self.exited {
            return None;
        }
        loop {
            let msg = match self.output.message().await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    self.exited = true;
                    return Some(Err(RemoteError::new(
                        ErrorKind::Io,
                        "the connection ended before the program's exit status arrived",
                    )));
                }
                Err(s) => {
                    self.exited = true;
                    return Some(Err(remote(s)));
                }
            };
            return Some(Ok(match msg.message {
                Some(exec_output::Message::Stdout(b)) => ProcessEvent::Stdout(b),
                Some(exec_output::Message::Stderr(b)) => ProcessEvent::Stderr(b),
                Some(exec_output::Message::Exit(e)) => {
                    self.exited = true;
                    ProcessEvent::Exit(ExitStatus {
                        code: e.code,
                        signal: e.signal,
                    })
                }
                Some(exec_output::Message::StartedPid(_)) | None => continue,
            }));
        }
    }

    /// Closes stdin and collects all output until the exit.
    pub async fn output(mut self) -> Result<Output> {
        let _ = self.control.close_stdin().await;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(ev) = self.next_event().await {
            match ev? {
                ProcessEvent::Stdout(b) => stdout.extend_from_slice(&b),
                ProcessEvent::Stderr(b) => stderr.extend_from_slice(&b),
                ProcessEvent::Exit(status) => {
                    return Ok(Output {
                        stdout,
                        stderr,
                        status,
                    });
                }
            }
        }
        Err(RemoteError::new(ErrorKind::Io, "no exit status"))
    }
}

/// A stream of values from a server-streaming call.
pub struct RemoteStream<T> {
    inner: Pin<Box<dyn Stream<Item = Result<T>> + Send>>,
}

impl<T> std::fmt::Debug for RemoteStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteStream")
    }
}

impl<T> Stream for RemoteStream<T> {
    type Item = Result<T>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Client {
    /// Runs the handshake on `stream` and starts the protocol on it. `token`
    /// is the listener's secret (TCP) or empty (unix sockets, stdio).
    pub async fn over_stream<S>(
        mut stream: S,
        token: &[u8],
        endpoint: &str,
    ) -> Result<Self, ConnectError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let reply = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake::client(&mut stream, token))
            .await
            .map_err(|_| ConnectError::Handshake {
                endpoint: endpoint.into(),
                source: HandshakeError::Refused(format!(
                    "no handshake reply within {HANDSHAKE_TIMEOUT:?}"
                )),
            })?
            .map_err(|source| ConnectError::Handshake {
                endpoint: endpoint.into(),
                source,
            })?;
        // tonic dials through a connector; ours hands over the one stream we
        // already have. A later redial finds the slot empty and fails, which
        // surfaces as "connection lost" on the calls instead of a silent
        // reconnect to who knows what.
        let slot = Arc::new(Mutex::new(Some(stream)));
        let connector = tower::service_fn(move |_: Uri| {
            let s = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            async move {
                s.map(TokioIo::new).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the connection to the yonder server was lost",
                    )
                })
            }
        });
        let channel = Endpoint::from_static("http://yonder.invalid")
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            // Let the server send a whole 256 KiB data chunk as one frame
            // instead of sixteen 16 KiB ones (HTTP/2's default).
            .max_frame_size(MAX_FRAME)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_with_connector(connector)
            .await
            .map_err(|source| ConnectError::Transport {
                endpoint: endpoint.into(),
                source,
            })?;
        let hello = Arc::new(ServerHello {
            yonder_version: reply.yonder_version,
            protocol_version: reply.protocol_version,
            capabilities: reply.capabilities,
        });
        Ok(Self {
            fs: FsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            process: ProcessClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            system: SystemClient::new(channel.clone()),
            terminal: TerminalClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            watch: WatchClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
            search: SearchClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            forward: ForwardClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            hello,
        })
    }

    /// Connects to a daemon's unix socket.
    pub async fn connect_unix(path: &Path) -> Result<Self, ConnectError> {
        let endpoint = path.display().to_string();
        let s = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| ConnectError::Io {
                endpoint: endpoint.clone(),
                source,
            })?;
        Self::over_stream(s, &[], &endpoint).await
    }

    /// Connects to a daemon's TCP listener with its token.
    pub async fn connect_tcp(
        addr: std::net::SocketAddr,
        token: &[u8],
    ) -> Result<Self, ConnectError> {
        let endpoint = addr.to_string();
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Io {
                endpoint: endpoint.clone(),
                source,
            })?;
        let _ = s.set_nodelay(true);
        Self::over_stream(s, token, &endpoint).await
    }

    pub fn server(&self) -> &ServerHello {
        &self.hello
    }

    // ------------------------------------------------------------ system

    pub async fn info(&self) -> Result<SystemInfo> {
        Ok(self
            .system
            .clone()
            .info(pb::InfoRequest {})
            .await
            .map_err(remote)?
            .into_inner())
    }

    // ------------------------------------------------------------ files

    /// Describes `path`; a final symlink is described, not followed, unless
    /// `follow` is set.
    pub async fn stat(&self, path: impl AsRef<Path>, follow: bool) -> Result<Metadata> {
        let req = pb::StatRequest {
            path: to_wire(path.as_ref()),
            follow_symlinks: follow,
        };
        Ok(self
            .fs
            .clone()
            .stat(req)
            .await
            .map_err(remote)?
            .into_inner())
    }

    /// Streams a directory's entries as the server reads them.
    pub async fn list_dir(
        &self,
        path: impl AsRef<Path>,
        with_metadata: bool,
    ) -> Result<RemoteStream<DirEntry>> {
        let req = pb::ListDirRequest {
            path: to_wire(path.as_ref()),
            with_metadata,
        };
        let s = self
            .fs
            .clone()
            .list_dir(req)
            .await
            .map_err(remote)?
            .into_inner();
        let s = s.flat_map(|batch| {
            let items: Vec<Result<DirEntry>> = match batch {
                Ok(b) => b.entries.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(remote(e))],
            };
            futures::stream::iter(items)
        });
        Ok(RemoteStream { inner: Box::pin(s) })
    }

    /// All entries of a directory.
    pub async fn read_dir(
        &self,
        path: impl AsRef<Path>,
        with_metadata: bool,
    ) -> Result<Vec<DirEntry>> {
        let mut s = self.list_dir(path, with_metadata).await?;
        let mut out = Vec::new();
        while let Some(e) = s.next().await {
            out.push(e?);
        }
        Ok(out)
    }

    /// Streams a file's bytes from `offset`, `length` bytes or to the end.
    pub async fn read(
        &self,
        path: impl AsRef<Path>,
        offset: u64,
        length: Option<u64>,
    ) -> Result<RemoteStream<Bytes>> {
        let req = pb::ReadRequest {
            path: to_wire(path.as_ref()),
            offset,
            length,
        };
        let s = self
            .fs
            .clone()
            .read(req)
            .await
            .map_err(remote)?
            .into_inner();
        Ok(RemoteStream {
            inner: Box::pin(s.map(|c| c.map(|c| c.data).map_err(remote))),
        })
    }

    /// A whole file in memory.
    pub async fn read_to_vec(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let mut s = self.read(path, 0, None).await?;
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    /// Replaces `path` atomically with the bytes of `data`. If `data` yields
    /// an error, the call is cancelled and the file stays as it was.
    pub async fn write<S>(
        &self,
        path: impl AsRef<Path>,
        opts: WriteOptions,
        data: S,
    ) -> Result<WriteReply>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let path = path.as_ref().to_path_buf();
        let (tx, rx) = mpsc::channel::<pb::WriteMessage>(STREAM_QUEUE);
        let start = pb::WriteMessage {
            message: Some(pb::write_message::Message::Start(pb::WriteStart {
                path: to_wire(&path),
                if_version: opts.if_version,
                mode: opts.mode,
                create_parents: opts.create_parents,
                skip_fsync: opts.skip_fsync,
            })),
        };
        tx.send(start).await.expect("receiver alive");
        let mut fs = self.fs.clone();
        let call = fs.write(ReceiverStream::new(rx));
        tokio::pin!(call);
        let produce = async move {
            tokio::pin!(data);
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(|e| {
                    RemoteError::new(ErrorKind::Io, format!("reading the data to upload: {e}"))
                        .with_path(&path)
                })?;
                // Keep each message far below the size cap.
                for piece in chunk.chunks(DATA_CHUNK) {
                    let m = pb::WriteMessage {
                        message: Some(pb::write_message::Message::Data(chunk.slice_ref(piece))),
                    };
                    if tx.send(m).await.is_err() {
                        // The call ended early; its own result says why.
                        return Ok(());
                    }
                }
            }
            Ok::<_, RemoteError>(())
        };
        tokio::pin!(produce);
        let mut produced = false;
        loop {
            tokio::select! {
                r = &mut call => return Ok(r.map_err(remote)?.into_inner()),
                // On a local error we return, dropping `call`: HTTP/2 resets
                // the stream and the server discards its temp file.
                r = &mut produce, if !produced => { r?; produced = true; }
            }
        }
    }

    /// Writes `data` to `path` atomically.
    pub async fn write_bytes(
        &self,
        path: impl AsRef<Path>,
        opts: WriteOptions,
        data: impl Into<Bytes>,
    ) -> Result<WriteReply> {
        let data = data.into();
        self.write(path, opts, futures::stream::once(async move { Ok(data) }))
            .await
    }

    /// Writes everything `reader` yields to `path` atomically.
    pub async fn write_from<R>(
        &self,
        path: impl AsRef<Path>,
        opts: WriteOptions,
        reader: R,
    ) -> Result<WriteReply>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let s = futures::stream::try_unfold(reader, |mut r| async move {
            let mut buf = bytes::BytesMut::zeroed(DATA_CHUNK);
            let n = r.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((buf.freeze(), r)))
        });
        self.write(path, opts, s).await
    }

    pub async fn mkdir(
        &self,
        path: impl AsRef<Path>,
        parents: bool,
        mode: Option<u32>,
    ) -> Result<()> {
        let req = pb::MkdirRequest {
            path: to_wire(path.as_ref()),
            parents,
            mode,
        };
        self.fs.clone().mkdir(req).await.map_err(remote)?;
        Ok(())
    }

    pub async fn remove(&self, path: impl AsRef<Path>, recursive: bool) -> Result<()> {
        let req = pb::RemoveRequest {
            path: to_wire(path.as_ref()),
            recursive,
        };
        self.fs.clone().remove(req).await.map_err(remote)?;
        Ok(())
    }

    pub async fn rename(
        &self,
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
        overwrite: bool,
    ) -> Result<()> {
        let req = pb::RenameRequest {
            from: to_wire(from.as_ref()),
            to: to_wire(to.as_ref()),
            overwrite,
        };
        self.fs.clone().rename(req).await.map_err(remote)?;
        Ok(())
    }

    pub async fn copy(
        &self,
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
        recursive: bool,
        overwrite: bool,
    ) -> Result<()> {
        let req = pb::CopyRequest {
            from: to_wire(from.as_ref()),
            to: to_wire(to.as_ref()),
            recursive,
            overwrite,
        };
        self.fs.clone().copy(req).await.map_err(remote)?;
        Ok(())
    }

    pub async fn chmod(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let req = pb::ChmodRequest {
            path: to_wire(path.as_ref()),
            mode,
        };
        self.fs.clone().chmod(req).await.map_err(remote)?;
        Ok(())
    }

    pub async fn symlink(&self, target: impl AsRef<Path>, link: impl AsRef<Path>) -> Result<()> {
        let req = pb::SymlinkRequest {
            target: to_wire(target.as_ref()),
            link: to_wire(link.as_ref()),
        };
        self.fs.clone().symlink(req).await.map_err(remote)?;
        Ok(())
    }

    pub async fn read_link(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let req = pb::PathRequest {
            path: to_wire(path.as_ref()),
        };
        Ok(from_wire(
            &self
                .fs
                .clone()
                .read_link(req)
                .await
                .map_err(remote)?
                .into_inner()
                .path,
        ))
    }

    pub async fn canonicalize(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let req = pb::PathRequest {
            path: to_wire(path.as_ref()),
        };
        Ok(from_wire(
            &self
                .fs
                .clone()
                .canonicalize(req)
                .await
                .map_err(remote)?
                .into_inner()
                .path,
        ))
    }

    // ------------------------------------------------------------ processes

    /// Starts a program. Its argv reaches execve exactly as given.
    pub async fn exec(&self, req: ExecRequest) -> Result<RemoteProcess> {
        use std::os::unix::ffi::OsStrExt;
        let b = |s: &std::ffi::OsStr| Bytes::copy_from_slice(s.as_bytes());
        let start = pb::ExecStart {
            program: to_wire(&req.program),
            args: req.args.iter().map(|a| b(a)).collect(),
            env: req
                .env
                .iter()
                .map(|(k, v)| pb::EnvVar {
                    name: b(k),
                    value: b(v),
                })
                .collect(),
            clear_env: req.clear_env,
            cwd: req.cwd.as_deref().map(to_wire),
        };
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tx.send(pb::ExecInput {
            message: Some(exec_input::Message::Start(start)),
        })
        .await
        .expect("receiver alive");
        let mut output = self
            .process
            .clone()
            .exec(ReceiverStream::new(rx))
            .await
            .map_err(remote)?
            .into_inner();
        // The first message is the pid; errors (no such program) arrive
        // instead of it.
        let pid = match output.message().await.map_err(remote)? {
            Some(pb::ExecOutput {
                message: Some(exec_output::Message::StartedPid(pid)),
            }) => pid,
            _ => {
                return Err(RemoteError::new(
                    ErrorKind::Internal,
                    "the server did not report the started program",
                ));
            }
        };
        Ok(RemoteProcess {
            pid,
            control: ProcessControl { input: tx },
            output,
            exited: false,
        })
    }
}
