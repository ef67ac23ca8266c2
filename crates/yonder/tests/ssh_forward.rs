//! `yonder forward` over SSH, against a real sshd on 127.0.0.1: each
//! connection is handed to yonder's ssh master (as `ssh -W` would), which
//! then carries the bytes itself; where sshd does not forward, the yonder
//! server does. The "remote" is this machine, so the sink servers run here
//! and `ss` shows which process connected to them: sshd (the master's
//! channel) or the remote yonder daemon (the fallback).

mod common;

use common::sshd::*;
use common::*;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const MIB: usize = 1 << 20;

/// Reads until the client half-closes, then sends everything back and
/// closes: works only if end of file crosses the tunnel while the reply
/// direction stays open.
async fn echo_after_eof_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).await.is_ok() {
                    let _ = s.write_all(&all).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Sends `len` random bytes through `addr` while it still reads nothing,
/// half-closes, and checks that exactly those bytes come back.
async fn round_trip(addr: &str, len: usize) {
    let mut data = vec![0u8; len];
    getrandom::fill(&mut data).unwrap();
    let s = timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::with_capacity(len);
    timeout(DEADLINE, r.read_to_end(&mut back))
        .await
        .expect("the echo in time")
        .expect("the echo");
    drop(writer.await.unwrap());
    assert_eq!(back.len(), data.len(), "bytes back");
    assert_eq!(
        hex::encode(Sha256::digest(&back)),
        hex::encode(Sha256::digest(&data)),
        "the bytes came back changed"
    );
}

/// Reads until the client half-closes (in constant memory), then answers
/// with the length and SHA-256 of what came.
async fn digest_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut h, mut len, mut buf) = (Sha256::new(), 0usize, vec![0u8; 64 * 1024]);
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            h.update(&buf[..n]);
                            len += n;
                        }
                        Err(_) => return,
                    }
                }
                let reply = format!("{len} {}", hex::encode(h.finalize()));
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Sends `len` random bytes to a [`digest_server`] through `addr`,
/// half-closes, and checks its answer.
async fn digest_round_trip(addr: &str, len: usize) {
    let mut data = vec![0u8; len];
    getrandom::fill(&mut data).unwrap();
    let mut s = timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    s.write_all(&data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut reply = String::new();
    timeout(DEADLINE, s.read_to_string(&mut reply))
        .await
        .expect("the answer in time")
        .expect("the answer");
    assert_eq!(
        reply,
        format!("{len} {}", hex::encode(Sha256::digest(&data)))
    );
}

/// [`digest_round_trip`] that reports failure instead of panicking.
async fn try_digest_round_trip(addr: &str, len: usize) -> bool {
    let mut data = vec![0u8; len];
    getrandom::fill(&mut data).unwrap();
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(&data).await?;
        s.shutdown().await?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    matches!(
        timeout(DEADLINE, exchange).await,
        Ok(Ok(r)) if r == format!("{len} {}", hex::encode(Sha256::digest(&data)))
    )
}

/// The process names holding connections to the sink at `port` (the
/// connecting side, as `ss -p` shows them).
fn sink_side(port: u16) -> String {
    let out = std::process::Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Who connects to the sink at `port` for one idle connection opened
/// through the forward at `listen` (see [`sink_side`]).
async fn sink_peer(listen: &str, port: u16) -> String {
    let idle = TcpStream::connect(listen).await.unwrap();
    eventually("a connection to the sink", || !sink_side(port).is_empty()).await;
    let who = sink_side(port);
    drop(idle);
    who
}

/// A running `yonder forward` on `yt`, with its debug log collected.
struct Forwarder {
    child: tokio::process::Child,
    /// Held open: the forwarder may print more mappings.
    _stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: Arc<Mutex<String>>,
}

impl Forwarder {
    /// Forwards a free local port to `to` on the target; returns the local
    /// address.
    async fn start(s: &Sshd, to: SocketAddr) -> (Self, String) {
        Self::start_with(s, to, &[]).await
    }

    async fn start_with(s: &Sshd, to: SocketAddr, extra: &[&str]) -> (Self, String) {
        let mut cmd = tokio::process::Command::from(s.cli());
        cmd.args([
            "forward",
            "yt",
            &format!("0:127.0.0.1:{}", to.port()),
            "--json",
        ])
        .args(extra)
        .env("YONDER_LOG", "warn,yonder=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn yonder forward");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let e = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = err_lines.next_line().await {
                let mut e = e.lock().unwrap();
                e.push_str(&l);
                e.push('\n');
            }
        });
        let line = match timeout(Duration::from_secs(60), stdout.next_line()).await {
            Ok(Ok(Some(l))) => l,
            other => panic!(
                "no mapping from yonder forward ({other:?}); stderr:\n{}",
                stderr.lock().unwrap()
            ),
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let listen = v["listen"].as_str().expect("listen").to_string();
        (
            Self {
                child,
                _stdout: stdout,
                stderr,
            },
            listen,
        )
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// How many descriptors the forwarder has open.
    fn open_fds(&self) -> usize {
        let pid = self.child.id().expect("running");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// The master carries a forwarded connection: 8 MiB each way with a
/// half-close in between, intact; the sink's peer is sshd itself (the
/// master's direct-tcpip channel), not the yonder daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_over_ssh_rides_on_the_master_and_honours_half_close() {
    let s = Sshd::start();
    let sink = echo_after_eof_server().await;
    let (mut f, listen) = Forwarder::start(&s, sink).await;
    let fds = f.open_fds();

    // An idle connection first, to see who connected to the sink.
    let who = sink_peer(&listen, sink.port()).await;
    assert!(
        who.contains("\"sshd\"") && !who.contains("\"yonder\""),
        "the sink's peer is sshd (the master's channel), not yonder: {who}\nlog:\n{}",
        f.log()
    );

    for _ in 0..2 {
        round_trip(&listen, 8 * MIB).await;
    }
    let log = f.log();
    assert!(
        log.contains("carried by the ssh master") && !log.contains("through the server"),
        "{log}"
    );
    // Each connection's control connection ends with it: nothing piles up
    // in the forwarder.
    eventually(
        "the forwarder's descriptors back to where they were",
        || f.open_fds() <= fds,
    )
    .await;
    assert!(f.running());
}

/// With `AllowTcpForwarding no` on the server the master's request is
/// refused; the connection still goes through, via the yonder server, and
/// later connections do not ask the master again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tcp_forwarding_on_the_server_the_yonder_server_carries_it() {
    let s = Sshd::start_with(&["-o", "AllowTcpForwarding=no"]);
    let sink = echo_after_eof_server().await;
    let (mut f, listen) = Forwarder::start(&s, sink).await;

    let who = sink_peer(&listen, sink.port()).await;
    assert!(
        who.contains("\"yonder\"") && !who.contains("\"sshd\""),
        "the yonder daemon connected to the sink: {who}"
    );
    // The sink sees the connection before the forwarder hears back that
    // the fallback worked; only then is the master skipped.
    let err = f.stderr.clone();
    eventually("the forwarder notes the fallback", || {
        err.lock()
            .unwrap()
            .contains("later connections skip the ssh master")
    })
    .await;
    for _ in 0..3 {
        round_trip(&listen, 2 * MIB).await;
    }
    let log = f.log();
    assert_eq!(
        log.matches("refused to forward").count(),
        1,
        "only the first connection asks the master:\n{log}"
    );
    assert!(!log.contains("carried by the ssh master"), "{log}");
    assert!(
        s.log().contains("refused local port forward")
            || s.log().contains("administratively prohibited")
            || s.log().contains("forwarding disabled"),
        "sshd refused the channel:\n{}",
        s.log()
    );
    assert!(f.running());
}

/// The master exits in the middle of a transfer (its control connection
/// closes with it): that connection ends, promptly and without a hang; the
/// forward keeps running and carries the next connection (the client brings
/// the master back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_leaving_mid_transfer_ends_that_connection_not_the_forward() {
    let s = Sshd::start();
    let sink = digest_server().await;
    let (mut f, listen) = Forwarder::start(&s, sink).await;
    let c = TcpStream::connect(&listen).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 256 * 1024];
        // Bounded: a connection that outlived the master would stop here.
        for _ in 0..100_000 {
            if w.write_all(&chunk).await.is_err() {
                return true;
            }
        }
        false
    });
    eventually("the master carries the connection", || {
        sink_side(sink.port()).contains("\"sshd\"")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let st = std::process::Command::new("ssh")
        .arg("-F")
        .arg(&s.config)
        .arg("-o")
        .arg(format!("ControlPath={}/ssh/%C", s.run_dir.display()))
        .args(["-O", "exit", "yt"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "ssh -O exit");

    // The local connection ends: end of file or a reset, not a hang.
    let mut buf = [0u8; 1024];
    let end = timeout(DEADLINE, r.read(&mut buf))
        .await
        .expect("the connection ends when the master leaves");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    let failed = timeout(DEADLINE, writer)
        .await
        .expect("the writer stops")
        .unwrap();
    assert!(failed, "writes fail once the connection is gone");

    assert!(f.running(), "the forward goes on:\n{}", f.log());
    // The next connections go through (the client starts a new master).
    // One accepted while the old master is still shutting down may be
    // handed to it and dropped (a known gap, in README), so a few tries.
    let start = std::time::Instant::now();
    while !try_digest_round_trip(&listen, MIB).await {
        assert!(
            start.elapsed() < DEADLINE,
            "no connection went through after the master left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    digest_round_trip(&listen, MIB).await;
    assert!(f.running());
}

/// With `--through-server`, the far side may half-close first: it sends
/// its greeting, closes its direction, then still reads what the client
/// sends after seeing the end. (The master's stdio forward ends the whole
/// connection at the far side's end of file, OpenSSH's `force_drain`: that
/// is what the flag is for.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_server_the_far_side_may_half_close_first() {
    let s = Sshd::start();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        let (c, _) = l.accept().await.unwrap();
        let (mut r, mut w) = c.into_split();
        w.write_all(&vec![5u8; MIB]).await.unwrap();
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        let _ = tx.send(got);
    });
    let (f, listen) = Forwarder::start_with(&s, sink, &["--through-server"]).await;
    let mut c = TcpStream::connect(&listen).await.unwrap();
    let mut greeting = Vec::new();
    timeout(DEADLINE, c.read_to_end(&mut greeting))
        .await
        .expect("the far side's end of file reaches the client")
        .unwrap();
    assert_eq!(greeting, vec![5u8; MIB]);
    c.write_all(b"after your end of file").await.unwrap();
    c.shutdown().await.unwrap();
    let got = timeout(DEADLINE, rx).await.unwrap().unwrap();
    assert_eq!(got, b"after your end of file");
    assert!(
        !f.log().contains("carried by the ssh master"),
        "{}",
        f.log()
    );
}
