//! Port forwarding end to end: the real daemon, the real CLI, real sockets
//! on loopback. The target is `local`, so "on the target" is this machine.

mod common;

use common::{DEADLINE, Daemon, eventually};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const MIB: usize = 1 << 20;

/// Echoes everything, and half-closes its side when the client did.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve_echo(l));
    addr
}

async fn serve_echo(l: TcpListener) {
    while let Ok((s, _)) = l.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                let _ = w.shutdown().await;
            }
        });
    }
}

/// A tiny HTTP/1.1 server: answers every request with a fixed body and
/// closes.
const HTTP_BODY: &str = "hello through the tunnel\n";

async fn http_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HTTP_BODY}",
                    HTTP_BODY.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// GET / through `addr`; the whole response.
async fn http_get(addr: &str) -> String {
    let mut s = timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    timeout(DEADLINE, s.read_to_string(&mut out))
        .await
        .expect("response in time")
        .expect("read response");
    out
}

/// Reads everything until the client half-closes, then replies with the
/// length and SHA-256 of what it got: only works if end of file arrives
/// while the reply direction stays open.
async fn reply_after_eof_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).await.is_ok() {
                    let reply = format!("{} {}", all.len(), hex::encode(Sha256::digest(&all)));
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

async fn half_close_exchange(addr: &str) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let msg = b"request body, then shutdown(SHUT_WR)".repeat(1000);
    s.write_all(&msg).await.unwrap();
    s.shutdown().await.unwrap();
    let mut reply = String::new();
    timeout(DEADLINE, s.read_to_string(&mut reply))
        .await
        .expect("reply in time")
        .expect("reply after half-close");
    assert_eq!(
        reply,
        format!("{} {}", msg.len(), hex::encode(Sha256::digest(&msg)))
    );
}

/// A running `yonder forward`, its stdout read line by line and its stderr
/// collected.
struct Forwarder {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: Arc<Mutex<String>>,
}

impl Forwarder {
    fn start(d: &Daemon, args: &[&str]) -> Self {
        let mut cmd = tokio::process::Command::from(d.cli());
        cmd.arg("forward")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn yonder forward");
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
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
        Self {
            child,
            stdout,
            stderr,
        }
    }

    async fn line(&mut self) -> String {
        match timeout(DEADLINE, self.stdout.next_line()).await {
            Ok(Ok(Some(l))) => l,
            other => panic!(
                "no output line from yonder forward ({other:?}); stderr:\n{}",
                self.stderr()
            ),
        }
    }

    async fn json(&mut self) -> serde_json::Value {
        let l = self.line().await;
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"))
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, as a service manager would stop it; it must exit cleanly.
    async fn stop(mut self) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let st = timeout(DEADLINE, self.child.wait())
            .await
            .expect("exits on SIGTERM")
            .unwrap();
        assert!(
            st.success(),
            "exit status {st:?}; stderr:\n{}",
            self.stderr()
        );
    }
}

fn listen_of(v: &serde_json::Value) -> String {
    v["listen"].as_str().expect("listen").to_string()
}

#[tokio::test]
async fn http_through_a_local_forward_from_the_cli() {
    let d = Daemon::start();
    let http = http_server().await;
    let mut f = Forwarder::start(
        &d,
        &["local", &format!("0:localhost:{}", http.port()), "--json"],
    );
    let m = f.json().await;
    assert_eq!(m["kind"], "local");
    assert_eq!(m["to"], format!("localhost:{}", http.port()));
    let listen = listen_of(&m);
    assert!(
        listen.starts_with("127.0.0.1:"),
        "binds loopback by default: {listen}"
    );
    assert_ne!(listen, "127.0.0.1:0", "the chosen port is printed");
    for _ in 0..3 {
        let resp = http_get(&listen).await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.ends_with(HTTP_BODY), "{resp}");
    }
    f.stop().await;
}

/// Who holds the connection to the sink at `port`: the `ss` line(s).
fn sink_side(port: u16) -> String {
    let out = std::process::Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_forward_to_the_local_daemon_takes_over_the_connected_socket() {
    let d = Daemon::start();
    let http = http_server().await;
    let mut f = Forwarder::start(
        &d,
        &["local", &format!("0:127.0.0.1:{}", http.port()), "--json"],
    );
    let listen = listen_of(&f.json().await);
    let pid = f.child.id().unwrap();
    // An idle connection through the forward: the socket connected to the
    // sink belongs to `yonder forward` itself (the daemon connected it and
    // passed it over), not to the daemon relaying an HTTP/2 stream.
    let mut c = TcpStream::connect(&listen).await.unwrap();
    let mine = format!("pid={pid},");
    eventually("the forwarder holds the sink connection", || {
        sink_side(http.port()).contains(&mine)
    })
    .await;
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    timeout(DEADLINE, c.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(resp.ends_with(HTTP_BODY), "{resp}");
    f.stop().await;
}

#[tokio::test]
async fn the_fd_socket_connects_refuses_clearly_and_survives_garbage() {
    let d = Daemon::start();
    let http = http_server().await;
    let plain = d.client().await;
    assert!(
        plain
            .dial_direct("127.0.0.1", http.port())
            .await
            .unwrap()
            .is_none(),
        "without the fd socket: no direct path"
    );
    let fdpass = d.run_dir().join("fdpass.sock");
    let c = plain.with_fdpass(fdpass.clone());
    let mut s = c
        .dial_direct("127.0.0.1", http.port())
        .await
        .unwrap()
        .expect("a direct connection");
    assert_eq!(s.peer_addr().unwrap(), http);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    timeout(DEADLINE, s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(resp.ends_with(HTTP_BODY), "{resp}");

    // A closed port: the daemon's error comes back as text.
    let closed = common::free_port();
    let e = c.dial_direct("127.0.0.1", closed).await.unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");

    // Hostile bytes on the fd socket: each connection is closed, the daemon
    // keeps serving.
    for junk in [&b"Zjunk"[..], b"C\xff\xff", b"C\x00\x05a:b:c", b"S"] {
        let mut raw = tokio::net::UnixStream::connect(&fdpass).await.unwrap();
        raw.write_all(junk).await.unwrap();
        let mut rest = Vec::new();
        let _ = timeout(DEADLINE, raw.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty() || rest[0] == b'N', "{junk:?}: {rest:?}");
    }
    assert!(
        c.dial_direct("127.0.0.1", http.port())
            .await
            .unwrap()
            .is_some()
    );
}

/// One connection to `fdpass.sock` takes connect request after connect
/// request, a refused one included; the client keeps using its connection,
/// and one that the other end closed after a single request (a daemon of
/// the previous version, or one that closed it for being idle) is replaced
/// without an error.
#[tokio::test]
async fn one_fd_socket_connection_serves_many_connect_requests() {
    use yonder_proto::fdpass;
    let d = Daemon::start();
    let http = http_server().await;
    let fdpass_path = d.run_dir().join("fdpass.sock");
    let closed = common::free_port();
    let mut raw = tokio::net::UnixStream::connect(&fdpass_path).await.unwrap();
    for port in [http.port(), closed, http.port(), http.port()] {
        let target = format!("127.0.0.1:{port}");
        let mut req = vec![fdpass::CONNECT];
        req.extend_from_slice(&(target.len() as u16).to_be_bytes());
        req.extend_from_slice(target.as_bytes());
        raw.write_all(&req).await.unwrap();
        let (kind, fds) = timeout(DEADLINE, fdpass::recv(&raw))
            .await
            .unwrap()
            .unwrap()
            .expect("an answer on the same connection");
        if port == closed {
            assert_eq!(kind, fdpass::NO);
            assert!(fds.is_empty());
            let len = raw.read_u16().await.unwrap();
            let mut reason = vec![0u8; usize::from(len)];
            raw.read_exact(&mut reason).await.unwrap();
            let reason = String::from_utf8(reason).unwrap();
            assert!(reason.contains("refused"), "{reason}");
        } else {
            assert_eq!(kind, fdpass::YES);
            let [fd] = <[std::os::fd::OwnedFd; 1]>::try_from(fds).unwrap();
            let s = std::net::TcpStream::from(fd);
            assert_eq!(s.peer_addr().unwrap(), http);
        }
    }

    // A stand-in for a daemon that closes each connection after two
    // requests (as the daemon closes an idle one): it connects for the
    // client as the daemon would.
    let dir = tempfile::tempdir().unwrap();
    let one_shot = dir.path().join("fdpass.sock");
    let listener = tokio::net::UnixListener::bind(&one_shot).unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            for _ in 0..2 {
                let Ok(Some((fdpass::CONNECT, _))) = fdpass::recv(&conn).await else {
                    break;
                };
                let len = conn.read_u16().await.unwrap();
                let mut target = vec![0u8; usize::from(len)];
                conn.read_exact(&mut target).await.unwrap();
                let to = String::from_utf8(target).unwrap();
                let sock = std::net::TcpStream::connect(to).unwrap();
                use std::os::fd::AsFd;
                fdpass::send(&conn, fdpass::YES, &[sock.as_fd()])
                    .await
                    .unwrap();
            }
        }
    });
    let c = d.client().await.with_fdpass(one_shot);
    for _ in 0..5 {
        let s = c
            .dial_direct("127.0.0.1", http.port())
            .await
            .unwrap()
            .expect("a direct connection");
        assert_eq!(s.peer_addr().unwrap(), http);
        // Let the stand-in close its end first.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Five requests on three connections: each kept one served the next
    // request until the stand-in had closed it.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_human_output_names_both_ends_and_an_explicit_bind_is_used() {
    let d = Daemon::start();
    let http = http_server().await;
    let mut f = Forwarder::start(
        &d,
        &["local", &format!("[::1]:0:127.0.0.1:{}", http.port())],
    );
    let line = f.line().await;
    let to = format!("-> 127.0.0.1:{} on the target", http.port());
    assert!(
        line.starts_with("forwarding [::1]:") && line.ends_with(&to),
        "{line}"
    );
    let listen = line["forwarding ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(http_get(&listen).await.ends_with(HTTP_BODY));
    f.stop().await;
}

#[tokio::test]
async fn http_through_a_remote_forward_from_the_cli() {
    let d = Daemon::start();
    let http = http_server().await;
    let mut f = Forwarder::start(
        &d,
        &[
            "local",
            "--remote",
            &format!("0:127.0.0.1:{}", http.port()),
            "--json",
        ],
    );
    let m = f.json().await;
    assert_eq!(m["kind"], "remote");
    assert_eq!(m["to"], format!("127.0.0.1:{}", http.port()));
    let listen = listen_of(&m);
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
        "{listen}"
    );
    for _ in 0..3 {
        assert!(http_get(&listen).await.ends_with(HTTP_BODY));
    }
    f.stop().await;
}

#[tokio::test]
async fn the_library_dials_listens_and_accepts() {
    let d = Daemon::start();
    let c = d.client().await;
    let http = http_server().await;

    // Dial: the tunnel is an ordinary AsyncRead + AsyncWrite.
    let mut t = c.dial("127.0.0.1", http.port()).await.unwrap();
    t.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    timeout(DEADLINE, t.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(resp.ends_with(HTTP_BODY), "{resp}");

    // Listen + Accept: a program on the target connects to the port the
    // server listens on; we claim the connection and talk to it.
    let mut l = c.listen("", 0).await.unwrap();
    assert_ne!(l.port, 0);
    let port = l.port;
    let peer = tokio::spawn(async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        back
    });
    let id = timeout(DEADLINE, l.next()).await.unwrap().unwrap().unwrap();
    let mut t = c.accept(id).await.unwrap();
    let mut got = Vec::new();
    timeout(DEADLINE, t.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"ping");
    t.write_all(b"pong").await.unwrap();
    t.shutdown().await.unwrap();
    assert_eq!(timeout(DEADLINE, peer).await.unwrap().unwrap(), b"pong");

    // An id can be claimed once.
    let e = c.accept(id).await.unwrap_err();
    assert_eq!(e.kind, yonder_proto::pb::ErrorKind::NotFound, "{e}");

    // Dropping the listener stops listening on the target.
    drop(l);
    eventually("the port is closed after the listener is dropped", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await;
}

#[tokio::test]
async fn two_hundred_parallel_connections_each_move_1_mib_intact() {
    const CONNECTIONS: usize = 200;
    let d = Daemon::start();
    let echo = echo_server().await;
    let mut f = Forwarder::start(
        &d,
        &["local", &format!("0:127.0.0.1:{}", echo.port()), "--json"],
    );
    let listen = listen_of(&f.json().await);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let listen = listen.clone();
        tasks.push(tokio::spawn(async move {
            let mut data = vec![0u8; MIB];
            getrandom::fill(&mut data).unwrap();
            let sent = Sha256::digest(&data);
            let s = TcpStream::connect(&listen).await.unwrap();
            let (mut r, mut w) = s.into_split();
            // Write and read at once: the echo cannot hold 1 MiB in flight.
            let writer = tokio::spawn(async move {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::with_capacity(MIB);
            r.read_to_end(&mut back).await.unwrap();
            writer.await.unwrap();
            assert_eq!(back.len(), MIB);
            assert_eq!(Sha256::digest(&back), sent, "bytes changed in transit");
        }));
    }
    timeout(Duration::from_secs(120), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("200 × 1 MiB through the forward in time");
    f.stop().await;
}

#[tokio::test]
async fn half_close_is_honoured_both_ways_through_local_and_remote_forwards() {
    let d = Daemon::start();
    let server = reply_after_eof_server().await;
    let mut f = Forwarder::start(
        &d,
        &[
            "local",
            &format!("0:127.0.0.1:{}", server.port()),
            "--remote",
            &format!("0:127.0.0.1:{}", server.port()),
            "--json",
        ],
    );
    let (a, b) = (f.json().await, f.json().await);
    for m in [a, b] {
        half_close_exchange(&listen_of(&m)).await;
    }
    f.stop().await;
}

#[tokio::test]
async fn a_refused_connection_closes_the_local_one_and_the_forwarder_keeps_serving() {
    let d = Daemon::start();
    // A port nobody listens on (yet).
    let port = common::free_port();
    let echo = echo_server().await;
    let mut f = Forwarder::start(
        &d,
        &[
            "local",
            &format!("0:127.0.0.1:{port}"),
            &format!("0:127.0.0.1:{}", echo.port()),
            "--json",
        ],
    );
    let dead = listen_of(&f.json().await);
    let alive = listen_of(&f.json().await);

    for _ in 0..2 {
        let mut s = TcpStream::connect(&dead).await.unwrap();
        let mut buf = [0u8; 16];
        let r = timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("the local connection is closed, not left hanging");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
    let err = f.stderr.clone();
    eventually("a warning names the refused connection", || {
        err.lock().unwrap().contains("refused")
    })
    .await;

    // Other mappings of the same forwarder are unaffected...
    let mut s = TcpStream::connect(&alive).await.unwrap();
    s.write_all(b"still here").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"still here");

    // ...and once something listens, the same mapping works.
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(serve_echo(l));
    let mut s = TcpStream::connect(&dead).await.unwrap();
    s.write_all(b"now it works").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    timeout(DEADLINE, s.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"now it works");
    f.stop().await;
}

#[tokio::test]
async fn auto_forwards_a_server_started_after_the_forwarder() {
    let d = Daemon::start();
    let mut f = Forwarder::start(&d, &["local", "--auto", "--json"]);
    let err = f.stderr.clone();
    eventually("the forwarder watches the target's ports", || {
        err.lock().unwrap().contains("watching")
    })
    .await;

    // Started later: the user runs a dev server on the target.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(serve_echo(l));
    let want_to = format!("127.0.0.1:{port}");
    // Other programs of this user may come and go: wait for ours.
    let m = loop {
        let m = f.json().await;
        if m["kind"] == "auto" && m["to"] == want_to.as_str() {
            break m;
        }
    };
    assert_eq!(m["pid"], std::process::id(), "{m}");
    let listen = listen_of(&m);
    // Our own server holds 127.0.0.1:port here, so another port was chosen.
    assert_ne!(listen, want_to);
    let mut s = TcpStream::connect(&listen).await.unwrap();
    s.write_all(b"auto").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    timeout(DEADLINE, s.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"auto");

    // The server stops: so does the forward.
    server.abort();
    let _ = server.await;
    loop {
        let m = f.json().await;
        if m["kind"] == "auto-stopped" && m["to"] == want_to.as_str() {
            assert_eq!(listen_of(&m), listen);
            break;
        }
    }
    eventually("the local port is released", || {
        std::net::TcpStream::connect(&listen).is_err()
    })
    .await;
    f.stop().await;
}

#[tokio::test]
async fn watch_ports_reports_a_listener_with_its_process_coming_and_going() {
    let d = Daemon::start();
    let c = d.client().await;
    use futures::StreamExt;
    let mut events = c
        .watch_ports(Some(Duration::from_millis(100)))
        .await
        .unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = u32::from(l.local_addr().unwrap().port());
    let mut next = async || {
        timeout(DEADLINE, events.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("event")
    };
    let open = loop {
        let e = next().await;
        if e.port == port {
            break e;
        }
    };
    assert!(open.open);
    assert_eq!(open.address, "127.0.0.1");
    assert_eq!(open.pid, std::process::id());
    assert!(!open.process.is_empty());
    drop(l);
    let closed = loop {
        let e = next().await;
        if e.port == port {
            break e;
        }
    };
    assert!(!closed.open);
}

#[tokio::test]
async fn bad_specs_are_usage_errors() {
    let d = Daemon::start();
    for args in [
        vec!["forward", "local"],
        vec!["forward", "local", "::1:80:localhost:80"],
        vec!["forward", "local", "80:localhost:0"],
        vec!["forward", "local", "--remote", "nope"],
    ] {
        let (code, _, err) = common::run(d.cli().args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.is_empty());
    }
}
