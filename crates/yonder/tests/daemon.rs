//! The daemon as a process: race-free start through proxies, hostile peers,
//! the TCP token, idle exit, per-stream flow control and cancellation.

mod common;

use common::*;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use yonder_client::Client;
use yonder_proto::pb::ErrorKind;

/// Starts `yonder server proxy` and connects a client through its stdio,
/// as an SSH session would.
async fn client_via_proxy(run_dir: &std::path::Path) -> (Client, tokio::process::Child) {
    let mut child = tokio::process::Command::new(YONDER)
        .args(["server", "proxy", "--run-dir"])
        .arg(run_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let io = tokio::io::join(child.stdout.take().unwrap(), child.stdin.take().unwrap());
    (
        Client::over_stream(io, &[], "proxy")
            .await
            .expect("client through proxy"),
        child,
    )
}

#[tokio::test]
async fn two_proxies_racing_to_start_the_daemon_end_with_one_daemon() {
    for round in 0..5 {
        let dir = tempfile::Builder::new().prefix("yt").tempdir().unwrap();
        let run = dir.path().join("run");
        let ((a, _pa), (b, _pb)) = tokio::join!(client_via_proxy(&run), client_via_proxy(&run));
        let (ia, ib) = (a.info().await.unwrap(), b.info().await.unwrap());
        assert_eq!(
            ia.daemon_pid, ib.daemon_pid,
            "round {round}: two daemons answered"
        );
        let pidfile: u32 = std::fs::read_to_string(run.join("daemon.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pidfile, ia.daemon_pid);
        // Losers exit at once; only the winner keeps running.
        let needle = format!("daemon --run-dir {}", run.display());
        eventually("losing daemons exit", || {
            processes_with(&needle)
                .iter()
                .filter(|p| pid_alive(**p))
                .count()
                == 1
        })
        .await;
        // SAFETY: a pid we just read from our own daemon's pid file.
        unsafe { libc::kill(ia.daemon_pid as i32, libc::SIGTERM) };
        eventually("daemon stops", || !pid_alive(ia.daemon_pid)).await;
    }
}

#[tokio::test]
async fn the_proxy_relays_a_big_transfer() {
    let d = Daemon::start();
    let (c, _p) = client_via_proxy(&d.run_dir()).await;
    let src = d.work().join("src");
    random_file(&src, 20 << 20);
    let got = c.read_to_vec(&src).await.unwrap();
    assert!(got == std::fs::read(&src).unwrap());
}

async fn expect_closed(mut s: UnixStream) {
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the daemon kept a hostile connection open");
}

/// A raw connection that completed the handshake, for speaking bad HTTP/2.
async fn handshaken(d: &Daemon) -> UnixStream {
    let mut s = UnixStream::connect(d.socket()).await.unwrap();
    yonder_proto::handshake::client(&mut s, &[]).await.unwrap();
    s
}

#[tokio::test]
async fn hostile_bytes_close_that_connection_and_the_daemon_serves_on() {
    let mut d = Daemon::start();
    let good = d.client().await;

    // Not yonder at all.
    let mut s = UnixStream::connect(d.socket()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    expect_closed(s).await;

    // The right greeting, then a 4 GiB handshake frame announced.
    let mut s = UnixStream::connect(d.socket()).await.unwrap();
    s.write_all(yonder_proto::handshake::MAGIC).await.unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    expect_closed(s).await;

    // A valid handshake followed by bytes that are not HTTP/2.
    let mut s = handshaken(&d).await;
    let mut junk = vec![0u8; 64 * 1024];
    getrandom::fill(&mut junk).unwrap();
    let _ = s.write_all(&junk).await;
    expect_closed(s).await;

    // HTTP/2 preface, then a frame header announcing 16 MiB.
    let mut s = handshaken(&d).await;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let _ = s
        .write_all(&[0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01])
        .await;
    let _ = s.write_all(&vec![0u8; 100_000]).await;
    expect_closed(s).await;

    // A client that never says anything is cut off by the handshake timeout;
    // it does not hold up others meanwhile.
    let _silent = UnixStream::connect(d.socket()).await.unwrap();

    // An oversized gRPC message on a good connection: that call fails with
    // TOO_LARGE and the connection keeps working.
    let mut raw = UnixStream::connect(d.socket()).await.unwrap();
    yonder_proto::handshake::client(&mut raw, &[])
        .await
        .unwrap();
    let slot = Arc::new(Mutex::new(Some(raw)));
    let channel = tonic::transport::Endpoint::from_static("http://x")
        .connect_with_connector(tower::service_fn(move |_| {
            let s = slot.lock().unwrap().take();
            async move {
                s.map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("used"))
            }
        }))
        .await
        .unwrap();
    let mut fs = yonder_proto::pb::fs_client::FsClient::new(channel);
    let huge = yonder_proto::pb::StatRequest {
        path: vec![b'a'; 5 << 20].into(),
        follow_symlinks: false,
    };
    let status = fs.stat(huge).await.unwrap_err();
    assert_eq!(
        yonder_client::RemoteError::from_status(&status).kind,
        ErrorKind::TooLarge,
        "{status:?}"
    );
    let ok = yonder_proto::pb::StatRequest {
        path: "/".into(),
        follow_symlinks: false,
    };
    assert!(
        fs.stat(ok).await.is_ok(),
        "the connection survives an oversized message"
    );

    assert!(good.info().await.is_ok());
    assert!(d.client().await.info().await.is_ok());
    assert!(d.alive());
    let log = d.log();
    assert!(log.contains("not a yonder endpoint"), "{log}");
    assert!(log.contains("exceeds the limit"), "{log}");
    assert!(log.contains("protocol error"), "{log}");
}

#[tokio::test]
async fn tcp_needs_the_token_and_binds_loopback_only() {
    let mut d = Daemon::start_with(&["--listen", "tcp"], None);
    let info: serde_json::Value = {
        let path = d.run_dir().join("tcp.json");
        eventually("tcp.json", || path.exists()).await;
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(d.run_dir().join("tcp.json"))
            .unwrap()
            .mode()
            & 0o777,
        0o600
    );
    let addr: std::net::SocketAddr = info["address"].as_str().unwrap().parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    let token = info["token"].as_str().unwrap();
    assert_eq!(token.len(), 64, "256 bits, hex");

    let err = Client::connect_tcp(addr, b"wrong").await.unwrap_err();
    assert!(err.to_string().contains("wrong or missing token"), "{err}");
    let err = Client::connect_tcp(addr, b"").await.unwrap_err();
    assert!(err.to_string().contains("token"), "{err}");
    let mut almost = token.as_bytes().to_vec();
    almost[63] ^= 1;
    assert!(Client::connect_tcp(addr, &almost).await.is_err());

    let c = Client::connect_tcp(addr, token.as_bytes()).await.unwrap();
    assert_eq!(c.info().await.unwrap().daemon_pid, d.child.id());
    assert!(d.alive());
    assert!(!d.log().contains(token), "the token must never be logged");
}

#[tokio::test]
async fn the_daemon_exits_when_idle_and_the_next_client_starts_a_new_one() {
    let mut d = Daemon::start_with(&["--idle-timeout", "1"], None);
    {
        let c = d.client().await;
        c.info().await.unwrap();
        // While a client is connected the daemon stays, however long.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(d.alive());
    }
    eventually("idle daemon exits", || !d.alive()).await;
    assert!(!d.socket().exists(), "the socket is removed on exit");
    // The CLI starts a fresh daemon on demand.
    let (code, out, err) = run(d.cli().args(["info", "local", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let pid = v["daemon_pid"].as_u64().unwrap() as u32;
    assert_ne!(pid, d.child.id());
    // SAFETY: the pid of the daemon the CLI just started for this test.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
}

#[tokio::test]
async fn a_stalled_bulk_read_does_not_block_other_calls() {
    let d = Daemon::start();
    let c = d.client().await;
    let big = d.work().join("big");
    random_file(&big, 256 << 20);
    // Start a 256 MiB read and stop consuming it after one chunk: its stream
    // window fills and the server stops sending on it.
    let mut stalled = c.read(&big, 0, None).await.unwrap();
    stalled.next().await.unwrap().unwrap();
    // Other calls on the same connection still complete.
    for _ in 0..50 {
        let m = tokio::time::timeout(DEADLINE, c.stat(&big, false))
            .await
            .expect("stat stalled behind the read")
            .unwrap();
        assert_eq!(m.size, 256 << 20);
    }
    let out = tokio::time::timeout(DEADLINE, async {
        c.exec(yonder_client::ExecRequest::new("true"))
            .await
            .unwrap()
            .output()
            .await
    })
    .await
    .expect("exec stalled behind the read")
    .unwrap();
    assert!(out.status.success());
    // Dropping the read cancels it; the connection stays usable.
    drop(stalled);
    assert!(c.info().await.is_ok());
}

#[tokio::test]
async fn many_concurrent_calls_on_one_connection() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work();
    for i in 0..100 {
        std::fs::write(w.join(format!("f{i}")), i.to_string()).unwrap();
    }
    let results = futures::future::join_all((0..2000).map(|i| {
        let c = c.clone();
        let p = w.join(format!("f{}", i % 100));
        async move { c.stat(&p, false).await.map(|m| (i, m.size)) }
    }))
    .await;
    for r in results {
        let (i, size) = r.unwrap();
        assert_eq!(size, (i % 100).to_string().len() as u64);
    }
}
