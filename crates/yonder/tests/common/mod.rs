//! Test harness: starts the real `yonder server daemon` as a separate process
//! in a private runtime directory and cleans it up.

#![allow(dead_code)]

pub mod devcontainer;
pub mod sshd;
pub mod tmux;
pub mod user;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use yonder_client::Client;

pub const YONDER: &str = env!("CARGO_BIN_EXE_yonder");

/// Generous bound for "this must happen": failures show as a timeout
/// instead of a hung test run.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A loopback port that nothing listens on now and that the kernel will not
/// hand to anyone else's `bind(0)` or `connect()` in the meantime: it lies
/// below `ip_local_port_range`. Tests run in parallel; a port from the
/// ephemeral range, released and bound again later (or kept as "a port
/// nobody listens on"), can meanwhile go to another test's listener.
pub fn free_port() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("ip_local_port_range");
    let low: u16 = range
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("ip_local_port_range starts with a port");
    assert!(
        low > 12_000,
        "ephemeral ports start at {low}: too low for the tests"
    );
    let span = u32::from(low) - 10_000;
    for _ in 0..1000 {
        let r = getrandom::u32().expect("random");
        let port = u16::try_from(10_000 + r % span).expect("below the range");
        let taken = |a: &str| {
            std::net::TcpListener::bind((a, port))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
        };
        if !taken("127.0.0.1") && !taken("::1") {
            return port;
        }
    }
    panic!("no free port below {low}");
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Child,
}

impl Daemon {
    pub fn start() -> Self {
        Self::start_with(&[], None)
    }

    /// Starts a daemon with extra arguments, optionally as another user
    /// (through `setpriv`, which needs root).
    pub fn start_with(args: &[&str], user: Option<(u32, u32)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("yt")
            .tempdir()
            .expect("tempdir");
        let run = dir.path().join("run");
        let mut cmd = match user {
            Some((uid, gid)) => {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
                let mut c = Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                    "--".into(),
                    YONDER.into(),
                ]);
                c.env("HOME", dir.path());
                c
            }
            None => Command::new(YONDER),
        };
        cmd.args(["server", "daemon", "--run-dir"])
            .arg(&run)
            .args(args);
        if !args.contains(&"--idle-timeout") {
            cmd.args(["--idle-timeout", "0"]);
        }
        let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let child = cmd.spawn().expect("spawn daemon");
        let d = Self { dir, child };
        d.wait_for_socket();
        d
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("daemon.sock")
    }

    /// A scratch directory for test files, beside the runtime directory.
    pub fn work(&self) -> PathBuf {
        let w = self.dir.path().join("work");
        std::fs::create_dir_all(&w).unwrap();
        w
    }

    fn wait_for_socket(&self) {
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(start.elapsed() < DEADLINE, "daemon did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect_unix(&self.socket()).await.expect("connect")
    }

    /// The CLI, pointed at this daemon.
    pub fn cli(&self) -> Command {
        let mut c = Command::new(YONDER);
        c.env("YONDER_RUNTIME_DIR", self.run_dir());
        c
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a CLI command and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, Vec<u8>, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run yonder");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(p).unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

pub fn random_file(p: &Path, len: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(p).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        getrandom::fill(&mut buf[..n]).unwrap();
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

pub fn is_root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            // Zombies have an empty cmdline and are not running daemons.
            // Arguments are NUL-separated in /proc.
            let cmd: Vec<u8> = cmd
                .iter()
                .map(|b| if *b == 0 { b' ' } else { *b })
                .collect();
            if String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `cli exec TARGET -- sh -c 'echo "[$YONDER_TEST_SESSION]"'` with
/// YONDER_TEST_SESSION set to `mark` (unset for None) in the CLI's own
/// environment: what the program prints is what its session gave it.
#[allow(dead_code)]
pub fn session_mark(mut cli: Command, target: &str, mark: Option<&str>) -> String {
    cli.env_remove("YONDER_TEST_SESSION");
    if let Some(m) = mark {
        cli.env("YONDER_TEST_SESSION", m);
    }
    cli.args([
        "exec",
        target,
        "--",
        "sh",
        "-c",
        "echo \"[$YONDER_TEST_SESSION]\"",
    ]);
    let (code, out, err) = run(&mut cli);
    assert_eq!(code, 0, "{err}");
    String::from_utf8(out).unwrap()
}

/// The names in `dir` that are yonder temp files (`.NAME.yonder-…`): none
/// should be left once a write ended, however it ended.
#[allow(dead_code)]
pub fn yonder_temps(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(".yonder-"))
        .collect()
}

/// A real `ssh-agent` on `sock` holding one new key whose comment is
/// `name`; killed on drop.
#[allow(dead_code)]
pub fn agent_with_key(dir: &std::path::Path, name: &str) -> (ChildGuard, std::path::PathBuf) {
    let sock = dir.join(format!("{name}.sock"));
    let key = dir.join(name);
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let agent = ChildGuard(
        std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    );
    let start = std::time::Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < DEADLINE, "ssh-agent made no socket");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let o = std::process::Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (agent, sock)
}

/// A child process killed and reaped on drop.
#[allow(dead_code)]
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
