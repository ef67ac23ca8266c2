//! The per-user daemon: `yonder server daemon`.
//!
//! It owns all server state, listens on `daemon.sock` in the private runtime
//! directory (and, when asked, on loopback TCP with a random 256-bit token),
//! and exits after [`DaemonOptions::idle_timeout`] with no client connected.
//! Each accepted byte stream runs the handshake, then HTTP/2 with the gRPC
//! services. A connection that sends garbage is logged and closed; it never
//! takes the daemon or other connections down.

use crate::ops::terminal::{Registry, TerminalService};
use crate::ops::{
    exec::ProcessService, forward::ForwardService, fs::FsService, search::SearchService,
    system::SystemService, watch::WatchService,
};
use crate::rundir::RunDir;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tonic::service::Routes;
use yonder_proto::limits::{CONNECTION_WINDOW, MAX_MESSAGE, STREAM_WINDOW};
use yonder_proto::pb::{
    forward_server::ForwardServer, fs_server::FsServer, process_server::ProcessServer,
    search_server::SearchServer, system_server::SystemServer, terminal_server::TerminalServer,
    watch_server::WatchServer,
};
use yonder_proto::{fdpass, handshake};

/// Default idle time before the daemon exits. Long enough that a laptop lid
/// closed over lunch finds the same daemon; short enough not to leave a
/// forgotten process on a shared host for days.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A peer has this long to complete the handshake. Bounds how long a silent
/// or slow-loris connection can hold a task.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings detect a dead peer (a laptop that vanished from the network)
/// so its calls are cancelled and its processes killed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Concurrent calls one connection may have open; more wait client-side.
const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Largest HTTP/2 frame we accept (the protocol's own cap is 16 MiB).
/// 256 KiB matches our data chunk size, so a chunk is one frame.
const MAX_FRAME: u32 = 256 * 1024;

/// Largest header block a client may send: gRPC headers are tiny.
const MAX_HEADER_LIST: u32 = 16 * 1024;

#[derive(Debug, Clone)]
pub enum Listen {
    /// Loopback TCP (or an explicitly given address) with a token.
    Tcp(SocketAddr),
}

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub run_dir: RunDir,
    pub listen: Vec<Listen>,
    /// `None` means never exit for idleness.
    pub idle_timeout: Option<Duration>,
    /// How long a terminal may stay detached before it is ended.
    pub terminal_grace: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DaemonOutcome {
    /// Another daemon holds the lock: it is the one clients reach.
    AlreadyRunning,
    /// Exited after the idle timeout.
    Idle,
    /// Stopped by a signal.
    Signalled,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create a random token: {0}")]
    Random(String),
}

/// Shared accounting for the idle timer.
#[derive(Debug)]
struct Activity {
    connections: AtomicUsize,
    idle_since: Mutex<Instant>,
    next_id: AtomicU64,
}

struct ConnectionGuard(Arc<Activity>);

impl ConnectionGuard {
    fn new(a: &Arc<Activity>) -> Self {
        a.connections.fetch_add(1, Ordering::SeqCst);
        Self(a.clone())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }
}

fn routes(terminals: Arc<Registry>) -> Routes {
    Routes::new(
        FsServer::new(FsService::default())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        ProcessServer::new(ProcessService)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(SystemServer::new(SystemService))
    .add_service(
        TerminalServer::new(TerminalService {
            registry: terminals,
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(WatchServer::new(WatchService::default()).max_encoding_message_size(MAX_MESSAGE))
    .add_service(
        SearchServer::new(SearchService::default())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        ForwardServer::new(ForwardService::default())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .prepare()
}

/// Runs the handshake and then HTTP/2 on one accepted stream. Every failure
/// is this connection's alone: it is logged and the stream closed.
async fn serve_connection<S>(
    mut stream: S,
    token: Option<Arc<Vec<u8>>>,
    routes: Routes,
    session: Option<crate::session::SessionEnv>,
    id: u64,
    kind: &'static str,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let hello = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::server(&mut stream, token.as_deref().map(|t| &t[..])),
    )
    .await;
    match hello {
        Ok(Ok(h)) => tracing::info!(id, kind, client = %h.yonder_version, "connection accepted"),
        Ok(Err(e)) => {
            tracing::warn!(id, kind, "connection refused during the handshake: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(
                id,
                kind,
                "connection closed: no handshake within {HANDSHAKE_TIMEOUT:?}"
            );
            return;
        }
    }
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    // Every request of this connection carries its session's environment.
    let routes = tower::ServiceExt::map_request(
        routes,
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(env) = &session {
                req.extensions_mut().insert(env.clone());
            }
            req
        },
    );
    let svc = TowerToHyperService::new(routes);
    match h2.serve_connection(TokioIo::new(stream), svc).await {
        Ok(()) => tracing::info!(id, kind, "connection closed"),
        Err(e) => tracing::warn!(id, kind, "connection closed with a protocol error: {e}"),
    }
}

/// One request on `fdpass.sock` ([`yonder_proto::fdpass`]). The socket is
/// in the 0700 runtime directory; the peer's uid is checked besides.
async fn serve_fdpass(conn: tokio::net::UnixStream, routes: Routes, id: u64) {
    match fdpass::peer_uid(&conn) {
        // Root (in the daemon's user namespace: the host user of a rootless
        // container, or root on the host through a shared folder) may act
        // as this user anyway.
        Ok(uid) if uid == crate::rundir::current_uid() || uid == 0 => {}
        Ok(uid) => {
            tracing::warn!(id, uid, "fd request from another user refused");
            return;
        }
        Err(e) => {
            tracing::warn!(id, "fd request refused: no peer credentials: {e}");
            return;
        }
    }
    let (kind, fds) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, fdpass::recv(&conn)).await {
        Ok(Ok(Some(req))) => req,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(id, "malformed fd request: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(id, "fd request: nothing sent within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    match kind {
        fdpass::SERVE => serve_stdio(conn, fds, routes, id).await,
        fdpass::CONNECT => crate::ops::forward::connect_for_peer(conn, id).await,
        fdpass::EXEC => crate::ops::exec::exec_for_peer(conn, id).await,
        other => tracing::warn!(id, "unknown fd request {other:#04x} refused"),
    }
}

/// Serves a connection on the stdin and stdout a `yonder server proxy`
/// handed over, for as long as the proxy lives.
async fn serve_stdio(
    mut conn: tokio::net::UnixStream,
    fds: Vec<std::os::fd::OwnedFd>,
    routes: Routes,
    id: u64,
) {
    let stream = match <[std::os::fd::OwnedFd; 2]>::try_from(fds) {
        Ok([r, w]) => crate::stdio::StdioStream::new(r, w),
        Err(fds) => Err(std::io::Error::other(format!(
            "{} file descriptors instead of 2",
            fds.len()
        ))),
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(
                id,
                "the proxy relays instead: its stdio cannot be served here: {e}"
            );
            let _ = fdpass::send(&conn, fdpass::NO, &[]).await;
            return;
        }
    };
    // The proxy's environment follows its fds.
    let env = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        fdpass::read_message::<_, yonder_proto::pb::SessionEnv>(&mut conn),
    )
    .await;
    let session = match env {
        Ok(Ok(env)) => crate::session::SessionEnv::new(env),
        Ok(Err(e)) => {
            tracing::warn!(id, "malformed session environment from a proxy: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(
                id,
                "no session environment from a proxy within {HANDSHAKE_TIMEOUT:?}"
            );
            return;
        }
    };
    if fdpass::send(&conn, fdpass::YES, &[]).await.is_err() {
        return;
    }
    tokio::select! {
        () = serve_connection(stream, None, routes, Some(session), id, "stdio") => {}
        // The proxy exits when its ssh session or `exec` is killed: the
        // connection ends with it, as it did when the proxy relayed.
        _ = fdpass::recv(&conn) => tracing::info!(id, "the proxy went away: connection closed"),
    }
}

/// Holds the singleton lock for the daemon's lifetime.
struct Lock {
    _file: std::fs::File,
}

fn try_lock(run: &RunDir) -> Result<Option<Lock>, DaemonError> {
    let path = run.lock();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| DaemonError::Io {
            what: "cannot open the lock",
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(Some(Lock { _file: file }))
    } else {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(DaemonError::Io {
                what: "cannot lock",
                path,
                source: e,
            })
        }
    }
}

/// Writes `contents` to `path` (mode 0600) through a temp file and a rename.
fn write_private(path: &std::path::Path, contents: &[u8]) -> Result<(), DaemonError> {
    let tmp = path.with_extension("tmp");
    let io = |source| DaemonError::Io {
        what: "cannot write",
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn random_token() -> Result<String, DaemonError> {
    // 256 bits from the OS, hex-encoded for files and environment variables.
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| DaemonError::Random(e.to_string()))?;
    Ok(hex::encode(raw))
}

pub async fn run(opts: DaemonOptions) -> Result<DaemonOutcome, DaemonError> {
    let run = &opts.run_dir;
    let Some(_lock) = try_lock(run)? else {
        tracing::info!("another daemon already runs for {}", run.dir.display());
        return Ok(DaemonOutcome::AlreadyRunning);
    };
    // We hold the lock, so whatever socket files are there are stale. The
    // fd socket is bound first: whoever sees `daemon.sock` finds it too.
    let fdpass_path = run.fdpass();
    let _ = std::fs::remove_file(&fdpass_path);
    let fdpass = UnixListener::bind(&fdpass_path).map_err(|source| DaemonError::Io {
        what: "cannot listen on",
        path: fdpass_path.clone(),
        source,
    })?;
    let _ = std::fs::set_permissions(&fdpass_path, std::fs::Permissions::from_mode(0o600));
    let sock = run.socket();
    let _ = std::fs::remove_file(&sock);
    let unix = UnixListener::bind(&sock).map_err(|source| DaemonError::Io {
        what: "cannot listen on",
        path: sock.clone(),
        source,
    })?;
    let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600));
    write_private(&run.pid(), format!("{}\n", std::process::id()).as_bytes())?;

    // Relative paths in requests mean "in the user's home", as with scp.
    if let Some(home) = std::env::var_os("HOME")
        && let Err(e) = std::env::set_current_dir(&home)
    {
        tracing::warn!(
            "cannot change to the home directory {}: {e}",
            home.to_string_lossy()
        );
    }

    let mut tcp = None;
    let mut token = None;
    for l in &opts.listen {
        let Listen::Tcp(addr) = l;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "listening on the non-loopback address {addr} as requested; the token is the only protection"
            );
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: *addr,
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| DaemonError::Listen {
                addr: *addr,
                source,
            })?;
        let t = random_token()?;
        let info = format!("{{\"address\":\"{local}\",\"token\":\"{t}\"}}\n");
        write_private(&run.tcp_info(), info.as_bytes())?;
        // The token itself is never printed or logged: it is in tcp.json,
        // which only the user can read.
        println!(
            "{{\"address\":\"{local}\",\"info_file\":{:?}}}",
            run.tcp_info().display().to_string()
        );
        let _ = std::io::stdout().flush();
        tracing::info!(
            "listening on {local} (token in {})",
            run.tcp_info().display()
        );
        tcp = Some(listener);
        token = Some(Arc::new(t.into_bytes()));
    }

    tracing::info!(
        pid = std::process::id(),
        "yonder daemon {} listening on {}",
        yonder_proto::YONDER_VERSION,
        sock.display()
    );
    let activity = Arc::new(Activity {
        connections: AtomicUsize::new(0),
        idle_since: Mutex::new(Instant::now()),
        next_id: AtomicU64::new(1),
    });
    let terminals = Arc::new(Registry::new(opts.terminal_grace).with_agent_links(run.path()));
    terminals.start_reaper();
    let routes = routes(terminals.clone());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| DaemonError::Io {
            what: "cannot handle signals for",
            path: sock.clone(),
            source,
        })?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let outcome = loop {
        tokio::select! {
            r = unix.accept() => match r {
                Ok((s, _)) => {
                    let id = activity.next_id.fetch_add(1, Ordering::Relaxed);
                    let guard = ConnectionGuard::new(&activity);
                    let routes = routes.clone();
                    tokio::spawn(async move {
                        serve_connection(s, None, routes, None, id, "unix").await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept on {} failed: {e}", sock.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            r = fdpass.accept() => match r {
                Ok((s, _)) => {
                    let id = activity.next_id.fetch_add(1, Ordering::Relaxed);
                    let guard = ConnectionGuard::new(&activity);
                    let routes = routes.clone();
                    tokio::spawn(async move {
                        serve_fdpass(s, routes, id).await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept on {} failed: {e}", fdpass_path.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            r = async { tcp.as_ref().expect("guarded").accept().await }, if tcp.is_some() => match r {
                Ok((s, peer)) => {
                    let _ = s.set_nodelay(true);
                    let id = activity.next_id.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(id, %peer, "tcp connection");
                    let guard = ConnectionGuard::new(&activity);
                    let routes = routes.clone();
                    let token = token.clone();
                    tokio::spawn(async move {
                        serve_connection(s, token, routes, None, id, "tcp").await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    tracing::warn!("tcp accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = tick.tick() => {
                if let Some(idle) = opts.idle_timeout
                    && activity.connections.load(Ordering::SeqCst) == 0
                    && terminals.live() == 0
                    && activity.idle_since.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= idle
                {
                    tracing::info!("no client for {idle:?}: exiting");
                    break DaemonOutcome::Idle;
                }
            }
            _ = term.recv() => break DaemonOutcome::Signalled,
            _ = tokio::signal::ctrl_c() => break DaemonOutcome::Signalled,
        }
    };
    // Still holding the lock: no newer daemon can own these files yet.
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&fdpass_path);
    let _ = std::fs::remove_file(run.pid());
    let _ = std::fs::remove_file(run.tcp_info());
    Ok(outcome)
}
