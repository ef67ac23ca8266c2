//! Terminals that live in the daemon: the `Terminal` service.
//!
//! A terminal is a PTY and the process on it, owned by the daemon's
//! [`Registry`], not by any connection. Its output goes into a bounded ring
//! addressed by absolute byte offsets. Each attached client has its own
//! cursor into that ring and its own flow-controlled stream, so a slow client
//! never stalls the shell or the other clients; one that falls more than the
//! ring's size behind is told how many bytes it lost. Because appending to
//! the ring and reading a cursor's next chunk happen under the same lock, a
//! re-attaching client sees the retained output and then live output with no
//! byte lost or repeated at the seam.
//!
//! Lifecycle: running (attached or detached) -> exited (process gone, output
//! drained) -> removed from the registry. A terminal that stays detached for
//! the grace time is hung up.

use super::pty::{self, PtyMaster};
use super::request_path;
use crate::session::SessionEnv;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use yonder_proto::RemoteError;
use yonder_proto::limits::STREAM_QUEUE;
use yonder_proto::pb::{
    self, ErrorKind, terminal_input, terminal_output, terminal_server::Terminal,
};

type RespStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// A detached terminal ends after this long, like VS Code's reconnection
/// grace time: long enough to survive a lunch break or a train tunnel.
pub const DEFAULT_TERMINAL_GRACE: Duration = Duration::from_secs(3 * 3600);

/// Output retained per terminal for re-attaching clients.
pub const DEFAULT_SCROLLBACK: usize = 1024 * 1024;

/// Largest data message to a client: small enough that a keystroke's echo
/// never waits behind a huge message, large enough for bulk output.
const OUTPUT_CHUNK: usize = 64 * 1024;

/// After the process exits, output still in the PTY is drained for at most
/// this long (a background job holding the terminal open must not keep a
/// dead shell's terminal around forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// After SIGHUP, a terminal's process group gets this long before SIGKILL.
const HANGUP_GRACE: Duration = Duration::from_secs(3);

/// Within the grace, SIGHUP is repeated this often (see `Term::hang_up`).
const HANGUP_REPEAT: Duration = Duration::from_millis(250);

/// Output ring and state shared by the reader, the waiter and the clients.
#[derive(Debug)]
struct State {
    ring: VecDeque<u8>,
    /// Absolute offset of ring[0].
    start: u64,
    /// Absolute offset just past the last byte.
    end: u64,
    exit: Option<pb::ExecExit>,
    /// Exit known and output drained: clients send `exit` once caught up.
    finished: bool,
    attached: u32,
    detached_since: Option<Instant>,
    size: (u16, u16),
}

#[derive(Debug)]
pub struct Term {
    id: String,
    command: String,
    cwd: PathBuf,
    started_ns: i64,
    pid: u32,
    scrollback: usize,
    pty: PtyMaster,
    state: Mutex<State>,
    /// Bumped on every append and on finish; clients wait on it.
    changed: watch::Sender<u64>,
    /// Serialises writes so two clients' inputs never interleave mid-chunk.
    input: tokio::sync::Mutex<()>,
    /// The terminal's `SSH_AUTH_SOCK`: a link to the agent socket of the
    /// session that last opened or attached it (see [`AgentLink`]).
    agent: Option<AgentLink>,
}

/// A terminal outlives the ssh session that opened it, and with it that
/// session's forwarded agent socket: after a reconnect, `git push` in the
/// re-attached terminal would find no agent. So the terminal's
/// `SSH_AUTH_SOCK` is a symbolic link in the daemon's 0700 runtime
/// directory, pointed at the agent of each session that attaches (the last
/// one wins when several are attached), as tmux users do by hand.
#[derive(Debug)]
struct AgentLink {
    path: PathBuf,
    /// Two sessions attaching at once take turns with the temp name.
    repointing: Mutex<()>,
}

impl AgentLink {
    /// A link at `dir/agent-ID.sock` to `agent`, when the path fits a
    /// socket address (the runtime directory's own limit).
    fn create(dir: &Path, id: &str, agent: &[u8]) -> Option<Self> {
        let link = Self {
            path: dir.join(format!("agent-{id}.sock")),
            repointing: Mutex::new(()),
        };
        if link.path.as_os_str().len() > crate::rundir::MAX_SOCKET_PATH {
            tracing::debug!(path = %link.path.display(), "agent link path too long; the terminal keeps its session's SSH_AUTH_SOCK");
            return None;
        }
        link.point_at(agent).then_some(link)
    }

    /// Points the link at `agent`, replacing it atomically.
    fn point_at(&self, agent: &[u8]) -> bool {
        let _turn = self.repointing.lock().unwrap_or_else(|p| p.into_inner());
        let tmp = self.path.with_extension("sock.new");
        let _ = std::fs::remove_file(&tmp);
        let r = std::os::unix::fs::symlink(OsStr::from_bytes(agent), &tmp)
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        match r {
            Ok(()) => true,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(path = %self.path.display(), "cannot link the terminal's agent socket: {e}");
                false
            }
        }
    }
}

impl Drop for AgentLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The agent socket a session forwards, when it names one.
fn session_agent(session: Option<&SessionEnv>) -> Option<&[u8]> {
    session
        .and_then(|s| s.get("SSH_AUTH_SOCK"))
        .filter(|a| !a.is_empty() && !a.contains(&0))
}

impl Term {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self) -> pb::TerminalInfo {
        let s = self.lock();
        pb::TerminalInfo {
            id: self.id.clone(),
            command: self.command.clone(),
            cwd: Bytes::copy_from_slice(self.cwd.as_os_str().as_bytes()),
            started_ns: self.started_ns,
            pid: self.pid,
            attached: s.attached,
            size: Some(pb::TerminalSize {
                rows: s.size.0.into(),
                cols: s.size.1.into(),
            }),
            exit: s.exit,
            output_end: s.end,
            output_start: s.start,
        }
    }

    fn append(&self, data: &[u8]) {
        let end = {
            let mut s = self.lock();
            s.ring.extend(data);
            let over = s.ring.len().saturating_sub(self.scrollback);
            if over > 0 {
                s.ring.drain(..over);
                s.start += over as u64;
            }
            s.end += data.len() as u64;
            s.end
        };
        self.changed.send_replace(end);
    }

    fn signal_group(&self, sig: i32) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: kill(2) on the process group of the session leader we
            // started; it is reaped only by our own waiter task.
            unsafe { libc::kill(-pid, sig) };
        }
    }

    /// Ends the terminal like closing its window: SIGHUP to the process
    /// group, SIGKILL if it is still there after a grace period.
    ///
    /// A SIGHUP is sent again every [`HANGUP_REPEAT`] within the grace: an
    /// interactive bash that takes the signal just before readline blocks in
    /// `pselect` only notices it at the next input byte or signal, and would
    /// otherwise sit out the whole grace and be killed without saving its
    /// history. Other signals a user chose are sent once.
    fn hang_up(self: &Arc<Self>, sig: i32) {
        if self.lock().exit.is_some() {
            return;
        }
        self.signal_group(sig);
        let t = self.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let exited = || t.lock().exit.is_some();
            while sig == libc::SIGHUP && start.elapsed() + HANGUP_REPEAT < HANGUP_GRACE {
                tokio::time::sleep(HANGUP_REPEAT).await;
                if exited() {
                    return;
                }
                t.signal_group(sig);
            }
            tokio::time::sleep(HANGUP_GRACE.saturating_sub(start.elapsed())).await;
            if !exited() {
                t.signal_group(libc::SIGKILL);
            }
        });
    }
}

/// Keeps a client's attachment counted while its output stream runs.
struct Attachment(Arc<Term>);

impl Attachment {
    fn new(t: &Arc<Term>) -> Self {
        let mut s = t.lock();
        s.attached += 1;
        s.detached_since = None;
        drop(s);
        Self(t.clone())
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.attached -= 1;
        if s.attached == 0 {
            s.detached_since = Some(Instant::now());
        }
    }
}

/// All terminals of the daemon.
#[derive(Debug)]
pub struct Registry {
    grace: Duration,
    scrollback: usize,
    terms: Mutex<HashMap<String, Arc<Term>>>,
    /// Where terminals' agent links go (the daemon's runtime directory).
    agent_links: Option<PathBuf>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(DEFAULT_TERMINAL_GRACE)
    }
}

impl Registry {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            scrollback: DEFAULT_SCROLLBACK,
            terms: Mutex::new(HashMap::new()),
            agent_links: None,
        }
    }

    /// Gives terminals opened by a session with an agent a link to it in
    /// `dir` (see [`AgentLink`]). Links left by an earlier daemon (whose
    /// terminals are gone) are removed.
    pub fn with_agent_links(mut self, dir: &Path) -> Self {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.as_bytes();
                if name.starts_with(b"agent-")
                    && (name.ends_with(b".sock") || name.ends_with(b".sock.new"))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.agent_links = Some(dir.to_path_buf());
        self
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Term>>> {
        self.terms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Terminals still running (they keep the daemon from idling out).
    pub fn live(&self) -> usize {
        self.map().len()
    }

    fn get(&self, id: &str) -> Result<Arc<Term>, RemoteError> {
        self.map().get(id).cloned().ok_or_else(|| {
            RemoteError::new(
                ErrorKind::NotFound,
                format!("no terminal with id {id:?} (it may have exited)"),
            )
        })
    }

    /// Hangs up terminals detached for longer than the grace time. Runs for
    /// the daemon's lifetime.
    pub fn start_reaper(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        // Check often enough that a short grace (tests) is honoured promptly,
        // rarely enough to cost nothing.
        let every = (self.grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(reg) = me.upgrade() else { return };
                let expired: Vec<Arc<Term>> = reg
                    .map()
                    .values()
                    .filter(|t| {
                        let s = t.lock();
                        !s.finished
                            && s.attached == 0
                            && s.detached_since.is_some_and(|d| d.elapsed() >= reg.grace)
                    })
                    .cloned()
                    .collect();
                for t in expired {
                    tracing::info!(id = %t.id, "terminal detached for over {:?}: hanging up", reg.grace);
                    t.hang_up(libc::SIGHUP);
                }
            }
        });
    }

    async fn open(
        self: &Arc<Self>,
        req: pb::OpenTerminalRequest,
        session: Option<SessionEnv>,
    ) -> Result<Arc<Term>, RemoteError> {
        let size = req.size.unwrap_or(pb::TerminalSize { rows: 24, cols: 80 });
        let rows = u16::try_from(size.rows).unwrap_or(u16::MAX);
        let cols = u16::try_from(size.cols).unwrap_or(u16::MAX);
        let info = super::system::info();
        let home = PathBuf::from(OsStr::from_bytes(&info.home));
        let cwd = match &req.cwd {
            Some(c) => request_path(c)?,
            None => home.clone(),
        };
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
        let (master, slave) = pty::open(rows, cols).map_err(|e| {
            RemoteError::new(ErrorKind::Io, format!("cannot open a pseudo-terminal: {e}"))
        })?;
        // No program: the user's login shell, started as a login shell the
        // way login(1) and sshd do it (argv[0] begins with '-').
        let (program, login) = if req.program.is_empty() {
            let shell = if info.shell.is_empty() {
                b"/bin/sh".to_vec()
            } else {
                info.shell.to_vec()
            };
            (PathBuf::from(OsStr::from_bytes(&shell)), true)
        } else {
            (request_path(&req.program)?, false)
        };
        let mut cmd = tokio::process::Command::new(&program);
        if login {
            let base = program
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default();
            let mut argv0 = b"-".to_vec();
            argv0.extend(base);
            cmd.arg0(OsStr::from_bytes(&argv0));
        }
        cmd.args(req.args.iter().map(|a| OsStr::from_bytes(a)));
        cmd.current_dir(&cwd);
        if let Some(env) = &session {
            env.apply(&mut cmd);
        }
        let mut id_bytes = [0u8; 4];
        getrandom::fill(&mut id_bytes)
            .map_err(|e| RemoteError::new(ErrorKind::Internal, e.to_string()))?;
        let id = hex::encode(id_bytes);
        let agent = match (&self.agent_links, session_agent(session.as_ref())) {
            (Some(dir), Some(agent)) => AgentLink::create(dir, &id, agent),
            _ => None,
        };
        if let Some(link) = &agent {
            cmd.env("SSH_AUTH_SOCK", &link.path);
        }
        cmd.env("TERM", "xterm-256color");
        for v in &req.env {
            if v.name.is_empty() || v.name.contains(&b'=') || v.name.contains(&0) {
                return Err(RemoteError::new(
                    ErrorKind::InvalidArgument,
                    "invalid environment variable name",
                ));
            }
            cmd.env(OsStr::from_bytes(&v.name), OsStr::from_bytes(&v.value));
        }
        pty::attach_command(&mut cmd, &slave)
            .map_err(|e| RemoteError::new(ErrorKind::Io, e.to_string()))?;
        let mut child = cmd
            .spawn()
            .map_err(|e| RemoteError::from_io(&e, &program))?;
        // Our copy of the slave must go, or the master never sees EOF.
        drop(slave);
        let pid = child.id().unwrap_or(0);
        let mut command = program.display().to_string();
        for a in &req.args {
            command.push(' ');
            command.push_str(&String::from_utf8_lossy(a));
        }
        let started_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let (changed, _) = watch::channel(0);
        let term = Arc::new(Term {
            id,
            command,
            cwd,
            started_ns,
            pid,
            scrollback: self.scrollback,
            pty: master,
            state: Mutex::new(State {
                ring: VecDeque::new(),
                start: 0,
                end: 0,
                exit: None,
                finished: false,
                attached: 0,
                detached_since: Some(Instant::now()),
                size: (rows, cols),
            }),
            changed,
            input: tokio::sync::Mutex::new(()),
            agent,
        });
        self.map().insert(term.id.clone(), term.clone());
        tracing::info!(id = %term.id, pid, command = %term.command, "terminal opened");

        // Reader: PTY output into the ring until EOF.
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
        let t = term.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match t.pty.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => t.append(&buf[..n]),
                }
            }
            let _ = eof_tx.send(());
        });
        // Waiter: the exit status, then drain, then finish and unregister.
        let t = term.clone();
        let reg = Arc::downgrade(self);
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(s) => pb::ExecExit {
                    code: s.code(),
                    signal: s.signal(),
                },
                Err(_) => pb::ExecExit {
                    code: None,
                    signal: None,
                },
            };
            // Known at once: from now on the pid may be reused, so nothing
            // signals its group any more (`hang_up`).
            t.lock().exit = Some(exit);
            let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, eof_rx).await;
            t.lock().finished = true;
            t.changed.send_modify(|_| {});
            tracing::info!(id = %t.id, ?exit, "terminal exited");
            if let Some(reg) = reg.upgrade() {
                reg.map().remove(&t.id);
            }
        });
        Ok(term)
    }
}

/// Streams a terminal's output to one client from `from`.
async fn pump_output(
    term: Arc<Term>,
    from: Option<u64>,
    tx: mpsc::Sender<Result<pb::TerminalOutput, Status>>,
) {
    let _attached = Attachment::new(&term);
    let out = |m| Ok(pb::TerminalOutput { message: Some(m) });
    let mut changed = term.changed.subscribe();
    let mut off = {
        let s = term.lock();
        from.unwrap_or(s.start).min(s.end)
    };
    if tx
        .send(out(terminal_output::Message::Attached(term.info())))
        .await
        .is_err()
    {
        return;
    }
    loop {
        // Mark the current version seen before reading, so an append that
        // lands after this read wakes us.
        changed.borrow_and_update();
        let (lost, chunk, exit) = {
            let s = term.lock();
            let lost = s.start.saturating_sub(off);
            if lost > 0 {
                off = s.start;
            }
            let avail = (s.end - off) as usize;
            let n = avail.min(OUTPUT_CHUNK);
            let at = (off - s.start) as usize;
            let chunk: Vec<u8> = s.ring.range(at..at + n).copied().collect();
            let exit = (n == avail && s.finished).then_some(s.exit).flatten();
            (lost, chunk, exit)
        };
        if lost > 0
            && tx
                .send(out(terminal_output::Message::Lost(lost)))
                .await
                .is_err()
        {
            return;
        }
        if !chunk.is_empty() {
            let len = chunk.len() as u64;
            let data = pb::TerminalData {
                offset: off,
                data: chunk.into(),
            };
            if tx
                .send(out(terminal_output::Message::Data(data)))
                .await
                .is_err()
            {
                return;
            }
            off += len;
            continue;
        }
        if let Some(exit) = exit {
            let _ = tx.send(out(terminal_output::Message::Exit(exit))).await;
            return;
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

/// Applies one client's input until it goes away.
async fn pump_input(term: Arc<Term>, mut input: Streaming<pb::TerminalInput>) {
    while let Ok(Some(msg)) = input.message().await {
        match msg.message {
            Some(terminal_input::Message::Data(d)) => {
                let _g = term.input.lock().await;
                if term.pty.write_all(&d).await.is_err() {
                    return;
                }
            }
            Some(terminal_input::Message::Resize(sz)) => {
                let rows = u16::try_from(sz.rows).unwrap_or(u16::MAX);
                let cols = u16::try_from(sz.cols).unwrap_or(u16::MAX);
                if term.pty.resize(rows, cols).is_ok() {
                    term.lock().size = (rows, cols);
                }
            }
            Some(terminal_input::Message::Attach(_)) | None => {}
        }
    }
}

#[derive(Debug, Clone)]
pub struct TerminalService {
    pub registry: Arc<Registry>,
}

impl Default for TerminalService {
    fn default() -> Self {
        Self {
            registry: Arc::new(Registry::default()),
        }
    }
}

#[tonic::async_trait]
impl Terminal for TerminalService {
    async fn open(
        &self,
        req: Request<pb::OpenTerminalRequest>,
    ) -> Result<Response<pb::TerminalInfo>, Status> {
        let session = SessionEnv::of(&req);
        let term = self.registry.open(req.into_inner(), session).await?;
        Ok(Response::new(term.info()))
    }

    type AttachStream = RespStream<pb::TerminalOutput>;
    async fn attach(
        &self,
        req: Request<Streaming<pb::TerminalInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let session = SessionEnv::of(&req);
        let mut input = req.into_inner();
        let first = input.message().await?.and_then(|m| m.message);
        let Some(terminal_input::Message::Attach(a)) = first else {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                "an attach call must begin with its attach message",
            )
            .into());
        };
        let term = self.registry.get(&a.id)?;
        if let (Some(link), Some(agent)) = (&term.agent, session_agent(session.as_ref())) {
            link.point_at(agent);
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(pump_output(term.clone(), a.from_offset, tx));
        tokio::spawn(pump_input(term, input));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list(
        &self,
        _req: Request<pb::ListTerminalsRequest>,
    ) -> Result<Response<pb::TerminalList>, Status> {
        let terms: Vec<Arc<Term>> = self.registry.map().values().cloned().collect();
        let mut terminals: Vec<pb::TerminalInfo> = terms.iter().map(|t| t.info()).collect();
        terminals.sort_by_key(|t| t.started_ns);
        Ok(Response::new(pb::TerminalList { terminals }))
    }

    async fn kill(
        &self,
        req: Request<pb::KillTerminalRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        let term = self.registry.get(&r.id)?;
        term.hang_up(if r.signal == 0 {
            libc::SIGHUP
        } else {
            r.signal
        });
        Ok(Response::new(pb::Empty {}))
    }
}
