//! Forwarded connections carried by yonder's ssh master itself, the way
//! `ssh -W HOST:PORT` does it: the client side of OpenSSH's multiplexing
//! protocol, one request kind.
//!
//! `yonder forward` on an SSH target accepts a local connection and asks the
//! master (through its control socket, `ControlPath=<control_dir>/%C`) for a
//! `direct-tcpip` channel to `HOST:PORT`, handing over the accepted socket.
//! From then on the master moves the bytes between that socket and sshd, as
//! it would for `ssh -L`: no yonder process, no HTTP/2 stream in the data
//! path. The connection is made by the remote sshd, as seen from the remote
//! host (what the yonder server would have done), and needs sshd to allow TCP
//! forwarding (`AllowTcpForwarding`, `PermitOpen`); when it does not, the
//! caller falls back to a tunnel through the yonder server.
//!
//! The protocol, from OpenSSH's `PROTOCOL.mux` and `mux.c`
//! (<https://github.com/openssh/openssh-portable/blob/master/PROTOCOL.mux>):
//!
//! ```text
//! every message:  uint32 length, then the body; strings are uint32 length + bytes
//! both ways:      uint32 MUX_MSG_HELLO, uint32 version (4), [string name, string value]...
//! client:         uint32 MUX_C_NEW_STDIO_FWD, uint32 request id, string reserved,
//!                 string connect host, uint32 connect port
//!                 then two fds (stdin, stdout), each as its own one-byte
//!                 message with SCM_RIGHTS (mm_send_fd)
//! master:         uint32 MUX_S_SESSION_OPENED, uint32 request id, uint32 session id
//!              or uint32 MUX_S_FAILURE | MUX_S_PERMISSION_DENIED, uint32 request id,
//!                 string reason
//! ```
//!
//! The master answers only once sshd confirmed or refused the channel
//! (`mux_stdio_confirm` in OpenSSH's mux.c), and it holds the channel as long
//! as the control connection stays open: closing it ends the forwarded
//! connection. So a [`Session`] is kept until the master closes its end.
//!
//! One difference from `ssh -L`: OpenSSH marks stdio forwards `force_drain`,
//! so the far side's end of file ends the whole connection once the data
//! before it is delivered; a client that keeps sending after it loses those
//! bytes (`yonder forward --through-server` avoids this path).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const MUX_MSG_HELLO: u32 = 0x0000_0001;
const MUX_C_NEW_STDIO_FWD: u32 = 0x1000_0008;
const MUX_S_PERMISSION_DENIED: u32 = 0x8000_0002;
const MUX_S_FAILURE: u32 = 0x8000_0003;
const MUX_S_SESSION_OPENED: u32 = 0x8000_0006;
/// OpenSSH's `SSHMUX_VER`, unchanged for many releases.
const MUX_VERSION: u32 = 4;
/// Our request's id; one request per control connection.
const REQUEST_ID: u32 = 1;

/// Bound on one message from the master: its replies are a few words and a
/// short reason, its hello a handful of extensions.
const MAX_MESSAGE: u32 = 64 * 1024;

/// How long the master may take to say hello: it answers from its event
/// loop at once unless it is stuck.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long sshd may take to connect to the destination before the master
/// answers. Generous: a destination that drops packets makes sshd wait for
/// the kernel's connect timeout. After it the connection is closed rather
/// than sent another way: the master may still open the channel and start
/// reading the socket.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the master did not take a connection.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// No master listens there (not started yet, died, or multiplexing off).
    #[error("no ssh master at {path}: {source}")]
    NoMaster { path: PathBuf, source: io::Error },
    /// The master, or sshd behind it, refused: forwarding disallowed by the
    /// server (`AllowTcpForwarding no`, `PermitOpen`), or the destination
    /// refused the connection. The master reports both the same way.
    #[error("the ssh master refused to forward to {to}: {reason}")]
    Refused { to: String, reason: String },
    /// It does not speak the protocol we know (another version, a stranger
    /// on the socket).
    #[error("the ssh master at {path} answered unexpectedly: {detail}")]
    Protocol { path: PathBuf, detail: String },
    /// No answer in time.
    #[error("the ssh master did not answer within {0:?}")]
    Timeout(Duration),
    #[error("talking to the ssh master: {0}")]
    Io(#[from] io::Error),
}

impl MuxError {
    /// Whether the socket handed over is certainly untouched (the master
    /// never read from it, and has closed its copies or never got them), so
    /// another path may still carry the connection. A timeout or an I/O
    /// error after the hand-over leaves that open.
    pub fn socket_untouched(&self) -> bool {
        matches!(
            self,
            MuxError::NoMaster { .. } | MuxError::Refused { .. } | MuxError::Protocol { .. }
        )
    }
}

/// One message body: a `u32` length prefix, then `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Our hello, framed.
fn hello() -> Vec<u8> {
    let mut b = Vec::with_capacity(8);
    b.extend_from_slice(&MUX_MSG_HELLO.to_be_bytes());
    b.extend_from_slice(&MUX_VERSION.to_be_bytes());
    frame(&b)
}

/// The `MUX_C_NEW_STDIO_FWD` request for `host:port`, framed.
fn stdio_fwd_request(host: &str, port: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(24 + host.len());
    b.extend_from_slice(&MUX_C_NEW_STDIO_FWD.to_be_bytes());
    b.extend_from_slice(&REQUEST_ID.to_be_bytes());
    put_string(&mut b, b"");
    put_string(&mut b, host.as_bytes());
    b.extend_from_slice(&u32::from(port).to_be_bytes());
    frame(&b)
}

/// A cursor over one message body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(s)
    }
}

/// What the master said to our request.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Opened { session: u32 },
    Refused { reason: String },
}

/// Parses the master's hello body; its version.
fn parse_hello(body: &[u8]) -> Result<u32, String> {
    let mut r = Reader(body);
    match (r.u32(), r.u32()) {
        (Some(MUX_MSG_HELLO), Some(v)) => Ok(v),
        (Some(t), _) => Err(format!("expected a hello, got message 0x{t:08x}")),
        _ => Err("a hello too short to read".into()),
    }
}

/// Parses the reply to our request.
fn parse_reply(body: &[u8]) -> Result<Reply, String> {
    let mut r = Reader(body);
    let (Some(kind), Some(id)) = (r.u32(), r.u32()) else {
        return Err("a reply too short to read".into());
    };
    if id != REQUEST_ID {
        return Err(format!("a reply to request {id}, not ours ({REQUEST_ID})"));
    }
    match kind {
        MUX_S_SESSION_OPENED => r
            .u32()
            .map(|session| Reply::Opened { session })
            .ok_or_else(|| "a session-opened reply without its id".into()),
        MUX_S_FAILURE | MUX_S_PERMISSION_DENIED => {
            let reason = r
                .string()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            Ok(Reply::Refused { reason })
        }
        t => Err(format!("unexpected reply 0x{t:08x}")),
    }
}

/// Reads one message body (bounded by [`MAX_MESSAGE`]).
async fn read_message(sock: &mut UnixStream) -> io::Result<Vec<u8>> {
    let len = sock.read_u32().await?;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {len}-byte message from the ssh master (at most {MAX_MESSAGE})"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    sock.read_exact(&mut body).await?;
    Ok(body)
}

/// One connection the master carries. Dropping it closes the control
/// connection, which makes the master end the forwarded connection.
#[derive(Debug)]
pub struct Session {
    control: UnixStream,
    /// The master's channel number (as in its `-v` logs).
    pub id: u32,
}

impl Session {
    /// Waits until the master closes the control connection: the forwarded
    /// connection has ended (both sides closed, or the master exited).
    pub async fn finished(mut self) {
        // Nothing is expected here; whatever comes is drained in a bounded
        // buffer until end of file.
        let mut buf = [0u8; 256];
        while let Ok(n) = self.control.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    }
}

/// Asks the master at `control` to connect to `host:port` from the remote
/// side and carry `sock` (a connected socket) there. On an error for which
/// [`MuxError::socket_untouched`] holds, `sock` may be used otherwise.
pub async fn stdio_forward(
    control: &Path,
    sock: BorrowedFd<'_>,
    host: &str,
    port: u16,
) -> Result<Session, MuxError> {
    let to = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut c = UnixStream::connect(control)
        .await
        .map_err(|source| MuxError::NoMaster {
            path: control.to_path_buf(),
            source,
        })?;
    let protocol = |detail: String| MuxError::Protocol {
        path: control.to_path_buf(),
        detail,
    };
    // The hello exchange, as `mux_client_hello_exchange`: ours first.
    c.write_all(&hello()).await?;
    let body = tokio::time::timeout(HELLO_TIMEOUT, read_message(&mut c))
        .await
        .map_err(|_| MuxError::Timeout(HELLO_TIMEOUT))??;
    let version = parse_hello(&body).map_err(protocol)?;
    if version != MUX_VERSION {
        return Err(protocol(format!(
            "multiplexing protocol version {version}, not {MUX_VERSION}"
        )));
    }
    // The request, then stdin and stdout: the same socket for both, each in
    // its own message, since the master receives them one at a time
    // (`mm_receive_fd`: one byte, one fd).
    c.write_all(&stdio_fwd_request(host, port)).await?;
    for _ in 0..2 {
        yonder_proto::fdpass::send(&c, 0, &[sock.as_fd()]).await?;
    }
    let body = match tokio::time::timeout(OPEN_TIMEOUT, read_message(&mut c)).await {
        Err(_) => return Err(MuxError::Timeout(OPEN_TIMEOUT)),
        // The master went away before answering: its channel never opened,
        // so it never read from the socket.
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(protocol(
                "it closed the connection without answering".into(),
            ));
        }
        Ok(r) => r?,
    };
    match parse_reply(&body).map_err(protocol)? {
        Reply::Opened { session } => Ok(Session {
            control: c,
            id: session,
        }),
        Reply::Refused { reason } => Err(MuxError::Refused { to, reason }),
    }
}

/// The master path for one forward (one local listener): where the master
/// is, and whether it already refused this forward's destination.
#[derive(Debug)]
pub struct MasterForward {
    control: PathBuf,
    /// Set once the master refused and the yonder server then reached the
    /// same destination: sshd does not forward there (policy, not a closed
    /// port), so later connections skip the attempt.
    refused: AtomicBool,
}

impl MasterForward {
    pub fn new(control: PathBuf) -> Self {
        Self {
            control,
            refused: AtomicBool::new(false),
        }
    }

    /// Hands `sock` to the master for `host:port`; `None` when this forward
    /// already learned that the master will not carry it.
    pub async fn open(
        &self,
        sock: BorrowedFd<'_>,
        host: &str,
        port: u16,
    ) -> Option<Result<Session, MuxError>> {
        if self.refused.load(Ordering::Relaxed) {
            return None;
        }
        Some(stdio_forward(&self.control, sock, host, port).await)
    }

    /// The other path carried a connection that the master had failed with
    /// `e`: a refusal or a protocol mismatch will happen again, so stop
    /// asking. A missing master may be back later (the client starts a new
    /// one when the connection drops), so that is not remembered.
    pub fn fallback_worked(&self, e: &MuxError) {
        if matches!(e, MuxError::Refused { .. } | MuxError::Protocol { .. })
            && !self.refused.swap(true, Ordering::Relaxed)
        {
            tracing::debug!(
                "later connections skip the ssh master and go through the yonder server"
            );
        }
    }
}

/// The control socket of yonder's master for an SSH target (the same path
/// [`crate::Target::connect`] gives ssh); `None` for other targets.
pub async fn control_socket(target: &crate::Target, run_dir: Option<&Path>) -> Option<PathBuf> {
    let crate::Target::Ssh { user, host, port } = target else {
        return None;
    };
    let base = match run_dir {
        Some(d) => d.to_path_buf(),
        None => yonder_server::rundir::RunDir::default_path().ok()?,
    };
    let h = crate::ssh::SshHost {
        user: user.clone(),
        host: host.clone(),
        port: *port,
        settings: crate::ssh::SshSettings::from_env(),
        control_dir: base.join("ssh"),
        multiplex: true,
        via: crate::ssh::Via::Ssh,
        prompter: Default::default(),
    };
    crate::ssh::control_path(&h).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_laid_out_as_openssh_reads_them() {
        assert_eq!(hello(), [0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 4]);
        let r = stdio_fwd_request("db", 5432);
        let mut want = vec![0, 0, 0, 22];
        want.extend([0x10, 0, 0, 8, 0, 0, 0, 1]); // type, request id
        want.extend([0, 0, 0, 0]); // reserved ""
        want.extend([0, 0, 0, 2, b'd', b'b']); // host
        want.extend([0, 0, 0x15, 0x38]); // 5432
        assert_eq!(r, want);
    }

    #[test]
    fn replies_parse_and_hostile_ones_are_errors() {
        let opened = [0x80, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 7];
        assert_eq!(parse_reply(&opened), Ok(Reply::Opened { session: 7 }));
        let mut failed = vec![0x80, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 4];
        failed.extend(b"nope");
        assert_eq!(
            parse_reply(&failed),
            Ok(Reply::Refused {
                reason: "nope".into()
            })
        );
        let denied = [0x80, 0, 0, 2, 0, 0, 0, 1];
        assert_eq!(
            parse_reply(&denied),
            Ok(Reply::Refused {
                reason: String::new()
            })
        );
        for bad in [
            &[][..],
            &[0x80, 0, 0, 6],
            &[0x80, 0, 0, 6, 0, 0, 0, 1],             // no session id
            &[0x80, 0, 0, 6, 0, 0, 0, 9, 0, 0, 0, 7], // someone else's request
            &[0x80, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0], // an exit message
        ] {
            assert!(parse_reply(bad).is_err(), "{bad:?} was accepted");
        }
        // A reason whose length runs past the end is read as empty.
        let torn = [0x80, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, b'x'];
        assert_eq!(
            parse_reply(&torn),
            Ok(Reply::Refused {
                reason: String::new()
            })
        );
        assert_eq!(parse_hello(&[0, 0, 0, 1, 0, 0, 0, 4, 0, 0]), Ok(4));
        assert!(parse_hello(&[0x80, 0, 0, 6, 0, 0, 0, 4]).is_err());
        assert!(parse_hello(&[0, 0, 0, 1]).is_err());
    }

    /// A fake master on a socket pair: checks the request and both fds,
    /// then refuses; the caller's socket stays usable.
    #[tokio::test]
    async fn a_refusal_leaves_the_socket_to_the_caller() {
        let dir = std::env::temp_dir().join(format!("yonder-mux-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("ctl");
        let _ = std::fs::remove_file(&path);
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        let master = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(&hello()).await.unwrap();
            let h = read_message(&mut s).await.unwrap();
            assert_eq!(parse_hello(&h), Ok(MUX_VERSION));
            let req = read_message(&mut s).await.unwrap();
            assert_eq!(frame(&req), stdio_fwd_request("example.org", 80));
            let mut fds = Vec::new();
            for _ in 0..2 {
                let (byte, got) = yonder_proto::fdpass::recv(&s).await.unwrap().unwrap();
                assert_eq!((byte, got.len()), (0, 1));
                fds.extend(got);
            }
            let mut reply = vec![0x80, 0, 0, 3, 0, 0, 0, 1];
            put_string(&mut reply, b"Session open refused by peer");
            s.write_all(&frame(&reply)).await.unwrap();
            fds
        });
        let (a, mut b) = UnixStream::pair().unwrap();
        let e = stdio_forward(&path, a.as_fd(), "example.org", 80)
            .await
            .unwrap_err();
        assert!(e.socket_untouched(), "{e}");
        assert!(e.to_string().contains("refused by peer"), "{e}");
        drop(master.await.unwrap());
        let mut a = a;
        a.write_all(b"still mine").await.unwrap();
        let mut got = [0u8; 10];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"still mine");
        let m = MasterForward::new(path.clone());
        m.fallback_worked(&e);
        assert!(m.open(a.as_fd(), "example.org", 80).await.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
