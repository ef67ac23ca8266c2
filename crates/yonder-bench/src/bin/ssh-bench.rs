//! The SSH target against a private loopback sshd (needs root and the
//! `yondertest` user from scripts/setup), side by side with plain OpenSSH in
//! one run. Prints a markdown table.

use anyhow::{Context, bail, ensure};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "yondertest";
const RUNS: usize = 10;

/// Turns of the 1 GiB copies (yonder, scp, cat over ssh, yonder without
/// the bulk channel, in that order each turn).
const BULK_TURNS: usize = 3;

/// Turns of the 1 GiB forwards (no disk involved: cheaper to repeat).
const FORWARD_TURNS: usize = 5;

/// Turns of the 10,000-file copies.
const TREE_TURNS: usize = 3;

/// Bytes pushed each way through a forward: 1 GiB, as for the file copies.
const FORWARD_BYTES: u64 = 1 << 30;
const FORWARD_BLOCK: usize = 1 << 20;

/// How long a forwarder has to start listening.
const FORWARD_START: Duration = Duration::from_secs(30);

/// The service behind the forwards, on 127.0.0.1 at the "remote" side (this
/// machine: the sshd is on loopback). A connection's first byte says what
/// to do: `U` reads everything (an upload) and answers one byte at the end,
/// `D` sends `FORWARD_BYTES` and closes. Anything else (a readiness probe
/// that connects and closes) is dropped.
fn start_forward_service() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut op = [0u8; 1];
                if c.read_exact(&mut op).is_err() {
                    return;
                }
                let mut buf = vec![7u8; FORWARD_BLOCK];
                match op[0] {
                    b'U' => {
                        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                        let _ = c.write_all(b"k");
                    }
                    b'D' => {
                        for _ in 0..FORWARD_BYTES / FORWARD_BLOCK as u64 {
                            if c.write_all(&buf).is_err() {
                                return;
                            }
                        }
                    }
                    _ => {}
                }
            });
        }
    });
    Ok(port)
}

/// One 1 GiB transfer through the forward listening on `port`.
fn through(port: u16, upload: bool) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    let mut buf = vec![9u8; FORWARD_BLOCK];
    if upload {
        c.write_all(b"U")?;
        for _ in 0..FORWARD_BYTES / FORWARD_BLOCK as u64 {
            c.write_all(&buf)?;
        }
        c.shutdown(Shutdown::Write)?;
        let mut k = [0u8; 1];
        c.read_exact(&mut k).context("no answer after the upload")?;
    } else {
        c.write_all(b"D")?;
        let mut n = 0u64;
        loop {
            let r = c.read(&mut buf)?;
            if r == 0 {
                break;
            }
            n += r as u64;
        }
        ensure!(n == FORWARD_BYTES, "the download stopped after {n} bytes");
    }
    Ok(t.elapsed())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a forwarder (`sh -c` that execs it) and waits until it listens.
struct Forwarder(Child);

impl Forwarder {
    fn start(script: &str, port: u16) -> anyhow::Result<Self> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {script}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let f = Self(child);
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                t.elapsed() < FORWARD_START,
                "`{script}` did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(f)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Sshd {
    dir: PathBuf,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .args(["-u", USER, "-f", ".yonder-bench"])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(format!("/home/{USER}/.yonder-bench"));
    }
}

fn sh(script: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("`{script}` failed");
    }
    Ok(t.elapsed())
}

fn best(n: usize, mut f: impl FnMut() -> anyhow::Result<Duration>) -> anyhow::Result<Duration> {
    let mut b = Duration::MAX;
    for _ in 0..n {
        b = b.min(f()?);
    }
    Ok(b)
}

/// Runs each of `runs` once per turn, `turns` times, so that a change in
/// the machine's load hits all of them; the times, per run.
fn in_turns(
    turns: usize,
    runs: &mut [&mut dyn FnMut() -> anyhow::Result<Duration>],
) -> anyhow::Result<Vec<Vec<Duration>>> {
    let mut times = vec![Vec::with_capacity(turns); runs.len()];
    for _ in 0..turns {
        for (k, run) in runs.iter_mut().enumerate() {
            times[k].push(run()?);
        }
    }
    Ok(times)
}

/// The lowest and highest of the per-turn ratios `b[i] / a[i]`.
fn ratio_range(a: &[Duration], b: &[Duration]) -> (f64, f64) {
    let ratios = a
        .iter()
        .zip(b)
        .map(|(a, b)| b.as_secs_f64() / a.as_secs_f64());
    ratios.fold((f64::MAX, 0.0), |(lo, hi), r| (lo.min(r), hi.max(r)))
}

fn fastest(v: &[Duration]) -> Duration {
    v.iter().min().copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn start_sshd() -> anyhow::Result<(Sshd, u16)> {
    let dir = PathBuf::from("/var/lib/yonder-tests/bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    sh(&format!(
        "chmod 755 /var/lib/yonder-tests {d} && ssh-keygen -q -t ed25519 -N '' -f {d}/host_key && ssh-keygen -q -t ed25519 -N '' -f {d}/id && cp {d}/id.pub {d}/authorized_keys && chmod 644 {d}/authorized_keys && mkdir -p /run/sshd",
        d = dir.display()
    ))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("/usr/sbin/sshd")
        .args([
            "-D",
            "-f",
            "/dev/null",
            "-p",
            &port.to_string(),
            "-o",
            "ListenAddress=127.0.0.1",
            "-o",
            "PidFile=none",
        ])
        // scp in Debian 12 speaks SFTP, which needs the subsystem.
        .args([
            "-o",
            "Subsystem=sftp /usr/lib/openssh/sftp-server",
            "-o",
            "AcceptEnv=YONDER_QUIET",
        ])
        .arg("-h")
        .arg(dir.join("host_key"))
        .arg("-o")
        .arg(format!(
            "AuthorizedKeysFile={}",
            dir.join("authorized_keys").display()
        ))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting sshd (run as root after ./scripts/setup)")?;
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(t.elapsed() < Duration::from_secs(10), "sshd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let host = std::fs::read_to_string(dir.join("host_key.pub"))?;
    std::fs::write(
        dir.join("known_hosts"),
        format!("[127.0.0.1]:{port} {host}"),
    )?;
    std::fs::write(
        dir.join("config"),
        format!(
            "Host b\n  HostName 127.0.0.1\n  Port {port}\n  User {USER}\n  SetEnv YONDER_QUIET=1\n  IdentityFile {d}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n",
            d = dir.display()
        ),
    )?;
    Ok((Sshd { dir, child }, port))
}

fn main() -> anyhow::Result<()> {
    let y = std::env::current_exe()?.with_file_name("yonder");
    let (sshd, _port) = start_sshd()?;
    let d = sshd.dir.clone();
    let cfg = d.join("config");
    let env = format!(
        "YONDER_SSH_CONFIG={} YONDER_RUNTIME_DIR={}/run YONDER_SERVER_INSTALL_PATH=.yonder-bench/server YONDER_REMOTE_RUNTIME_DIR=.yonder-bench/run",
        cfg.display(),
        d.display()
    );
    let yonder = |args: &str| format!("env {env} {} {args}", y.display());
    let ssh = format!("ssh -F {}", cfg.display());
    let mut rows: Vec<(String, String, String, String)> = Vec::new();

    // First connect: master, probe, upload of this binary, daemon start.
    let first = sh(&format!("{} > /dev/null", yonder("exec b -- true")))?;
    let size = std::fs::metadata(&y)?.len();
    rows.push((
        "first connect, installing the server".into(),
        format!("{} ({} MiB uploaded)", ms(first), size >> 20),
        "-".into(),
        "-".into(),
    ));

    // Warm: yonder's master is up (ControlPersist) and the daemon runs.
    let warm = best(RUNS, || {
        sh(&format!("{} > /dev/null", yonder("exec b -- true")))
    })?;
    let cold_ssh = best(RUNS, || {
        sh(&format!(
            "{ssh} -o ControlMaster=no -o ControlPath=none b true > /dev/null 2>&1"
        ))
    })?;
    rows.push((
        "`exec b -- true`, warm (goal ≤ 1.0× ssh without master)".into(),
        ms(warm),
        format!("{} (`ssh b true`)", ms(cold_ssh)),
        format!("{:.2}×", warm.as_secs_f64() / cold_ssh.as_secs_f64()),
    ));
    let mux = format!("{ssh} -o ControlPath={}/run/ssh/%C", d.display());
    let ssh_mux = best(RUNS, || sh(&format!("{mux} b true > /dev/null 2>&1")))?;
    rows.push((
        "same, vs ssh through yonder's master (goal: yonder ≤ 0.3× ssh without master)".into(),
        ms(warm),
        format!("{} (`ssh` via the master)", ms(ssh_mux)),
        format!(
            "{:.2}× of no-master ssh",
            warm.as_secs_f64() / cold_ssh.as_secs_f64()
        ),
    ));

    // 1 GiB up and down.
    let big = d.join("big");
    sh(&format!(
        "head -c {} /dev/urandom > {}",
        1u64 << 30,
        big.display()
    ))?;
    let rpath = format!("/home/{USER}/.yonder-bench/big");
    let mib = |t: Duration| format!("{:.0} MiB/s", 1024.0 / t.as_secs_f64());
    // Turns of yonder, scp and the others, so that a change in the machine's
    // load hits all of them; each column's best, and the range of the
    // per-turn yonder/scp ratios.
    let cmds_up = [
        format!(
            "{} > /dev/null",
            yonder(&format!("fs b put {} {rpath}", big.display()))
        ),
        format!(
            "scp -q -F {} {} b:{rpath}.scp",
            cfg.display(),
            big.display()
        ),
        format!(
            "cat {} | {ssh} b 'cat > {rpath}.cat' 2>/dev/null",
            big.display()
        ),
        format!(
            "YONDER_BULK=off {} > /dev/null",
            yonder(&format!("fs b put {} {rpath}.h2", big.display()))
        ),
    ];
    let down_path = d.join("down");
    let cmds_down = [
        format!(
            "{} > /dev/null",
            yonder(&format!("fs b get {rpath} {}", down_path.display()))
        ),
        format!(
            "scp -q -F {} b:{rpath} {}.scp",
            cfg.display(),
            down_path.display()
        ),
        format!(
            "{ssh} b 'cat {rpath}' > {}.cat 2>/dev/null",
            down_path.display()
        ),
        format!(
            "YONDER_BULK=off {} > /dev/null",
            yonder(&format!("fs b get {rpath} {}.h2", down_path.display()))
        ),
    ];
    for (what, cmds) in [("upload", &cmds_up), ("download", &cmds_down)] {
        // Dirty pages of the copy before are written back outside the timed
        // part: the kernel's writeback throttling would otherwise slow
        // whichever copy crosses its threshold.
        let mut runs: Vec<Box<dyn FnMut() -> anyhow::Result<Duration>>> = cmds
            .iter()
            .map(|c| {
                Box::new(move || {
                    sh("sync")?;
                    sh(c)
                }) as Box<dyn FnMut() -> anyhow::Result<Duration>>
            })
            .collect();
        let mut refs: Vec<&mut dyn FnMut() -> anyhow::Result<Duration>> =
            runs.iter_mut().map(|r| &mut **r as _).collect();
        let times = in_turns(BULK_TURNS, &mut refs)?;
        for (t, turn) in (0..BULK_TURNS).enumerate() {
            let each: Vec<String> = times.iter().map(|v| mib(v[turn])).collect();
            eprintln!(
                "{what} turn {}: yonder, scp, cat, main connection: {}",
                t + 1,
                each.join(", ")
            );
        }
        let best = |k: usize| fastest(&times[k]);
        let (lo, hi) = ratio_range(&times[0], &times[1]);
        rows.push((
            format!("{what} 1 GiB (goal ≥ 1.0× scp; best of {BULK_TURNS} turns)"),
            format!("{} (main connection: {})", mib(best(0)), mib(best(3))),
            format!("scp {}, cat over ssh {}", mib(best(1)), mib(best(2))),
            format!(
                "{:.2}× scp (turns {lo:.2}–{hi:.2}×)",
                best(1).as_secs_f64() / best(0).as_secs_f64()
            ),
        ));
    }
    let _ = std::fs::remove_file(&big);
    for ext in ["", ".scp", ".cat", ".h2"] {
        let _ = std::fs::remove_file(format!("{}{ext}", down_path.display()));
        let _ = std::fs::remove_file(format!("{rpath}{ext}"));
    }

    // 10,000 files of 1 KiB.
    let tree = d.join("tree");
    sh(&format!(
        "mkdir -p {t} && cd {t} && for i in $(seq 1 100); do mkdir d$i; for j in $(seq 1 100); do head -c 1024 /dev/urandom > d$i/f$j; done; done",
        t = tree.display()
    ))?;
    let rtree = format!("/home/{USER}/.yonder-bench/tree");
    // Each copy starts from nothing on the receiving side, after `sync`
    // (writeback of earlier copies stays outside the timed part); in turns.
    let fresh = |dir: &str| -> anyhow::Result<()> {
        let _ = Command::new("rm").args(["-rf", dir]).status();
        sh("sync").map(|_| ())
    };
    let put_times = in_turns(
        TREE_TURNS,
        &mut [
            &mut || {
                fresh(&rtree)?;
                sh(&format!(
                    "{} > /dev/null",
                    yonder(&format!("fs b put {} {rtree}", tree.display()))
                ))
            },
            &mut || {
                fresh(&format!("{rtree}.rsync"))?;
                sh(&format!(
                    "rsync -a -e '{ssh}' {}/ b:{rtree}.rsync/",
                    tree.display()
                ))
            },
            &mut || {
                fresh(&format!("{rtree}.tar"))?;
                sh(&format!(
                    "tar -C {} -cf - . | {ssh} b 'mkdir -p {rtree}.tar && tar -C {rtree}.tar -xf -' 2>/dev/null",
                    tree.display()
                ))
            },
        ],
    )?;
    let (lo, hi) = ratio_range(&put_times[1], &put_times[0]);
    let (put, rsync) = (fastest(&put_times[0]), fastest(&put_times[1]));
    rows.push((
        format!("put 10,000 × 1 KiB files (goal ≤ 1.0× rsync's time; best of {TREE_TURNS} turns)"),
        ms(put),
        format!(
            "rsync -a {}, tar|ssh {}",
            ms(rsync),
            ms(fastest(&put_times[2]))
        ),
        format!(
            "{:.2}× rsync (turns {lo:.2}–{hi:.2}×)",
            put.as_secs_f64() / rsync.as_secs_f64()
        ),
    ));
    let local_back = d.join("back");
    let back = local_back.display().to_string();
    let get_times = in_turns(
        TREE_TURNS,
        &mut [
            &mut || {
                fresh(&back)?;
                sh(&format!(
                    "{} > /dev/null",
                    yonder(&format!("fs b get {rtree} {back}"))
                ))
            },
            &mut || {
                fresh(&format!("{back}.rsync"))?;
                sh(&format!("rsync -a -e '{ssh}' b:{rtree}/ {back}.rsync/"))
            },
        ],
    )?;
    let (lo, hi) = ratio_range(&get_times[1], &get_times[0]);
    let (get, rsync_get) = (fastest(&get_times[0]), fastest(&get_times[1]));
    rows.push((
        format!("get 10,000 × 1 KiB files (goal ≤ 1.0× rsync's time; best of {TREE_TURNS} turns)"),
        ms(get),
        format!("rsync -a {}", ms(rsync_get)),
        format!(
            "{:.2}× rsync (turns {lo:.2}–{hi:.2}×)",
            get.as_secs_f64() / rsync_get.as_secs_f64()
        ),
    ));

    // `yonder forward` vs `ssh -L` (a fresh ssh, no master), 1 GiB each way
    // to a service on the remote side's 127.0.0.1.
    let svc = start_forward_service()?;
    let (yp, sp) = (free_port()?, free_port()?);
    let yf = Forwarder::start(&yonder(&format!("forward b {yp}:127.0.0.1:{svc}")), yp)?;
    let sf = Forwarder::start(
        &format!("{ssh} -o ControlMaster=no -o ControlPath=none -N -L {sp}:127.0.0.1:{svc} b"),
        sp,
    )?;
    for (upload, what) in [(true, "upload"), (false, "download")] {
        // In turns, as the copies above.
        let t = in_turns(
            FORWARD_TURNS,
            &mut [&mut || through(yp, upload), &mut || through(sp, upload)],
        )?;
        let (lo, hi) = ratio_range(&t[0], &t[1]);
        let (y, s) = (fastest(&t[0]), fastest(&t[1]));
        rows.push((
            format!(
                "forward: {what} 1 GiB through the tunnel (goal ≥ 0.9× ssh -L; best of {FORWARD_TURNS} turns)"
            ),
            mib(y),
            format!("ssh -L {}", mib(s)),
            format!(
                "{:.2}× ssh -L (turns {lo:.2}–{hi:.2}×)",
                s.as_secs_f64() / y.as_secs_f64()
            ),
        ));
    }
    drop((yf, sf));

    println!("| measurement | yonder | peer | ratio |");
    println!("|---|---|---|---|");
    for (a, b, c, r) in rows {
        println!("| {a} | {b} | {c} | {r} |");
    }
    let _ = sh(&format!("{mux} -O exit b 2>/dev/null"));
    drop(sshd);
    Ok(())
}
