//! Port forwarding and listening-port discovery: the `Forward` service.
//!
//! Every forwarded TCP connection is its own gRPC call, so it gets HTTP/2's
//! per-stream flow control: a connection whose reader stalls holds at most
//! one stream window plus [`STREAM_QUEUE`] chunks, and never delays the
//! others. The two directions are independent: an `eof` message from the
//! client becomes `shutdown(SHUT_WR)` on the socket, and end of file on the
//! socket becomes an `eof` message, so half-closed protocols (a client that
//! sends its request and shuts down writing, then reads the reply) work.
//!
//! `Listen` (ssh -R) parks each accepted socket in a bounded [`Pending`]
//! table under a fresh id and announces the id; the client claims it with
//! `Accept`. Sockets nobody claims are closed after [`UNCLAIMED_TIMEOUT`].
//!
//! `WatchPorts` polls `/proc/net/tcp{,6}` for listening sockets owned by the
//! daemon's uid, and names the owning process by matching socket inodes in
//! `/proc/<pid>/fd`.

use bytes::BytesMut;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use yonder_proto::limits::{DATA_CHUNK, STREAM_QUEUE};
use yonder_proto::pb::{self, ErrorKind, forward_server::Forward, listen_event, tunnel_message};
use yonder_proto::{RemoteError, host_port};

type RespStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// How long a connection accepted by `Listen` waits for its `Accept`. The
/// client claims it within a round trip; 30 s covers a slow link and a busy
/// client without letting a listener whose client stopped claiming pile up
/// open sockets.
pub const UNCLAIMED_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepted connections waiting for `Accept`, across all listeners. A
/// client that announces faster than it claims gets new arrivals closed
/// instead of growing the table (each entry is an open file descriptor).
pub const MAX_PENDING: usize = 256;

/// How long `Dial` waits for the far side's TCP handshake. The kernel's own
/// SYN retry budget is over two minutes, far longer than a user waits.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Default and floor of `WatchPorts`' poll interval. Reading /proc/net/tcp is
/// cheap but not free on a host with thousands of sockets; 1 s is what an
/// editor's auto-forward needs, and 100 ms is plenty for anyone.
pub const DEFAULT_POLL: Duration = Duration::from_millis(1000);
pub const MIN_POLL: Duration = Duration::from_millis(100);

/// Connections accepted by `Listen`, waiting to be claimed by `Accept`.
#[derive(Debug, Default)]
struct Pending {
    inner: Mutex<PendingInner>,
}

#[derive(Debug, Default)]
struct PendingInner {
    next_id: u64,
    conns: HashMap<u64, TcpStream>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks `sock`; `None` when the table is full (the socket is dropped,
    /// which closes it).
    fn park(self: &Arc<Self>, sock: TcpStream) -> Option<u64> {
        let mut inner = self.lock();
        if inner.conns.len() >= MAX_PENDING {
            return None;
        }
        inner.next_id += 1;
        let id = inner.next_id;
        inner.conns.insert(id, sock);
        drop(inner);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(UNCLAIMED_TIMEOUT).await;
            if let Some(me) = me.upgrade()
                && me.lock().conns.remove(&id).is_some()
            {
                tracing::warn!(id, "closed a forwarded connection nobody accepted");
            }
        });
        Some(id)
    }

    fn claim(&self, id: u64) -> Option<TcpStream> {
        self.lock().conns.remove(&id)
    }
}

#[derive(Debug, Default, Clone)]
pub struct ForwardService {
    pending: Arc<Pending>,
}

fn msg(m: tunnel_message::Message) -> pb::TunnelMessage {
    pb::TunnelMessage { message: Some(m) }
}

fn io_status(what: &str, e: &std::io::Error) -> Status {
    let mut err = RemoteError::from_io(e, "");
    err.path = None;
    err.message = format!("{what}: {}", err.message);
    err.to_status()
}

/// The first message of a tunnel call.
async fn first(
    input: &mut Streaming<pb::TunnelMessage>,
) -> Result<tunnel_message::Message, Status> {
    input
        .message()
        .await?
        .and_then(|m| m.message)
        .ok_or_else(|| {
            RemoteError::new(
                ErrorKind::InvalidArgument,
                "a tunnel call must begin with its target or accept id",
            )
            .to_status()
        })
}

/// Relays between `sock` and the call until both directions have ended or
/// either fails. The response stream ends (cleanly or with the error) only
/// then, which is what tells the client the connection is closed.
fn relay(sock: TcpStream, input: Streaming<pb::TunnelMessage>) -> RespStream<pb::TunnelMessage> {
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    tokio::spawn(async move {
        let (mut rd, mut wr) = sock.into_split();
        let out = tx.clone();
        // Socket to client.
        let up = async move {
            let mut buf = BytesMut::new();
            loop {
                buf.reserve(DATA_CHUNK);
                let n = rd
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| io_status("reading from the forwarded connection", &e))?;
                let m = if n == 0 {
                    msg(tunnel_message::Message::Eof(pb::Empty {}))
                } else {
                    msg(tunnel_message::Message::Data(buf.split().freeze()))
                };
                if out.send(Ok(m)).await.is_err() {
                    return Err(Status::cancelled("the client went away"));
                }
                if n == 0 {
                    return Ok(());
                }
            }
        };
        // Client to socket. The input is handed back rather than dropped
        // so the call stays fully open while the other direction finishes.
        let down = async move {
            let mut input = input;
            loop {
                match input.message().await?.and_then(|m| m.message) {
                    Some(tunnel_message::Message::Data(d)) => wr
                        .write_all(&d)
                        .await
                        .map_err(|e| io_status("writing to the forwarded connection", &e))?,
                    // A clean end of the client's side means the same as eof.
                    Some(tunnel_message::Message::Eof(_)) | None => {
                        let _ = wr.shutdown().await;
                        return Ok::<_, Status>((input, wr));
                    }
                    Some(_) => {
                        return Err(RemoteError::new(
                            ErrorKind::InvalidArgument,
                            "unexpected message inside a tunnel",
                        )
                        .to_status());
                    }
                }
            }
        };
        let r = tokio::select! {
            r = async { tokio::try_join!(up, down) } => r.map(drop),
            // The client dropped the call while both directions were idle.
            () = tx.closed() => return,
        };
        if let Err(s) = r {
            let _ = tx.send(Err(s)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn dial(target: &pb::TcpTarget) -> Result<TcpStream, Status> {
    let port = u16::try_from(target.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            RemoteError::new(
                ErrorKind::InvalidArgument,
                format!("invalid port {}", target.port),
            )
            .to_status()
        })?;
    let what = format!("connecting to {}", host_port(&target.host, port));
    let sock = match tokio::time::timeout(
        DIAL_TIMEOUT,
        TcpStream::connect((target.host.as_str(), port)),
    )
    .await
    {
        Ok(r) => r.map_err(|e| io_status(&what, &e))?,
        Err(_) => {
            return Err(RemoteError::new(
                ErrorKind::Io,
                format!("{what}: no answer within {DIAL_TIMEOUT:?}"),
            )
            .to_status());
        }
    };
    // Forwarded traffic is often interactive; the client side batches bulk
    // data into large chunks anyway.
    let _ = sock.set_nodelay(true);
    Ok(sock)
}

#[tonic::async_trait]
impl Forward for ForwardService {
    type DialStream = RespStream<pb::TunnelMessage>;
    async fn dial(
        &self,
        req: Request<Streaming<pb::TunnelMessage>>,
    ) -> Result<Response<Self::DialStream>, Status> {
        let mut input = req.into_inner();
        let tunnel_message::Message::Connect(target) = first(&mut input).await? else {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                "a dial call must begin with its target",
            )
            .to_status());
        };
        let sock = dial(&target).await?;
        Ok(Response::new(relay(sock, input)))
    }

    type ListenStream = RespStream<pb::ListenEvent>;
    async fn listen(
        &self,
        req: Request<pb::ListenRequest>,
    ) -> Result<Response<Self::ListenStream>, Status> {
        let req = req.into_inner();
        let host = if req.bind_host.is_empty() {
            "127.0.0.1".to_string()
        } else {
            req.bind_host
        };
        let port = u16::try_from(req.port).map_err(|_| {
            RemoteError::new(
                ErrorKind::InvalidArgument,
                format!("invalid port {}", req.port),
            )
            .to_status()
        })?;
        let what = format!("listening on {}", host_port(&host, port));
        let listener = TcpListener::bind((host.as_str(), port))
            .await
            .map_err(|e| io_status(&what, &e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| io_status(&what, &e))?
            .port();
        tracing::info!("forward: listening on {}", host_port(&host, bound));
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let ev = |e| Ok(pb::ListenEvent { event: Some(e) });
        tx.send(ev(listen_event::Event::BoundPort(bound.into())))
            .await
            .map_err(|_| Status::cancelled("the client went away"))?;
        let pending = self.pending.clone();
        tokio::spawn(async move {
            loop {
                let sock = tokio::select! {
                    r = listener.accept() => r,
                    // The client went away: stop listening (dropping the
                    // listener closes the port).
                    () = tx.closed() => break,
                };
                let (sock, peer) = match sock {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: transient; back off briefly
                        // rather than spin, keep listening.
                        tracing::warn!("forward: accept on port {bound}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = sock.set_nodelay(true);
                let Some(id) = pending.park(sock) else {
                    tracing::warn!(
                        "forward: closed a connection from {peer} to port {bound}: \
                         {MAX_PENDING} connections are already waiting to be accepted"
                    );
                    continue;
                };
                if tx
                    .send(ev(listen_event::Event::Accepted(id)))
                    .await
                    .is_err()
                {
                    pending.claim(id);
                    break;
                }
            }
            tracing::info!("forward: stopped listening on port {bound}");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type AcceptStream = RespStream<pb::TunnelMessage>;
    async fn accept(
        &self,
        req: Request<Streaming<pb::TunnelMessage>>,
    ) -> Result<Response<Self::AcceptStream>, Status> {
        let mut input = req.into_inner();
        let tunnel_message::Message::AcceptId(id) = first(&mut input).await? else {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                "an accept call must begin with the accept id",
            )
            .to_status());
        };
        let sock = self.pending.claim(id).ok_or_else(|| {
            RemoteError::new(
                ErrorKind::NotFound,
                format!("no accepted connection {id} is waiting (already claimed or timed out)"),
            )
            .to_status()
        })?;
        Ok(Response::new(relay(sock, input)))
    }

    type WatchPortsStream = RespStream<pb::PortEvent>;
    async fn watch_ports(
        &self,
        req: Request<pb::WatchPortsRequest>,
    ) -> Result<Response<Self::WatchPortsStream>, Status> {
        let interval = match req.into_inner().poll_interval_ms {
            0 => DEFAULT_POLL,
            ms => Duration::from_millis(ms.into()).max(MIN_POLL),
        };
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(watch_ports(interval, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

// ------------------------------------------------------------ port discovery

/// One listening socket from /proc/net/tcp{,6}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListeningSocket {
    pub addr: IpAddr,
    pub port: u16,
    pub uid: u32,
    pub inode: u64,
}

/// The TCP state `TCP_LISTEN` as /proc/net/tcp prints it (include/net/tcp_states.h).
const TCP_LISTEN: &str = "0A";

/// Parses one address as the kernel prints it in /proc/net/tcp{,6}: the
/// address as 32-bit words in host byte order, each `%08X`, then `:PORT` in
/// hex (net/ipv4/tcp_ipv4.c `get_tcp4_sock`, net/ipv6/tcp_ipv6.c).
fn parse_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    if port.len() != 4 || !port.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    if !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match addr.len() {
        8 => IpAddr::from(word(0)?),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = std::net::Ipv6Addr::from(b);
            // A v4-mapped listener (::ffff:127.0.0.1) is a v4 address to a user.
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The listening sockets in the text of /proc/net/tcp or /proc/net/tcp6.
/// Lines that do not parse (the header, anything truncated or odd) are
/// skipped: a kernel that adds columns must not break discovery.
pub fn parse_proc_net_tcp(text: &str) -> Vec<ListeningSocket> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            if f.len() < 10 || !f[0].ends_with(':') || f[3] != TCP_LISTEN {
                return None;
            }
            let (addr, port) = parse_addr(f[1])?;
            Some(ListeningSocket {
                addr,
                port,
                uid: f[7].parse().ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// Listening sockets of `uid`, keyed by (address, port). Port 0 never
/// appears for a real listener, so entries with it are ignored.
fn listening_of(uid: u32) -> BTreeMap<(IpAddr, u16), u64> {
    let mut out = BTreeMap::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // A kernel without IPv6 has no tcp6: nothing listens there.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for s in parse_proc_net_tcp(&text) {
            if s.uid == uid && s.port != 0 {
                out.insert((s.addr, s.port), s.inode);
            }
        }
    }
    out
}

/// The process holding each of `inodes`, by scanning /proc/<pid>/fd. Other
/// users' processes are unreadable and skipped; so are processes that exit
/// during the scan. When several processes share a socket (after fork), the
/// lowest pid wins.
fn owners(inodes: &HashSet<u64>) -> HashMap<u64, (u32, String)> {
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok())
            else {
                continue;
            };
            if inodes.contains(&inode) && !out.contains_key(&inode) {
                let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default();
                out.insert(inode, (pid, name));
            }
        }
        if out.len() == inodes.len() {
            break;
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Known {
    inode: u64,
    pid: u32,
    process: String,
}

/// Polls until the client goes away, sending a `PortEvent` for every
/// listener that appears or disappears. The first poll reports what already
/// listens. The daemon's own listeners (its TCP endpoint, `Listen` ports)
/// are not the user's programs and are left out.
async fn watch_ports(interval: Duration, tx: mpsc::Sender<Result<pb::PortEvent, Status>>) {
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    let me = std::process::id();
    let mut known: BTreeMap<(IpAddr, u16), Known> = BTreeMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = tx.closed() => return,
        }
        let prev: BTreeMap<(IpAddr, u16), u64> = known.iter().map(|(k, v)| (*k, v.inode)).collect();
        let scan = tokio::task::spawn_blocking(move || {
            let now = listening_of(uid);
            let new: HashSet<u64> = now
                .iter()
                .filter(|(k, inode)| prev.get(k) != Some(inode))
                .map(|(_, inode)| *inode)
                .collect();
            let owners = if new.is_empty() {
                HashMap::new()
            } else {
                owners(&new)
            };
            (now, owners)
        })
        .await;
        let Ok((now, owners)) = scan else {
            continue;
        };
        let mut events = Vec::new();
        // Gone, or replaced by a new socket on the same address.
        known.retain(|k, v| {
            if now.get(k) == Some(&v.inode) {
                return true;
            }
            if v.pid != me {
                events.push(port_event(false, k, v));
            }
            false
        });
        for (k, inode) in now {
            if known.contains_key(&k) {
                continue;
            }
            let (pid, process) = owners.get(&inode).cloned().unwrap_or_default();
            let v = Known {
                inode,
                pid,
                process,
            };
            if v.pid != me {
                events.push(port_event(true, &k, &v));
            }
            known.insert(k, v);
        }
        for e in events {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
    }
}

fn port_event(open: bool, (addr, port): &(IpAddr, u16), v: &Known) -> pb::PortEvent {
    pb::PortEvent {
        open,
        address: addr.to_string(),
        port: (*port).into(),
        pid: v.pid,
        process: v.process.clone(),
    }
}

/// Longest `HOST:PORT` a [`fdpass::CONNECT`] request may name.
const MAX_CONNECT_TARGET: usize = 1024;

/// How long a connection on `fdpass.sock` that has answered a connect
/// request waits for the next one.
const CONNECT_IDLE: Duration = Duration::from_secs(60);

/// [`yonder_proto::fdpass::CONNECT`]: a client on this machine (a `yonder
/// forward` to the local target) asks the daemon to connect to `HOST:PORT`
/// as seen from here and takes the connected socket, so its bytes need no
/// HTTP/2 stream. Failures travel back as text, like a dial call's. The
/// client may send further connect requests on the same connection (each
/// forwarded connection then costs no connect and accept here); one idle
/// for [`CONNECT_IDLE`] is closed.
pub async fn connect_for_peer(mut conn: tokio::net::UnixStream, id: u64) {
    use yonder_proto::fdpass;
    loop {
        if !connect_once(&mut conn, id).await {
            return;
        }
        match tokio::time::timeout(CONNECT_IDLE, fdpass::recv(&conn)).await {
            Ok(Ok(Some((fdpass::CONNECT, fds)))) if fds.is_empty() => {}
            Ok(Ok(None)) | Err(_) => return,
            Ok(Ok(Some((kind, _)))) => {
                return tracing::warn!(id, "fd request {kind:#04x} after a connect refused");
            }
            Ok(Err(e)) => return tracing::warn!(id, "malformed fd request: {e}"),
        }
    }
}

/// One connect request, its kind byte already read. False when the
/// connection cannot take another.
async fn connect_once(conn: &mut tokio::net::UnixStream, id: u64) -> bool {
    use yonder_proto::fdpass;
    let target = async {
        let len = usize::from(conn.read_u16().await?);
        if len > MAX_CONNECT_TARGET {
            return Err(std::io::Error::other("target name too long"));
        }
        let mut name = vec![0u8; len];
        conn.read_exact(&mut name).await?;
        String::from_utf8(name).map_err(|_| std::io::Error::other("target is not UTF-8"))
    };
    let target = match tokio::time::timeout(DIAL_TIMEOUT, target).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::warn!(id, "malformed connect request: {e}");
            return false;
        }
        Err(_) => return false,
    };
    let parsed = target.rsplit_once(':').and_then(|(h, p)| {
        let host = h.trim_start_matches('[').trim_end_matches(']');
        Some(pb::TcpTarget {
            host: host.to_string(),
            port: p.parse().ok()?,
        })
    });
    // A request that is not HOST:PORT gets its answer, then the connection
    // is closed, as for any other malformed request.
    let well_formed = parsed.is_some();
    let result = match parsed {
        Some(t) => dial(&t).await.map_err(|s| s.message().to_string()),
        None => Err(format!("{target:?} is not HOST:PORT")),
    };
    match result {
        Ok(sock) => match sock.into_std() {
            Ok(std) => {
                use std::os::fd::AsFd;
                fdpass::send(conn, fdpass::YES, &[std.as_fd()])
                    .await
                    .is_ok()
            }
            Err(e) => {
                tracing::warn!(id, "cannot hand over the connection to {target}: {e}");
                false
            }
        },
        Err(reason) => {
            tracing::info!(id, "forward to {target} failed: {reason}");
            let reason = reason.as_bytes();
            let reason = &reason[..reason.len().min(usize::from(u16::MAX))];
            fdpass::send(conn, fdpass::NO, &[]).await.is_ok()
                && conn.write_u16(reason.len() as u16).await.is_ok()
                && conn.write_all(reason).await.is_ok()
                && well_formed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address field exactly as the kernel formats it: each 32-bit word
    /// of the network-order address read as a native integer, `%08X`.
    fn kernel_hex(ip: IpAddr) -> String {
        let bytes: Vec<u8> = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        bytes
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect()
    }

    fn line(sl: u32, ip: &str, port: u16, st: &str, uid: u32, inode: u64) -> String {
        format!(
            "{sl:4}: {}:{port:04X} {}:0000 {st} 00000000:00000000 00:00000000 00000000 {uid:5}        0 {inode} 1 0000000000000000 100 0 0 10 0",
            kernel_hex(ip.parse().unwrap()),
            kernel_hex(if ip.contains(':') {
                "::".parse().unwrap()
            } else {
                "0.0.0.0".parse().unwrap()
            }),
        )
    }

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    #[test]
    fn parses_listening_v4_and_v6_and_skips_other_states() {
        let text = [
            HEADER.to_string(),
            line(0, "127.0.0.1", 8080, "0A", 1000, 111),
            line(1, "0.0.0.0", 22, "0A", 0, 222),
            // ESTABLISHED (01) and TIME_WAIT (06) are not listeners.
            line(2, "127.0.0.1", 40000, "01", 1000, 333),
            line(3, "127.0.0.1", 40001, "06", 1000, 0),
        ]
        .join("\n");
        let got = parse_proc_net_tcp(&text);
        assert_eq!(
            got,
            vec![
                ListeningSocket {
                    addr: "127.0.0.1".parse().unwrap(),
                    port: 8080,
                    uid: 1000,
                    inode: 111
                },
                ListeningSocket {
                    addr: "0.0.0.0".parse().unwrap(),
                    port: 22,
                    uid: 0,
                    inode: 222
                },
            ]
        );
        let v6 = [
            HEADER.to_string(),
            line(0, "::", 3000, "0A", 1000, 7),
            line(1, "::1", 5173, "0A", 1000, 8),
            line(2, "::ffff:127.0.0.1", 9000, "0A", 1000, 9),
            line(3, "fe80::1:2:3:4", 65535, "0A", 1000, 10),
        ]
        .join("\n");
        let got: Vec<(String, u16)> = parse_proc_net_tcp(&v6)
            .into_iter()
            .map(|s| (s.addr.to_string(), s.port))
            .collect();
        assert_eq!(
            got,
            [
                ("::".to_string(), 3000),
                ("::1".to_string(), 5173),
                ("127.0.0.1".to_string(), 9000),
                ("fe80::1:2:3:4".to_string(), 65535),
            ]
        );
    }

    #[test]
    fn a_real_little_endian_line_parses() {
        // Captured from x86_64 Linux: python3 -m http.server on 127.0.0.1:8000.
        let l = "   1: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 48879 1 0000000000000000 100 0 0 10 0";
        let got = parse_proc_net_tcp(l);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].port, 8000);
        assert_eq!(got[0].inode, 48879);
        if cfg!(target_endian = "little") {
            assert_eq!(got[0].addr.to_string(), "127.0.0.1");
        } else {
            assert_eq!(got[0].addr.to_string(), "1.0.0.127");
        }
    }

    #[test]
    fn hostile_and_odd_lines_are_skipped_not_fatal() {
        let good = line(9, "127.0.0.1", 8080, "0A", 1000, 42);
        let text = [
            "",
            "garbage",
            "   0: 0100007F:1F90",                                  // truncated
            "   0: 0100007F:1F90 00000000:0000 0A",                 // truncated after state
            "   0: 0100007G:1F90 00000000:0000 0A 0 0 0 1000 0 1",  // bad hex
            "   0: 0100007F:1F90Z 00000000:0000 0A 0 0 0 1000 0 1", // bad port
            "   0: 0100007F:11F90 00000000:0000 0A 0 0 0 1000 0 1", // port too long
            "   0: 01007F:1F90 00000000:0000 0A 0 0 0 1000 0 1",    // short address
            "   0: 0100007F1F90 00000000:0000 0A 0 0 0 1000 0 1",   // no colon
            "   0: 0100007F:1F90 00000000:0000 0A 0 0 0 -1 0 1",    // negative uid
            "   0: 0100007F:1F90 00000000:0000 0A 0 0 0 1000 0 99999999999999999999999", // inode overflow
            "   0: +100007F:1F90 00000000:0000 0A 0 0 0 1000 0 1", // sign accepted by from_str_radix
            "   0: 0100007F:+F90 00000000:0000 0A 0 0 0 1000 0 1",
            "   0: ☃☃☃☃☃☃☃☃:1F90 00000000:0000 0A 0 0 0 1000 0 1", // non-ASCII
            "0100007F:1F90 00000000:0000 0A 0 0 0 1000 0 1 extra", // no slot column
            &good,
            &"A".repeat(100_000),
        ]
        .join("\n");
        let got = parse_proc_net_tcp(&text);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].port, 8080);
        assert_eq!(got[0].inode, 42);
    }

    #[test]
    fn extra_columns_from_a_newer_kernel_are_fine() {
        let l = format!("{} 0 0 0 new stuff", line(0, "127.0.0.1", 1, "0A", 5, 6));
        assert_eq!(parse_proc_net_tcp(&l).len(), 1);
    }

    #[test]
    fn the_current_process_listener_is_found_with_its_owner() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let now = listening_of(uid);
        let inode = *now
            .get(&("127.0.0.1".parse().unwrap(), port))
            .expect("our listener is in /proc/net/tcp");
        let owners = owners(&HashSet::from([inode]));
        assert_eq!(owners.get(&inode).map(|o| o.0), Some(std::process::id()));
    }
}
