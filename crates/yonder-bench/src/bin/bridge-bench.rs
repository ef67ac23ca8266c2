//! The SSH bridge (`ProxyCommand yonder ssh-proxy TARGET`) against a real
//! sshd on loopback, with the same OpenSSH clients, side by side in one run:
//! `ssh HOST true` latency, sftp and scp of 1 GiB each way, rsync of 10,000
//! small files each way. Needs root and the `yondertest` user from
//! scripts/setup (the sshd logs in as that user). Prints a markdown table.
//!
//! `bridge-bench` bridges to `local`; `bridge-bench --target container`
//! bridges into a Podman dev container (`yonder up` of the test base image
//! from scripts/setup, removed afterwards), writing into its workspace, a
//! bind mount of a host folder on the same disk as the sshd user's home.

use anyhow::{Context, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use yonder_bench::{BenchDaemon, yonder_exe};

const USER: &str = "yondertest";
/// Latency samples: the best of these is reported (the floor, which is
/// what the code costs; the rest is scheduling noise on a shared machine).
const RUNS: usize = 10;
/// Bulk transfers and tree copies: best of three each side, taken in turns
/// (see [`interleaved`]).
const BULK_RUNS: usize = 3;
const GIB: u64 = 1 << 30;
/// The dev container's image (made by scripts/setup).
const BASE_IMAGE: &str = "localhost/yonder-test-base:bookworm-1";

/// Where the bridge leads.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Local,
    Container,
}

/// A dev container made for the run; removed on drop.
struct DevContainer {
    project: PathBuf,
    containers_conf: PathBuf,
}

impl DevContainer {
    /// Removes the project's containers (also one left by an earlier run).
    fn remove(&self) {
        let _ = sh(&format!(
            "export CONTAINERS_CONF={}; podman ps -aq --filter label=devcontainer.local_folder={} | xargs -r podman rm -f -t 0 >/dev/null",
            self.containers_conf.display(),
            self.project.display()
        ));
    }
}

impl Drop for DevContainer {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `yonder up` of a project on the base image under `base`; returns the
/// target, the environment words for the ProxyCommand, the workspace
/// folder inside the container and the container's guard.
fn up_container(y: &Path, base: &Path) -> anyhow::Result<(String, String, PathBuf, DevContainer)> {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/containers.conf");
    let conf = std::fs::canonicalize(&conf)
        .with_context(|| format!("{} (run from the repository)", conf.display()))?;
    let project = base.join("proj");
    std::fs::create_dir_all(project.join(".devcontainer"))?;
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        format!(r#"{{"image": "{BASE_IMAGE}"}}"#),
    )?;
    let guard = DevContainer {
        project: project.clone(),
        containers_conf: conf.clone(),
    };
    guard.remove();
    let env = format!(
        "CONTAINERS_CONF={} YONDER_STATE_DIR={s} YONDER_RUNTIME_DIR={s}/run",
        conf.display(),
        s = base.join("state").display()
    );
    sh(&format!(
        "env {env} {} up --workspace-folder {} > /dev/null",
        y.display(),
        project.display()
    ))
    .context("yonder up of the benchmark's dev container (run ./scripts/setup first)")?;
    Ok((
        format!("devcontainer:{}", project.display()),
        env,
        PathBuf::from("/workspaces/proj"),
        guard,
    ))
}

/// A private sshd on loopback; removes its files and the user's on drop.
struct Sshd {
    dir: PathBuf,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(format!("/home/{USER}/.yonder-bridge-bench"));
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

/// The best of `n` runs each of `f("bridge")` and `f("sshd")`, taken in
/// turns, so that a machine whose speed drifts (other work, disk
/// writeback) weighs on both sides alike.
fn interleaved(
    n: usize,
    mut f: impl FnMut(&str) -> anyhow::Result<Duration>,
) -> anyhow::Result<(Duration, Duration)> {
    let (mut b, mut s) = (Duration::MAX, Duration::MAX);
    for _ in 0..n {
        b = b.min(f("bridge")?);
        s = s.min(f("sshd")?);
    }
    Ok((b, s))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib_s(bytes: u64, d: Duration) -> String {
    format!(
        "{:.0} MiB/s",
        bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
    )
}

fn start_sshd(dir: &Path) -> anyhow::Result<(Sshd, u16)> {
    std::fs::create_dir_all(dir)?;
    sh(&format!(
        "chmod 755 {p} {d} && ssh-keygen -q -t ed25519 -N '' -f {d}/host_key && cp {d}/id.pub {d}/authorized_keys && chmod 644 {d}/authorized_keys && mkdir -p /run/sshd",
        p = dir.parent().unwrap_or(Path::new("/")).display(),
        d = dir.display()
    ))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-f", "/dev/null", "-p", &port.to_string()])
        .args(["-o", "ListenAddress=127.0.0.1", "-o", "PidFile=none"])
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
    Ok((
        Sshd {
            dir: dir.to_path_buf(),
            child,
        },
        port,
    ))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["--target", "local"] => Target::Local,
        ["--target", "container"] => Target::Container,
        _ => bail!("usage: bridge-bench [--target local|container]"),
    };
    let y = yonder_exe()?;
    // Root-owned 0755 below /var/lib: sshd's StrictModes refuses key files
    // under world-writable /tmp.
    let base = PathBuf::from("/var/lib/yonder-tests/bridge-bench");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("home/.ssh"))?;
    // One client key for both: the bridge accepts it from $HOME/.ssh, sshd
    // from authorized_keys.
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {b}/home/.ssh/id_ed25519 && mkdir -p {b}/sshd && cp {b}/home/.ssh/id_ed25519.pub {b}/sshd/id.pub",
        b = base.display()
    ))?;
    let (sshd, port) = start_sshd(&base.join("sshd"))?;
    let run_dir = base.join("run");
    // The bridge's target, the environment its ProxyCommand needs, and the
    // folder it writes into (in the container: its workspace).
    let (_daemon, _container, bridge_target, bridge_env, bridge_dst);
    match target {
        Target::Local => {
            _daemon = Some(BenchDaemon::start(&run_dir)?);
            _container = None;
            bridge_target = "local".to_string();
            bridge_env = format!("YONDER_RUNTIME_DIR={}", run_dir.display());
            bridge_dst = base.join("dst");
        }
        Target::Container => {
            let (t, e, ws, c) = up_container(&y, &base)?;
            _daemon = None;
            _container = Some(c);
            (bridge_target, bridge_env, bridge_dst) = (t, e, ws.join("dst"));
        }
    }
    let home = base.join("home");
    let cfg = base.join("config");
    std::fs::write(
        &cfg,
        format!(
            "Host bridge\n  ProxyCommand env HOME={h} {bridge_env} {y} ssh-proxy {bridge_target}\n  UserKnownHostsFile {b}/bridge_known_hosts\n  StrictHostKeyChecking accept-new\n\
             Host sshd\n  HostName 127.0.0.1\n  Port {port}\n  User {USER}\n  SetEnv YONDER_QUIET=1\n  UserKnownHostsFile {b}/sshd/known_hosts\n\
             Host *\n  IdentityFile {h}/.ssh/id_ed25519\n  IdentitiesOnly yes\n  IdentityAgent none\n  BatchMode yes\n  LogLevel ERROR\n",
            h = home.display(),
            y = y.display(),
            b = base.display(),
        ),
    )?;
    let ssh = format!("ssh -F {}", cfg.display());
    // Learn the bridge's host key once.
    sh(&format!("{ssh} bridge true"))?;

    // Where each side writes: the bench's folder (local) or the container's
    // workspace (a bind mount below it) for the bridge, the test user's
    // home for sshd. Same disk.
    let dst = |host: &str| -> PathBuf {
        if host == "bridge" {
            bridge_dst.clone()
        } else {
            PathBuf::from(format!("/home/{USER}/.yonder-bridge-bench"))
        }
    };
    for h in ["bridge", "sshd"] {
        sh(&format!(
            "{ssh} {h} 'rm -rf {d} && mkdir -p {d}'",
            d = dst(h).display()
        ))?;
    }
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let ratio = |bridge: Duration, sshd: Duration| sshd.as_secs_f64() / bridge.as_secs_f64();

    // Latency of a whole connection: handshake, auth, one exec.
    let lat = |h: &str| best(RUNS, || sh(&format!("{ssh} {h} true")));
    let (lb, ls) = (lat("bridge")?, lat("sshd")?);
    rows.push((
        "`ssh HOST true`, a whole connection".into(),
        ms(lb),
        ms(ls),
        format!("{:.2}× sshd's time", lb.as_secs_f64() / ls.as_secs_f64()),
    ));

    let big = base.join("big");
    sh(&format!("head -c {GIB} /dev/urandom > {}", big.display()))?;
    let down = base.join("down");
    for tool in ["sftp", "scp"] {
        let up = |h: &str| {
            best(1, || {
                let target = dst(h).join("big");
                if tool == "sftp" {
                    sh(&format!(
                        "echo 'put {} {}' | sftp -q -F {} -b - {h} > /dev/null",
                        big.display(),
                        target.display(),
                        cfg.display()
                    ))
                } else {
                    sh(&format!(
                        "scp -q -F {} {} {h}:{}",
                        cfg.display(),
                        big.display(),
                        target.display()
                    ))
                }
            })
        };
        let (ub, us) = interleaved(BULK_RUNS, up)?;
        rows.push((
            format!("{tool} upload 1 GiB (goal ≥ 0.8× sshd)"),
            mib_s(GIB, ub),
            mib_s(GIB, us),
            format!("{:.2}× sshd", ratio(ub, us)),
        ));
        let get = |h: &str| {
            best(1, || {
                let _ = std::fs::remove_file(&down);
                let source = dst(h).join("big");
                if tool == "sftp" {
                    sh(&format!(
                        "echo 'get {} {}' | sftp -q -F {} -b - {h} > /dev/null",
                        source.display(),
                        down.display(),
                        cfg.display()
                    ))
                } else {
                    sh(&format!(
                        "scp -q -F {} {h}:{} {}",
                        cfg.display(),
                        source.display(),
                        down.display()
                    ))
                }
            })
        };
        let (gb, gs) = interleaved(BULK_RUNS, get)?;
        rows.push((
            format!("{tool} download 1 GiB (goal ≥ 0.8× sshd)"),
            mib_s(GIB, gb),
            mib_s(GIB, gs),
            format!("{:.2}× sshd", ratio(gb, gs)),
        ));
    }
    let _ = std::fs::remove_file(&big);
    let _ = std::fs::remove_file(&down);

    // 10,000 files of 1 KiB, fresh each run.
    let tree = base.join("tree");
    sh(&format!(
        "mkdir -p {t} && cd {t} && for i in $(seq 1 100); do mkdir d$i; for j in $(seq 1 100); do head -c 1024 /dev/urandom > d$i/f$j; done; done",
        t = tree.display()
    ))?;
    let rs_up = |h: &str| {
        best(1, || {
            let t = dst(h).join("tree");
            let _ = sh(&format!("{ssh} {h} 'rm -rf {}'", t.display()));
            sh(&format!(
                "rsync -a -e '{ssh}' {}/ {h}:{}/",
                tree.display(),
                t.display()
            ))
        })
    };
    let (rb, rs) = interleaved(BULK_RUNS, rs_up)?;
    rows.push((
        "rsync -a 10,000 × 1 KiB up (goal ≤ 1.3× sshd's time)".into(),
        ms(rb),
        ms(rs),
        format!("{:.2}× sshd's time", rb.as_secs_f64() / rs.as_secs_f64()),
    ));
    let back = base.join("back");
    let rs_down = |h: &str| {
        best(1, || {
            let _ = std::fs::remove_dir_all(&back);
            sh(&format!(
                "rsync -a -e '{ssh}' {h}:{}/ {}/",
                dst(h).join("tree").display(),
                back.display()
            ))
        })
    };
    let (db, ds) = interleaved(BULK_RUNS, rs_down)?;
    rows.push((
        "rsync -a 10,000 × 1 KiB down (goal ≤ 1.3× sshd's time)".into(),
        ms(db),
        ms(ds),
        format!("{:.2}× sshd's time", db.as_secs_f64() / ds.as_secs_f64()),
    ));

    let column = match target {
        Target::Local => "bridge (`ssh-proxy local`)",
        Target::Container => "bridge into a Podman dev container",
    };
    println!("| measurement | {column} | sshd on loopback | ratio |");
    println!("|---|---|---|---|");
    for (a, b, c, r) in rows {
        println!("| {a} | {b} | {c} | {r} |");
    }
    drop(sshd);
    drop(_container);
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
