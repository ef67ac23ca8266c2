//! `yonder forward` against a direct loopback connection to the same
//! server, in one run: bulk throughput each way and connection set-up
//! latency. Prints a markdown table.
//!
//! The forward is the real CLI process (`yonder forward local ...`) talking
//! to the real daemon, both from the same target directory as this binary:
//! `cargo build --release -p yonder -p yonder-bench &&
//! target/release/forward-bench`. `FORWARD_BENCH_MIB` sets the transfer size
//! (default 1024).
//!
//! The benchmark's client and servers are blocking OS threads, as separate
//! client and server programs would be: each end runs when the kernel wakes
//! it, on whichever core is free. (An earlier version ran both ends as tasks
//! of one single-threaded runtime; the direct case then became a loop on one
//! core that never waits for another, and any relay looked worse than it is.)
//! As a cross-check with a standard tool, `iperf3` (from Debian) measures
//! the same two paths. Direct and forwarded runs alternate, so a change in
//! the machine's load hits both.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Write and read buffer of the benchmark's own sockets: large enough that
/// syscalls do not dominate the direct run.
const BUF: usize = 256 * 1024;
/// Direct/forwarded pairs of each throughput run.
const RUNS: usize = 5;
/// Sequential connections for the set-up latency percentiles.
const CONNECTS: usize = 300;

fn serve(l: TcpListener, each: fn(TcpStream)) {
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || each(s));
        }
    });
}

/// Reads everything, then answers with the byte count (8 bytes, LE).
fn sink(mut s: TcpStream) {
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(_) => return,
        }
    }
    let _ = s.write_all(&n.to_le_bytes());
}

/// Sends the number of bytes the client asks for (8 bytes, LE), then closes.
fn source(mut s: TcpStream) {
    let mut want = [0u8; 8];
    if s.read_exact(&mut want).is_err() {
        return;
    }
    let mut left = u64::from_le_bytes(want);
    let buf = vec![0x5au8; BUF];
    while left > 0 {
        let k = left.min(BUF as u64) as usize;
        if s.write_all(&buf[..k]).is_err() {
            return;
        }
        left -= k as u64;
    }
}

/// Echoes one byte per round, for set-up latency.
fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut b = [0u8; 1];
    while let Ok(1) = s.read(&mut b) {
        if s.write_all(&b).is_err() {
            return;
        }
    }
}

fn upload(addr: &str, bytes: u64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    let buf = vec![0xa5u8; BUF];
    let mut left = bytes;
    while left > 0 {
        let k = left.min(BUF as u64) as usize;
        s.write_all(&buf[..k])?;
        left -= k as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut got = [0u8; 8];
    s.read_exact(&mut got).context("sink's count")?;
    let d = start.elapsed();
    if u64::from_le_bytes(got) != bytes {
        bail!("sink got {} of {bytes} bytes", u64::from_le_bytes(got));
    }
    Ok(d)
}

fn download(addr: &str, bytes: u64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.write_all(&bytes.to_le_bytes())?;
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf)? {
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
fn connect_rtt(addr: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(start.elapsed())
}

/// `iperf3 -c` against `port` for `bytes` (`reverse`: the server sends);
/// the receiver's rate in MiB/s.
fn iperf3(port: u16, bytes: u64, reverse: bool) -> anyhow::Result<f64> {
    let mut c = Command::new("iperf3");
    c.args(["-c", "127.0.0.1", "-J", "-l", "256K"])
        .arg("-p")
        .arg(port.to_string())
        .arg("-n")
        .arg(bytes.to_string());
    if reverse {
        c.arg("-R");
    }
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .context("running iperf3")?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("iperf3's JSON report")?;
    let bits = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("no received rate in iperf3's report: {}", v["error"]))?;
    Ok(bits / 8.0 / (1 << 20) as f64)
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn latencies(addr: &str) -> anyhow::Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(CONNECTS);
    for _ in 0..CONNECTS {
        v.push(connect_rtt(addr)?);
    }
    v.sort();
    Ok(v)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// One throughput row: `RUNS` direct/forwarded pairs, alternating.
struct Row {
    what: String,
    forward: Vec<f64>,
    direct: Vec<f64>,
}

impl Row {
    fn measure(
        what: String,
        mut run: impl FnMut(bool) -> anyhow::Result<f64>,
    ) -> anyhow::Result<Self> {
        let (mut forward, mut direct) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            direct.push(run(false)?);
            forward.push(run(true)?);
        }
        Ok(Self {
            what,
            forward,
            direct,
        })
    }

    fn print(&self) {
        let ratios: Vec<f64> = self
            .forward
            .iter()
            .zip(&self.direct)
            .map(|(f, d)| f / d)
            .collect();
        let lo = ratios.iter().copied().fold(f64::MAX, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        let (f, d) = (median(self.forward.clone()), median(self.direct.clone()));
        println!(
            "| {} | {f:.0} | {d:.0} | {:.2}× | {lo:.2}–{hi:.2}× |",
            self.what,
            f / d
        );
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn main() -> anyhow::Result<()> {
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
    let (l_sink, l_source, l_echo) = (bind()?, bind()?, bind()?);
    let iperf_port = free_port()?;
    let _iperf = Killed(
        Command::new("iperf3")
            .args(["-s", "-B", "127.0.0.1", "-p"])
            .arg(iperf_port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .context("starting iperf3 (scripts/setup installs it)")?,
    );
    let ports = [
        l_sink.local_addr()?.port(),
        l_source.local_addr()?.port(),
        l_echo.local_addr()?.port(),
        iperf_port,
    ];
    serve(l_sink, sink);
    serve(l_source, source);
    serve(l_echo, echo);
    let mut fwd = Killed(
        Command::new(&exe)
            .env("YONDER_RUNTIME_DIR", &run)
            .args(["forward", "local"])
            .args(ports.iter().map(|p| format!("0:127.0.0.1:{p}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let mut lines = BufReader::new(fwd.0.stdout.take().context("stdout")?).lines();
    let mut via = Vec::new();
    for _ in 0..ports.len() {
        let l = lines.next().context("yonder forward exited")??;
        // "forwarding LISTEN -> TO on the target"
        let listen = l
            .strip_prefix("forwarding ")
            .and_then(|r| r.split(' ').next())
            .with_context(|| format!("unexpected mapping line {l:?}"))?;
        via.push(listen.to_string());
    }
    let direct: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let via_iperf: u16 = via[3]
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("forwarded iperf3 port")?;
    let addr = |i: usize, fwd: bool| if fwd { &via[i] } else { &direct[i] };

    let rows = [
        Row::measure(
            format!("upload {mib} MiB (client → server), MiB/s"),
            |f| Ok(mib_s(bytes, upload(addr(0, f), bytes)?)),
        )?,
        Row::measure(
            format!("download {mib} MiB (server → client), MiB/s"),
            |f| Ok(mib_s(bytes, download(addr(1, f), bytes)?)),
        )?,
        Row::measure(format!("iperf3 -n {mib}M, client sends, MiB/s"), |f| {
            iperf3(if f { via_iperf } else { iperf_port }, bytes, false)
        })?,
        Row::measure(format!("iperf3 -n {mib}M -R, server sends, MiB/s"), |f| {
            iperf3(if f { via_iperf } else { iperf_port }, bytes, true)
        })?,
    ];
    let d = latencies(&direct[2])?;
    let f = latencies(&via[2])?;
    drop(fwd);
    drop(daemon);

    println!(
        "| measurement (median of {RUNS}, alternating) | yonder forward | direct loopback | forward / direct | range of the {RUNS} pairs |"
    );
    println!("|---|---|---|---|---|");
    for r in &rows {
        r.print();
    }
    for (p, name) in [(0.5, "p50"), (0.99, "p99")] {
        let (a, b) = (percentile(&f, p), percentile(&d, p));
        println!(
            "| connect + 1-byte round trip, {name} ({CONNECTS} sequential) | {} | {} | {:.1}× | |",
            us(a),
            us(b),
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
    Ok(())
}
