//! Keystroke echo latency through a daemon terminal: write one byte, time
//! until its echo arrives, idle and while a 1 GiB file transfer runs on the
//! same connection. The peer is the same measurement on a local PTY pair
//! (what a terminal emulator on this machine sees). Prints a markdown table.

use anyhow::{Context, bail};
use futures::StreamExt;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use yonder_client::Client;
use yonder_client::terminal::{OpenTerminal, TerminalEvent, TerminalSession};

const SAMPLES: usize = 1000;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

async fn echo_once(s: &mut TerminalSession, byte: u8) -> anyhow::Result<Duration> {
    let t = Instant::now();
    s.writer().write(vec![byte]).await?;
    loop {
        match s.next().await.context("terminal ended")?? {
            TerminalEvent::Data { data, .. } if data.contains(&byte) => return Ok(t.elapsed()),
            TerminalEvent::Exit(_) => bail!("terminal exited"),
            _ => {}
        }
    }
}

async fn measure(s: &mut TerminalSession) -> anyhow::Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        // Letters cycle so every echo is distinguishable from the last.
        v.push(echo_once(s, b'a' + (i % 26) as u8).await?);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(v)
}

/// The same keystroke round trip on a local PTY with `cat` on it.
fn local_pty() -> anyhow::Result<Vec<Duration>> {
    let mut child = Command::new("script")
        .args(["-qfc", "stty raw -echo; cat", "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("script(1) from util-linux")?;
    let mut w = child.stdin.take().context("stdin")?;
    let mut r = child.stdout.take().context("stdout")?;
    std::thread::sleep(Duration::from_millis(300));
    let mut v = Vec::with_capacity(SAMPLES);
    let mut buf = [0u8; 256];
    for i in 0..SAMPLES {
        let byte = b'a' + (i % 26) as u8;
        let t = Instant::now();
        w.write_all(&[byte])?;
        w.flush()?;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                bail!("script ended");
            }
            if buf[..n].contains(&byte) {
                break;
            }
        }
        v.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    Ok(v)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("ytb").tempdir()?;
    let run = tmp.path().join("run");
    let daemon = yonder_bench::BenchDaemon::start(&run)?;
    let sock = daemon.socket.clone();
    let c = Client::connect_unix(&sock).await?;
    // `cat` on the PTY in canonical mode: the line discipline echoes each
    // typed byte at once, as for a shell prompt.
    let info = c
        .open_terminal(OpenTerminal {
            program: Some("cat".into()),
            rows: 24,
            cols: 80,
            ..Default::default()
        })
        .await?;
    let mut s = c.attach_terminal(&info.id, None).await?;
    let mut idle = measure(&mut s).await?;

    let big = tmp.path().join("big");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {} /dev/urandom > {}",
            1u64 << 30,
            big.display()
        ))
        .status()?;
    anyhow::ensure!(st.success());
    let c2 = c.clone();
    let big2 = big.clone();
    let load = tokio::spawn(async move {
        let mut moved = 0u64;
        loop {
            let mut r = c2.read(&big2, 0, None).await?;
            while let Some(chunk) = r.next().await {
                moved += chunk?.len() as u64;
            }
            if moved >= 1 << 30 {
                return anyhow::Ok(moved);
            }
        }
    });
    // Keep measuring while the transfer runs (it takes about a second), then
    // go on with more transfers in the background if it ends first.
    let mut busy = Vec::new();
    while busy.len() < SAMPLES && !load.is_finished() {
        busy.push(echo_once(&mut s, b'a' + (busy.len() % 26) as u8).await?);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let busy_n = busy.len();
    load.await??;
    let mut local = tokio::task::spawn_blocking(local_pty).await??;
    drop(daemon);

    println!("| keystroke echo | p50 | p99 | samples |");
    println!("|---|---|---|---|");
    println!(
        "| yonder terminal, idle | {:.2} ms | {:.2} ms | {} |",
        pct(&mut idle, 0.5),
        pct(&mut idle, 0.99),
        SAMPLES
    );
    println!(
        "| yonder terminal, during a 1 GiB read on the same connection (goal p99 ≤ 5 ms) | {:.2} ms | {:.2} ms | {} |",
        pct(&mut busy, 0.5),
        pct(&mut busy, 0.99),
        busy_n
    );
    println!(
        "| local PTY (`script` + cat), the floor | {:.2} ms | {:.2} ms | {} |",
        pct(&mut local, 0.5),
        pct(&mut local, 0.99),
        SAMPLES
    );
    Ok(())
}
