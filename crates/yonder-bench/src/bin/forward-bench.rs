//! `yonder forward` against a direct loopback connection to the same
//! server, in one run: bulk throughput each way and connection set-up
//! latency. Prints a markdown table.
//!
//! The forward is the real CLI process (`yonder forward local ...`) talking
//! to the real daemon, both from the same target directory as this binary:
//! `cargo build --release -p yonder -p yonder-bench &&
//! target/release/forward-bench`. `FORWARD_BENCH_MIB` sets the transfer size
//! (default 1024).

use anyhow::{Context, bail};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Write and read buffer of the benchmark's own sockets: large enough that
/// syscalls do not dominate the direct run.
const BUF: usize = 256 * 1024;
/// Repetitions of each throughput run; the best is reported (least noise
/// from other work on the machine).
const RUNS: usize = 3;
/// Sequential connections for the set-up latency percentiles.
const CONNECTS: usize = 300;

/// Reads everything, then answers with the byte count (8 bytes, LE).
async fn sink(l: TcpListener) {
    while let Ok((mut s, _)) = l.accept().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; BUF];
            let mut n = 0u64;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(k) => n += k as u64,
                    Err(_) => return,
                }
            }
            let _ = s.write_all(&n.to_le_bytes()).await;
        });
    }
}

/// Sends the number of bytes the client asks for (8 bytes, LE), then closes.
async fn source(l: TcpListener) {
    while let Ok((mut s, _)) = l.accept().await {
        tokio::spawn(async move {
            let mut want = [0u8; 8];
            if s.read_exact(&mut want).await.is_err() {
                return;
            }
            let mut left = u64::from_le_bytes(want);
            let buf = vec![0x5au8; BUF];
            while left > 0 {
                let k = left.min(BUF as u64) as usize;
                if s.write_all(&buf[..k]).await.is_err() {
                    return;
                }
                left -= k as u64;
            }
        });
    }
}

/// Echoes one byte per round, for set-up latency.
async fn echo(l: TcpListener) {
    while let Ok((s, _)) = l.accept().await {
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

async fn upload(addr: &str, bytes: u64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    let buf = vec![0xa5u8; BUF];
    let mut left = bytes;
    while left > 0 {
        let k = left.min(BUF as u64) as usize;
        s.write_all(&buf[..k]).await?;
        left -= k as u64;
    }
    s.shutdown().await?;
    let mut got = [0u8; 8];
    s.read_exact(&mut got).await.context("sink's count")?;
    let d = start.elapsed();
    if u64::from_le_bytes(got) != bytes {
        bail!("sink got {} of {bytes} bytes", u64::from_le_bytes(got));
    }
    Ok(d)
}

async fn download(addr: &str, bytes: u64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&bytes.to_le_bytes()).await?;
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf).await? {
            0 => break,
            k => n += k as u64,
        }
    }
    let d = start.elapsed();
    if n != bytes {
        bail!("got {n} of {bytes} bytes");
    }
    Ok(d)
}

/// Connect, one byte there and back: what a new HTTP request pays.
async fn connect_rtt(addr: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(b"x").await?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    Ok(start.elapsed())
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn best<F, Fut>(mut f: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        best = best.min(f().await?);
    }
    Ok(best)
}

async fn latencies(addr: &str) -> anyhow::Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(CONNECTS);
    for _ in 0..CONNECTS {
        v.push(connect_rtt(addr).await?);
    }
    v.sort();
    Ok(v)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

// One thread for the benchmark's own client and servers, as in the main
// benchmark: the daemon and the CLI get the other core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mib: u64 = std::env::var("FORWARD_BENCH_MIB")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("FORWARD_BENCH_MIB")?
        .unwrap_or(1024);
    let bytes = mib << 20;
    let tmp = tempfile::Builder::new().prefix("fb").tempdir()?;
    let run = tmp.path().join("run");
    let exe = yonder_bench::yonder_exe()?;
    let daemon = yonder_bench::BenchDaemon::start(&run)?;

    let bind = || TcpListener::bind("127.0.0.1:0");
    let (l_sink, l_source, l_echo) = (bind().await?, bind().await?, bind().await?);
    let addrs = [
        l_sink.local_addr()?,
        l_source.local_addr()?,
        l_echo.local_addr()?,
    ];
    tokio::spawn(sink(l_sink));
    tokio::spawn(source(l_source));
    tokio::spawn(echo(l_echo));
    let mut fwd = tokio::process::Command::new(&exe)
        .env("YONDER_RUNTIME_DIR", &run)
        .args(["forward", "local"])
        .args(addrs.iter().map(|a| format!("0:127.0.0.1:{}", a.port())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(fwd.stdout.take().context("stdout")?).lines();
    let mut via = Vec::new();
    for _ in 0..addrs.len() {
        let l = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("no mapping from yonder forward")??
            .context("yonder forward exited")?;
        // "forwarding LISTEN -> TO on the target"
        let listen = l
            .strip_prefix("forwarding ")
            .and_then(|r| r.split(' ').next())
            .with_context(|| format!("unexpected mapping line {l:?}"))?;
        via.push(listen.to_string());
    }
    let direct: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();

    let result = async {
        let mut rows = Vec::new();
        let d = best(|| upload(&direct[0], bytes)).await?;
        let f = best(|| upload(&via[0], bytes)).await?;
        rows.push((
            format!("upload {mib} MiB (client → server), MiB/s"),
            mib_s(bytes, f),
            mib_s(bytes, d),
        ));
        let d = best(|| download(&direct[1], bytes)).await?;
        let f = best(|| download(&via[1], bytes)).await?;
        rows.push((
            format!("download {mib} MiB (server → client), MiB/s"),
            mib_s(bytes, f),
            mib_s(bytes, d),
        ));
        let d = latencies(&direct[2]).await?;
        let f = latencies(&via[2]).await?;
        anyhow::Ok((rows, d, f))
    }
    .await;
    let _ = fwd.kill().await;
    drop(daemon);
    let (rows, d, f) = result?;

    println!("| measurement | yonder forward | direct loopback | forward / direct |");
    println!("|---|---|---|---|");
    for (what, f, d) in rows {
        println!("| {what} | {f:.0} | {d:.0} | {:.2}× |", f / d);
    }
    for (p, name) in [(0.5, "p50"), (0.99, "p99")] {
        let (a, b) = (percentile(&f, p), percentile(&d, p));
        println!(
            "| connect + 1-byte round trip, {name} ({CONNECTS} sequential) | {} | {} | {:.1}× |",
            us(a),
            us(b),
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
    Ok(())
}
