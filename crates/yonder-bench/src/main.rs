//! Benchmarks for the engine on the `local` target over the unix socket, each
//! run side by side with its peer in the same process run, printed as a
//! markdown table for `docs/PERFORMANCE.md`.
//!
//! Run with `./scripts/bench` (builds release binaries first). The daemon is
//! the real `yonder server daemon` from the same target directory.

use anyhow::{Context, bail};
use futures::StreamExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use yonder_client::{Client, WriteOptions};

const GIB: u64 = 1 << 30;
const STAT_ROUNDS: usize = 20_000;
const CONCURRENT_STATS: usize = 10_000;
const DIR_ENTRIES: usize = 10_000;
/// Repetitions of each throughput run; the best is reported (least noise
/// from the other core's background work).
const THROUGHPUT_RUNS: usize = 3;

struct Row {
    what: String,
    yonder: String,
    peer: String,
    ratio: String,
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn sh(script: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let st = Command::new("sh").arg("-c").arg(script).status()?;
    if !st.success() {
        bail!("{script} failed");
    }
    Ok(start.elapsed())
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

// A current-thread runtime, as an editor plugin's connection task would use:
// on a multi-thread runtime every round trip pays cross-thread wake-ups
// (measured: stat p50 158 µs there, 69 µs here).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("yb")
        .tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/tmp".into()))?;
    let run = tmp.path().join("run");
    let daemon = yonder_bench::BenchDaemon::start(&run)?;
    let sock = daemon.socket.clone();
    let result = bench(&tmp.path().join("data"), &sock, daemon.pid()).await;
    drop(daemon);
    let rows = result?;
    println!("| measurement | yonder | peer | yonder / peer |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.what, r.yonder, r.peer, r.ratio);
    }
    Ok(())
}

async fn bench(data: &Path, sock: &Path, daemon_pid: u32) -> anyhow::Result<Vec<Row>> {
    std::fs::create_dir_all(data)?;
    let mut rows = Vec::new();

    // Idle RSS first, before the big transfers grow the allocator's pools:
    // a fresh daemon after one connection and a second of rest.
    {
        let c = Client::connect_unix(sock).await?;
        c.info().await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(daemon_pid)?;
    rows.push(Row {
        what: "idle daemon RSS (goal ≤ 10 MiB)".into(),
        yonder: format!("{:.1} MiB", idle as f64 / 1024.0),
        peer: "-".into(),
        ratio: "-".into(),
    });

    let c = Client::connect_unix(sock).await?;

    // stat round trip, sequential; the peer is stat(2) in this process.
    let f = data.join("small");
    std::fs::write(&f, "x")?;
    for _ in 0..1000 {
        c.stat(&f, false).await?;
    }
    let mut lat = Vec::with_capacity(STAT_ROUNDS);
    for _ in 0..STAT_ROUNDS {
        let t = Instant::now();
        c.stat(&f, false).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let mut local = Vec::with_capacity(STAT_ROUNDS);
    for _ in 0..STAT_ROUNDS {
        let t = Instant::now();
        std::fs::symlink_metadata(&f)?;
        local.push(t.elapsed());
    }
    local.sort();
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        rows.push(Row {
            what: format!("stat round trip {name} (goal p50 ≤ 100 µs)"),
            yonder: format!("{:.1} µs", percentile(&lat, p).as_secs_f64() * 1e6),
            peer: format!(
                "{:.1} µs (lstat(2) in-process)",
                percentile(&local, p).as_secs_f64() * 1e6
            ),
            ratio: "-".into(),
        });
    }

    // 10,000 stats issued concurrently vs one after another.
    let seq_t = Instant::now();
    for _ in 0..CONCURRENT_STATS {
        c.stat(&f, false).await?;
    }
    let seq = seq_t.elapsed();
    let conc_t = Instant::now();
    let all = futures::future::join_all((0..CONCURRENT_STATS).map(|_| {
        let c = c.clone();
        let f = f.clone();
        async move { c.stat(&f, false).await }
    }))
    .await;
    let conc = conc_t.elapsed();
    for r in all {
        r?;
    }
    rows.push(Row {
        what: format!("{CONCURRENT_STATS} stats: concurrent vs sequential"),
        yonder: format!("{:.0} ms concurrent", conc.as_secs_f64() * 1e3),
        peer: format!("{:.0} ms sequential", seq.as_secs_f64() * 1e3),
        ratio: format!("{:.2}× faster", seq.as_secs_f64() / conc.as_secs_f64()),
    });

    // Directory listing of 10,000 entries, names only and with metadata,
    // next to `ls -f` (no sort) and `ls -fl` through a pipe.
    let dir = data.join("dir");
    std::fs::create_dir(&dir)?;
    for i in 0..DIR_ENTRIES {
        std::fs::write(dir.join(format!("entry-{i:05}")), "")?;
    }
    for (with_meta, peer_cmd) in [(false, "ls -f"), (true, "ls -fl")] {
        let mut best = Duration::MAX;
        let mut peer = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let n = c.read_dir(&dir, with_meta).await?.len();
            best = best.min(t.elapsed());
            anyhow::ensure!(n == DIR_ENTRIES, "listed {n}");
            peer = peer.min(sh(&format!(
                "{peer_cmd} {} | cat > /dev/null",
                dir.display()
            ))?);
        }
        rows.push(Row {
            what: format!(
                "list {DIR_ENTRIES} entries{}",
                if with_meta { " with metadata" } else { "" }
            ),
            yonder: format!("{:.1} ms", best.as_secs_f64() * 1e3),
            peer: format!("{:.1} ms (`{peer_cmd} | cat`)", peer.as_secs_f64() * 1e3),
            ratio: format!("{:.2}", peer.as_secs_f64() / best.as_secs_f64()),
        });
    }

    // 1 GiB read and write vs cat through a pipe. Both sides read the file
    // from the page cache (warmed first) so the disk is not what we measure.
    let big = data.join("big");
    sh(&format!("head -c {GIB} /dev/urandom > {}", big.display()))?;
    sh(&format!("cat {} > /dev/null", big.display()))?;
    let mut ours = Duration::MAX;
    let mut cat = Duration::MAX;
    for _ in 0..THROUGHPUT_RUNS {
        let t = Instant::now();
        let mut s = c.read(&big, 0, None).await?;
        let mut n = 0u64;
        while let Some(chunk) = s.next().await {
            n += chunk?.len() as u64;
        }
        ours = ours.min(t.elapsed());
        anyhow::ensure!(n == GIB, "read {n}");
        cat = cat.min(sh(&format!("cat {} | cat > /dev/null", big.display()))?);
    }
    rows.push(Row {
        what: "read 1 GiB (goal ≥ 0.8× cat)".into(),
        yonder: format!("{:.0} MiB/s", mib_s(GIB, ours)),
        peer: format!("{:.0} MiB/s (`cat f | cat > /dev/null`)", mib_s(GIB, cat)),
        ratio: format!("{:.2}", cat.as_secs_f64() / ours.as_secs_f64()),
    });

    let mut ours = Duration::MAX;
    let mut cat = Duration::MAX;
    let dst = data.join("written");
    let dst_cat = data.join("written-by-cat");
    for _ in 0..THROUGHPUT_RUNS {
        let t = Instant::now();
        let file = tokio::fs::File::open(&big).await?;
        let reply = c.write_from(&dst, WriteOptions::default(), file).await?;
        ours = ours.min(t.elapsed());
        anyhow::ensure!(reply.bytes_written == GIB);
        // The peer also ends with the data durable, as our atomic write does.
        cat = cat.min(sh(&format!(
            "cat {} | cat > {} && sync {}",
            big.display(),
            dst_cat.display(),
            dst_cat.display()
        ))?);
        std::fs::remove_file(&dst)?;
        std::fs::remove_file(&dst_cat)?;
    }
    rows.push(Row {
        what: "write 1 GiB, atomic + fsync (goal ≥ 0.8× cat)".into(),
        yonder: format!("{:.0} MiB/s", mib_s(GIB, ours)),
        peer: format!("{:.0} MiB/s (`cat f | cat > g && sync g`)", mib_s(GIB, cat)),
        ratio: format!("{:.2}", cat.as_secs_f64() / ours.as_secs_f64()),
    });
    std::fs::remove_file(&big)?;

    let busy = rss_kib(daemon_pid)?;
    rows.push(Row {
        what: "daemon RSS after all of the above".into(),
        yonder: format!("{:.1} MiB", busy as f64 / 1024.0),
        peer: "-".into(),
        ratio: "-".into(),
    });
    Ok(rows)
}
