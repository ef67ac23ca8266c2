//! The SSH bridge with real OpenSSH clients: `ssh`, `sftp`, `scp`, `rsync`
//! and `sshfs` reach yonder targets through `ProxyCommand yonder ssh-proxy`.
//!
//! Each test gets a home directory of its own (the bridge accepts the keys
//! in `$HOME/.ssh`, and keeps its host keys under `$HOME/.yonder`), an ssh
//! config whose `ProxyCommand` runs the bridge with that environment, and a
//! known_hosts file of its own.

mod common;

use common::devcontainer::Project;
use common::sshd::{Sshd, TEST_USER, free_port};
use common::tmux::Tmux;
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The client side of one test: a home with a key, and an ssh config.
struct Bridge {
    home: tempfile::TempDir,
    config: PathBuf,
    /// Keeps the local daemon (or the sshd) alive for the test.
    daemon: Option<Daemon>,
    sshd: Option<Sshd>,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bridge-test", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

impl Bridge {
    /// A bridge to `local`, served by a daemon of the test's own.
    fn local() -> Self {
        let d = Daemon::start();
        let env = format!("YONDER_RUNTIME_DIR={}", d.run_dir().display());
        Self::new("local", &env, Some(d), None)
    }

    /// A bridge to the SSH target `yt` (a real sshd on loopback).
    fn over_ssh() -> Self {
        let s = Sshd::start();
        let env = s.env_line(&s.config);
        Self::new("yt", &env, None, Some(s))
    }

    fn new(target: &str, env: &str, daemon: Option<Daemon>, sshd: Option<Sshd>) -> Self {
        let home = tempfile::Builder::new().prefix("br").tempdir().unwrap();
        let ssh_dir = home.path().join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        keygen(&ssh_dir.join("id_ed25519"));
        // A key the bridge does not know (not under $HOME/.ssh).
        keygen(&home.path().join("stranger"));
        let b = Self {
            config: home.path().join("ssh_config"),
            home,
            daemon,
            sshd,
        };
        b.write_config(target, env);
        b
    }

    fn write_config(&self, target: &str, env: &str) {
        let h = self.home.path();
        let text = format!(
            "Host br\n\
             \x20 ProxyCommand env HOME={home} {env} {YONDER} ssh-proxy {target}\n\
             \x20 User {TEST_USER}\n\
             \x20 IdentityFile {home}/.ssh/id_ed25519\n\
             \x20 IdentitiesOnly yes\n\
             \x20 IdentityAgent none\n\
             \x20 UserKnownHostsFile {home}/known_hosts\n\
             \x20 StrictHostKeyChecking accept-new\n\
             \x20 BatchMode yes\n\
             \x20 LogLevel ERROR\n",
            home = h.display(),
        );
        std::fs::write(&self.config, text).unwrap();
    }

    fn path(&self, p: &str) -> PathBuf {
        self.home.path().join(p)
    }

    /// `ssh -F CONFIG ARGS...` with stdin from `input`.
    fn ssh_in(&self, args: &[&str], input: &[u8]) -> Output {
        let mut c = Command::new("ssh");
        c.arg("-F").arg(&self.config).args(args);
        run_with_input(c, input)
    }

    fn ssh(&self, args: &[&str]) -> Output {
        self.ssh_in(args, b"")
    }

    fn tool(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.arg("-F").arg(&self.config);
        c
    }
}

fn run_with_input(mut c: Command, input: &[u8]) -> Output {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = wait_output(child, Duration::from_secs(120));
    writer.join().unwrap();
    out
}

/// Waits for a child with a deadline (a hung client fails the test).
fn wait_output(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    // Either may be read elsewhere already (taken from the child).
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            // What it said so far is the clue, once its stderr ends (an ssh
            // multiplexing client has handed that pipe to its master, which
            // may hold it open: then wait no more than a few seconds).
            let waited = Instant::now();
            while !err_t.is_finished() && waited.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let err = if err_t.is_finished() {
                String::from_utf8_lossy(&err_t.join().unwrap()).into_owned()
            } else {
                "(still open)".into()
            };
            panic!("client did not finish within {limit:?}; its stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// The last lines of stdout (after any login-shell noise of the test user).
fn tail_lines(b: &[u8], n: usize) -> Vec<String> {
    let t = text(b);
    let lines: Vec<String> = t.lines().map(str::to_string).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[test]
fn exec_runs_in_the_users_shell_with_exit_codes_signals_and_stdio() {
    let b = Bridge::local();
    let o = b.ssh(&["br", r#"printf "%s\n" "$HOME" "$USER" "$0""#]);
    assert_ok("printf", &o);
    let home = std::env::var("HOME").unwrap();
    let user = text(&Command::new("id").arg("-un").output().unwrap().stdout);
    let lines = tail_lines(&o.stdout, 3);
    assert_eq!(lines[0], home);
    assert_eq!(lines[1], user.trim());
    // The login shell runs the command, as sshd does (`$SHELL -c`).
    assert!(lines[2].ends_with("sh"), "{lines:?}");

    // The client's default choice, with AES instructions in the CPU, is
    // AES-GCM (the bridge's fast cipher); without, ChaCha20.
    let o = b.ssh(&["-v", "br", "true"]);
    assert_ok("ssh -v", &o);
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let aes = cpu
        .lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "aes"));
    let want = if aes {
        "-gcm@openssh.com MAC"
    } else {
        "cipher: chacha20-poly1305"
    };
    assert!(text(&o.stderr).contains(want), "{}", text(&o.stderr));

    let o = b.ssh(&["br", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    // A program killed by a signal: exit-signal, and ssh exits 255 as it
    // does with sshd.
    let o = b.ssh(&["br", "kill -TERM $$"]);
    assert_eq!(o.status.code(), Some(255), "{}", text(&o.stderr));
    let o = b.ssh(&["br", "no-such-program-xyz"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(text(&o.stderr).contains("not found"), "{}", text(&o.stderr));

    // stdin in, stdout and stderr apart, a megabyte each way.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let o = b.ssh_in(&["br", "cat; echo to-stderr >&2"], &data);
    assert_ok("cat", &o);
    assert!(o.stdout == data, "stdin came back intact");
    assert_eq!(text(&o.stderr).trim(), "to-stderr");
    // The daemon is on this machine: the bridge held the program's pipes
    // itself (no byte through the daemon).
    let log = b.daemon.as_ref().unwrap().log();
    assert!(
        log.contains("started a program whose pipes a local client holds"),
        "{log}"
    );

    // The client hanging up kills the program, as with sshd.
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(&b.config)
        .args(["br", "echo $$; exec sleep 300"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut ssh = c.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(ssh.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let pid: u32 = line.trim().parse().unwrap();
    assert!(pid_alive(pid));
    ssh.kill().unwrap();
    ssh.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "the program outlived its client");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Environment sent by the client (SendEnv) reaches the command.
    let o = b.ssh(&[
        "-o",
        "SendEnv=YONDER_BRIDGE_TEST",
        "br",
        "echo \"[$YONDER_BRIDGE_TEST]\"",
    ]);
    assert_ok("env", &o);
    assert_eq!(text(&o.stdout).trim(), "[]", "not set locally, not sent");
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(&b.config)
        .args(["-o", "SendEnv=YONDER_BRIDGE_TEST", "br"])
        .arg("echo \"[$YONDER_BRIDGE_TEST]\"")
        .env("YONDER_BRIDGE_TEST", "sent value");
    let o = run_with_input(c, b"");
    assert_eq!(text(&o.stdout).trim(), "[sent value]");
}

#[test]
fn exec_over_an_ssh_target() {
    let b = Bridge::over_ssh();
    let o = b.ssh(&["br", r#"printf "%s\n" "$HOME" "$USER"; exit 7"#]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    let lines = tail_lines(&o.stdout, 2);
    assert_eq!(lines, [format!("/home/{TEST_USER}"), TEST_USER.to_string()]);

    // SFTP is served by the yonder on the far side of the SSH hop (scp in
    // SFTP mode into the remote home, and back).
    let src = b.path("src.bin");
    random_file(&src, 3 * 1024 * 1024);
    let name = format!("bridge-{}.bin", std::process::id());
    let mut c = b.tool("scp");
    c.arg(&src).arg(format!("br:{name}"));
    assert_ok("scp up", &run_with_input(c, b""));
    let sshd = b.sshd.as_ref().unwrap();
    let remote = sshd.remote_home().join(&name);
    assert_eq!(sha256_file(&src), sha256_file(&remote));
    let meta = std::fs::metadata(&remote).unwrap();
    use std::os::unix::fs::MetadataExt;
    let uid = Command::new("id").args(["-u", TEST_USER]).output().unwrap();
    assert_eq!(
        meta.uid().to_string(),
        text(&uid.stdout).trim(),
        "owned by the target's user"
    );
    let mut c = b.tool("scp");
    c.arg(format!("br:{name}")).arg(b.path("back.bin"));
    assert_ok("scp down", &run_with_input(c, b""));
    assert_eq!(sha256_file(&src), sha256_file(&b.path("back.bin")));
    std::fs::remove_file(remote).unwrap();
}

#[test]
fn wrong_key_is_refused_and_the_host_key_is_stable() {
    let b = Bridge::local();
    // A config that offers only a key the local user does not hold.
    let cfg = std::fs::read_to_string(&b.config)
        .unwrap()
        .replace(".ssh/id_ed25519", "stranger");
    let bad = b.path("bad_config");
    std::fs::write(&bad, cfg).unwrap();
    let mut c = Command::new("ssh");
    c.arg("-F").arg(&bad).args(["br", "echo in"]);
    let o = run_with_input(c, b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(
        text(&o.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&o.stderr)
    );
    assert!(o.stdout.is_empty());

    // First connection: the key is learned; it is stored 0600.
    assert_ok("first", &b.ssh(&["br", "true"]));
    let known = std::fs::read_to_string(b.path("known_hosts")).unwrap();
    assert!(known.contains("ssh-ed25519"), "{known}");
    let keys: Vec<_> = std::fs::read_dir(b.path(".yonder/ssh-bridge/host-keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&keys[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Later bridges (new processes) present the same key: strict checking
    // passes and known_hosts is unchanged.
    for _ in 0..2 {
        let o = b.ssh(&["-o", "StrictHostKeyChecking=yes", "br", "true"]);
        assert_ok("strict", &o);
    }
    assert_eq!(
        std::fs::read_to_string(b.path("known_hosts")).unwrap(),
        known
    );
}

/// ssh's pipes are polled directly; stdio that cannot be polled (here
/// /dev/null, a character device; by hand, a terminal) still works through
/// the fallback: the proxy greets, sees end of input and exits.
#[test]
fn the_proxy_speaks_on_stdio_that_cannot_be_polled() {
    let b = Bridge::local();
    let o = Command::new(YONDER)
        .args(["ssh-proxy", "local"])
        .env("HOME", b.home.path())
        .env("YONDER_RUNTIME_DIR", b.daemon.as_ref().unwrap().run_dir())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        o.stdout.starts_with(b"SSH-2.0-yonder_"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_target_that_cannot_start_is_a_clear_error() {
    // Nothing listens on port 1 of loopback.
    let b = Bridge::local();
    b.write_config("ssh://nobody@127.0.0.1:1", "YONDER_SSH_CONFIG=/dev/null");
    let o = b.ssh(&["br", "true"]);
    assert_eq!(o.status.code(), Some(255));
    let err = text(&o.stderr);
    assert!(
        err.contains("yonder: cannot reach ssh://nobody@127.0.0.1:1"),
        "{err}"
    );
    // After authentication, a disconnect that carries the reason.
    assert!(err.contains("Received disconnect"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn sftp_batch_and_scp_both_ways() {
    let b = Bridge::local();
    let src = b.path("src.bin");
    random_file(&src, 5 * 1024 * 1024 + 123);
    let remote = b.path("remote");
    let back = b.path("back.bin");
    let batch = b.path("batch");
    std::fs::write(
        &batch,
        format!(
            "mkdir {r}\n\
             put {src} {r}/a.bin\n\
             chmod 640 {r}/a.bin\n\
             ln -s {r}/a.bin {r}/link\n\
             put -p {src} {r}/p.bin\n\
             df {r}\n\
             ls -l {r}\n\
             rename {r}/a.bin {r}/b.bin\n\
             mkdir {r}/sub\n\
             ls {r}\n\
             get {r}/b.bin {back}\n\
             rm {r}/b.bin\n\
             rmdir {r}/sub\n",
            r = remote.display(),
            src = src.display(),
            back = back.display()
        ),
    )
    .unwrap();
    let mut c = b.tool("sftp");
    c.arg("-b").arg(&batch).arg("br");
    let o = run_with_input(c, b"");
    assert_ok("sftp -b", &o);
    let out = text(&o.stdout);
    assert!(out.contains("a.bin"), "{out}");
    assert!(out.contains(&format!("{}", 5 * 1024 * 1024 + 123)), "{out}");
    assert!(out.contains("sub"), "{out}");
    assert_eq!(sha256_file(&src), sha256_file(&back));
    // Modes, links (OpenSSH's argument order), preserved times, statvfs.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        std::fs::read_link(remote.join("link")).unwrap(),
        remote.join("a.bin")
    );
    let p = std::fs::metadata(remote.join("p.bin")).unwrap();
    assert_eq!(p.mtime(), std::fs::metadata(&src).unwrap().mtime());
    assert_eq!(
        p.permissions().mode() & 0o777,
        std::fs::metadata(&src).unwrap().permissions().mode() & 0o777
    );
    assert!(out.contains("Size") || out.contains("Avail"), "df: {out}");
    assert!(
        out.contains("-rw-r-----"),
        "chmod 640 shows in ls -l: {out}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&remote)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["link", "p.bin"], "rm and rmdir ran");

    // A failing command stops the batch with an error (sftp -b semantics).
    std::fs::write(&batch, "rm /no/such/file\n").unwrap();
    let mut c = b.tool("sftp");
    c.arg("-b").arg(&batch).arg("br");
    let o = run_with_input(c, b"");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("No such file"),
        "{}",
        text(&o.stderr)
    );

    // scp (SFTP mode, OpenSSH's default) up and down, and to ~.
    let mut c = b.tool("scp");
    c.arg(&src).arg(format!("br:{}/up.bin", remote.display()));
    assert_ok("scp up", &run_with_input(c, b""));
    let mut c = b.tool("scp");
    c.arg(format!("br:{}/up.bin", remote.display()))
        .arg(b.path("down.bin"));
    assert_ok("scp down", &run_with_input(c, b""));
    assert_eq!(sha256_file(&src), sha256_file(&b.path("down.bin")));
    let name = format!("yonder-bridge-scp-{}.bin", std::process::id());
    let mut c = b.tool("scp");
    c.arg(&src).arg(format!("br:~/{name}"));
    assert_ok("scp to ~", &run_with_input(c, b""));
    let in_home = Path::new(&std::env::var("HOME").unwrap()).join(&name);
    assert_eq!(sha256_file(&src), sha256_file(&in_home));
    std::fs::remove_file(in_home).unwrap();
}

/// `ssh -tt` in a real terminal (tmux) in session `name`: the window size
/// arrives, a resize follows, the exit code comes back.
fn terminal_sees_its_size_and_resizes(b: &Bridge, tmux: &Tmux, name: &str) {
    let cmd = format!(
        "ssh -F {} -tt br; echo ssh-exit=$?; sleep 60",
        b.config.display()
    );
    tmux.start(name, 90, 25, &cmd);
    // `tty` before the marker: the pane is read once the marker shows.
    tmux.type_line(name, "stty size; tty; echo ready-$((6*7))");
    let t = tmux.wait_for(name, "ready-42");
    assert!(t.contains("25 90"), "{t}");
    assert!(t.contains("/dev/pts/"), "{t}");
    tmux.resize(name, 120, 40);
    // The resize reaches the shell (poll: SIGWINCH travels asynchronously).
    let start = Instant::now();
    loop {
        tmux.type_line(name, "clear; stty size");
        std::thread::sleep(Duration::from_millis(200));
        let t = tmux.screen(name);
        if t.contains("40 120") {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "no resize:\n{t}");
    }
    tmux.type_line(name, "exit 6");
    tmux.wait_for(name, "ssh-exit=6");
}

#[test]
fn a_terminal_session_sees_its_size_and_resizes() {
    let b = Bridge::local();
    let tmux = Tmux::new(b.home.path());
    terminal_sees_its_size_and_resizes(&b, &tmux, "br");
    let d = b.daemon.as_ref().unwrap();
    no_terminals_left(d);

    // A client that vanishes (killed, laptop lid closed): its shell is hung
    // up, as sshd does, instead of waiting hours for a re-attach.
    let cmd = format!("ssh -F {} -tt br", b.config.display());
    tmux.start("two", 90, 25, &cmd);
    tmux.type_line("two", "echo up-$((6*7))");
    tmux.wait_for("two", "up-42");
    let list = || {
        let (code, out, err) = run(d.cli().args(["terminals", "local", "--json"]));
        assert_eq!(code, 0, "{err}");
        text(&out)
    };
    assert!(list().contains("\"id\""), "a terminal while connected");
    let st = Command::new("pkill")
        .args(["-KILL", "-f", &cmd])
        .status()
        .unwrap();
    assert!(st.success(), "the ssh client was running");
    no_terminals_left(d);
}

/// Waits until the daemon has no terminal left.
fn no_terminals_left(d: &Daemon) {
    let start = Instant::now();
    loop {
        let (code, out, err) = run(d.cli().args(["terminals", "local", "--json"]));
        assert_eq!(code, 0, "{err}");
        if !text(&out).contains("\"id\"") {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "terminals left behind:\n{}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bridge's process for this test's home (there is one per
/// connection; `env HOME=...` in the ProxyCommand tells them apart).
fn proxy_pids(home: &Path) -> Vec<u32> {
    let want = format!("HOME={}", home.display());
    processes_with("ssh-proxy")
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == want.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Writes up to `total` zeros into `w` in a thread, counting what went in;
/// stops at the first error.
fn flood(
    mut w: impl Write + Send + 'static,
    total: usize,
) -> (
    std::thread::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let t = std::thread::spawn(move || {
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..total / chunk.len() {
            if w.write_all(&chunk).is_err() {
                return;
            }
            counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    (t, sent)
}

/// A program that never reads its stdin while the client floods it (as
/// `head -c 256M /dev/zero | ssh HOST CMD`), and a forwarded connection
/// whose far end never reads, flooded too: as with sshd, those channels'
/// windows fill and the client stops sending on them, the program's output
/// and exit still arrive, another session on the same connection keeps
/// working, and the bridge's memory stays bounded. (The bridge used to
/// stall the whole connection until the program ended.)
#[test]
fn a_flooded_stdin_holds_up_only_its_own_channel() {
    let b = Bridge::local();
    let release = b.path("release");
    flooded_stdin_holds_up_only_its_own_channel(&b, &release, &release);
}

/// The same over SSH: the program's stdin goes through the `Exec` call's
/// stream to the remote daemon, not through a pipe the bridge holds.
#[test]
fn a_flooded_stdin_over_ssh_holds_up_only_its_own_channel() {
    let b = Bridge::over_ssh();
    // Where the test user on the far side can see it.
    let release = b.sshd.as_ref().unwrap().remote_path("flood-release");
    let _ = std::fs::remove_file(&release);
    flooded_stdin_holds_up_only_its_own_channel(&b, &release, &release);
}

/// The same into a dev container: the program runs in the container
/// through the direct-pipe path, and the forward's far end listens there.
#[test]
fn a_flooded_stdin_into_a_dev_container_holds_up_only_its_own_channel() {
    let (p, b) = bridge_into_a_dev_container();
    let there = PathBuf::from(format!("{}/flood-release", p.workspace()));
    flooded_stdin_holds_up_only_its_own_channel(&b, &p.path().join("flood-release"), &there);
}

/// See [`a_flooded_stdin_holds_up_only_its_own_channel`]. `release` is a
/// file this test creates to let the program end; `release_there` is the
/// same file as the target sees it.
fn flooded_stdin_holds_up_only_its_own_channel(b: &Bridge, release: &Path, release_there: &Path) {
    const FLOOD: usize = 256 << 20;
    let cm = b.path("cm.sock");
    let control = format!("ControlPath={}", cm.display());
    let sink_port = free_port();
    let l = free_port();
    // The master's log and the bridge's (its ProxyCommand shares the
    // master's stderr) are shown if the end below hangs.
    let master_log = b.path("master.log");
    let master = Bg({
        let mut c = b.tool("ssh");
        c.args(["-v", "-N", "-o", "ControlMaster=yes", "-o", &control, "-L"])
            .arg(format!("{l}:127.0.0.1:{sink_port}"))
            .arg("br")
            .env(
                "YONDER_LOG",
                "debug,russh=info,h2=info,tonic=info,hyper=info",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&master_log).unwrap());
        c.spawn().expect("spawn the master")
    });
    let start = Instant::now();
    while !cm.exists() {
        assert!(start.elapsed() < DEADLINE, "no ControlMaster socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The far end of the forward, on the target (a session on the same
    // connection): it accepts two connections, wait_port's probe and the
    // flood, reads none until the release file exists, then tells whether
    // one of them starts with 4 KiB of the flood's zeros.
    let sink_script = r#"perl -MIO::Socket::INET -e '
        $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:PORT", Listen => 5, ReuseAddr => 1)
            or die "listen: $!";
        $| = 1;
        print "ready\n";
        push @c, scalar $s->accept for 1 .. 2;
        select(undef, undef, undef, 0.05) until -e "RELEASE";
        for $c (@c) {
            $n = read($c, $b, 4096);
            print(($n == 4096 && $b !~ /[^\0]/) ? "far zeros\n" : "far other\n");
        }'"#
    .replace("PORT", &sink_port.to_string())
    .replace("RELEASE", &release_there.display().to_string());
    let mut sink = Bg(b
        .tool("ssh")
        .args(["-o", &control, "br", &sink_script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ssh"));
    let mut sink_out = std::io::BufReader::new(sink.0.stdout.take().unwrap());
    // (The SSH test user's shell start-up prints a line of its own first.)
    let mut line = String::new();
    while line != "ready\n" {
        line.clear();
        let n = std::io::BufRead::read_line(&mut sink_out, &mut line).unwrap();
        assert!(n > 0, "the sink on the target did not start");
    }
    let mut flooded = b
        .tool("ssh")
        .args(["-o", &control, "br"])
        .arg(format!(
            "sleep 1; echo started; i=0; while [ ! -e {} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo done; exit 5",
            release_there.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdin_flood, sent) = flood(flooded.stdin.take().unwrap(), FLOOD);
    wait_port(l);
    let (tcp_flood, tcp_sent) = flood(
        std::net::TcpStream::connect(("127.0.0.1", l)).unwrap(),
        FLOOD,
    );
    // The program's output arrives while it is flooded and running.
    let mut out = std::io::BufReader::new(flooded.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut out, &mut line).unwrap_or(0) > 0 {
            let _ = tx.send(line.trim_end().to_string());
            line.clear();
        }
    });
    // (The SSH test user's shell start-up prints a line of its own first.)
    while rx.recv_timeout(DEADLINE).unwrap() != "started" {}
    // The client stopped sending: its window on that channel is full.
    let before = sent.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    let after = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        after < 64 << 20,
        "{after} bytes went into a program that reads none"
    );
    assert!(
        after - before < 8 << 20,
        "still sending: {before} then {after}"
    );
    let tcp = tcp_sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        tcp < 64 << 20,
        "{tcp} bytes went into a forward that reads none"
    );
    // Another session on the same connection works meanwhile.
    let mut c = b.tool("ssh");
    c.args(["-o", &control, "br", "echo second"]);
    let o = run_with_input(c, b"");
    assert_ok("second session", &o);
    assert_eq!(tail_lines(&o.stdout, 1), ["second"]);
    // One connection, one bridge process, bounded memory.
    let pids = proxy_pids(b.home.path());
    assert_eq!(pids.len(), 1, "{pids:?}");
    let rss = rss_kib(pids[0]);
    assert!(rss < 128 * 1024, "the bridge holds {rss} KiB");
    // The program ends: its output and exit status arrive.
    std::fs::write(release, "").unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "done");
    let start = Instant::now();
    while flooded.try_wait().unwrap().is_none() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
    if flooded.try_wait().unwrap().is_none() {
        let log = std::fs::read_to_string(&master_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(120).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let _ = flooded.kill();
        panic!(
            "the client did not end after the program; master and bridge log (end):\n{}",
            tail.join("\n")
        );
    }
    let o = wait_output(flooded, DEADLINE);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    reader.join().unwrap();
    stdin_flood.join().unwrap();
    // The forward's far end got data, in order, and the connection ends.
    let mut far = String::new();
    std::io::Read::read_to_string(&mut sink_out, &mut far).unwrap();
    let mut far: Vec<&str> = far.lines().filter(|l| l.starts_with("far ")).collect();
    far.sort_unstable();
    assert_eq!(far, ["far other", "far zeros"]);
    drop(sink);
    drop(master);
    tcp_flood.join().unwrap();
}

/// What VS Code's Remote-SSH runs before installing its server: probes of
/// the platform and shell through exec, and its install script on a
/// `bash` reading stdin (`ssh -T HOST bash`).
#[test]
fn vscode_probe_commands_work() {
    let b = Bridge::local();
    let o = b.ssh(&["br", "uname -rsv"]);
    assert_ok("uname", &o);
    assert!(text(&o.stdout).starts_with("Linux "), "{}", text(&o.stdout));
    let o = b.ssh(&["br", "bash --version"]);
    assert_ok("bash --version", &o);
    assert!(text(&o.stdout).contains("GNU bash"));
    let o = b.ssh(&["br", "sh -c 'echo $0'"]);
    assert_eq!(text(&o.stdout).trim(), "sh");
    let script = b"set -e\necho \"platform=$(uname -s)\"\nfor t in bash tar; do command -v $t >/dev/null && echo has-$t; done\n(command -v curl || command -v wget) >/dev/null && echo has-downloader\necho \"arch=$(uname -m)\"\nexit 0\n";
    let o = b.ssh_in(&["-T", "br", "bash"], script);
    assert_ok("bash script", &o);
    let out = text(&o.stdout);
    for want in [
        "platform=Linux",
        "has-bash",
        "has-tar",
        "has-downloader",
        "arch=",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    // A login shell without a command and without a terminal reads stdin.
    let o = b.ssh_in(&["-T", "br"], b"echo from-stdin-shell\n");
    assert_ok("shell without pty", &o);
    assert!(text(&o.stdout).contains("from-stdin-shell"));
}

/// sha256 of every file under `root`, by relative path.
fn tree_digest(root: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), sha256_file(&p));
            }
        }
    }
    out
}

/// `rsync -a` of a 10,000-file tree to `there` on the target (seen by the
/// test at `seen_at`) and back, checked file by file.
fn rsync_ten_thousand_files(b: &Bridge, there: &str, seen_at: &Path) {
    const FILES: usize = 10_000;
    let src = b.path("tree");
    for i in 0..FILES {
        let dir = src.join(format!("d{:03}", i % 100));
        if i < 100 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        // Small and distinct: the cost is per file, as in a source tree.
        std::fs::write(
            dir.join(format!("f{i}.txt")),
            format!("file {i} {}\n", "x".repeat(i % 300)),
        )
        .unwrap();
    }
    let rsync = |from: String, to: String| {
        let o = wait_output(
            Command::new("rsync")
                .args(["-a", "-e", &format!("ssh -F {}", b.config.display())])
                .args([from, to])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            Duration::from_secs(300),
        );
        assert_ok("rsync", &o);
    };
    rsync(format!("{}/", src.display()), format!("br:{there}/"));
    let want = tree_digest(&src);
    assert_eq!(want.len(), FILES);
    assert_eq!(tree_digest(seen_at), want);
    let back = b.path("back");
    rsync(format!("br:{there}/"), format!("{}/", back.display()));
    assert_eq!(tree_digest(&back), want);
}

#[test]
fn rsync_ten_thousand_files_both_ways() {
    let b = Bridge::local();
    let there = b.path("there");
    rsync_ten_thousand_files(&b, &there.display().to_string(), &there);
}

/// Kills a background client when the test ends.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bg(mut c: Command) -> Bg {
    Bg(c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn"))
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < DEADLINE, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP/1.0 GET on loopback; the whole response.
fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// An HTTP server on the client's loopback serving `dir` (python's, a real
/// one).
fn http_server(dir: &Path) -> (Bg, u16) {
    let port = free_port();
    let mut c = Command::new("python3");
    c.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(dir);
    let server = bg(c);
    wait_port(port);
    (server, port)
}

/// An HTTP server on the target's loopback, started through the bridge
/// (perl: it is in every Debian, containers included), answering every
/// request with `body`. It runs until the returned client is killed.
fn http_server_on_target(b: &Bridge, body: &str) -> (Bg, u16) {
    let port = free_port();
    let script = r#"perl -MIO::Socket::INET -e '
        $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:PORT", Listen => 5, ReuseAddr => 1)
            or die "listen: $!";
        $| = 1;
        print "ready\n";
        while ($c = $s->accept) {
            while (<$c>) { last if /^\r?$/ }
            print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nBODY";
            close $c;
        }'"#
    .replace("PORT", &port.to_string())
    .replace("BODY", body);
    let mut child = b
        .tool("ssh")
        .args(["br", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ssh");
    let mut first = [0u8; 6];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    (Bg(child), port)
}

/// An HTTP GET run on the target (through the bridge): what a program
/// there gets from 127.0.0.1:`port`. Retries until `want` arrives, as a
/// remote forward's listener is set up asynchronously.
fn http_get_on_target(b: &Bridge, port: u16, want: &str) -> String {
    let script = format!(
        r#"perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new("127.0.0.1:{port}") or die "connect: $!\n"; print $s "GET /hello.txt HTTP/1.0\r\nHost: localhost\r\n\r\n"; print while <$s>'"#
    );
    let start = Instant::now();
    loop {
        let o = b.ssh(&["br", &script]);
        let got = text(&o.stdout);
        if o.status.success() && got.contains(want) {
            return got;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "GET on the target never returned {want:?}: {got}\n{}",
            text(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ssh -L` carries an HTTP request to a server on the target's loopback;
/// `ssh -R` makes a port on the target that reaches a server on the
/// client's loopback.
fn local_and_remote_forwards_carry_http(b: &Bridge) {
    let (_target_server, on_target) = http_server_on_target(b, "hello from the target\n");
    let l = free_port();
    let _fwd = bg({
        let mut c = b.tool("ssh");
        c.args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
            .arg(format!("{l}:127.0.0.1:{on_target}"))
            .arg("br");
        c
    });
    wait_port(l);
    let r = http_get(l, "/hello.txt");
    assert!(r.starts_with("HTTP/1.0 200"), "{r}");
    assert!(r.ends_with("hello from the target\n"), "{r}");

    let www = b.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello from the client\n").unwrap();
    let (_client_server, on_client) = http_server(&www);
    let rport = free_port();
    let _rfwd = bg({
        let mut c = b.tool("ssh");
        c.args(["-N", "-o", "ExitOnForwardFailure=yes", "-R"])
            .arg(format!("{rport}:127.0.0.1:{on_client}"))
            .arg("br");
        c
    });
    let r = http_get_on_target(b, rport, "hello from the client\n");
    assert!(r.starts_with("HTTP/1.0 200"), "{r}");
}

#[test]
fn local_remote_and_dynamic_forwards_carry_http() {
    let b = Bridge::local();
    local_and_remote_forwards_carry_http(&b);

    // ssh -D: SOCKS, as VS Code's Remote-SSH uses it.
    let www = b.path("www");
    let (_server, http) = http_server(&www);
    let d = free_port();
    let _dyn = bg({
        let mut c = b.tool("ssh");
        c.args(["-N", "-D", &format!("127.0.0.1:{d}"), "br"]);
        c
    });
    wait_port(d);
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--socks5-hostname"])
        .arg(format!("127.0.0.1:{d}"))
        .arg(format!("http://127.0.0.1:{http}/hello.txt"))
        .output()
        .unwrap();
    assert_ok("curl via -D", &o);
    assert_eq!(text(&o.stdout), "hello from the client\n");

    // A forward to a closed port fails that connection, not the session:
    // the same client's other forward still works afterwards.
    let closed = free_port();
    let (l2, l3) = (free_port(), free_port());
    let _fwd2 = bg({
        let mut c = b.tool("ssh");
        c.arg("-N")
            .args(["-L", &format!("{l2}:127.0.0.1:{closed}")])
            .args(["-L", &format!("{l3}:127.0.0.1:{http}")])
            .arg("br");
        c
    });
    wait_port(l2);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", l2)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty());
    wait_port(l3);
    let r = http_get(l3, "/hello.txt");
    assert!(r.ends_with("hello from the client\n"), "{r}");
}

/// An sshfs mount of `dir` on the target (seen by the test at `seen_at`):
/// read, write, append, overwrite in the middle, rename, mkdir.
fn sshfs_reads_and_writes(b: &Bridge, dir: &str, seen_at: &Path) {
    std::fs::create_dir_all(seen_at).unwrap();
    std::fs::write(seen_at.join("from-target.txt"), "written on the target\n").unwrap();
    let mnt = b.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let o = wait_output(
        b.tool("sshfs")
            .arg(format!("br:{dir}"))
            .arg(&mnt)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        DEADLINE,
    );
    assert_ok("sshfs", &o);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("fusermount3").arg("-u").arg(&self.0).status();
        }
    }
    let _mounted = Unmount(mnt.clone());
    assert_eq!(
        std::fs::read_to_string(mnt.join("from-target.txt")).unwrap(),
        "written on the target\n"
    );
    std::fs::write(mnt.join("new.txt"), "hello ").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(mnt.join("new.txt"))
        .unwrap();
    f.write_all(b"world\n").unwrap();
    drop(f);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(mnt.join("new.txt"))
            .unwrap();
        f.write_all_at(b"J", 0).unwrap();
    }
    std::fs::rename(mnt.join("new.txt"), mnt.join("renamed.txt")).unwrap();
    std::fs::create_dir(mnt.join("sub")).unwrap();
    assert_eq!(
        std::fs::read_to_string(seen_at.join("renamed.txt")).unwrap(),
        "Jello world\n"
    );
    assert!(seen_at.join("sub").is_dir());
    let mut names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["from-target.txt", "renamed.txt", "sub"]);
}

#[test]
fn sshfs_mount_reads_and_writes() {
    let b = Bridge::local();
    let dir = b.path("exported");
    sshfs_reads_and_writes(&b, &dir.display().to_string(), &dir);
}

/// `yonder ssh-config add` / `list` / `remove` on a home with an existing
/// ~/.ssh/config, then plain `ssh ALIAS` through what it wrote.
#[test]
fn ssh_config_add_connect_and_remove() {
    let b = Bridge::local();
    let d = b.daemon.as_ref().unwrap();
    let home = b.home.path();
    let config = home.join(".ssh/config");
    let mine = "# my own\nHost other\n    User someone\n";
    std::fs::write(&config, mine).unwrap();
    let yonder = |args: &[&str]| {
        let mut c = Command::new(YONDER);
        c.env("HOME", home)
            .env("USER", "bridge-user")
            .env("YONDER_RUNTIME_DIR", d.run_dir())
            .args(args);
        run(&mut c)
    };
    let (code, out, err) = yonder(&["ssh-config", "add", "local", "--name", "dev"]);
    assert_eq!(code, 0, "{err}");
    assert!(text(&out).contains("ssh dev"), "{}", text(&out));
    let written = std::fs::read_to_string(&config).unwrap();
    let managed = home.join(".ssh/yonder.conf");
    let include = format!("Include {}\n", managed.display());
    assert!(written.starts_with("# Added by yonder"), "{written}");
    assert!(written.contains(&include), "{written}");
    assert!(
        written.ends_with(mine),
        "the user's own entries are kept:\n{written}"
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".ssh/config.yonder-backup")).unwrap(),
        mine
    );
    let block = std::fs::read_to_string(&managed).unwrap();
    assert!(block.contains("Host dev\n"), "{block}");
    assert!(block.contains("ssh-proxy 'local'"), "{block}");
    assert!(block.contains("User bridge-user"), "{block}");
    assert!(block.contains("HostKeyAlias yonder-bridge."), "{block}");

    // The alias works with strict host key checking: add trusted the key.
    let key = home.join(".ssh/id_ed25519");
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(&config)
        .arg("-i")
        .arg(&key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "dev",
            "echo via-alias",
        ])
        .env("HOME", home)
        .env("YONDER_RUNTIME_DIR", d.run_dir());
    let o = run_with_input(c, b"");
    assert_ok("ssh dev", &o);
    assert_eq!(text(&o.stdout).trim(), "via-alias");

    // A second entry: the Include is not added twice; both are listed.
    let (code, _, err) = yonder(&["ssh-config", "add", "local", "--name", "dev2"]);
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(&config).unwrap();
    assert_eq!(written.matches("Include").count(), 1, "{written}");
    let (_, out, _) = yonder(&["ssh-config", "list"]);
    assert_eq!(text(&out), "dev\tlocal\ndev2\tlocal\n");

    let (code, _, err) = yonder(&["ssh-config", "remove", "dev"]);
    assert_eq!(code, 0, "{err}");
    let block = std::fs::read_to_string(&managed).unwrap();
    assert!(!block.contains("Host dev\n"), "{block}");
    assert!(block.contains("Host dev2\n"), "{block}");
    let (code, _, err) = yonder(&["ssh-config", "remove", "dev"]);
    assert_eq!(code, 1);
    assert!(err.contains("no host \"dev\""), "{err}");
    let (code, _, err) = yonder(&["ssh-config", "add", "local", "--name=-oProxyCommand=x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid host alias"), "{err}");
}

/// A dev container (`yonder up` of the base image) and a bridge into it.
fn bridge_into_a_dev_container() -> (Project, Bridge) {
    let p = Project::base();
    p.up_ok(&[]);
    let b = Bridge::new(&p.target(), &p.env_line(), None, None);
    (p, b)
}

/// The same clients into a Podman dev container (`yonder up` first): the
/// bridge reaches every target kind through the same `connect`.
#[test]
fn the_bridge_reaches_a_dev_container() {
    let (p, b) = bridge_into_a_dev_container();
    // exec: the container's user and home, exit codes, signals, 127.
    let o = b.ssh(&[
        "br",
        r#"printf "%s\n" "$HOME" "$USER"; cat /etc/debian_version"#,
    ]);
    assert_ok("printf", &o);
    let lines = tail_lines(&o.stdout, 3);
    assert_eq!(lines[..2], ["/root".to_string(), "root".to_string()]);
    assert!(lines[2].starts_with("12."), "{lines:?}");
    assert_eq!(b.ssh(&["br", "exit 3"]).status.code(), Some(3));
    assert_eq!(b.ssh(&["br", "kill -TERM $$"]).status.code(), Some(255));
    assert_eq!(
        b.ssh(&["br", "no-such-program-xyz"]).status.code(),
        Some(127)
    );

    // sftp and scp into the workspace (the bind mount shows it on the host).
    let ws = p.workspace();
    let src = b.path("src.bin");
    random_file(&src, 3 * 1024 * 1024 + 7);
    let batch = b.path("batch");
    std::fs::write(
        &batch,
        format!(
            "mkdir {ws}/in\nput {} {ws}/in/a.bin\nrename {ws}/in/a.bin {ws}/in/b.bin\nls {ws}/in\n",
            src.display()
        ),
    )
    .unwrap();
    let mut c = b.tool("sftp");
    c.arg("-b").arg(&batch).arg("br");
    assert_ok("sftp -b", &run_with_input(c, b""));
    assert_eq!(sha256_file(&src), sha256_file(&p.path().join("in/b.bin")));
    // The container's daemon, reached through the folder it shares with the
    // host, handed the SFTP server's pipes to the bridge.
    let log = std::fs::read_to_string(p.shared_root_run_dir().join("daemon.log")).unwrap();
    assert!(
        log.contains("started a program whose pipes a local client holds"),
        "{log}"
    );
    let mut c = b.tool("scp");
    c.arg(format!("br:{ws}/in/b.bin")).arg(b.path("back.bin"));
    assert_ok("scp down", &run_with_input(c, b""));
    assert_eq!(sha256_file(&src), sha256_file(&b.path("back.bin")));

    // rsync of a 10,000-file tree both ways (rsync runs in the container).
    rsync_ten_thousand_files(&b, &format!("{ws}/tree"), &p.path().join("tree"));
}

/// Into a dev container: `ssh -tt` with its window size and a resize, `-L`
/// to a server in the container and `-R` back to one on the host, and an
/// sshfs mount of the workspace.
#[test]
fn terminals_forwards_and_sshfs_into_a_dev_container() {
    let (p, b) = bridge_into_a_dev_container();
    let tmux = Tmux::new(b.home.path());
    terminal_sees_its_size_and_resizes(&b, &tmux, "dc");
    local_and_remote_forwards_carry_http(&b);
    sshfs_reads_and_writes(
        &b,
        &format!("{}/mounted", p.workspace()),
        &p.path().join("mounted"),
    );
}
