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
//!
//! A client made with [`Client::over_stream_redialing`] survives a dropped
//! connection: the next call dials again (a new `ssh … yonder server proxy`
//! through the same path) and one-shot calls that failed because the link
//! went away are sent again, with backoff, for about two minutes. Reads are
//! simply repeated; changes (mkdir, remove, rename, copy, symlink, an
//! in-memory write) carry a request id, so the server applies each at most
//! once even when its answer was lost. Streams of idempotent calls go on
//! from where they were (see `resume`): a file's bytes from the next byte
//! (unless the file changed: `Conflict`), a directory listing or a search
//! without the entries and lines already given, a tree download or upload
//! from the start (whole files replace whole files). Streams with effects
//! (process output, terminals, watches) end with an error instead: their
//! owners re-attach or re-open them; a program is never started twice.

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

pub mod bulk;
pub mod direct;
pub mod direct_exec;
pub mod forward;
mod resume;
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
    /// The transport dials again after a drop: failed calls may be retried.
    redials: bool,
    link: tokio::sync::watch::Receiver<LinkStatus>,
    /// The daemon's fd socket, for a daemon on this machine (see [`direct`]).
    fdpass: Option<Arc<PathBuf>>,
    /// Connections to `fdpass.sock` that answered a connect request and may
    /// take the next one (see [`direct`]).
    connect_conns: Arc<direct::IdleConns>,
    /// How to start a bulk session on the target, when it has one (see [`bulk`]).
    bulk: Option<Arc<dyn bulk::BulkOpener>>,
}

/// The state of a client's connection, for front ends that show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// False from the moment a redial starts until it succeeds.
    pub up: bool,
    /// Connections made so far (1 at first; each successful redial adds 1):
    /// a change means streams opened before it are gone.
    pub connections: u64,
}

/// A byte stream to a yonder server.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Makes a new stream to the same server after the connection dropped.
pub type Redial = Arc<
    dyn Fn() -> futures::future::BoxFuture<'static, std::io::Result<Box<dyn Io>>> + Send + Sync,
>;

/// Pauses before the retries of a call whose connection dropped: quick at
/// first (a blip), then every 8 s; about two minutes in all, like the
/// terminals' reconnect. The channel dials again on each attempt.
const RETRY_DELAYS_MS: [u64; 19] = [
    100, 250, 500, 1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000, 8000, 8000, 8000, 8000, 8000,
    8000, 8000, 8000,
];

/// A status made by the transport (the connection broke), not by the
/// server: the server's own errors always carry an `ErrorDetail`.
fn is_link_error(s: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    ) && s.details().is_empty()
}

/// A new request id: 128 random bits in hex.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source failed");
    hex::encode(b)
}

/// `msg` as a request carrying `id` in the request-id header.
fn with_id<T>(msg: T, id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = id.parse() {
        r.metadata_mut().insert(yonder_proto::REQUEST_ID_HEADER, v);
    }
    r
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
    /// Sent with the write so that the server applies it at most once:
    /// reuse the same id when sending the same write again after a dropped
    /// connection. `write_bytes` makes one itself.
    pub request_id: Option<String>,
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
    fn to_wire(&self) -> pb::ExecStart {
        use std::os::unix::ffi::OsStrExt;
        let b = |s: &std::ffi::OsStr| Bytes::copy_from_slice(s.as_bytes());
        pb::ExecStart {
            program: to_wire(&self.program),
            args: self.args.iter().map(|a| b(a)).collect(),
            env: env_to_wire(&self.env),
            clear_env: self.clear_env,
            cwd: self.cwd.as_deref().map(to_wire),
        }
    }

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

/// Environment variables as the wire carries them: bytes, exactly.
fn env_to_wire(env: &[(std::ffi::OsString, std::ffi::OsString)]) -> Vec<pb::EnvVar> {
    use std::os::unix::ffi::OsStrExt;
    env.iter()
        .map(|(k, v)| pb::EnvVar {
            name: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect()
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
    /// The server's process service and the program's pid: signals go as
    /// their own call, so they never wait behind stdin the program is not
    /// reading.
    signals: Option<(ProcessClient<Channel>, u32)>,
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
    /// Sends `signal` (e.g. `libc::SIGINT`) to the program at once, even
    /// while its stdin is full. A program that has already ended is no
    /// error: the signal had nothing left to reach.
    pub async fn signal(&self, signal: i32) -> Result<()> {
        if let Some((process, pid)) = &self.signals {
            match process
                .clone()
                .signal(pb::SignalRequest { pid: *pid, signal })
                .await
            {
                Ok(_) => return Ok(()),
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
                // A server from before the call: in the stream, behind stdin.
                Err(s) if s.code() == tonic::Code::Unimplemented => {}
                Err(s) => return Err(remote(s)),
            }
        }
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
        next_until_exit(
            &mut self.output,
            &mut self.exited,
            "the connection ended before the program's exit status arrived",
            |m| match m.message {
                Some(exec_output::Message::Stdout(b)) => Some((ProcessEvent::Stdout(b), false)),
                Some(exec_output::Message::Stderr(b)) => Some((ProcessEvent::Stderr(b), false)),
                Some(exec_output::Message::Exit(e)) => Some((
                    ProcessEvent::Exit(ExitStatus {
                        code: e.code,
                        signal: e.signal,
                    }),
                    true,
                )),
                Some(exec_output::Message::StartedPid(_)) | None => None,
            },
        )
        .await
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

/// The next event of a stream that ends with an exit status (a process, a
/// terminal): `map` turns a message into an event and says whether it is
/// the exit (`None`: a message the caller does not show). `None` once
/// `done`; a stream that ends before the exit is an error.
pub(crate) async fn next_until_exit<M, E>(
    output: &mut tonic::Streaming<M>,
    done: &mut bool,
    ended_early: &'static str,
    map: impl Fn(M) -> Option<(E, bool)>,
) -> Option<Result<E>> {
    if *done {
        return None;
    }
    loop {
        let msg = match output.message().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                *done = true;
                return Some(Err(RemoteError::new(ErrorKind::Io, ended_early)));
            }
            Err(s) => {
                *done = true;
                return Some(Err(remote(s)));
            }
        };
        if let Some((ev, exit)) = map(msg) {
            *done |= exit;
            return Some(Ok(ev));
        }
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
        stream: S,
        token: &[u8],
        endpoint: &str,
    ) -> Result<Self, ConnectError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(Box::new(stream), token, endpoint, None).await
    }

    /// [`Client::over_stream`], and after a dropped connection the next
    /// call gets a new stream from `redial` (handshaken again, and refused
    /// if the server speaks another protocol); calls that failed because
    /// the link broke are retried (see the crate docs).
    pub async fn over_stream_redialing<S>(
        stream: S,
        token: &[u8],
        endpoint: &str,
        redial: Redial,
    ) -> Result<Self, ConnectError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(Box::new(stream), token, endpoint, Some(redial)).await
    }

    async fn start(
        mut stream: Box<dyn Io>,
        token: &[u8],
        endpoint: &str,
        redial: Option<Redial>,
    ) -> Result<Self, ConnectError> {
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
        // already have. A later redial finds the slot empty: without a
        // `redial` it fails, which surfaces as "connection lost" on the
        // calls instead of a silent reconnect to who knows what; with one,
        // it dials the same way as before and checks the handshake again.
        let slot = Arc::new(Mutex::new(Some(stream)));
        let redials = redial.is_some();
        let (link_tx, link) = tokio::sync::watch::channel(LinkStatus {
            up: true,
            connections: 1,
        });
        let link_tx = Arc::new(link_tx);
        let token = token.to_vec();
        let protocol = reply.protocol_version;
        let connector = tower::service_fn(move |_: Uri| {
            let s = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            let (redial, token, link_tx) = (redial.clone(), token.clone(), link_tx.clone());
            async move {
                if let Some(s) = s {
                    return Ok(TokioIo::new(s));
                }
                let Some(redial) = redial else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the connection to the yonder server was lost",
                    ));
                };
                link_tx.send_modify(|l| l.up = false);
                let mut s = redial().await?;
                let again =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake::client(&mut s, &token))
                        .await
                        .map_err(|_| {
                            std::io::Error::other("no handshake reply after reconnecting")
                        })?
                        .map_err(|e| std::io::Error::other(format!("after reconnecting: {e}")))?;
                if again.protocol_version != protocol {
                    return Err(std::io::Error::other(format!(
                        "after reconnecting, the server speaks protocol {} instead of {protocol}",
                        again.protocol_version
                    )));
                }
                tracing::info!("reconnected to the yonder server");
                link_tx.send_modify(|l| {
                    l.up = true;
                    l.connections += 1;
                });
                Ok(TokioIo::new(s))
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
            redials,
            link,
            fdpass: None,
            connect_conns: Arc::default(),
            bulk: None,
        })
    }

    /// Whether a dropped connection is dialled again (calls are retried).
    pub fn redials(&self) -> bool {
        self.redials
    }

    /// The connection's state, updated as it drops and is dialled again.
    pub fn link_status(&self) -> tokio::sync::watch::Receiver<LinkStatus> {
        self.link.clone()
    }

    /// Runs `call`, again after a dropped connection when this client
    /// redials (see the crate docs); `call` must be safe to repeat: a read,
    /// or a change carrying one request id for all attempts.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(s) if self.redials && is_link_error(&s) && attempt < RETRY_DELAYS_MS.len() => {
                    tracing::warn!("the connection dropped ({}); trying again", s.message());
                    tokio::time::sleep(Duration::from_millis(RETRY_DELAYS_MS[attempt])).await;
                    attempt += 1;
                }
                Err(s) => return Err(remote(s)),
            }
        }
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
        self.retrying(|| {
            let mut c = self.system.clone();
            async move { c.info(pb::InfoRequest {}).await.map(|r| r.into_inner()) }
        })
        .await
    }

    // ------------------------------------------------------------ files

    /// Describes `path`; a final symlink is described, not followed, unless
    /// `follow` is set.
    pub async fn stat(&self, path: impl AsRef<Path>, follow: bool) -> Result<Metadata> {
        let req = pb::StatRequest {
            path: to_wire(path.as_ref()),
            follow_symlinks: follow,
        };
        self.retrying(|| {
            let (mut fs, req) = (self.fs.clone(), req.clone());
            async move { fs.stat(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// Streams a directory's entries as the server reads them. On a client
    /// that redials, a listing cut by a dropped connection is asked for
    /// again and the names already given are left out.
    pub async fn list_dir(
        &self,
        path: impl AsRef<Path>,
        with_metadata: bool,
    ) -> Result<RemoteStream<DirEntry>> {
        let req = pb::ListDirRequest {
            path: to_wire(path.as_ref()),
            with_metadata,
        };
        let fs = self.fs.clone();
        let call = move |_: &mut std::collections::HashSet<Bytes>, _| {
            let (mut fs, req) = (fs.clone(), req.clone());
            async move { Ok(fs.list_dir(req).await?.into_inner()) }
        };
        // Names are unique in a directory: the set is what was delivered.
        let take = |seen: &mut std::collections::HashSet<Bytes>, b: pb::DirEntries| {
            let mut b = b.entries;
            b.retain(|e| seen.insert(e.name.clone()));
            b
        };
        let s = self.resumable(Default::default(), call, take).await?;
        Ok(resume::flatten(s))
    }

    /// All entries of a directory.
    pub async fn read_dir(
        &self,
        path: impl AsRef<Path>,
        with_metadata: bool,
    ) -> Result<Vec<DirEntry>> {
        let req = pb::ListDirRequest {
            path: to_wire(path.as_ref()),
            with_metadata,
        };
        // The whole listing again if the link drops half-way.
        self.retrying(|| {
            let (mut fs, req) = (self.fs.clone(), req.clone());
            async move {
                let mut s = fs.list_dir(req).await?.into_inner();
                let mut out = Vec::new();
                while let Some(batch) = s.next().await {
                    out.extend(batch?.entries);
                }
                Ok(out)
            }
        })
        .await
    }

    /// Streams a file's bytes from `offset`, `length` bytes or to the end.
    /// On a client that redials, a read cut by a dropped connection goes on
    /// from the next byte, unless the file changed meanwhile (its version
    /// differs from the one it had when the read began): then the stream
    /// ends with `Conflict` rather than join two versions.
    pub async fn read(
        &self,
        path: impl AsRef<Path>,
        offset: u64,
        length: Option<u64>,
    ) -> Result<RemoteStream<Bytes>> {
        struct At {
            next: u64,
            left: Option<u64>,
        }
        let (fs, path, check) = (self.fs.clone(), to_wire(path.as_ref()), self.redials);
        // The version the file had when the read began, asked for beside
        // the first read (no round trip added) on a client that redials.
        let version = Arc::new(std::sync::OnceLock::<String>::new());
        let call = move |at: &mut At, again: bool| {
            let (mut fs, version) = (fs.clone(), version.clone());
            let stat = pb::StatRequest {
                path: path.clone(),
                follow_symlinks: true,
            };
            let req = pb::ReadRequest {
                path: path.clone(),
                offset: at.next,
                length: at.left,
            };
            async move {
                if !again {
                    if !check {
                        return Ok(fs.read(req).await?.into_inner());
                    }
                    let mut fs2 = fs.clone();
                    let (meta, s) = tokio::join!(fs2.stat(stat), fs.read(req));
                    let s = s?.into_inner();
                    if let Ok(m) = meta {
                        let _ = version.set(m.into_inner().version);
                    }
                    return Ok(s);
                }
                let now = fs.stat(stat.clone()).await?.into_inner().version;
                if version.get() != Some(&now) {
                    return Err(RemoteError::new(
                        ErrorKind::Conflict,
                        format!(
                            "the file changed while it was being read (the connection \
                             dropped at byte {}, and it is not the same file now); \
                             read it again",
                            req.offset
                        ),
                    )
                    .with_path(from_wire(&stat.path))
                    .into());
                }
                Ok(fs.read(req).await?.into_inner())
            }
        };
        let take = |at: &mut At, c: pb::DataChunk| {
            let n = c.data.len() as u64;
            at.next += n;
            at.left = at.left.map(|l| l.saturating_sub(n));
            c.data
        };
        let at = At {
            next: offset,
            left: length,
        };
        let s = self.resumable(at, call, take).await?;
        Ok(RemoteStream {
            inner: Box::pin(s.map(|c| c.map_err(remote))),
        })
    }

    /// A whole file in memory.
    pub async fn read_to_vec(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let req = pb::ReadRequest {
            path: to_wire(path.as_ref()),
            offset: 0,
            length: None,
        };
        self.retrying(|| {
            let (mut fs, req) = (self.fs.clone(), req.clone());
            async move {
                let mut s = fs.read(req).await?.into_inner();
                let mut out = Vec::new();
                while let Some(c) = s.next().await {
                    out.extend_from_slice(&c?.data);
                }
                Ok(out)
            }
        })
        .await
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
        self.write_call(path.as_ref(), opts, data)
            .await
            .map_err(|(e, _)| e)
    }

    /// [`Client::write`]; a failure says whether the link broke.
    async fn write_call<S>(
        &self,
        path: &Path,
        opts: WriteOptions,
        data: S,
    ) -> std::result::Result<WriteReply, (RemoteError, bool)>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let path = path.to_path_buf();
        let id = opts.request_id.clone();
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
        let input = ReceiverStream::new(rx);
        let call = match &id {
            Some(id) => fs.write(with_id(input, id)),
            None => fs.write(tonic::Request::new(input)),
        };
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
                r = &mut call => {
                    return r
                        .map(|r| r.into_inner())
                        .map_err(|s| (remote(s.clone()), is_link_error(&s)));
                }
                // On a local error we return, dropping `call`: HTTP/2 resets
                // the stream and the server discards its temp file.
                r = &mut produce, if !produced => {
                    r.map_err(|e| (e, false))?;
                    produced = true;
                }
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
        let mut opts = opts;
        // The bytes are at hand: after a dropped connection the same write
        // goes again, under one request id so it lands once.
        opts.request_id.get_or_insert_with(new_request_id);
        let mut attempt = 0;
        loop {
            let d = data.clone();
            let once = futures::stream::once(async move { Ok(d) });
            match self.write_call(path.as_ref(), opts.clone(), once).await {
                Ok(r) => return Ok(r),
                Err((_, true)) if self.redials && attempt < RETRY_DELAYS_MS.len() => {
                    tokio::time::sleep(Duration::from_millis(RETRY_DELAYS_MS[attempt])).await;
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// [`Client::write`] of data that can be produced again: `data()` makes
    /// the stream for each attempt. On a client that redials, a write cut
    /// by a dropped connection is sent again from the start under one
    /// request id (the file is only replaced when complete, and never twice).
    pub async fn write_again<S, F>(
        &self,
        path: impl AsRef<Path>,
        mut opts: WriteOptions,
        mut data: F,
    ) -> Result<WriteReply>
    where
        F: FnMut() -> S,
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        opts.request_id.get_or_insert_with(new_request_id);
        let mut attempt = 0;
        loop {
            match self.write_call(path.as_ref(), opts.clone(), data()).await {
                Ok(r) => return Ok(r),
                Err((_, true)) if self.redials && attempt < RETRY_DELAYS_MS.len() => {
                    tracing::warn!("the connection dropped; sending the file again");
                    tokio::time::sleep(Duration::from_millis(RETRY_DELAYS_MS[attempt])).await;
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
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
        let id = new_request_id();
        self.retrying(|| {
            let (mut fs, req) = (self.fs.clone(), req.clone());
            let id = id.clone();
            async move { fs.mkdir(with_id(req, &id)).await }
        })
        .await?;
        Ok(())
    }

    pub async fn remove(&self, path: impl AsRef<Path>, recursive: bool) -> Result<()> {
        let req = pb::RemoveRequest {
            path: to_wire(path.as_ref()),
            recursive,
        };
        let id = new_request_id();
        self.retrying(|| {
            let (mut fs, req) = (self.fs.clone(), req.clone());
            let id = id.clone();
            async move { fs.remove(with_id(req, &id)).await }
        })
        .await?;
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
        let id = new_request_id();
        self.retrying(|| {
            let (mut fs, req) = (self.fs.clone(), req.clone());
            let id = id.clone();
            async move { fs.rename(with_id(req, &id)).await }
        })
        .await?;
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
        let id = new_request_id();
        self.retrying(|| {
            let (mut fs, req) = (self.fs.clone(), req.clone());
            let id = id.clone();
            async move { fs.copy(with_id(req, &id)).await }
        })
        .await?;
        Ok(())
    }

    pub async fn chmod(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let req = pb::ChmodRequest {
            path: to_wire(path.as_ref()),
            mode,
        };
        let id = new_request_id();
        self.retrying(|| {
            let (mut fs, req) = (self.fs.clone(), req.clone());
            let id = id.clone();
            async move { fs.chmod(with_id(req, &id)).await }
        })
        .await?;
        Ok(())
    }

    pub async fn symlink(&self, target: impl AsRef<Path>, link: impl AsRef<Path>) -> Result<()> {
        let req = pb::SymlinkRequest {
            target: to_wire(target.as_ref()),
            link: to_wire(link.as_ref()),
        };
        let id = new_request_id();
        self.retrying(|| {
            let (mut fs, req) = (self.fs.clone(), req.clone());
            let id = id.clone();
            async move { fs.symlink(with_id(req, &id)).await }
        })
        .await?;
        Ok(())
    }

    pub async fn read_link(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let req = pb::PathRequest {
            path: to_wire(path.as_ref()),
        };
        let reply = self
            .retrying(|| {
                let (mut fs, req) = (self.fs.clone(), req.clone());
                async move { fs.read_link(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(from_wire(&reply.path))
    }

    pub async fn canonicalize(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let req = pb::PathRequest {
            path: to_wire(path.as_ref()),
        };
        let reply = self
            .retrying(|| {
                let (mut fs, req) = (self.fs.clone(), req.clone());
                async move { fs.canonicalize(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(from_wire(&reply.path))
    }

    // ------------------------------------------------------------ processes

    /// Starts a program. Its argv reaches execve exactly as given.
    pub async fn exec(&self, req: ExecRequest) -> Result<RemoteProcess> {
        let start = req.to_wire();
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
            control: ProcessControl {
                input: tx,
                signals: Some((self.process.clone(), pid)),
            },
            output,
            exited: false,
        })
    }
}
