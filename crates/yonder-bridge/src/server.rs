//! The SSH side of the bridge: a russh server [`Handler`] whose channels are
//! served by a [`Client`].
//!
//! Lifecycle of one connection: the SSH key exchange and the connection to
//! the target run at the same time (the target may need seconds to start);
//! after authentication the target must be there, or the client gets a
//! disconnect whose text says why. Each session channel is then one task
//! ([`session_channel`]) that collects `pty-req` and `env` until `exec`,
//! `shell` or `subsystem` says what to run, then pumps bytes both ways
//! until the program exits or the client closes the channel.
//!
//! russh hands every channel message to the channel's queue and waits when
//! the queue is full, which holds up the whole connection. So each session
//! channel reads its queue at once, in a task of its own, and limits what
//! the client may send by granting window only for input the program took
//! ([`crate::input`]); output goes out from a second task.

use crate::input::{self, Control, InputSink};
use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, Disconnect, MethodKind, Sig};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OnceCell, mpsc};
use yonder_client::direct_exec::{DirectControl, DirectProcess};
use yonder_client::forward::{Tunnel, TunnelWriter};
use yonder_client::terminal::{OpenTerminal, TerminalEvent, TerminalWriter};
use yonder_client::{Client, ExecRequest, ExitStatus, ProcessControl, ProcessEvent, SystemInfo};
use yonder_proto::limits::DATA_CHUNK;
use yonder_proto::pb::ErrorKind;

/// Rejected authentication attempts are slowed down by this much. The
/// usual reason for the delay (guessing passwords over the network) does
/// not apply: only the local user reaches the bridge, through a pipe. A
/// short delay keeps a client that offers several keys fast.
const AUTH_REJECTION_DELAY: Duration = Duration::from_millis(50);

/// Messages russh queues per channel before it stops reading the
/// connection. Session channels read theirs at once ([`crate::input`]);
/// the forwards' relays read as fast as the far side takes data.
const CHANNEL_QUEUE: usize = 256;

/// How long a finished connection waits for its channels to clean up
/// (hang up terminals, end programs) before the process exits.
const CLEANUP_GRACE: Duration = Duration::from_secs(5);

/// Size of a terminal before the client said (a `shell` without `pty-req`
/// never reaches a terminal; this is only a fallback for odd clients).
const DEFAULT_TERMINAL: (u16, u16) = (24, 80);

/// Ciphers the bridge offers. SSH clients pick the first of *their* list
/// that the server offers, and OpenSSH lists chacha20-poly1305 first; but
/// russh's ChaCha20 is portable Rust while its AES-GCM runs on the CPU's AES
/// instructions (measured through the bridge on this project's machine:
/// 1 GiB up 7.1 s vs 5.5 s, down 4.7 s vs 2.6 s). So where the CPU has
/// them, only AES-GCM is offered (OpenSSH has it since 6.2, PuTTY since
/// 0.76); elsewhere russh's default list.
fn ciphers() -> &'static [russh::cipher::Name] {
    use russh::cipher::{AES_128_GCM, AES_256_GCM};
    static AES_GCM: [russh::cipher::Name; 2] = [AES_256_GCM, AES_128_GCM];
    if hardware_aes() {
        &AES_GCM
    } else {
        russh::Preferred::DEFAULT.cipher.as_ref()
    }
}

fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// What the bridge needs besides the target.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The stable host key for this target.
    pub host_key: PrivateKey,
    /// Public keys that may log in (the local user's).
    pub allowed_keys: Vec<PublicKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
    #[error("{0}")]
    Target(String),
}

/// The connection to the target, started once and shared by every request.
type TargetFuture = Shared<BoxFuture<'static, Result<Client, Arc<str>>>>;

struct Ctx {
    target: TargetFuture,
    /// Held by every channel task; when the connection has ended, [`serve`]
    /// waits until all clones are gone (the tasks finished their clean-up).
    tasks: std::sync::Mutex<Option<mpsc::Sender<()>>>,
    allowed: Vec<PublicKey>,
    info: OnceCell<SystemInfo>,
}

impl Ctx {
    async fn client(&self) -> Result<Client, Arc<str>> {
        self.target.clone().await
    }

    /// The target's user, home and login shell (asked once).
    async fn info(&self, client: &Client) -> Result<&SystemInfo, String> {
        self.info
            .get_or_try_init(|| async {
                client
                    .info()
                    .await
                    .map_err(|e| format!("cannot ask the target about its user: {e}"))
            })
            .await
    }
}

/// Serves one SSH connection on `stream` (stdin/stdout for a ProxyCommand)
/// until the client disconnects. `target` connects to the yonder target;
/// it starts at once, alongside the key exchange. If it fails, its message
/// is sent to the client as the disconnect reason and returned as
/// [`BridgeError::Target`].
pub async fn serve<S, F>(stream: S, target: F, config: BridgeConfig) -> Result<(), BridgeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = Result<Client, String>> + Send + 'static,
{
    let target: TargetFuture = target.map(|r| r.map_err(Arc::from)).boxed().shared();
    // Drive the connection now, not at the first request.
    tokio::spawn(target.clone());
    let (tasks_tx, mut tasks_rx) = mpsc::channel::<()>(1);
    let ctx = Arc::new(Ctx {
        target: target.clone(),
        allowed: config.allowed_keys,
        info: OnceCell::new(),
        tasks: std::sync::Mutex::new(Some(tasks_tx)),
    });
    let ssh_config = russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-yonder_{}", yonder_proto::YONDER_VERSION).into(),
        ),
        methods: russh::MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: AUTH_REJECTION_DELAY,
        // OpenSSH opens with a "none" request to learn the methods: no delay.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![config.host_key],
        channel_buffer_size: CHANNEL_QUEUE,
        window_size: crate::input::WINDOW,
        // Every channel's window is granted by us from its first byte, as
        // its input is taken ([`crate::input`]).
        manual_window: true,
        // An idle editor connection stays up as long as the client wants:
        // sshd has no idle timeout by default either.
        inactivity_timeout: None,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(ciphers()),
            ..Default::default()
        },
        ..Default::default()
    };
    let handler = Bridge {
        ctx: ctx.clone(),
        forwards: HashMap::new(),
    };
    let session = russh::server::run_stream(Arc::new(ssh_config), stream, handler).await?;
    let result = session.await;
    // Let the channels clean up (a terminal whose client vanished is hung
    // up; it would otherwise wait hours for a re-attach), within bounds.
    ctx.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(ctx);
    let _ = tokio::time::timeout(CLEANUP_GRACE, tasks_rx.recv()).await;
    // A target that never came up is the real story, whatever SSH said.
    if let Some(Err(e)) = target.peek() {
        return Err(BridgeError::Target(e.to_string()));
    }
    match result {
        Ok(()) => Ok(()),
        // The client going away is how every session ends.
        Err(russh::Error::Disconnect) | Err(russh::Error::HUP) => Ok(()),
        Err(russh::Error::IO(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// One connection's handler.
struct Bridge {
    ctx: Arc<Ctx>,
    /// `tcpip-forward` listeners by (address, port) as the client named them.
    forwards: HashMap<(String, u32), tokio::task::AbortHandle>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for (_, f) in self.forwards.drain() {
            f.abort();
        }
    }
}

impl russh::server::Handler for Bridge {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(
            if crate::keys::is_allowed(&self.ctx.allowed, offer.public_key) {
                Auth::Accept
            } else {
                Auth::reject()
            },
        )
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(
            if crate::keys::is_allowed(&self.ctx.allowed, key.public_key) {
                Auth::Accept
            } else {
                Auth::reject()
            },
        )
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if let Err(e) = self.ctx.client().await {
            // The client prints this ("Received disconnect from ...: ...").
            session.disconnect(Disconnect::ByApplication, &e, "")?;
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let handle = session.handle();
        let guard = self
            .ctx
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            session_channel(channel, handle, ctx).await;
            drop(guard);
        });
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ctx = self.ctx.clone();
        let host = host_to_connect.to_string();
        let handle = session.handle();
        tokio::spawn(async move {
            let tunnel = match (ctx.client().await, u16::try_from(port_to_connect)) {
                (Ok(client), Ok(port)) => client.dial(&host, port).await,
                _ => {
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    return;
                }
            };
            match tunnel {
                Ok(t) => {
                    reply.accept().await;
                    relay(t, channel, handle).await;
                }
                Err(e) => {
                    tracing::debug!("cannot reach {host}:{port_to_connect}: {e}");
                    reply
                        .reject(ChannelOpenFailure::Other {
                            code: 2, // SSH_OPEN_CONNECT_FAILED
                            reason: format!(
                                "the target cannot reach {host}:{port_to_connect}: {e}"
                            ),
                        })
                        .await;
                }
            }
        });
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Ok(client) = self.ctx.client().await else {
            return Ok(false);
        };
        let Ok(wanted) = u16::try_from(*port) else {
            return Ok(false);
        };
        // sshd's default (GatewayPorts no) binds the loopback address for
        // "" and "localhost"; an explicit address is used as given.
        let bind = match address {
            "" | "localhost" => "127.0.0.1",
            "*" => "0.0.0.0",
            a => a,
        };
        let mut listener = match client.listen(bind, wanted).await {
            Ok(l) => l,
            Err(e) => {
                tracing::info!("remote forward {address}:{wanted} refused: {e}");
                return Ok(false);
            }
        };
        *port = listener.port.into();
        let handle = session.handle();
        let (addr, bound) = (address.to_string(), *port);
        let task = tokio::spawn(async move {
            while let Some(Ok(id)) = listener.next().await {
                let (client, handle, addr) = (client.clone(), handle.clone(), addr.clone());
                tokio::spawn(async move {
                    let Ok(tunnel) = client.accept(id).await else {
                        return;
                    };
                    // The originator is not known on this side of the target.
                    match handle
                        .channel_open_forwarded_tcpip(addr, bound, "127.0.0.1", 0)
                        .await
                    {
                        Ok(ch) => relay(tunnel, ch, handle).await,
                        Err(e) => tracing::debug!("client refused a forwarded connection: {e}"),
                    }
                });
            }
        });
        if let Some(old) = self
            .forwards
            .insert((address.to_string(), *port), task.abort_handle())
        {
            old.abort();
        }
        Ok(true)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(match self.forwards.remove(&(address.to_string(), port)) {
            Some(t) => {
                t.abort();
                true
            }
            None => false,
        })
    }
}

/// What a session channel was asked to run.
enum Start {
    Exec(Vec<u8>),
    Shell,
    Sftp,
}

/// A `pty-req`, updated by `window-change` until the program starts.
struct PtyRequest {
    term: String,
    rows: u16,
    cols: u16,
}

pub(crate) fn clamp(v: u32, fallback: u16) -> u16 {
    if v == 0 {
        fallback
    } else {
        u16::try_from(v).unwrap_or(u16::MAX)
    }
}

/// Serves one session channel from its first request to its close.
async fn session_channel(mut ch: Channel<Msg>, handle: Handle, ctx: Arc<Ctx>) {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut pty: Option<PtyRequest> = None;
    let start = loop {
        match ch.wait().await {
            Some(ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                ..
            }) => {
                pty = Some(PtyRequest {
                    term,
                    rows: clamp(row_height, DEFAULT_TERMINAL.0),
                    cols: clamp(col_width, DEFAULT_TERMINAL.1),
                })
            }
            Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            }) => {
                if let Some(p) = &mut pty {
                    p.rows = clamp(row_height, p.rows);
                    p.cols = clamp(col_width, p.cols);
                }
            }
            Some(ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            }) => env.push((variable_name.into(), variable_value.into())),
            Some(ChannelMsg::Exec { command, .. }) => break Start::Exec(command),
            Some(ChannelMsg::RequestShell { .. }) => break Start::Shell,
            Some(ChannelMsg::RequestSubsystem { name, .. }) if name == "sftp" => break Start::Sftp,
            Some(ChannelMsg::Close) | None => return,
            // Input before the program exists has nowhere to go: dropped,
            // and its window given back (we grant every byte of window).
            Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                let _ = handle.grant_window(ch.id(), data.len() as u32);
            }
            Some(_) => {}
        }
    };
    let prepared = async {
        let client = ctx.client().await.map_err(|e| e.to_string())?;
        let info = ctx.info(&client).await?.clone();
        Ok::<_, String>((client, info))
    };
    let (client, info) = match prepared.await {
        Ok(v) => v,
        Err(e) => return fail(ch, &e, 255).await,
    };
    let home = PathBuf::from(OsString::from_vec(info.home.to_vec()));
    let shell = if info.shell.is_empty() {
        PathBuf::from("/bin/sh")
    } else {
        PathBuf::from(OsString::from_vec(info.shell.to_vec()))
    };
    // What sshd puts in every session's environment (the rest comes from
    // the yonder daemon's, which is the user's).
    let mut base_env: Vec<(OsString, OsString)> = vec![
        ("HOME".into(), home.clone().into()),
        ("USER".into(), info.user.clone().into()),
        ("LOGNAME".into(), info.user.clone().into()),
        ("SHELL".into(), shell.clone().into()),
    ];
    base_env.extend(env);
    match (start, pty) {
        (Start::Sftp, _) => {
            // The daemon's own executable, whatever its path on the target:
            // it is this same yonder, which serves SFTP as `server sftp`.
            let mut req =
                ExecRequest::new(format!("/proc/{}/exe", info.daemon_pid)).args(["server", "sftp"]);
            req.env = base_env;
            req.cwd = Some(home);
            run_process(ch, handle, client, req, false).await
        }
        (Start::Exec(command), None) => {
            let mut req = ExecRequest::new(shell)
                .arg("-c")
                .arg(OsString::from_vec(command));
            req.env = base_env;
            req.cwd = Some(home);
            run_process(ch, handle, client, req, true).await
        }
        (Start::Shell, None) => {
            // No terminal: a login shell reading commands from stdin, like
            // `ssh -T host < script`.
            let mut req = ExecRequest::new(shell).arg("-l");
            req.env = base_env;
            req.cwd = Some(home);
            run_process(ch, handle, client, req, true).await
        }
        (start, Some(p)) => {
            let (program, args) = match start {
                Start::Exec(command) => (
                    Some(shell),
                    vec![OsString::from("-c"), OsString::from_vec(command)],
                ),
                _ => (None, Vec::new()),
            };
            base_env.push(("TERM".into(), p.term.into()));
            let open = OpenTerminal {
                program,
                args,
                cwd: Some(home),
                env: base_env,
                rows: p.rows,
                cols: p.cols,
            };
            run_terminal(ch, handle, client, open).await
        }
    }
}

/// Tells the client why nothing runs, and ends the channel with `code`.
async fn fail(ch: Channel<Msg>, message: &str, code: u32) {
    let _ = ch
        .extended_data_bytes(1, Bytes::from(format!("yonder: {message}\r\n")))
        .await;
    let _ = ch.exit_status(code).await;
    let _ = ch.eof().await;
    let _ = ch.close().await;
}

/// Reports how a program ended, then ends the channel.
async fn finish(
    wr: &russh::ChannelWriteHalf<Msg>,
    handle: &Handle,
    id: ChannelId,
    status: ExitStatus,
) {
    let _ = wr.eof().await;
    match (status.code, status.signal) {
        (None, Some(sig)) => {
            let _ = handle
                .exit_signal_request(id, signal_to_ssh(sig), false, String::new(), String::new())
                .await;
        }
        _ => {
            let _ = wr.exit_status(status.as_shell_code() as u32).await;
        }
    }
    let _ = wr.close().await;
}

/// Runs a program without a terminal: channel data is its stdin, its stdout
/// is channel data and its stderr extended data (stderr of the SFTP server
/// only goes to the log, as sshd does with sftp-server's).
async fn run_process(
    ch: Channel<Msg>,
    handle: Handle,
    client: Client,
    req: ExecRequest,
    stderr_to_client: bool,
) {
    let program = req.program.clone();
    // The shell's conventions: 127 missing, 126 not executable.
    let code = |e: &yonder_client::RemoteError| match e.kind {
        ErrorKind::NotFound if e.path.as_deref() == Some(program.as_path()) => 127,
        ErrorKind::PermissionDenied => 126,
        _ => 255,
    };
    // A daemon on this machine hands over the program's pipes: its bytes
    // then skip the daemon and HTTP/2 (as sshd's go straight to its child).
    match client.exec_direct(&req).await {
        Ok(Some(p)) => return run_direct(ch, handle, p, stderr_to_client).await,
        Ok(None) => {}
        Err(e) => return fail(ch, &e.to_string(), code(&e)).await,
    }
    let mut proc = match client.exec(req).await {
        Ok(p) => p,
        Err(e) => return fail(ch, &e.to_string(), code(&e)).await,
    };
    let id = ch.id();
    let (rd, wr) = ch.split();
    let mut input = tokio::spawn(input::pump(rd, id, handle.clone(), Stdin(proc.control())));
    loop {
        tokio::select! {
            ev = proc.next_event() => match ev {
                Some(Ok(ProcessEvent::Stdout(b))) => {
                    if wr.data_bytes(b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(ProcessEvent::Stderr(b))) => {
                    if stderr_to_client {
                        if wr.extended_data_bytes(1, b).await.is_err() {
                            break;
                        }
                    } else {
                        tracing::debug!("sftp server: {}", String::from_utf8_lossy(&b).trim_end());
                    }
                }
                Some(Ok(ProcessEvent::Exit(status))) => {
                    finish(&wr, &handle, id, status).await;
                    break;
                }
                Some(Err(e)) => {
                    let _ = wr
                        .extended_data_bytes(1, Bytes::from(format!("yonder: {e}\r\n")))
                        .await;
                    let _ = wr.exit_status(255).await;
                    let _ = wr.close().await;
                    break;
                }
                None => break,
            },
            // The client closed the channel: the program goes with it
            // (dropping it kills it), as when sshd hangs up a session.
            _ = &mut input => break,
        }
    }
    input.abort();
}

/// [`run_process`] for a program whose pipes this process holds: its
/// stdout and stderr are read here until both end, then its exit status
/// (reported by the daemon) ends the channel.
async fn run_direct(
    ch: Channel<Msg>,
    handle: Handle,
    mut proc: DirectProcess,
    stderr_to_client: bool,
) {
    use tokio::io::AsyncReadExt;
    let id = ch.id();
    let (rd, wr) = ch.split();
    let sink = DirectStdin {
        stdin: Arc::new(tokio::sync::Mutex::new(proc.stdin.take())),
        control: proc.control(),
    };
    let mut input = tokio::spawn(input::pump(rd, id, handle.clone(), sink));
    let (mut out_open, mut err_open) = (true, true);
    let mut out = BytesMut::new();
    let mut err = BytesMut::new();
    // Dropping `proc` on a break kills the program, as when sshd hangs up.
    while out_open || err_open {
        out.reserve(DATA_CHUNK);
        err.reserve(DATA_CHUNK);
        tokio::select! {
            r = proc.stdout.read_buf(&mut out), if out_open => match r {
                Ok(n) if n > 0 => {
                    if wr.data_bytes(out.split().freeze()).await.is_err() {
                        input.abort();
                        return;
                    }
                }
                _ => out_open = false,
            },
            r = proc.stderr.read_buf(&mut err), if err_open => match r {
                Ok(n) if n > 0 => {
                    let b = err.split().freeze();
                    if stderr_to_client {
                        if wr.extended_data_bytes(1, b).await.is_err() {
                            input.abort();
                            return;
                        }
                    } else {
                        tracing::debug!("sftp server: {}", String::from_utf8_lossy(&b).trim_end());
                    }
                }
                _ => err_open = false,
            },
            _ = &mut input => return,
        }
    }
    tokio::select! {
        status = proc.wait() => match status {
            Ok(status) => finish(&wr, &handle, id, status).await,
            Err(e) => {
                let _ = wr
                    .extended_data_bytes(1, Bytes::from(format!("yonder: {e}\r\n")))
                    .await;
                let _ = wr.exit_status(255).await;
                let _ = wr.close().await;
            }
        },
        _ = &mut input => return,
    }
    input.abort();
}

/// The stdin pipe of a [`DirectProcess`] as a channel's input.
#[derive(Clone)]
struct DirectStdin {
    stdin: Arc<tokio::sync::Mutex<Option<tokio::net::unix::pipe::Sender>>>,
    control: DirectControl,
}

impl InputSink for DirectStdin {
    async fn write(&self, data: Bytes) -> bool {
        use tokio::io::AsyncWriteExt;
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return false;
        };
        if pipe.write_all(&data).await.is_ok() {
            return true;
        }
        // The program closed its stdin: further input has nowhere to go.
        *stdin = None;
        false
    }

    async fn eof(&self) {
        *self.stdin.lock().await = None;
    }

    async fn control(&self, c: Control) {
        if let Control::Signal(n) = c {
            let _ = self.control.signal(n).await;
        }
    }
}

/// Runs a program in a yonder terminal attached to the channel.
async fn run_terminal(ch: Channel<Msg>, handle: Handle, client: Client, open: OpenTerminal) {
    let info = match client.open_terminal(open).await {
        Ok(i) => i,
        Err(e) => return fail(ch, &e.to_string(), 255).await,
    };
    let mut term = match client.attach_terminal(&info.id, None).await {
        Ok(t) => t,
        Err(e) => {
            let _ = client.kill_terminal(&info.id, 0).await;
            return fail(ch, &e.to_string(), 255).await;
        }
    };
    let sink = TerminalInput {
        writer: term.writer(),
        client: client.clone(),
        id: info.id.clone(),
    };
    let id = ch.id();
    let (rd, wr) = ch.split();
    let mut input = tokio::spawn(input::pump(rd, id, handle.clone(), sink));
    let mut exited = false;
    loop {
        tokio::select! {
            ev = term.next() => match ev {
                Some(Ok(TerminalEvent::Data { data, .. })) => {
                    if wr.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                Some(Ok(TerminalEvent::Lost(_))) => {}
                Some(Ok(TerminalEvent::Exit(status))) => {
                    exited = true;
                    finish(&wr, &handle, id, status).await;
                    break;
                }
                Some(Err(e)) => {
                    let _ = wr
                        .extended_data_bytes(1, Bytes::from(format!("\r\nyonder: {e}\r\n")))
                        .await;
                    let _ = wr.exit_status(255).await;
                    let _ = wr.close().await;
                    break;
                }
                None => break,
            },
            _ = &mut input => break,
        }
    }
    input.abort();
    if !exited {
        // Like sshd closing the pty: the shell gets SIGHUP.
        let _ = client.kill_terminal(&info.id, 0).await;
    }
}

/// Relays a forwarded connection and its channel both ways until the
/// client closes the channel (or either side fails). What the client sends
/// is flow-controlled as a session's input is: a far end that does not
/// read holds up only this channel.
async fn relay(tunnel: Tunnel, ch: Channel<Msg>, handle: Handle) {
    let id = ch.id();
    let (mut from_target, to_target) = tunnel.split();
    let (rd, wr) = ch.split();
    let sink = TunnelInput(Arc::new(tokio::sync::Mutex::new(to_target)));
    let mut input = tokio::spawn(input::pump(rd, id, handle, sink));
    let mut target_done = false;
    loop {
        tokio::select! {
            r = from_target.recv(), if !target_done => match r {
                Ok(Some(data)) => {
                    if wr.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                // Half-close: the client may still send.
                Ok(None) => {
                    let _ = wr.eof().await;
                    target_done = true;
                }
                Err(e) => {
                    tracing::debug!("forwarded connection failed: {e}");
                    break;
                }
            },
            _ = &mut input => break,
        }
    }
    input.abort();
    let _ = wr.close().await;
}

/// A forwarded connection's far end as a channel's input.
#[derive(Clone)]
struct TunnelInput(Arc<tokio::sync::Mutex<TunnelWriter>>);

impl InputSink for TunnelInput {
    async fn write(&self, data: Bytes) -> bool {
        self.0.lock().await.send(data).await.is_ok()
    }

    async fn eof(&self) {
        let _ = self.0.lock().await.close().await;
    }

    async fn control(&self, _: Control) {}
}

/// A program's stdin as a channel's input.
#[derive(Clone)]
struct Stdin(ProcessControl);

impl InputSink for Stdin {
    async fn write(&self, data: Bytes) -> bool {
        self.0.write_stdin(data).await.is_ok()
    }

    async fn eof(&self) {
        let _ = self.0.close_stdin().await;
    }

    async fn control(&self, c: Control) {
        if let Control::Signal(n) = c {
            let _ = self.0.signal(n).await;
        }
    }
}

/// A terminal as a channel's input.
#[derive(Clone)]
struct TerminalInput {
    writer: TerminalWriter,
    client: Client,
    id: String,
}

impl InputSink for TerminalInput {
    async fn write(&self, data: Bytes) -> bool {
        self.writer.write(data).await.is_ok()
    }

    /// A terminal has no end of input (sshd ignores it with a pty too).
    async fn eof(&self) {}

    async fn control(&self, c: Control) {
        match c {
            Control::Resize(rows, cols) => {
                let _ = self.writer.resize(rows, cols).await;
            }
            // `ssh` sends none, but other clients do (RFC 4254 §6.9).
            Control::Signal(n) => {
                let _ = self.client.kill_terminal(&self.id, n).await;
            }
        }
    }
}

/// SSH signal names (RFC 4254 §6.10) to numbers.
pub(crate) fn signal_from_ssh(sig: &Sig) -> Option<i32> {
    Some(match sig {
        Sig::ABRT => libc::SIGABRT,
        Sig::ALRM => libc::SIGALRM,
        Sig::FPE => libc::SIGFPE,
        Sig::HUP => libc::SIGHUP,
        Sig::ILL => libc::SIGILL,
        Sig::INT => libc::SIGINT,
        Sig::KILL => libc::SIGKILL,
        Sig::PIPE => libc::SIGPIPE,
        Sig::QUIT => libc::SIGQUIT,
        Sig::SEGV => libc::SIGSEGV,
        Sig::TERM => libc::SIGTERM,
        Sig::USR1 => libc::SIGUSR1,
        Sig::Custom(name) => match name.as_str() {
            "USR2" => libc::SIGUSR2,
            "CONT" => libc::SIGCONT,
            "STOP" => libc::SIGSTOP,
            "TSTP" => libc::SIGTSTP,
            "WINCH" => libc::SIGWINCH,
            _ => return None,
        },
    })
}

/// Signal numbers to SSH names (`exit-signal`).
fn signal_to_ssh(n: i32) -> Sig {
    match n {
        libc::SIGABRT => Sig::ABRT,
        libc::SIGALRM => Sig::ALRM,
        libc::SIGFPE => Sig::FPE,
        libc::SIGHUP => Sig::HUP,
        libc::SIGILL => Sig::ILL,
        libc::SIGINT => Sig::INT,
        libc::SIGKILL => Sig::KILL,
        libc::SIGPIPE => Sig::PIPE,
        libc::SIGQUIT => Sig::QUIT,
        libc::SIGSEGV => Sig::SEGV,
        libc::SIGTERM => Sig::TERM,
        libc::SIGUSR1 => Sig::USR1,
        libc::SIGUSR2 => Sig::Custom("USR2".into()),
        libc::SIGBUS => Sig::Custom("BUS".into()),
        libc::SIGXCPU => Sig::Custom("XCPU".into()),
        other => Sig::Custom(format!("SIG{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip() {
        for n in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGKILL,
            libc::SIGTERM,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            assert_eq!(signal_from_ssh(&signal_to_ssh(n)), Some(n), "signal {n}");
        }
        assert_eq!(signal_from_ssh(&Sig::Custom("NOPE".into())), None);
    }

    #[test]
    fn window_sizes_are_clamped() {
        assert_eq!(clamp(0, 24), 24);
        assert_eq!(clamp(100_000, 24), u16::MAX);
        assert_eq!(clamp(50, 24), 50);
    }
}
