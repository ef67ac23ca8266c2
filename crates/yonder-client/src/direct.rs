//! Forwarded connections without a tunnel, for a daemon on this machine.
//!
//! When the client reached the daemon through its unix socket, the daemon
//! can connect to `HOST:PORT` itself (as seen from the server: its network
//! namespace, its resolver) and pass the connected socket back over
//! `fdpass.sock` ([`yonder_proto::fdpass`]). The client then joins it to the
//! local connection with one blocking thread per direction: bytes move
//! between the two sockets with no HTTP/2 framing and no async runtime in
//! the way.

use crate::forward::Relayed;
use crate::{Client, Result};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use yonder_proto::pb::ErrorKind;
use yonder_proto::{RemoteError, fdpass};

impl Client {
    /// The daemon's fd socket, when this client can use it (see the module
    /// docs).
    pub fn with_fdpass(mut self, path: std::path::PathBuf) -> Self {
        self.fdpass = Some(std::sync::Arc::new(path));
        self
    }

    /// Connects to `host:port` as seen from the server and returns the
    /// socket itself; `Ok(None)` when this client has no direct path (the
    /// caller then uses [`Client::dial`]).
    ///
    /// A connection to `fdpass.sock` that answered is kept for the next
    /// request (the daemon serves connect requests on it until it has been
    /// idle a minute), which saves a connect and accept per forwarded
    /// connection. One that the daemon has closed meanwhile (idle, or a
    /// daemon that takes one request per connection) is replaced by a new
    /// one.
    pub async fn dial_direct(&self, host: &str, port: u16) -> Result<Option<TcpStream>> {
        let Some(path) = self.fdpass.as_deref() else {
            return Ok(None);
        };
        let target = yonder_proto::host_port(host, port);
        let io = |e: io::Error| {
            RemoteError::new(
                ErrorKind::Io,
                format!("asking the daemon to connect to {target}: {e}"),
            )
        };
        let len = u16::try_from(target.len())
            .map_err(|_| RemoteError::new(ErrorKind::InvalidArgument, "host name too long"))?;
        while let Some(mut conn) = self.connect_conns.take() {
            match ask_connect(&mut conn, len, &target).await {
                Ok(Answer::Closed) | Err(_) => continue,
                Ok(answer) => return self.answered(conn, answer),
            }
        }
        let Ok(mut conn) = UnixStream::connect(path).await else {
            return Ok(None);
        };
        let answer = ask_connect(&mut conn, len, &target).await.map_err(io)?;
        self.answered(conn, answer)
    }

    fn answered(&self, conn: UnixStream, answer: Answer) -> Result<Option<TcpStream>> {
        match answer {
            Answer::Connected(sock) => {
                self.connect_conns.put(conn);
                Ok(Some(sock))
            }
            Answer::Refused(reason) => {
                self.connect_conns.put(conn);
                Err(RemoteError::new(ErrorKind::Io, reason))
            }
            // Closed without an answer on a new connection: the daemon
            // does not take requests from us (another user); the tunnel
            // still works.
            Answer::Closed => Ok(None),
        }
    }
}

/// What the daemon said to a connect request.
enum Answer {
    Connected(TcpStream),
    /// It could not connect; the reason, in its words.
    Refused(String),
    Closed,
}

/// One connect request on `conn`. An error, or [`Answer::Closed`], leaves
/// the connection unusable.
async fn ask_connect(conn: &mut UnixStream, len: u16, target: &str) -> io::Result<Answer> {
    // One write: the kind byte carries no fds here, and the daemon reads it
    // alone before the rest.
    let mut request = Vec::with_capacity(3 + target.len());
    request.push(fdpass::CONNECT);
    request.extend_from_slice(&len.to_be_bytes());
    request.extend_from_slice(target.as_bytes());
    conn.write_all(&request).await?;
    match fdpass::recv(conn).await? {
        Some((fdpass::YES, fds)) => {
            let fd = fds
                .into_iter()
                .next()
                .ok_or_else(|| io::Error::other("no socket came back"))?;
            let sock = std::net::TcpStream::from(fd);
            sock.set_nonblocking(true)?;
            Ok(Answer::Connected(TcpStream::from_std(sock)?))
        }
        Some((_, _)) => {
            let len = conn.read_u16().await?;
            let mut reason = vec![0u8; usize::from(len)];
            conn.read_exact(&mut reason).await?;
            Ok(Answer::Refused(
                String::from_utf8_lossy(&reason).into_owned(),
            ))
        }
        None => Ok(Answer::Closed),
    }
}

/// How long a client keeps an idle connection to `fdpass.sock`: well
/// under the daemon's minute, so it is rarely closed under a request.
const CONN_IDLE: std::time::Duration = std::time::Duration::from_secs(20);
/// Most idle connections kept (parallel forwarded connections each take
/// one while they ask).
const CONN_IDLE_MAX: usize = 8;

/// Idle connections to `fdpass.sock`, newest last.
#[derive(Default)]
pub(crate) struct IdleConns(std::sync::Mutex<Vec<(UnixStream, std::time::Instant)>>);

impl IdleConns {
    fn take(&self) -> Option<UnixStream> {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, since)| since.elapsed() < CONN_IDLE);
        idle.pop().map(|(c, _)| c)
    }

    fn put(&self, conn: UnixStream) {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < CONN_IDLE_MAX {
            idle.push((conn, std::time::Instant::now()));
        }
    }
}

/// First size of a relay thread's buffer: enough for interactive traffic.
const RELAY_BUF_MIN: usize = 16 * 1024;
/// Largest size it grows to while reads keep filling it (a bulk stream).
const RELAY_BUF_MAX: usize = 4 << 20;
/// Bytes above [`RELAY_BUF_MIN`] that all relay buffers of this process
/// may hold together: a few bulk streams get big buffers, hundreds of
/// parallel ones stay small, and memory stays bounded either way.
const RELAY_GROWTH_BUDGET: usize = 64 << 20;
static RELAY_GROWTH_LEFT: AtomicUsize = AtomicUsize::new(RELAY_GROWTH_BUDGET);

/// A relay thread's buffer; its growth is taken from, and given back to,
/// [`RELAY_GROWTH_LEFT`]. Mapped by itself (`mmap`), not from the heap, so
/// that its memory goes back to the system when it is dropped: a forwarder
/// that has carried a burst of bulk connections does not keep their buffers.
struct RelayBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

/// Anonymous private memory of `len` bytes (zeroed, resident once touched).
fn map(len: usize) -> io::Result<std::ptr::NonNull<u8>> {
    // SAFETY: a fresh anonymous mapping; no file, no fixed address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    std::ptr::NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

fn unmap(ptr: std::ptr::NonNull<u8>, len: usize) {
    // SAFETY: a mapping of exactly `len` bytes made by `map`, no longer used.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

impl RelayBuf {
    fn new() -> io::Result<Self> {
        Ok(Self {
            ptr: map(RELAY_BUF_MIN)?,
            len: RELAY_BUF_MIN,
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes mapped read-write, owned by `self` alone.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Doubles the buffer (its contents are not kept) when it is below the
    /// maximum and the budget allows; otherwise keeps it as it is.
    fn grow(&mut self) {
        let more = self.len;
        if self.len >= RELAY_BUF_MAX {
            return;
        }
        let taken = RELAY_GROWTH_LEFT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(more)
        });
        if taken.is_err() {
            return;
        }
        match map(self.len + more) {
            Ok(p) => {
                unmap(self.ptr, self.len);
                self.ptr = p;
                self.len += more;
            }
            Err(_) => {
                RELAY_GROWTH_LEFT.fetch_add(more, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for RelayBuf {
    fn drop(&mut self) {
        unmap(self.ptr, self.len);
        RELAY_GROWTH_LEFT.fetch_add(self.len - RELAY_BUF_MIN, Ordering::Relaxed);
    }
}

/// Moves bytes from `from` to `to` until end of file, then shuts down
/// `to`'s writing (half-close travels on). Blocking: it runs on its own
/// thread, which sleeps in the kernel between chunks, with no readiness
/// round trip through the runtime per chunk.
///
/// A plain `read`/`write` through a buffer that grows while reads fill it,
/// not `splice(2)`: measured side by side on loopback (docs/PERFORMANCE.md),
/// the copy through a large buffer moved more per second than `splice`,
/// which is capped at a pipe's size per call and hands the sender's pages on
/// to the receiver instead of fresh ones in the relay's cache.
fn copy_one_way(mut from: &std::net::TcpStream, mut to: &std::net::TcpStream) -> io::Result<u64> {
    use std::io::{Read, Write};
    let mut buf = RelayBuf::new()?;
    let mut total = 0u64;
    loop {
        let n = match from.read(buf.as_mut()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            let _ = to.shutdown(std::net::Shutdown::Write);
            return Ok(total);
        }
        to.write_all(&buf.as_mut()[..n])?;
        total += n as u64;
        if n == buf.len() {
            buf.grow();
        }
    }
}

/// Stack of a relay thread: a few locals; its buffer is mapped apart.
const RELAY_STACK: usize = 64 * 1024;
/// How long a relay thread with nothing to do waits for another connection
/// before it ends.
const RELAY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
/// Most relay threads kept waiting at once; more end when their connection
/// does.
const RELAY_IDLE_MAX: usize = 64;

type RelayJob = Box<dyn FnOnce() + Send>;

/// Relay threads that finished a connection wait a while for the next one,
/// so a burst of short connections (a web page's requests) does not start
/// two threads for each.
struct RelayPool {
    state: std::sync::Mutex<PoolState>,
    wake: std::sync::Condvar,
}

struct PoolState {
    jobs: std::collections::VecDeque<RelayJob>,
    /// Threads waiting for a job. A job is queued only while there are
    /// more of them than queued jobs, so each queued job has a taker.
    idle: usize,
}

static RELAY_POOL: RelayPool = RelayPool::new();

impl RelayPool {
    const fn new() -> Self {
        Self {
            state: std::sync::Mutex::new(PoolState {
                jobs: std::collections::VecDeque::new(),
                idle: 0,
            }),
            wake: std::sync::Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A job never runs under the lock, so a panic cannot leave the
        // state half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `job` on a waiting thread, or on a new one.
    fn run(&'static self, job: RelayJob) -> io::Result<()> {
        {
            let mut st = self.lock();
            if st.idle > st.jobs.len() {
                st.jobs.push_back(job);
                self.wake.notify_one();
                return Ok(());
            }
        }
        std::thread::Builder::new()
            .name("yonder-relay".into())
            .stack_size(RELAY_STACK)
            .spawn(move || self.work(job))
            .map(drop)
    }

    fn work(&self, mut job: RelayJob) {
        loop {
            job();
            let mut st = self.lock();
            if st.idle >= RELAY_IDLE_MAX {
                return;
            }
            st.idle += 1;
            let deadline = std::time::Instant::now() + RELAY_IDLE;
            job = loop {
                if let Some(next) = st.jobs.pop_front() {
                    st.idle -= 1;
                    break next;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    st.idle -= 1;
                    return;
                }
                st = self
                    .wake
                    .wait_timeout(st, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            };
        }
    }
}

/// Joins two connected sockets both ways until both have reached end of
/// file, honouring half-close each way. Each direction is a thread (from
/// [`RELAY_POOL`]); on an
/// error both sockets are shut down, which ends the other direction too.
pub async fn relay_sockets(a: TcpStream, b: TcpStream) -> io::Result<Relayed> {
    let (a, b) = (a.into_std()?, b.into_std()?);
    a.set_nonblocking(false)?;
    b.set_nonblocking(false)?;
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    let one_way = move |from: std::net::TcpStream, to: std::net::TcpStream| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = RELAY_POOL.run(Box::new(move || {
            let r = copy_one_way(&from, &to);
            if r.is_err() {
                let _ = from.shutdown(std::net::Shutdown::Both);
                let _ = to.shutdown(std::net::Shutdown::Both);
            }
            let _ = tx.send(r);
        }));
        (spawned, rx)
    };
    let (up, up_rx) = one_way(a, b);
    up?;
    let (down, down_rx) = one_way(b2, a2);
    down?;
    let gone = || io::Error::other("relay thread ended without a result");
    let sent = up_rx.await.map_err(|_| gone())??;
    let received = down_rx.await.map_err(|_| gone())??;
    Ok(Relayed { sent, received })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close() {
        let (mut left, left_inner) = pair().await;
        let (right_inner, mut right) = pair().await;
        let relay = tokio::spawn(relay_sockets(left_inner, right_inner));
        let data: Vec<u8> = (0..(5u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
        let up = data.clone();
        let w = tokio::spawn(async move {
            left.write_all(&up).await.unwrap();
            left.shutdown().await.unwrap();
            // Half-closed: the other direction still works.
            let mut back = Vec::new();
            left.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        right.read_to_end(&mut got).await.unwrap();
        assert!(got == data, "upload arrived intact");
        right.write_all(b"reply after eof").await.unwrap();
        right.shutdown().await.unwrap();
        assert_eq!(w.await.unwrap(), b"reply after eof");
        let r = relay.await.unwrap().unwrap();
        assert_eq!(r.sent, data.len() as u64);
        assert_eq!(r.received, 15);
    }

    /// A finished relay thread takes the next connection; jobs that must
    /// all run at once (each waits for the others) each get a thread.
    #[test]
    fn relay_threads_are_reused_and_never_leave_a_job_waiting() {
        // A pool of its own: other tests' relays use the shared one.
        static POOL: RelayPool = RelayPool::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let run = |tx: std::sync::mpsc::Sender<std::thread::ThreadId>| {
            POOL.run(Box::new(move || {
                tx.send(std::thread::current().id()).unwrap();
            }))
            .unwrap();
        };
        run(tx.clone());
        let first = rx.recv().unwrap();
        // Until it waits in the pool, a new job starts a thread of its own.
        let start = std::time::Instant::now();
        while POOL.lock().idle == 0 {
            assert!(start.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        run(tx.clone());
        assert_eq!(rx.recv().unwrap(), first, "the idle thread took the job");

        const N: usize = 12;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(N));
        for _ in 0..N {
            let (barrier, tx) = (barrier.clone(), tx.clone());
            POOL.run(Box::new(move || {
                barrier.wait();
                tx.send(std::thread::current().id()).unwrap();
            }))
            .unwrap();
        }
        let mut ids = std::collections::HashSet::new();
        for _ in 0..N {
            let id = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("a job waited with no thread to run it");
            ids.insert(id);
        }
        assert_eq!(ids.len(), N);
    }

    #[test]
    fn relay_buffers_grow_within_one_shared_budget_and_give_it_back() {
        let before = RELAY_GROWTH_LEFT.load(Ordering::Relaxed);
        let mut bufs: Vec<RelayBuf> = (0..40).map(|_| RelayBuf::new().unwrap()).collect();
        // One bulk stream alone reaches the maximum and stops there.
        for _ in 0..12 {
            bufs[0].grow();
        }
        assert_eq!(bufs[0].len(), RELAY_BUF_MAX);
        for _ in 0..12 {
            for b in &mut bufs {
                b.grow();
            }
        }
        assert!(bufs.iter().all(|b| b.len() <= RELAY_BUF_MAX));
        assert!(
            bufs[0].len() == RELAY_BUF_MAX,
            "the first buffers reach the maximum"
        );
        let grown: usize = bufs.iter().map(|b| b.len() - RELAY_BUF_MIN).sum();
        assert!(grown <= before, "{grown} bytes of growth, budget {before}");
        assert!(
            bufs.last().unwrap().len() < RELAY_BUF_MAX,
            "40 buffers of 4 MiB would exceed the budget: the last stays smaller"
        );
        drop(bufs);
        assert_eq!(RELAY_GROWTH_LEFT.load(Ordering::Relaxed), before);
    }
}
