//! File watching benchmark: how long a write takes to reach a watching client,
//! and what a 100,000-directory watch costs, each next to `inotifywait`
//! (Debian's `inotify-tools`) when it is installed. Prints a markdown table.
//!
//! Run after `cargo build --release -p yonder -p yonder-bench`:
//! `target/release/watch-bench`. The daemon is the real `yonder server
//! daemon` from the same directory. The 100,000-directory tree needs that
//! many kernel watches (`fs.inotify.max_user_watches`); the bench says so
//! instead of measuring a polled tree if the limit is lower.

use anyhow::{Context, bail};
use futures::StreamExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use yonder_client::watch::WatchEvent;
use yonder_client::{Client, RemoteStream};
use yonder_proto::pb;

/// Writes timed per configuration; p99 over 200 is the 2nd-worst sample.
const WRITES: usize = 200;
/// Writes before timing starts (page cache, allocator, first watch events).
const WARMUP: usize = 20;
/// Directories in the big tree: 100 × 1000.
const BIG_TOP: usize = 100;
const BIG_EACH: usize = 1000;
/// Longest wait for any one event before the bench gives up.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Kernel watches held by `pid` (`inotify wd:` lines in its fdinfo).
fn inotify_watches(pid: u32) -> usize {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|s| s.lines().filter(|l| l.starts_with("inotify wd:")).count())
        .sum()
}

fn has_inotifywait() -> bool {
    Command::new("inotifywait")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

struct Row {
    what: String,
    yonder: String,
    peer: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("ywb")
        .tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/tmp".into()))?;
    let run = tmp.path().join("run");
    let daemon = yonder_bench::BenchDaemon::start(&run)?;
    let sock = daemon.socket.clone();
    let result = bench(tmp.path(), &sock, daemon.pid()).await;
    drop(daemon);
    let rows = result?;
    println!("| measurement | yonder | inotifywait |");
    println!("|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} |", r.what, r.yonder, r.peer);
    }
    Ok(())
}

fn request(root: &Path, debounce_ms: u32) -> pb::WatchRequest {
    pb::WatchRequest {
        path: yonder_proto::paths::to_wire(root),
        debounce_ms,
        ..Default::default()
    }
}

async fn ready(c: &Client, req: pb::WatchRequest) -> anyhow::Result<RemoteStream<WatchEvent>> {
    let mut s = c.watch(req).await?;
    match tokio::time::timeout(EVENT_DEADLINE, s.next()).await {
        Ok(Some(Ok(WatchEvent::Ready { .. }))) => Ok(s),
        other => bail!("expected READY, got {other:?}"),
    }
}

/// Write-to-event latency through yonder: each write is a new file, the
/// clock stops when the client holds that file's event.
async fn yonder_latency(c: &Client, dir: &Path, debounce_ms: u32) -> anyhow::Result<Vec<Duration>> {
    std::fs::create_dir_all(dir)?;
    let mut s = ready(c, request(dir, debounce_ms)).await?;
    let mut lat = Vec::with_capacity(WRITES);
    for i in 0..WARMUP + WRITES {
        let f = dir.join(format!("f{i}"));
        let t = Instant::now();
        std::fs::write(&f, b"data")?;
        loop {
            let ev = tokio::time::timeout(EVENT_DEADLINE, s.next())
                .await
                .context("no event in time")?
                .context("watch ended")??;
            match ev {
                WatchEvent::Created { path, .. } | WatchEvent::Changed { path, .. }
                    if path == f =>
                {
                    break;
                }
                WatchEvent::Overflow { path, reason } => {
                    bail!("overflow at {}: {reason}", path.display())
                }
                _ => {}
            }
        }
        if i >= WARMUP {
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    Ok(lat)
}

/// The same through `inotifywait -m`, taking its first line about the file.
async fn inotifywait_latency(dir: &Path) -> anyhow::Result<Vec<Duration>> {
    std::fs::create_dir_all(dir)?;
    let mut child = tokio::process::Command::new("inotifywait")
        .args(["-m", "-e", "create,modify,close_write", "--format", "%w%f"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut err = BufReader::new(child.stderr.take().context("stderr")?).lines();
    // It says "Watches established." on stderr when it is listening.
    while let Some(l) = tokio::time::timeout(EVENT_DEADLINE, err.next_line()).await?? {
        if l.contains("Watches established") {
            break;
        }
    }
    let mut out = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut lat = Vec::with_capacity(WRITES);
    for i in 0..WARMUP + WRITES {
        let f = dir.join(format!("f{i}"));
        let want = f.to_string_lossy().into_owned();
        let t = Instant::now();
        std::fs::write(&f, b"data")?;
        loop {
            let l = tokio::time::timeout(EVENT_DEADLINE, out.next_line())
                .await
                .context("no inotifywait line in time")??
                .context("inotifywait ended")?;
            if l == want {
                break;
            }
        }
        if i >= WARMUP {
            lat.push(t.elapsed());
        }
    }
    let _ = child.kill().await;
    lat.sort();
    Ok(lat)
}

fn make_big_tree(root: &Path) -> anyhow::Result<()> {
    for a in 0..BIG_TOP {
        for b in 0..BIG_EACH {
            std::fs::create_dir_all(root.join(format!("d{a:03}/e{b:04}")))?;
        }
    }
    Ok(())
}

async fn bench(tmp: &Path, sock: &Path, daemon_pid: u32) -> anyhow::Result<Vec<Row>> {
    let peer = has_inotifywait();
    let no_peer = || "- (inotify-tools not installed)".to_string();
    let mut rows = Vec::new();
    let c = Client::connect_unix(sock).await?;

    // Latency at the default debounce and at the smallest one (1 ms: 0 on
    // the wire means "default").
    for (label, debounce_ms) in [("default debounce (50 ms)", 0u32), ("debounce 1 ms", 1)] {
        let lat = yonder_latency(&c, &tmp.join(format!("lat{debounce_ms}")), debounce_ms).await?;
        let peer_lat = if peer {
            Some(inotifywait_latency(&tmp.join(format!("peer{debounce_ms}"))).await?)
        } else {
            None
        };
        for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
            rows.push(Row {
                what: format!("write → event {name}, {label}, {WRITES} writes"),
                yonder: ms(percentile(&lat, p)),
                peer: peer_lat.as_ref().map_or_else(no_peer, |l| {
                    format!("{} (no debounce)", ms(percentile(l, p)))
                }),
            });
        }
    }

    // A 100,000-directory tree.
    let big = tmp.join("big");
    let t = Instant::now();
    make_big_tree(&big)?;
    eprintln!(
        "made {} directories in {:.1} s",
        BIG_TOP * BIG_EACH + BIG_TOP,
        t.elapsed().as_secs_f64()
    );
    let dirs = BIG_TOP * BIG_EACH + BIG_TOP + 1;
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")?
        .trim()
        .parse()?;
    if limit < dirs + 16 {
        bail!(
            "fs.inotify.max_user_watches is {limit}; the big tree needs {dirs}: \
             raise it (sysctl fs.inotify.max_user_watches=524288)"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(daemon_pid)?;
    let t = Instant::now();
    let mut s = ready(&c, request(&big, 0)).await?;
    let setup = t.elapsed();
    let watches = inotify_watches(daemon_pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = rss_kib(daemon_pid)?;
    // No OVERFLOW may have been queued behind READY: the whole tree must be
    // on kernel watches for this row to mean anything.
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(200), s.next()).await {
        bail!("unexpected event on the idle big tree: {ev:?}");
    }
    drop(s);
    let t = Instant::now();
    while inotify_watches(daemon_pid) > 0 {
        if t.elapsed() > EVENT_DEADLINE {
            bail!("watches not released after the stream was dropped");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let released = t.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(daemon_pid)?;

    let (peer_setup, peer_rss) = if peer {
        let mut child = tokio::process::Command::new("inotifywait")
            .args(["-m", "-r"])
            .arg(&big)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let t = Instant::now();
        let mut err = BufReader::new(child.stderr.take().context("stderr")?).lines();
        while let Some(l) =
            tokio::time::timeout(Duration::from_secs(120), err.next_line()).await??
        {
            if l.contains("Watches established") {
                break;
            }
        }
        let setup = t.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = rss_kib(child.id().context("inotifywait pid")?)?;
        let _ = child.kill().await;
        (ms(setup), mib(rss))
    } else {
        (no_peer(), no_peer())
    };

    rows.push(Row {
        what: format!("{dirs} directories: time to READY (walk + watches)"),
        yonder: format!("{} ({watches} kernel watches)", ms(setup)),
        peer: peer_setup,
    });
    rows.push(Row {
        what: format!("{dirs} directories: RSS while watching"),
        yonder: format!(
            "{} (+{} over the {} before)",
            mib(during),
            mib(during.saturating_sub(before)),
            mib(before)
        ),
        peer: peer_rss,
    });
    rows.push(Row {
        what: "after the client drops the watch".into(),
        yonder: format!(
            "0 kernel watches after {}; RSS {}",
            ms(released),
            mib(after)
        ),
        peer: "-".into(),
    });
    Ok(rows)
}
