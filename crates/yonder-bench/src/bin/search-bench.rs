//! Text search through a real yonder daemon next to `rg` on the same tree,
//! printed as a markdown table.
//!
//! The tree (200,000 files of about 10.5 KiB, 2.1 GB of text from a fixed
//! vocabulary) is generated once and kept in `$SEARCH_BENCH_DIR` (default
//! `/tmp/yonder-search-bench`); a `COMPLETE` marker naming its layout makes
//! later runs reuse it. Both tools run on a warm page cache: the first,
//! untimed, run of each case warms it.
//!
//! Build and run: `cargo build --release -p yonder -p yonder-bench &&
//! target/release/search-bench`.

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use yonder_client::Client;
use yonder_client::search::{CaseMode, SearchEvent, SearchRequest};
use yonder_proto::paths::to_wire;

const DIRS: usize = 200;
const SUBDIRS: usize = 10;
const FILES_PER_SUBDIR: usize = 100;
const FILES: usize = DIRS * SUBDIRS * FILES_PER_SUBDIR;
/// Target size of one file; lines are added until it is reached.
const FILE_BYTES: usize = 10_500;
/// Changes whenever the generator does, so an old tree is rebuilt.
const LAYOUT: &str = "v1 200x10x100 10500B";
/// Runs per measurement; the best is reported (least disturbed by the other
/// work on a shared machine).
const RUNS: usize = 3;

/// The rare word: in about one file in 20, once.
const RARE: &str = "zephyrquux";
/// The common words: the regex case matches about 1 line in 100.
const COMMON_A: &str = "Lattice";
const COMMON_B: &str = "lanterns";

/// xorshift64*: fixed, fast, good enough to make text that is not
/// compressible into a trivial search.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn vocabulary() -> Vec<String> {
    const SYL: [&str; 24] = [
        "ka", "to", "ri", "mon", "sel", "va", "pe", "dor", "lin", "qua", "fe", "shi", "ban", "ur",
        "tem", "os", "gra", "ne", "chi", "lo", "wex", "ty", "am", "bri",
    ];
    let mut rng = Rng(0x5eed);
    (0..1000)
        .map(|_| {
            let n = 1 + rng.below(3);
            (0..n).map(|_| SYL[rng.below(SYL.len())]).collect()
        })
        .collect()
}

fn file_text(seed: u64, vocab: &[String], out: &mut Vec<u8>) {
    out.clear();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let rare_line = (rng.below(20) == 0).then(|| rng.below(140));
    let mut line_no = 0;
    while out.len() < FILE_BYTES {
        let words = 6 + rng.below(8);
        for w in 0..words {
            if w > 0 {
                out.push(b' ');
            }
            match rng.below(1000) {
                0..=1 => out.extend_from_slice(COMMON_A.as_bytes()),
                2..=3 => out.extend_from_slice(COMMON_B.as_bytes()),
                _ => out.extend_from_slice(vocab[rng.below(vocab.len())].as_bytes()),
            }
        }
        if rare_line == Some(line_no) {
            out.extend_from_slice(b" ");
            out.extend_from_slice(RARE.as_bytes());
        }
        out.push(b'\n');
        line_no += 1;
    }
}

fn file_path(root: &Path, i: usize) -> PathBuf {
    let d = i / (SUBDIRS * FILES_PER_SUBDIR);
    let s = (i / FILES_PER_SUBDIR) % SUBDIRS;
    root.join(format!("d{d:03}/s{s:02}/file{i:06}.txt"))
}

/// Builds the tree unless a complete one of the same layout is there.
fn ensure_tree(root: &Path) -> anyhow::Result<u64> {
    let marker = root.join("COMPLETE");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == LAYOUT) {
        return tree_bytes(root);
    }
    eprintln!(
        "generating {FILES} files under {} (once; reused later)",
        root.display()
    );
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("clearing {}", root.display()))?;
    }
    let vocab = vocabulary();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let vocab = &vocab;
                s.spawn(move || -> anyhow::Result<()> {
                    let mut buf = Vec::with_capacity(FILE_BYTES + 200);
                    for i in (t..FILES).step_by(threads) {
                        let p = file_path(root, i);
                        if i % FILES_PER_SUBDIR == 0 || t > 0 {
                            std::fs::create_dir_all(p.parent().context("parent")?)?;
                        }
                        file_text(i as u64 + 1, vocab, &mut buf);
                        std::fs::write(&p, &buf).with_context(|| format!("{}", p.display()))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("generator panicked"))??;
        }
        Ok(())
    })?;
    std::fs::write(&marker, LAYOUT)?;
    tree_bytes(root)
}

fn tree_bytes(root: &Path) -> anyhow::Result<u64> {
    // Every file has the same size range; sum them honestly anyway.
    let mut total = 0;
    for i in 0..FILES {
        total += std::fs::metadata(file_path(root, i))?.len();
    }
    Ok(total)
}

struct Case {
    name: &'static str,
    pattern: String,
    rg_flags: &'static [&'static str],
    case_mode: CaseMode,
}

/// `rg [EXTRA] PATTERN DIR > /dev/null`, wall time.
fn rg_to_null(case: &Case, extra: &[&str], dir: &Path) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let st = Command::new("rg")
        .args(case.rg_flags)
        .args(extra)
        .arg("--")
        .arg(&case.pattern)
        .arg(dir)
        .env_remove("RIPGREP_CONFIG_PATH")
        .stdout(Stdio::null())
        .status()?;
    let d = t.elapsed();
    ensure!(st.code() == Some(0), "rg failed: {st}");
    Ok(d)
}

/// rg through a pipe, read to the end: time to its first output byte, total
/// time, and its line count.
fn rg_through_pipe(case: &Case, dir: &Path) -> anyhow::Result<(Duration, Duration, u64)> {
    let t = Instant::now();
    let mut child = Command::new("rg")
        .args(case.rg_flags)
        .arg("--")
        .arg(&case.pattern)
        .arg(dir)
        .env_remove("RIPGREP_CONFIG_PATH")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut buf = vec![0u8; 1 << 16];
    let mut first = None;
    let mut lines = 0u64;
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(|| t.elapsed());
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
    child.wait()?;
    Ok((first.context("rg printed nothing")?, t.elapsed(), lines))
}

/// One yonder search consuming every result: (first result, total, lines).
async fn yonder_search(
    c: &Client,
    case: &Case,
    dir: &Path,
) -> anyhow::Result<(Duration, Duration, u64)> {
    let t = Instant::now();
    let mut s = c
        .grep(SearchRequest {
            path: to_wire(dir),
            pattern: case.pattern.clone(),
            case_mode: case.case_mode as i32,
            respect_gitignore: true,
            ..Default::default()
        })
        .await?;
    let mut first = None;
    let mut lines = 0;
    let mut done = false;
    while let Some(ev) = s.next().await {
        match ev? {
            SearchEvent::Line(_) => {
                first.get_or_insert_with(|| t.elapsed());
                lines += 1;
            }
            SearchEvent::Done(stats) => {
                ensure!(stats.matched_lines == lines, "stats disagree");
                done = true;
            }
        }
    }
    ensure!(done, "no stats");
    Ok((first.context("no result")?, t.elapsed(), lines))
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn yonder_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?.with_file_name("yonder");
    if !exe.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p yonder)",
            exe.display()
        );
    }
    Ok(exe)
}

// A current-thread client runtime, as in the main benchmark (an editor
// plugin's connection task).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let exe = yonder_exe()?;
    let root = PathBuf::from(
        std::env::var_os("SEARCH_BENCH_DIR").unwrap_or_else(|| "/tmp/yonder-search-bench".into()),
    );
    let tree = root.join("tree");
    let gen_t = Instant::now();
    let bytes = ensure_tree(&tree)?;
    eprintln!("tree ready in {:.1} s", gen_t.elapsed().as_secs_f64());

    let run = tempfile::Builder::new().prefix("ysb").tempdir()?;
    let mut daemon = Command::new(&exe)
        .args(["server", "daemon", "--idle-timeout", "0", "--run-dir"])
        .arg(run.path().join("run"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let sock = run.path().join("run/daemon.sock");
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = daemon.kill();
            bail!("daemon did not start");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let result = bench(&tree, &sock, bytes).await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    let rows = result?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "tree: {FILES} files, {:.2} GB, {} threads available; best of {RUNS} runs, warm cache\n",
        bytes as f64 / 1e9,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;
    writeln!(
        out,
        "| case | matching lines | rg > /dev/null | rg -n --column > /dev/null | rg \\| pipe, read all | yonder, all results | yonder / rg>/dev/null (goal ≤ 1.2) | yonder / rg -n --column | rg first result | yonder first result |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|")?;
    for r in rows {
        writeln!(out, "{r}")?;
    }
    Ok(())
}

async fn bench(tree: &Path, sock: &Path, _bytes: u64) -> anyhow::Result<Vec<String>> {
    let c = Client::connect_unix(sock).await?;
    let cases = [
        Case {
            name: "rare literal",
            pattern: RARE.into(),
            rg_flags: &[],
            case_mode: CaseMode::CaseSensitive,
        },
        Case {
            name: "regex, -i, ~2% of lines",
            pattern: format!("{COMMON_A}|{COMMON_B}"),
            rg_flags: &["-i"],
            case_mode: CaseMode::CaseInsensitive,
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        // Warm-up, untimed: page cache and the daemon's thread pool.
        rg_to_null(case, &[], tree)?;
        yonder_search(&c, case, tree).await?;

        let mut rg_total = Duration::MAX;
        // rg computing what yonder delivers: line numbers and match columns.
        let mut rg_numbered = Duration::MAX;
        let mut rg_first = Duration::MAX;
        let mut rg_pipe = Duration::MAX;
        let mut rg_lines = 0;
        let mut y_total = Duration::MAX;
        let mut y_first = Duration::MAX;
        let mut y_lines = 0;
        for _ in 0..RUNS {
            rg_total = rg_total.min(rg_to_null(case, &[], tree)?);
            rg_numbered = rg_numbered.min(rg_to_null(case, &["-n", "--column"], tree)?);
            let (f, t, n) = rg_through_pipe(case, tree)?;
            rg_first = rg_first.min(f);
            rg_pipe = rg_pipe.min(t);
            rg_lines = n;
            let (f, t, n) = yonder_search(&c, case, tree).await?;
            y_first = y_first.min(f);
            y_total = y_total.min(t);
            y_lines = n;
        }
        ensure!(
            rg_lines == y_lines,
            "{}: rg found {rg_lines} lines, yonder {y_lines}",
            case.name
        );
        rows.push(format!(
            "| {} (`{}`) | {} | {} | {} | {} | {} | {:.2}× | {:.2}× | {} | {} |",
            case.name,
            case.pattern,
            y_lines,
            ms(rg_total),
            ms(rg_numbered),
            ms(rg_pipe),
            ms(y_total),
            y_total.as_secs_f64() / rg_total.as_secs_f64(),
            y_total.as_secs_f64() / rg_numbered.as_secs_f64(),
            ms(rg_first),
            ms(y_first),
        ));
    }
    Ok(rows)
}
