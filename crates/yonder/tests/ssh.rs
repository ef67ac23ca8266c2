//! The SSH target against a real sshd on 127.0.0.1 with a non-root user
//! whose shell start-up files print noise.

mod common;

use common::sshd::*;
use common::*;
use std::time::Duration;

fn ok(cmd: &mut std::process::Command) -> Vec<u8> {
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "{cmd:?} failed: {err}");
    out
}

fn server_path(s: &Sshd) -> std::path::PathBuf {
    s.remote_home()
        .join(&s.install_path)
        .join(env!("CARGO_PKG_VERSION"))
        .join("yonder")
}

#[test]
fn first_connect_installs_later_ones_reuse_and_work_happens_as_the_remote_user() {
    let s = Sshd::start();
    let out = ok(s.cli().args(["info", "yt", "--json"]));
    let info: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["user"], TEST_USER);
    assert_eq!(info["home"], format!("/home/{TEST_USER}"));
    let bin = server_path(&s);
    let meta = std::fs::metadata(&bin).expect("the server was installed");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let uid = info["uid"].as_u64().unwrap() as u32;
    assert_ne!(uid, 0);
    assert_eq!(meta.uid(), uid, "owned by the remote user");
    assert_eq!(meta.mode() & 0o777, 0o700);
    let installed_at = meta.mtime_nsec() + meta.mtime() * 1_000_000_000;

    // Second connect: the master is reused and nothing is uploaded again.
    let argv = ["two words", "", "$HOME", "it's"];
    let out = ok(s
        .cli()
        .args(["exec", "yt", "--", "printf", "%s|"])
        .args(argv));
    assert_eq!(String::from_utf8(out).unwrap(), "two words||$HOME|it's|");
    let meta = std::fs::metadata(&bin).unwrap();
    assert_eq!(
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        installed_at,
        "no second upload"
    );
    assert!(
        std::fs::read_dir(s.run_dir.join("ssh"))
            .unwrap()
            .flatten()
            .any(|e| e.file_type().unwrap().is_socket()),
        "the master's control socket"
    );

    // Files as the remote user, relative to the remote home.
    let local = s.dir.join("up.bin");
    random_file(&local, 3 << 20);
    ok(s.cli().args(["fs", "yt", "put"]).arg(&local).arg("up.bin"));
    let remote = s.remote_home().join("up.bin");
    assert_eq!(sha256_file(&remote), sha256_file(&local));
    assert_eq!(std::fs::metadata(&remote).unwrap().uid(), uid);
    ok(s.cli()
        .args(["fs", "yt", "get", "up.bin"])
        .arg(s.dir.join("down.bin")));
    assert_eq!(sha256_file(&s.dir.join("down.bin")), sha256_file(&local));
    ok(s.cli().args(["fs", "yt", "rm", "up.bin"]));
    let (code, _, err) = run(s.cli().args(["fs", "yt", "cat", "/root/secret-nope"]));
    assert_eq!(code, 1, "{err}");

    // The proxy handed ssh's stdio to the daemon: no relay hop.
    let log = std::fs::read_to_string(s.remote_home().join(s.remote_run_dir()).join("daemon.log"))
        .unwrap();
    assert!(
        log.contains("connection accepted") && log.contains("kind=\"stdio\""),
        "{log}"
    );
    assert!(!log.contains("kind=\"unix\""), "{log}");
}

#[test]
fn two_concurrent_first_connects_end_with_one_good_install() {
    // Both at once from fresh client state: two masters may race, two
    // uploads may race.
    let s2 = Sshd::start();
    let c1 = s2
        .cli()
        .args(["exec", "yt", "--", "echo", "c1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let c2 = s2
        .cli()
        .args(["exec", "yt", "--", "echo", "c2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (o1, o2) = (
        c1.wait_with_output().unwrap(),
        c2.wait_with_output().unwrap(),
    );
    for (o, want) in [(&o1, "c1\n"), (&o2, "c2\n")] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout), want);
    }
    let dir = server_path(&s2).parent().unwrap().to_path_buf();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["yonder"], "no temp files left");
    assert_eq!(
        sha256_file(&server_path(&s2)),
        sha256_file(std::path::Path::new(YONDER))
    );
}

#[test]
fn a_remote_without_curl_wget_or_tar_still_installs() {
    let s = Sshd::start();
    // A PATH holding only what a minimal POSIX system has.
    let tools = s.dir.join("minimal-bin");
    std::fs::create_dir(&tools).unwrap();
    for t in [
        "sh", "uname", "mkdir", "cat", "cksum", "chmod", "mv", "rm", "ls", "awk",
    ] {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(t))
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(real, tools.join(t)).unwrap();
    }
    let cfg = s.config_with_path("config-minimal", &tools, "");
    let out = ok(s.cli_with(&cfg).args([
        "exec",
        "yt",
        "--",
        "sh",
        "-c",
        "echo $PATH; command -v curl wget tar || echo none-found",
    ]));
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("none-found"), "{out}");
    assert!(server_path(&s).exists());
}

#[test]
fn errors_name_the_cause() {
    let s = Sshd::start();
    // Nothing listens on this port.
    let closed = free_port();
    let cfg = s.write_config("config-closed", "yt", "id_ed25519", "known_hosts", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("Port {}", s.port), &format!("Port {closed}"));
    std::fs::write(&cfg, text).unwrap();
    let (code, _, err) = run(s.cli_with(&cfg).args(["info", "yt"]));
    assert_eq!(code, 255);
    assert!(err.contains("connection refused"), "{err}");

    let (code, _, err) = run(s.cli().args(["info", "no-such-host.invalid"]));
    assert_eq!(code, 255);
    assert!(err.contains("could not be resolved"), "{err}");

    // A key the server does not know.
    std::fs::write(s.dir.join("authorized_keys"), "").unwrap();
    let (code, _, err) = run(s.cli().args(["info", "yt"]));
    assert_eq!(code, 255);
    assert!(
        err.contains("authentication failed") && err.contains("publickey"),
        "{err}"
    );

    // A changed host key is never accepted.
    let other = s.dir.join("other_host_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let fake = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    std::fs::write(
        s.dir.join("known_hosts_changed"),
        format!("[127.0.0.1]:{} {fake}", s.port),
    )
    .unwrap();
    let cfg = s.write_config(
        "config-changed",
        "yt",
        "id_ed25519",
        "known_hosts_changed",
        "",
    );
    let (code, _, err) = run(s.cli_with(&cfg).args(["info", "yt"]));
    assert_eq!(code, 255);
    assert!(err.contains("HOST KEY HAS CHANGED"), "{err}");
}

fn tmux(sock: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pane_shows(sock: &str, needle: &str) -> String {
    pane_shows_in(sock, "p", needle)
}

fn pane_shows_in(sock: &str, session: &str, needle: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = tmux(sock, &["capture-pane", "-p", "-t", session]);
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "never showed {needle:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every prompt reaches the user: the unknown host key question and a key
/// passphrase, answered in a real terminal.
#[test]
fn prompts_reach_the_user_through_askpass() {
    let s = Sshd::start();
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "open sesame", "-f"])
        .arg(s.dir.join("id_pp"))
        .status()
        .unwrap();
    assert!(st.success());
    let mut keys = std::fs::read_to_string(s.dir.join("authorized_keys")).unwrap();
    keys.push_str(&std::fs::read_to_string(s.dir.join("id_pp.pub")).unwrap());
    std::fs::write(s.dir.join("authorized_keys"), keys).unwrap();
    std::fs::write(s.dir.join("known_hosts_empty"), "").unwrap();
    let cfg = s.write_config("config-pp", "yt", "id_pp", "known_hosts_empty", "");
    let sock = s.dir.join("tmux.sock").display().to_string();
    let cmd = format!(
        "env {} {YONDER} exec yt -- echo CONNECTED-$((40+2)); echo exit=$?; sleep 60",
        s.env_line(&cfg)
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "p",
            "-x",
            "200",
            "-y",
            "40",
            &cmd,
        ],
    );
    let text = pane_shows(&sock, "(yes/no");
    assert!(
        text.contains("SHA256:"),
        "the fingerprint is shown:\n{text}"
    );
    tmux(&sock, &["send-keys", "-t", "p", "yes", "Enter"]);
    pane_shows(&sock, "Enter passphrase for key");
    tmux(&sock, &["send-keys", "-t", "p", "open sesame", "Enter"]);
    let text = pane_shows(&sock, "exit=");
    assert!(
        text.contains("CONNECTED-42") && text.contains("exit=0"),
        "{text}"
    );
    assert!(
        !text.contains("open sesame"),
        "the passphrase is not echoed:\n{text}"
    );
    assert!(
        std::fs::read_to_string(s.dir.join("known_hosts_empty"))
            .unwrap()
            .contains("ssh-ed25519"),
        "accepted key recorded"
    );

    // Refusing an unknown host key: no connection, a clear error.
    std::fs::write(s.dir.join("known_hosts_empty2"), "").unwrap();
    let cfg = s.write_config(
        "config-refuse",
        "yt2",
        "id_ed25519",
        "known_hosts_empty2",
        "",
    );
    let cmd = format!(
        "env YONDER_SSH_CONFIG={} YONDER_RUNTIME_DIR={}/r2 {YONDER} info yt2; echo exit=$?; sleep 60",
        cfg.display(),
        s.dir.display()
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "q",
            "-x",
            "200",
            "-y",
            "40",
            &cmd,
        ],
    );
    pane_shows_in(&sock, "q", "(yes/no");
    tmux(&sock, &["send-keys", "-t", "q", "no", "Enter"]);
    let text = pane_shows_in(&sock, "q", "exit=");
    assert!(
        text.contains("exit=255") && text.contains("not accepted"),
        "{text}"
    );
    let _ = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&sock)
        .arg("kill-server")
        .status();
}

/// Killing the ssh connection under a running terminal: the terminal lives
/// on in the remote daemon, and a new connection re-attaches with the output
/// from the gap.
#[tokio::test]
async fn a_terminal_survives_its_ssh_connection_being_killed() {
    let s = Sshd::start();
    ok(s.cli().args(["info", "yt"]));
    let sock = s.dir.join("tmux.sock").display().to_string();
    let env = s.env_line(&s.config);
    let cmd = format!(
        "env {env} {YONDER} shell yt -- bash --norc --noprofile; echo client-exit=$?; sleep 60"
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "p",
            "-x",
            "120",
            "-y",
            "60",
            &cmd,
        ],
    );
    tmux(
        &sock,
        &[
            "send-keys",
            "-t",
            "p",
            "echo remote-$(id -un); for i in $(seq 1 30); do echo beat$i; sleep 0.1; done",
            "Enter",
        ],
    );
    pane_shows(&sock, &format!("remote-{TEST_USER}"));
    pane_shows(&sock, "beat2");
    // Kill the ssh processes carrying this client's session (the proxy's
    // channel and the master): the client says so, reconnects on its own
    // and resumes where it was.
    let _ = std::process::Command::new("pkill")
        .args(["-f", &format!("{}/ssh/", s.run_dir.display())])
        .status();
    pane_shows(&sock, "[yonder: lost the connection");
    pane_shows(&sock, "[yonder: reconnected]");
    let text = pane_shows(&sock, "beat30");
    for i in 1..=30 {
        let n = text
            .lines()
            .filter(|l| l.trim() == format!("beat{i}"))
            .count();
        assert_eq!(
            n, 1,
            "beat{i} shown {n} times across the reconnect:\n{text}"
        );
    }
    // Now the client goes away for good; the terminal stays.
    tmux(&sock, &["send-keys", "-t", "p", "echo still-here", "Enter"]);
    pane_shows(&sock, "still-here");
    let pid: i32 = tmux(&sock, &["display-message", "-p", "-t", "p", "#{pane_pid}"])
        .trim()
        .parse()
        .unwrap();
    // The pane runs `sh -c …`; kill its child, the yonder client. (Killing
    // the pane's shell would end the only session, and with it the tmux
    // server that the next session is started on.)
    let st = std::process::Command::new("pkill")
        .args(["-KILL", "-P", &pid.to_string(), "-f", "shell yt"])
        .status()
        .unwrap();
    assert!(st.success(), "no yonder client under the pane");
    pane_shows(&sock, "client-exit=137");
    // Re-attach over a new connection: the beats from the gap are there.
    let list: serde_json::Value =
        serde_json::from_slice(&ok(s.cli().args(["terminals", "yt", "--json"]))).unwrap();
    let ours: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["command"].as_str().unwrap().contains("bash --norc"))
        .collect();
    assert!(!ours.is_empty(), "{list}");
    let id = ours.last().unwrap()["id"].as_str().unwrap().to_string();
    let cmd = format!("env {env} {YONDER} terminals yt attach {id}; echo client-exit=$?; sleep 60");
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "q",
            "-x",
            "120",
            "-y",
            "60",
            &cmd,
        ],
    );
    pane_shows_in(&sock, "q", "beat30");
    tmux(&sock, &["send-keys", "-t", "q", "exit 4", "Enter"]);
    pane_shows_in(&sock, "q", "client-exit=4");
    let _ = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&sock)
        .arg("kill-server")
        .status();
}

/// Agent forwarding across a reconnect: the terminal's `SSH_AUTH_SOCK`
/// follows the ssh session that carries the client, so after the ssh
/// connection is killed and the client reconnects (a new session, a new
/// forwarded agent socket; the old one is gone), `ssh-add -l` in the same
/// remote shell still reaches the user's agent.
#[test]
fn the_forwarded_agent_works_in_a_terminal_after_a_reconnect() {
    let s = Sshd::start();
    let (_agent, agent_sock) = agent_with_key(&s.dir, "key-a");
    let config = s.write_config(
        "config-agent",
        "yt",
        "id_ed25519",
        "known_hosts",
        "  ForwardAgent yes\n",
    );
    // (The ssh master this starts carries the agent for later sessions.)
    ok(s.cli_with(&config)
        .env("SSH_AUTH_SOCK", &agent_sock)
        .args(["info", "yt"]));
    let sock = s.dir.join("tmux.sock").display().to_string();
    let env = s.env_line(&config);
    let cmd = format!(
        "env {env} SSH_AUTH_SOCK={} {YONDER} shell yt -- bash --norc --noprofile; sleep 60",
        agent_sock.display()
    );
    tmux(&sock, &["new-session", "-d", "-s", "p", &cmd]);
    let show = |tag: &str| format!("ssh-add -l | grep -o 'key-.' | sed 's/^/{tag}=/'");
    tmux(&sock, &["send-keys", "-t", "p", &show("first"), "Enter"]);
    pane_shows(&sock, "first=key-a");
    let _ = std::process::Command::new("pkill")
        .args(["-f", &format!("{}/ssh/", s.run_dir.display())])
        .status();
    pane_shows(&sock, "[yonder: reconnected]");
    tmux(&sock, &["send-keys", "-t", "p", &show("second"), "Enter"]);
    pane_shows(&sock, "second=key-a");
    let _ = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&sock)
        .arg("kill-server")
        .status();
}

/// ProxyJump through a second sshd: every ssh_config feature works because
/// yonder drives the user's own ssh.
#[test]
fn proxy_jump_through_another_sshd() {
    let jump = Sshd::start();
    let inner = Sshd::start();
    let cfg = inner.dir.join("config-jump");
    let text = format!(
        "Host jumphost\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n\
         Host behind\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  ProxyJump jumphost\n",
        jump.port,
        jump.dir.join("id_ed25519").display(),
        jump.dir.join("known_hosts").display(),
        inner.port,
        inner.dir.join("id_ed25519").display(),
        inner.dir.join("known_hosts").display(),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = ok(inner.cli_with(&cfg).args([
        "exec",
        "behind",
        "--",
        "sh",
        "-c",
        "echo via-jump-$(id -un)",
    ]));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("via-jump-{TEST_USER}\n")
    );
    // The inner sshd saw the connection come from the jump host's forward.
    assert!(
        inner.log().contains("Accepted publickey"),
        "{}",
        inner.log()
    );
    assert!(jump.log().contains("Accepted publickey"), "{}", jump.log());
}

/// Killing the connection in the middle of a 100 MiB upload leaves the
/// remote file either complete and correct or untouched, never half written.
/// An upload through the main connection (the bulk channel turned off)
/// whose connection is cut mid-way: the old file stays whole until the
/// upload, sent again from the start, replaces it complete.
#[test]
fn an_upload_cut_off_by_a_dead_connection_starts_over_and_never_tears_the_file() {
    let s = Sshd::start();
    ok(s.cli().args(["info", "yt"]));
    let target = s.remote_path("upload.bin");
    std::fs::write(&target, "original").unwrap();
    let local = s.dir.join("big.bin");
    random_file(&local, 100 << 20);
    let mut put = s
        .cli()
        .env("YONDER_BULK", "off")
        .args(["-v", "fs", "yt", "put"])
        .arg(&local)
        .arg(&target)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Cut every ssh process of this client once data flows: the remote
    // temp file has its first bytes (cut at once: 100 MiB take well under
    // a second here).
    let dir = target.parent().unwrap().to_path_buf();
    let temp_prefix = format!(".{}.yonder-", target.file_name().unwrap().to_string_lossy());
    let temp_size = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&temp_prefix))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
    };
    let start = std::time::Instant::now();
    while temp_size().is_none_or(|n| n == 0) {
        assert!(start.elapsed() < DEADLINE, "the upload never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill_ssh(&s);
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"original",
        "untouched while cut"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut put.stderr.take().unwrap(), &mut err).unwrap();
    assert!(put.wait().unwrap().success(), "{err}");
    assert!(err.contains("sending the file again"), "{err}");
    assert_eq!(sha256_file(&target), sha256_file(&local));
    // The cut attempt's temp file is gone too.
    let start = std::time::Instant::now();
    while temp_size().is_some() {
        assert!(start.elapsed() < DEADLINE, "temp file left behind");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(&target).unwrap();
}

/// Remotes the server cannot be installed on or run from get a message
/// naming the reason and what would help: an install path the user cannot
/// write, one on a `noexec` file system, and a remote that is not Linux
/// (a `uname` that says Darwin, first on the PATH: no macOS runs here).
#[test]
fn unsupported_remotes_are_named_with_what_would_help() {
    let s = Sshd::start();
    let info = |path: &str| {
        let (code, _, err) = run(s
            .cli()
            .env("YONDER_SERVER_INSTALL_PATH", path)
            .args(["info", "yt"]));
        assert_ne!(code, 0, "{path}: {err}");
        err
    };
    let rel = |p: &std::path::Path| {
        p.strip_prefix(s.remote_home())
            .unwrap()
            .display()
            .to_string()
    };

    // Read-only: a directory of root's in the user's home.
    let ro = s.remote_path("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    let err = info(&format!("{}/server", rel(&ro)));
    assert!(err.contains("cannot install the server in"), "{err}");
    assert!(err.contains("YONDER_SERVER_INSTALL_PATH"), "{err}");

    // noexec: a tmpfs of the user's, mounted noexec.
    let nx = s.remote_path("noexec");
    std::fs::create_dir_all(&nx).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=200m", "tmpfs"])
        .arg(&nx)
        .status()
        .unwrap();
    assert!(st.success(), "mount a noexec tmpfs");
    let id = std::process::Command::new("id")
        .args(["-u", TEST_USER])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&id.stdout).trim().parse().unwrap();
    std::os::unix::fs::chown(&nx, Some(uid), None).unwrap();
    let err = info(&format!("{}/server", rel(&nx)));
    let _ = std::process::Command::new("umount").arg(&nx).status();
    assert!(err.contains("noexec"), "{err}");
    assert!(err.contains("YONDER_SERVER_INSTALL_PATH"), "{err}");

    // Not Linux; a server of its own, whose master has never seen a
    // Linux probe.
    let d = Sshd::start();
    let bin = d.dir.join("darwin-bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(
        bin.join("uname"),
        "#!/bin/sh\ncase \"$1\" in -m) echo arm64;; *) echo Darwin;; esac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("uname"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = d.config_with_path("config-darwin", &bin, ":/usr/bin:/bin");
    let (code, _, err) = run(d.cli_with(&cfg).args(["info", "yt"]));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("Darwin") && err.contains("Linux only"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&ro);
    let _ = std::fs::remove_dir(&nx);
}

/// The local target's live-work scenarios again, over SSH: search, watch
/// and a forward, each through the real CLI.
#[test]
fn search_watch_and_forward_work_over_ssh() {
    use std::io::{BufRead, BufReader, Read, Write};
    let s = Sshd::start();
    let dir = s.remote_path("work");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/a.rs"), "fn main() {}\n// needle here\n").unwrap();
    std::fs::write(dir.join("src/b.txt"), "no match\nanother needle\n").unwrap();
    let st = std::process::Command::new("chown")
        .args(["-R", &format!("{TEST_USER}:")])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());

    // search: the same lines rg finds.
    let out = ok(s.cli().args(["search", "yt", "needle"]).arg(&dir));
    let mut got: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    got.sort();
    let rg = std::process::Command::new("rg")
        .args(["--no-heading", "--column", "needle"])
        .arg(&dir)
        .output()
        .unwrap();
    let mut want: Vec<String> = String::from_utf8(rg.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    want.sort();
    assert_eq!(got, want);

    // watch: a file created on the remote is reported.
    let mut w = s
        .cli()
        .args(["fs", "yt", "watch", "--json"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(w.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("\"ready\""), "{first}");
    std::fs::write(dir.join("src/new.txt"), "x").unwrap();
    let created = loop {
        let l = lines.next().expect("an event").unwrap();
        if l.contains("new.txt") {
            break l;
        }
    };
    assert!(created.contains("\"created\""), "{created}");
    let _ = w.kill();
    let _ = w.wait();

    // forward: an echo server reached through the target.
    let echo_port = echo_server();
    let mut f = s
        .cli()
        .args([
            "forward",
            "yt",
            &format!("0:127.0.0.1:{echo_port}"),
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut flines = BufReader::new(f.stdout.take().unwrap()).lines();
    let mapping: serde_json::Value =
        serde_json::from_str(&flines.next().unwrap().unwrap()).unwrap();
    let listen = mapping["listen"].as_str().unwrap().to_string();
    let mut c = std::net::TcpStream::connect(&listen).unwrap();
    let mut payload = vec![0u8; 1 << 20];
    getrandom::fill(&mut payload).unwrap();
    let mut reader = c.try_clone().unwrap();
    let p2 = payload.clone();
    let writer = std::thread::spawn(move || c.write_all(&p2).unwrap());
    let mut back = vec![0u8; payload.len()];
    reader.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == payload, "the echo through the SSH forward differs");
    let _ = f.kill();
    let _ = f.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Puts the test user's "no password" back, even when the test fails.
struct PasswordGuard;
impl Drop for PasswordGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("usermod")
            .args(["-p", "*", TEST_USER])
            .status();
    }
}

/// Password authentication: ssh asks, the prompt reaches the user's
/// terminal through askpass, and the answer logs in.
#[test]
fn a_password_prompt_reaches_the_user() {
    let s = Sshd::start_with(&["-o", "PasswordAuthentication=yes"]);
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).unwrap();
    let password = format!("pw-{}", hex::encode(rnd));
    let _guard = PasswordGuard;
    let mut chpasswd = std::process::Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{TEST_USER}:{password}\n").as_bytes())
        .unwrap();
    assert!(chpasswd.wait().unwrap().success());
    let cfg = s.write_config(
        "config-pw",
        "yt",
        "id_ed25519",
        "known_hosts",
        "  PubkeyAuthentication no\n  PreferredAuthentications password\n",
    );
    let sock = s.dir.join("tmux.sock").display().to_string();
    let cmd = format!(
        "env {} {YONDER} exec yt -- sh -c 'echo logged-in-as-$(id -un)'; echo exit=$?; sleep 60",
        s.env_line(&cfg)
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "p",
            "-x",
            "200",
            "-y",
            "40",
            &cmd,
        ],
    );
    pane_shows(&sock, "password:");
    tmux(&sock, &["send-keys", "-t", "p", &password, "Enter"]);
    let text = pane_shows(&sock, "exit=");
    assert!(
        text.contains(&format!("logged-in-as-{TEST_USER}")) && text.contains("exit=0"),
        "{text}"
    );
    assert!(
        !text.contains(&password),
        "the password is not echoed:\n{text}"
    );
    assert!(s.log().contains("Accepted password"), "{}", s.log());
    let _ = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&sock)
        .arg("kill-server")
        .status();
}

/// An echo server on 127.0.0.1 (the "remote" is this machine): returns its port.
fn echo_server() -> u16 {
    use std::io::{Read, Write};
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = [0u8; 65536];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Sends a line through `addr` and expects it back within `wait`.
fn echoes(addr: &str, wait: Duration) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(wait));
    if c.write_all(b"ping through the forward\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).is_ok() && line == "ping through the forward\n"
}

/// The connection is killed (every ssh process of this test's client, the
/// master included) under a running watch, a local forward and a remote
/// forward. Each comes back by itself: the watch says `resync` and reports
/// the next change; the local forward carries new connections; the remote
/// forward listens on its port again.
#[test]
fn watch_and_forwards_survive_a_killed_connection() {
    use std::io::{BufRead, BufReader};
    let s = Sshd::start();
    let dir = s.remote_path("drop");
    std::fs::create_dir_all(&dir).unwrap();
    let st = std::process::Command::new("chown")
        .args(["-R", &format!("{TEST_USER}:")])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut w = s
        .cli()
        .args(["fs", "yt", "watch"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(w.stdout.take().unwrap()).lines();
    let _w = Kill(w);
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("ready "), "{first}");

    let echo = echo_server();
    let remote_port = common::sshd::free_port();
    let mut f = s
        .cli()
        .args([
            "forward",
            "yt",
            &format!("0:127.0.0.1:{echo}"),
            "--remote",
            &format!("{remote_port}:127.0.0.1:{echo}"),
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut flines = BufReader::new(f.stdout.take().unwrap()).lines();
    let _f = Kill(f);
    let mut local = None;
    for _ in 0..2 {
        let m: serde_json::Value = serde_json::from_str(&flines.next().unwrap().unwrap()).unwrap();
        if m["kind"] == "local" {
            local = Some(m["listen"].as_str().unwrap().to_string());
        }
    }
    let local = local.expect("the local forward was announced");
    let remote = format!("127.0.0.1:{remote_port}");
    assert!(echoes(&local, DEADLINE), "the local forward works");
    assert!(echoes(&remote, DEADLINE), "the remote forward works");

    // The drop: every ssh process of this client, master and proxies.
    let st = std::process::Command::new("pkill")
        .args(["-f", &format!("{}/ssh/", s.run_dir.display())])
        .status()
        .unwrap();
    assert!(st.success(), "there were ssh processes to kill");

    // The watch is opened again and says so, then reports what changes.
    let resync = lines.next().expect("the watch goes on").unwrap();
    assert_eq!(resync, format!("resync {}", dir.display()));
    std::fs::write(dir.join("after-the-drop.txt"), "x").unwrap();
    let created = loop {
        let l = lines.next().expect("an event after the drop").unwrap();
        if l.contains("after-the-drop.txt") {
            break l;
        }
    };
    assert!(created.starts_with("created "), "{created}");

    // Both forwards carry new connections.
    let start = std::time::Instant::now();
    let retry = Duration::from_secs(5);
    while !(echoes(&local, retry) && echoes(&remote, retry)) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the forwards did not come back after the drop"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One client in one process loses its connection; its next calls dial
/// again by themselves (the master included) and changes made right after
/// the drop are applied once: the file is removed, the rename lands, a
/// write is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dials_again_and_retries_after_a_drop() {
    let s = Sshd::start();
    let client = library_client(&s).await;
    let dir = s.remote_path("retry");
    client.mkdir(&dir, true, None).await.unwrap();
    client
        .write_bytes(dir.join("gone.txt"), Default::default(), "x")
        .await
        .unwrap();
    client
        .write_bytes(dir.join("a.txt"), Default::default(), "a")
        .await
        .unwrap();
    let before = client.link_status().borrow().connections;

    kill_ssh(&s);

    client
        .remove(dir.join("gone.txt"), false)
        .await
        .expect("remove after the drop");
    client
        .rename(dir.join("a.txt"), dir.join("b.txt"), false)
        .await
        .expect("rename after the drop");
    client
        .write_bytes(
            dir.join("c.txt"),
            Default::default(),
            "written after the drop",
        )
        .await
        .unwrap();
    assert!(!dir.join("gone.txt").exists() && !dir.join("a.txt").exists());
    assert_eq!(std::fs::read_to_string(dir.join("b.txt")).unwrap(), "a");
    assert_eq!(
        client.read_to_vec(dir.join("c.txt")).await.unwrap(),
        b"written after the drop"
    );
    let after = *client.link_status().borrow();
    assert!(after.up && after.connections > before, "{after:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// This test process as a client of `yt` (a redialing one, as the CLI's),
/// with the settings the CLI gets from its environment (each test runs in
/// its own process).
async fn library_client(s: &Sshd) -> yonder_client::Client {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe {
        std::env::set_var("YONDER_SSH_CONFIG", &s.config);
        std::env::set_var("YONDER_SERVER_INSTALL_PATH", &s.install_path);
        std::env::set_var("YONDER_REMOTE_RUNTIME_DIR", s.remote_run_dir());
    }
    let opts = yonder_target::ConnectOptions {
        exe: YONDER.into(),
        run_dir: Some(s.run_dir.clone()),
        reporter: std::sync::Arc::new(yonder_target::ssh::Quiet),
        docker_path: None,
        prompter: Default::default(),
    };
    let target: yonder_target::Target = "yt".parse().unwrap();
    let client = target.connect(&opts).await.expect("connect");
    assert!(client.redials());
    client
}

/// Cuts every ssh process of this test's client (its master included).
fn kill_ssh(s: &Sshd) {
    let st = std::process::Command::new("pkill")
        .args(["-f", &format!("{}/ssh/", s.run_dir.display())])
        .status()
        .unwrap();
    assert!(st.success(), "there were ssh processes to kill");
}

/// A directory in the remote user's home, owned by that user.
fn remote_dir(s: &Sshd, name: &str, uid: u32) -> std::path::PathBuf {
    let dir = s.remote_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), None).unwrap();
    dir
}

/// `yonder fs cat` of a file far larger than what the connection holds in
/// flight, read slowly, with the connection cut after the first MiB: the
/// output is the file, byte for byte, and the log says the read went on.
#[test]
fn a_cat_cut_by_a_dropped_connection_goes_on_from_the_next_byte() {
    use std::io::Read;
    let s = Sshd::start();
    ok(s.cli().args(["info", "yt"]));
    let file = s.remote_path("cat.bin");
    random_file(&file, 64 << 20);
    let mut cat = s
        .cli()
        .args(["-v", "fs", "yt", "cat"])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = cat.stdout.take().unwrap();
    let mut got = vec![0u8; 1 << 20];
    out.read_exact(&mut got).unwrap();
    kill_ssh(&s);
    out.read_to_end(&mut got).unwrap();
    let mut err = String::new();
    cat.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(cat.wait().unwrap().success(), "{err}");
    assert!(err.contains("asking again for the rest"), "{err}");
    assert_eq!(got.len(), 64 << 20);
    assert!(got == std::fs::read(&file).unwrap(), "the bytes differ");
    std::fs::remove_file(&file).unwrap();
}

/// `dir` holds `n` entries (no temp file stayed) and is read-only again.
fn read_only_with(dir: &std::path::Path, n: usize) {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), n, "no temp file");
    let mode = std::fs::metadata(dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o555, "{}", dir.display());
}

/// The client library's streams of idempotent calls go on after a drop,
/// each from where it was: a read (and one that refuses to join two
/// versions of a file), a search, a tree download and a tree upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_reads_go_on_after_a_drop_and_never_join_two_versions() {
    use futures::StreamExt;
    use std::os::unix::fs::PermissionsExt;
    use yonder_client::search::{SearchEvent, SearchRequest};
    use yonder_client::tree::{Feed, TreeBatch};
    let s = Sshd::start();
    let client = library_client(&s).await;
    let uid = client.info().await.unwrap().uid;
    let dir = remote_dir(&s, "resume", uid);
    let connections = || client.link_status().borrow().connections;

    // A read: 64 MiB, far more than the windows and buffers in flight.
    let big = dir.join("big.bin");
    random_file(&big, 64 << 20);
    let want = std::fs::read(&big).unwrap();
    let before = connections();
    let mut r = client.read(&big, 0, None).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 1 << 20 {
        got.extend_from_slice(&r.next().await.unwrap().unwrap());
    }
    kill_ssh(&s);
    while let Some(c) = r.next().await {
        got.extend_from_slice(&c.expect("the read goes on"));
    }
    assert!(connections() > before, "the link really dropped");
    assert!(got == want, "{} bytes, not the file", got.len());

    // The same, but the file changes while the link is down: the read
    // ends with Conflict instead of joining two versions.
    let before = connections();
    let mut r = client.read(&big, 0, None).await.unwrap();
    let mut got = 0;
    while got < 1 << 20 {
        got += r.next().await.unwrap().unwrap().len();
    }
    kill_ssh(&s);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&big)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more"))
        .unwrap();
    let e = loop {
        match r.next().await {
            Some(Ok(c)) => got += c.len(),
            Some(Err(e)) => break e,
            None => panic!("the read ended after {got} bytes without an error"),
        }
    };
    assert_eq!(e.kind, yonder_proto::pb::ErrorKind::Conflict, "{e}");
    assert!(
        e.to_string().contains("changed while it was being read"),
        "{e}"
    );
    assert!(got < want.len(), "{got}");
    assert!(connections() > before);
    let want = std::fs::read(&big).unwrap();

    // A search whose results outgrow what is in flight: every line once.
    let lines = dir.join("lines.txt");
    let n = 600_000u64;
    let text: String = (1..=n).map(|i| format!("needle line {i:07}\n")).collect();
    std::fs::write(&lines, text).unwrap();
    let before = connections();
    let mut g = client
        .grep(SearchRequest {
            path: lines.as_os_str().as_encoded_bytes().to_vec().into(),
            pattern: "needle".into(),
            fixed_strings: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut numbers = Vec::new();
    let mut done = None;
    while let Some(ev) = g.next().await {
        match ev.expect("the search goes on") {
            SearchEvent::Line(l) => {
                assert_eq!(
                    l.line,
                    format!("needle line {:07}", l.line_number).as_bytes()
                );
                numbers.push(l.line_number);
                if numbers.len() == 1000 {
                    kill_ssh(&s);
                }
            }
            SearchEvent::Done(stats) => done = Some(stats),
        }
    }
    assert!(connections() > before, "the link really dropped");
    assert_eq!(
        numbers,
        (1..=n).collect::<Vec<_>>(),
        "each line once, in order"
    );
    assert_eq!(done.expect("the stats came").matched_lines, n);

    // The same with a limit, and the files that gave lines before the drop
    // gone when it runs again: the run again finds the limit's worth in
    // other files, and no more than the limit is given in all.
    let many = dir.join("many");
    std::fs::create_dir_all(&many).unwrap();
    // Long lines and a high limit: more than is in flight at the drop.
    let pad = "x".repeat(200);
    let text: String = (1..=10_000)
        .map(|i| format!("needle {i} {pad}\n"))
        .collect();
    for f in 0..24 {
        std::fs::write(many.join(format!("f{f:02}.txt")), &text).unwrap();
    }
    let limit = 100_000;
    let before = connections();
    let mut g = client
        .grep(SearchRequest {
            path: many.as_os_str().as_encoded_bytes().to_vec().into(),
            pattern: "needle".into(),
            fixed_strings: true,
            max_results: limit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut given = std::collections::HashSet::new();
    let mut done = None;
    while let Some(ev) = g.next().await {
        match ev.expect("the search goes on") {
            SearchEvent::Line(l) => {
                assert!(
                    given.insert((l.path.to_path_buf(), l.line_number)),
                    "{} line {} twice",
                    l.path.display(),
                    l.line_number
                );
                if given.len() == 1000 {
                    kill_ssh(&s);
                    let files: std::collections::HashSet<_> =
                        given.iter().map(|(p, _)| p.clone()).collect();
                    for f in files {
                        std::fs::remove_file(many.join(f)).unwrap();
                    }
                }
            }
            SearchEvent::Done(stats) => done = Some(stats),
        }
    }
    assert!(connections() > before, "the link really dropped");
    assert_eq!(given.len() as u64, limit, "the limit's worth, once each");
    let done = done.expect("the stats came");
    assert_eq!((done.matched_lines, done.truncated), (limit, true));

    // A tree download (with a read-only directory) cut after its first batch.
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("ro")).unwrap();
    for i in 0..200 {
        std::fs::write(tree.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    std::fs::copy(&big, tree.join("ro/big.bin")).unwrap();
    std::fs::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let local = s.dir.join("tree-back");
    let before = connections();
    let mut t = client.get_tree(&tree).await.unwrap();
    let (tx, writer) = yonder_proto::tree::spawn_writer(local.clone(), |_| {});
    let (mut batches, mut again) = (0, 0);
    while let Some(f) = t.next().await {
        let f = f.expect("the tree goes on");
        match f {
            Feed::Batch(_) => batches += 1,
            Feed::Again => again += 1,
        }
        tx.send(f).await.unwrap();
        if batches == 1 && again == 0 {
            kill_ssh(&s);
        }
    }
    drop(tx);
    let summary = writer.await.unwrap().unwrap();
    assert!(connections() > before);
    assert_eq!(again, 1, "the tree was asked for once more");
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!((summary.files, summary.dirs), (201, 2), "counted once");
    assert!(std::fs::read(local.join("ro/big.bin")).unwrap() == want);
    assert_eq!(std::fs::read(local.join("f7")).unwrap(), b"file 7");
    read_only_with(&local.join("ro"), 1);

    // A tree upload through a read-only directory, cut mid-way: the first
    // pass's stream stalls after its first batches until the link is cut,
    // the second is sent whole. The remote writer (not root) must write
    // through the directory the cut pass already made read-only.
    let src = s.dir.join("tree-up");
    std::fs::create_dir_all(src.join("ro")).unwrap();
    std::fs::write(src.join("ro/small"), "small").unwrap();
    std::fs::copy(&big, src.join("ro/zbig.bin")).unwrap();
    std::fs::set_permissions(src.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut all: Vec<TreeBatch> = Vec::new();
    yonder_proto::tree::send_tree(
        &src,
        |b| {
            all.push(b);
            true
        },
        |_| {},
    )
    .unwrap();
    assert!(all.len() > 3, "the big file spans batches");
    let up = dir.join("up");
    let before = connections();
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
    let mut cut_rx = Some(cut_rx);
    let mut passes = 0;
    let stalled_pass = |rx: tokio::sync::oneshot::Receiver<()>, first: Vec<TreeBatch>| {
        futures::stream::iter(first).chain(futures::stream::once(async move {
            let _ = rx.await;
            futures::future::pending::<TreeBatch>().await
        }))
    };
    let upload = client.put_tree(&up, || {
        passes += 1;
        match cut_rx.take() {
            Some(rx) => stalled_pass(rx, all[..2].to_vec()).boxed(),
            None => futures::stream::iter(all.clone()).boxed(),
        }
    });
    let cutter = async {
        // The first pass has made the directory.
        let start = std::time::Instant::now();
        while !up.join("ro").exists() {
            assert!(start.elapsed() < DEADLINE, "the first pass never wrote");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kill_ssh(&s);
        let _ = cut_tx.send(());
    };
    let (summary, ()) = tokio::join!(upload, cutter);
    let summary = summary.expect("the upload went on");
    assert_eq!(passes, 2);
    assert!(connections() > before);
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert!(std::fs::read(up.join("ro/zbig.bin")).unwrap() == want);
    assert_eq!(std::fs::read(up.join("ro/small")).unwrap(), b"small");
    read_only_with(&up.join("ro"), 2);
    for d in [
        tree.join("ro"),
        local.join("ro"),
        src.join("ro"),
        up.join("ro"),
    ] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A link that goes silent without a reset (every sshd process serving it
/// stopped): the master's keepalives give up on it after about 15 s, the
/// client dials again and the call that was waiting succeeds. Without
/// them it would wait for TCP (minutes) or HTTP/2's pings (40 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_notice_a_silent_link_within_about_15_seconds() {
    let s = Sshd::start();
    let client = library_client(&s).await;
    client.info().await.unwrap();
    let before = client.link_status().borrow().connections;
    let frozen = s.freeze_sessions();
    assert!(!frozen.is_empty(), "found the sshd processes of the link");
    let start = std::time::Instant::now();
    let info = tokio::time::timeout(Duration::from_secs(90), client.info()).await;
    let took = start.elapsed();
    for &pid in &frozen {
        // SAFETY: plain kill(2) on the pids frozen above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let info = info
        .expect("the call came back")
        .expect("the call succeeded");
    assert_eq!(info.user, TEST_USER);
    // The master's keepalives end it 15-20 s after the freeze; then the
    // client dials again (a new master: seconds on a loaded machine). A
    // redial while the old master lived would hang in it for minutes, so
    // any bound well under the 90 s above tells the two apart.
    assert!(
        took < Duration::from_secs(45),
        "the silent link was noticed after {took:?}"
    );
    assert!(
        took > Duration::from_secs(5),
        "{took:?}: was the link really silent?"
    );
    assert!(client.link_status().borrow().connections > before);
}

/// Two aliases of one host started at once share one master: the lock is
/// named by ssh's own `%C` (from `ssh -G`), not by the alias, so neither
/// finds the other's socket half-made and falls back to no sharing.
#[test]
fn two_aliases_of_one_host_share_one_master() {
    let s = Sshd::start();
    let cfg = s.write_config("config-aliases", "yt yt2", "id_ed25519", "known_hosts", "");
    let run = |alias: &str| {
        s.cli_with(&cfg)
            .args(["exec", alias, "--", "true"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (run("yt"), run("yt2"));
    for (name, child) in [("yt", a), ("yt2", b)] {
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {err}");
        assert!(
            !err.contains("no connection sharing"),
            "{name} fell back: {err}"
        );
    }
    let masters: Vec<u32> = processes_with("ControlMaster=yes")
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*s.run_dir.to_string_lossy()))
        })
        .collect();
    assert_eq!(masters.len(), 1, "one master for both aliases: {masters:?}");
}

/// Where no master can be made (here: the control socket's path is longer
/// than a unix socket allows), yonder says so once and runs one ssh per
/// session: everything still works, each session authenticating itself.
#[test]
fn without_a_master_every_session_logs_in_by_itself() {
    let s = Sshd::start();
    let deep = s.dir.join(format!("run-{}", "d".repeat(90)));
    let out = s
        .cli()
        .env("YONDER_RUNTIME_DIR", &deep)
        .args(["exec", "yt", "--", "sh", "-c", "echo hello from $USER"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hello from {TEST_USER}\n")
    );
    assert_eq!(
        err.matches("no connection sharing here").count(),
        1,
        "said once: {err}"
    );
    // Probe and proxy (at least) each logged in: no shared master.
    let logins = s.log().matches("Accepted publickey").count();
    assert!(logins >= 2, "{logins} logins:\n{}", s.log());
}

/// The daemon outlives the session that started it; each later connection's
/// programs get the environment of the ssh session that carried it (here a
/// variable the client sends), and nothing left over from the first.
#[test]
fn programs_get_the_environment_of_their_own_session() {
    let s = Sshd::start_with(&["-o", "AcceptEnv=YONDER_TEST_SESSION"]);
    s.write_config(
        "config",
        "yt",
        "id_ed25519",
        "known_hosts",
        "  SendEnv YONDER_TEST_SESSION\n",
    );
    let echo = |mark| session_mark(s.cli(), "yt", mark);
    assert_eq!(echo(Some("first")), "[first]\n");
    assert_eq!(echo(Some("second")), "[second]\n");
    assert_eq!(echo(None), "[]\n", "nothing left from earlier sessions");
}

/// Large files go on a session of their own through the master (the bulk
/// channel), both ways: exact bytes, the remote user's file, a new file's
/// mode, typed errors with nothing left behind, and `YONDER_BULK=off` going
/// through the main connection instead.
#[test]
fn large_files_go_on_a_session_of_their_own_through_the_master() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = Sshd::start();
    let info: serde_json::Value =
        serde_json::from_slice(&ok(s.cli().args(["info", "yt", "--json"]))).unwrap();
    let uid = info["uid"].as_u64().unwrap() as u32;
    let dir = s.remote_path("bulk");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), None).unwrap();
    let local = s.dir.join("bulk.bin");
    random_file(&local, (20 << 20) + 4321);
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o640)).unwrap();
    let up = dir.join("up.bin");
    let logged = |args: &[&str], from: &std::path::Path, to: &std::path::Path| {
        let (code, _, err) = run(s.cli().arg("-v").args(args).arg(from).arg(to));
        assert_eq!(code, 0, "{args:?} failed: {err}");
        err
    };
    let err = logged(&["fs", "yt", "put"], &local, &up);
    assert!(err.contains("through the bulk session"), "{err}");
    assert_eq!(sha256_file(&up), sha256_file(&local));
    let m = std::fs::metadata(&up).unwrap();
    assert_eq!(m.uid(), uid, "written by the remote user");
    assert_eq!(
        m.mode() & 0o777,
        0o640,
        "a new file gets the local file's mode"
    );
    let back = s.dir.join("back.bin");
    let err = logged(&["fs", "yt", "get"], &up, &back);
    assert!(err.contains("through the bulk session"), "{err}");
    assert_eq!(sha256_file(&back), sha256_file(&local));
    assert_eq!(std::fs::metadata(&back).unwrap().mode() & 0o777, 0o640);

    // A directory the remote user may not write to: the typed error, with
    // the path, and no temp file on either side.
    let locked = dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::os::unix::fs::chown(&locked, Some(uid), None).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    let (code, _, err) = run(s
        .cli()
        .args(["fs", "yt", "put"])
        .arg(&local)
        .arg(locked.join("x.bin")));
    assert_ne!(code, 0);
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    assert!(
        err.contains(&locked.join("x.bin").display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);

    // A session cut mid-way: the download goes on from where it stopped,
    // the upload starts over, and both end complete and exact.
    let big = s.dir.join("big.bin");
    random_file(&big, 512 << 20);
    let cut_once = |what: &str,
                    mut cmd: std::process::Command,
                    temp_in: &std::path::Path,
                    temp_prefix: &str,
                    kill: &str| {
        let child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let start = std::time::Instant::now();
        loop {
            let growing = std::fs::read_dir(temp_in).unwrap().flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with(temp_prefix)
                    && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
            });
            if growing {
                break;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: no temp file in {temp_in:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let st = std::process::Command::new("pkill")
            .args(["-f", kill])
            .status()
            .unwrap();
        assert!(st.success(), "{what}: nothing to cut");
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{what}: {err}");
        assert!(err.contains("once the connection is back"), "{what}: {err}");
        err
    };
    let up2 = dir.join("up2.bin");
    let mut put = s.cli();
    put.args(["-v", "fs", "yt", "put"]).arg(&big).arg(&up2);
    // The bulk session's ssh (here) and server (on the remote).
    // (Scoped by this sshd's install path: other tests run bulk servers too.)
    let bulk = format!("{}.*server bulk", s.install_path);
    let err = cut_once("upload", put, &dir, ".up2.bin.yonder-", &bulk);
    assert!(err.contains("from byte 0"), "{err}");
    assert_eq!(sha256_file(&up2), sha256_file(&big));
    // The killed server removed its temp file (the second one became up2).
    let temps = yonder_temps(&dir);
    assert!(temps.is_empty(), "{temps:?}");
    let down2 = s.dir.join("down2.bin");
    let mut get = s.cli();
    get.args(["-v", "fs", "yt", "get"]).arg(&up2).arg(&down2);
    // Every ssh process of the client, the master too: the download goes
    // on once a new master is up.
    let all_ssh = format!("{}/ssh/", s.run_dir.display());
    let err = cut_once("download", get, &s.dir, ".down2.bin.yonder-", &all_ssh);
    assert!(!err.contains("from byte 0 "), "a download resumes: {err}");
    assert_eq!(sha256_file(&down2), sha256_file(&big));
    for f in [&big, &down2, &up2] {
        std::fs::remove_file(f).unwrap();
    }

    // Turned off: the same result through the main connection.
    std::fs::remove_file(&back).unwrap();
    let err = {
        let (code, _, err) = run(s
            .cli()
            .env("YONDER_BULK", "off")
            .args(["-v", "fs", "yt", "get"])
            .arg(&up)
            .arg(&back));
        assert_eq!(code, 0, "{err}");
        err
    };
    assert!(!err.contains("bulk session"), "{err}");
    assert_eq!(sha256_file(&back), sha256_file(&local));
    let leftovers = yonder_temps(&s.dir);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
