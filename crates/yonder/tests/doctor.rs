//! `yonder doctor` against real components: a real user's home with each
//! wrong mode (found, fixed by `--fix --yes`, then the test sshd with
//! StrictModes and the real ssh client accept the key again), a corrupt
//! ssh_config, the JSON output as a snapshot, and SSH targets that work,
//! refuse connections, or have an unknown host key.

mod common;

use common::sshd::{Sshd, TEST_USER, free_port};
use common::user::TempUser;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A user whose own ssh (no -F: ssh reads ~/.ssh/config with its
/// permission checks) logs in to `s` as itself with its own key, which
/// sshd finds in ~/.ssh/authorized_keys (so StrictModes applies).
fn user_with_key_login(s: &Sshd) -> TempUser {
    let u = TempUser::create();
    let (code, _, err) =
        run(u
            .command(YONDER)
            .args(["keys", "generate", "--comment", "doctor-test"]));
    assert_eq!(code, 0, "{err}");
    let public = std::fs::read_to_string(u.home.join(".ssh/id_ed25519.pub")).unwrap();
    u.write(".ssh/authorized_keys", &public, 0o600);
    u.write(
        ".ssh/config",
        &format!(
            "# my own comment\nHost yd\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile ~/.ssh/id_ed25519\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  BatchMode yes\n  ConnectTimeout 10\n",
            s.port,
            u.name,
            s.dir.join("known_hosts").display()
        ),
        0o600,
    );
    u
}

fn login(u: &TempUser) -> (bool, String) {
    let o = u
        .command("ssh")
        // Every try is a new login: not through the master that
        // `--fix` (connection sharing) makes possible.
        .args(["-S", "none", "yd", "id -un"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.success() && text(&o.stdout).contains(&u.name),
        text(&o.stderr),
    )
}

/// Each wrong mode breaks the login for real (world-writable: Debian's
/// OpenSSH accepts group write when the group is the user's own); doctor names it as a
/// problem; `--fix --yes` repairs it and the login works again.
#[test]
fn each_wrong_mode_is_found_and_fixed_and_sshd_accepts_the_key_again() {
    let s = Sshd::start_with(&[
        "-o",
        "AuthorizedKeysFile=.ssh/authorized_keys",
        "-o",
        "StrictModes=yes",
    ]);
    let u = user_with_key_login(&s);
    let (ok, err) = login(&u);
    assert!(ok, "the clean setup logs in: {err}\n{}", s.log());
    let cases: [(&str, u32, &str, &str); 5] = [
        ("", 0o777, "perm-home", "~ mode 777"),
        (".ssh", 0o777, "perm-ssh-dir", "~/.ssh mode 777"),
        (
            ".ssh/authorized_keys",
            0o666,
            "perm-authorized-keys",
            "~/.ssh/authorized_keys mode 666",
        ),
        (
            ".ssh/config",
            0o666,
            "perm-config",
            "~/.ssh/config mode 666",
        ),
        (
            ".ssh/id_ed25519",
            0o644,
            "perm-private-key",
            "~/.ssh/id_ed25519 mode 644",
        ),
    ];
    for (rel, bad, id, summary) in cases {
        let p = u.home.join(rel);
        let good = mode(&p);
        chmod(&p, bad);
        let (ok, _) = login(&u);
        assert!(!ok, "{rel} at {bad:o} must break the login");
        let (code, out, err) = run(u.command(YONDER).args(["doctor", "--json"]));
        assert_eq!(code, 1, "a problem fails the doctor: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let found = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id && c["status"] == "problem")
            .unwrap_or_else(|| panic!("{id} not reported as a problem: {v:#}"));
        assert!(
            found["summary"].as_str().unwrap().contains(summary),
            "{found}"
        );
        assert_eq!(found["fix"]["automatic"], true, "{found}");
        let (code, out, err) = run(u.command(YONDER).args(["doctor", "--fix", "--yes"]));
        assert_eq!(
            code,
            0,
            "{rel}: after --fix nothing is a problem:\n{}\n{err}",
            text(&out)
        );
        assert!(text(&out).contains("fixed: "), "{}", text(&out));
        if rel.is_empty() {
            // The home keeps its own mode minus group/world write.
            assert_eq!(mode(&p) & 0o022, 0, "~ is no longer writable by others");
        } else {
            assert_eq!(mode(&p), good, "{rel} is back to {good:o}");
        }
        let (ok, err) = login(&u);
        assert!(ok, "{rel}: the login works again: {err}\n{}", s.log());
    }
    // A file owned by someone else: a problem only root can fix, so the
    // fix is printed, not applied.
    let ak = u.home.join(".ssh/authorized_keys");
    std::os::unix::fs::chown(&ak, Some(65534), None).unwrap();
    let (code, out, _) = run(u.command(YONDER).args(["doctor", "--fix", "--yes"]));
    assert_eq!(code, 1, "{}", text(&out));
    let out = text(&out);
    assert!(
        out.contains("problem  ~/.ssh/authorized_keys belongs to uid 65534, not to you"),
        "{out}"
    );
    assert!(out.contains("fix: sudo chown"), "{out}");
    std::os::unix::fs::chown(&ak, Some(u.uid), None).unwrap();
    // --fix also turned on connection sharing, keeping the user's lines.
    let cfg = std::fs::read_to_string(u.home.join(".ssh/config")).unwrap();
    assert!(cfg.starts_with("# my own comment\nHost yd\n"), "{cfg}");
    assert_eq!(cfg.matches("ControlMaster auto").count(), 1, "{cfg}");
    assert_eq!(mode(&u.home.join(".ssh/sockets")), 0o700);
    let backups: Vec<_> = std::fs::read_dir(u.home.join(".ssh"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("config.yonder-backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1, "one edit, one backup");
}

/// A fixed home layout, run through `--json`: the whole report is pinned.
#[test]
fn json_report_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    chmod(home, 0o700);
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    chmod(&ssh, 0o755);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "1024", "-N", "", "-C", "old", "-f"])
        .arg(ssh.join("id_rsa"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "pass phrase",
            "-C",
            "new",
            "-f",
        ])
        .arg(ssh.join("id_ed25519"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("puttygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-O",
            "private",
            "--new-passphrase",
            "/dev/null",
            "-o",
        ])
        .arg(ssh.join("work.ppk"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        ssh.join("config"),
        "Host a\n  HostName a.example\n  Bogus yes\nHost b\n  Port notaport\n",
    )
    .unwrap();
    chmod(&ssh.join("config"), 0o600);
    let (code, out, err) = run(Command::new(YONDER)
        .env_remove("SSH_AUTH_SOCK")
        .env("HOME", home)
        .env("YONDER_SSH_CONFIG", ssh.join("config"))
        .args(["doctor", "--json"]));
    assert_eq!(code, 1, "the config errors are problems: {err}");
    let mut v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    // The only machine-dependent line: the ssh version.
    for c in v["checks"].as_array_mut().unwrap() {
        if c["id"] == "ssh-client" {
            assert!(c["summary"].as_str().unwrap().contains("OpenSSH"), "{c}");
            c["summary"] = "ssh client: [VERSION]".into();
        }
    }
    let rendered = serde_json::to_string_pretty(&v).unwrap();
    assert!(
        !rendered.contains(&home.display().to_string()),
        "paths are shown as ~/…"
    );
    insta::assert_snapshot!(rendered);
    // The human form names file and line too.
    let (_, out, _) = run(Command::new(YONDER)
        .env("HOME", home)
        .env("YONDER_SSH_CONFIG", ssh.join("config"))
        .arg("doctor"));
    let out = text(&out);
    assert!(
        out.contains("problem  ~/.ssh/config:3: Bad configuration option: bogus"),
        "{out}"
    );
    assert!(out.contains("~/.ssh/config:5: Bad port"), "{out}");
}

fn doctor_target(s: &Sshd, config: &Path, target: &str) -> (i32, serde_json::Value, String) {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = run(Command::new(YONDER)
        .env("HOME", home.path())
        .env("YONDER_SSH_CONFIG", config)
        .env("YONDER_SERVER_INSTALL_PATH", &s.install_path)
        .args(["doctor", target, "--json"]));
    let v = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}\n{err}", text(&out)));
    (code, v, err)
}

fn check<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id}: {v:#}"))
}

/// A healthy host: every step is checked and ok.
#[test]
fn a_reachable_host_passes_every_check() {
    let s = Sshd::start();
    let (code, v, err) = doctor_target(&s, &s.config, "yt");
    assert_eq!(code, 0, "{v:#}\n{err}");
    let resolved = check(&v, "remote-resolved")["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        resolved.contains(&format!("{TEST_USER}@127.0.0.1 port {}", s.port)),
        "{resolved}"
    );
    assert!(
        check(&v, "remote-tcp")["summary"]
            .as_str()
            .unwrap()
            .contains("SSH-2.0-OpenSSH")
    );
    let hk = check(&v, "remote-host-key");
    assert_eq!(hk["status"], "ok", "{hk}");
    assert!(
        check(&v, "remote-auth-methods")["summary"]
            .as_str()
            .unwrap()
            .contains("publickey")
    );
    assert_eq!(check(&v, "remote-key-login")["status"], "ok");
    assert_eq!(check(&v, "remote-platform")["status"], "ok");
    assert_eq!(check(&v, "remote-install-dir")["status"], "ok");
    assert_eq!(check(&v, "remote-perm-home")["status"], "ok");
    assert!(
        check(&v, "remote-yonder")["summary"]
            .as_str()
            .unwrap()
            .contains("none")
    );
    // After yonder installed its server there, doctor lists that version.
    let (code, _, err) = run(s.cli().args(["info", "yt"]));
    assert_eq!(code, 0, "{err}");
    let (_, v, _) = doctor_target(&s, &s.config, "yt");
    let installed = check(&v, "remote-yonder")["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        installed.contains(&format!("installed: {}", env!("CARGO_PKG_VERSION"))),
        "{installed}"
    );
}

/// Nothing listens on the port: a problem that says so, with the per-OS
/// server install commands.
#[test]
fn an_unreachable_port_is_a_problem() {
    let s = Sshd::start();
    let port = free_port();
    let cfg = s.dir.join("config-closed");
    std::fs::write(
        &cfg,
        format!("Host closed\n  HostName 127.0.0.1\n  Port {port}\n  User {TEST_USER}\n  IdentityFile ~/.ssh/work.ppk\n  IdentityFile ~/.ssh/nokey\n"),
    )
    .unwrap();
    let (code, v, _) = doctor_target(&s, &cfg, "closed");
    assert_eq!(code, 1);
    // The keys this host would be offered are checked first.
    assert_eq!(check(&v, "remote-identity-ppk")["status"], "problem");
    let missing = check(&v, "remote-identity-missing");
    assert!(
        missing["summary"]
            .as_str()
            .unwrap()
            .contains("~/.ssh/nokey"),
        "{missing}"
    );
    let tcp = check(&v, "remote-tcp");
    assert_eq!(tcp["status"], "problem");
    assert!(
        tcp["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("cannot reach port {port}")),
        "{tcp}"
    );
    assert!(
        tcp["fix"]["command"]
            .as_str()
            .unwrap()
            .contains("apt-get install openssh-server")
    );
}

/// A host whose key is not in known_hosts: a warning with the real
/// fingerprint, and no login attempt.
#[test]
fn an_unknown_host_key_is_shown_with_its_fingerprint() {
    let s = Sshd::start();
    std::fs::write(s.dir.join("empty_known_hosts"), "").unwrap();
    let cfg = s.write_config(
        "config-unknown",
        "yt",
        "id_ed25519",
        "empty_known_hosts",
        "",
    );
    let (code, v, _) = doctor_target(&s, &cfg, "yt");
    let fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(s.dir.join("host_key.pub"))
        .output()
        .unwrap();
    let fp = text(&fp.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let hk = check(&v, "remote-host-key-unknown");
    assert_eq!(hk["status"], "warning", "{hk}");
    assert!(
        hk["summary"].as_str().unwrap().contains(&fp),
        "{hk} lacks {fp}"
    );
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != "remote-key-login")
    );
    assert_eq!(code, 0, "an unknown key is a warning, not a problem");
    assert_eq!(
        std::fs::read_to_string(s.dir.join("empty_known_hosts")).unwrap(),
        "",
        "never accepted"
    );
}

/// Remote modes StrictModes would reject are found and fixed over ssh.
#[test]
fn remote_home_modes_are_found_and_fixed() {
    let s = Sshd::start();
    let u = TempUser::create();
    std::fs::create_dir(u.home.join(".ssh")).unwrap();
    std::os::unix::fs::chown(u.home.join(".ssh"), Some(u.uid), Some(u.gid)).unwrap();
    chmod(&u.home, 0o777);
    chmod(&u.home.join(".ssh"), 0o777);
    let cfg = s.dir.join("config-remote-modes");
    std::fs::write(
        &cfg,
        format!(
            "Host rm\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n",
            s.port,
            u.name,
            s.dir.join("id_ed25519").display(),
            s.dir.join("known_hosts").display()
        ),
    )
    .unwrap();
    let (code, v, err) = doctor_target(&s, &cfg, "rm");
    assert_eq!(code, 1, "{v:#}\n{err}");
    for id in ["remote-perm-home", "remote-perm-ssh-dir"] {
        let c = check(&v, id);
        assert_eq!(c["status"], "problem", "{c}");
        assert_eq!(c["fix"]["automatic"], true, "{c}");
    }
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = run(Command::new(YONDER)
        .env("HOME", home.path())
        .env("YONDER_SSH_CONFIG", &cfg)
        .env("YONDER_SERVER_INSTALL_PATH", &s.install_path)
        .args(["doctor", "rm", "--fix", "--yes"]));
    assert_eq!(code, 0, "{}\n{err}", text(&out));
    assert_eq!(mode(&u.home), 0o755);
    assert_eq!(mode(&u.home.join(".ssh")), 0o700);
}

/// `yonder ssh-config multiplex HOST`: keeps every line, backs up, is
/// idempotent, and real ssh then shares one login through the new socket.
#[test]
fn ssh_config_multiplex_is_safe_idempotent_and_works() {
    let s = Sshd::start_with(&["-o", "AuthorizedKeysFile=.ssh/authorized_keys"]);
    let u = user_with_key_login(&s);
    let cfg = u.home.join(".ssh/config");
    let before = std::fs::read_to_string(&cfg).unwrap();
    let (code, out, err) = run(u.command(YONDER).args(["ssh-config", "multiplex", "yd"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        text(&out).contains("backup of the previous version"),
        "{}",
        text(&out)
    );
    let after = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        after.starts_with(&before),
        "every old line and comment is kept:\n{after}"
    );
    assert!(
        after.contains(
            "Host yd\n  ControlMaster auto\n  ControlPath ~/.ssh/sockets/%C\n  ControlPersist 10m\n"
        ),
        "{after}"
    );
    assert_eq!(mode(&u.home.join(".ssh/sockets")), 0o700);
    assert_eq!(mode(&cfg), 0o600, "the mode is kept");
    let backups: Vec<_> = std::fs::read_dir(u.home.join(".ssh"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("config.yonder-backup-")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(backups, vec![before.clone()]);
    // Again: nothing changes, no new backup.
    let (code, out, _) = run(u.command(YONDER).args(["ssh-config", "multiplex", "yd"]));
    assert_eq!(code, 0);
    assert!(text(&out).contains("already set up"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), after);
    // Real ssh: the first login leaves a master, the next rides on it.
    let o = u
        .command("ssh")
        .args(["yd", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = u
        .command("ssh")
        .args(["-O", "check", "yd"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "a master is running: {}",
        text(&o.stderr)
    );
    let sockets: Vec<_> = std::fs::read_dir(u.home.join(".ssh/sockets"))
        .unwrap()
        .collect();
    assert_eq!(sockets.len(), 1);
    let _ = u.command("ssh").args(["-O", "exit", "yd"]).output();
    // A hostile host name is refused before anything is written.
    let (code, _, err) = run(u.command(YONDER).args(["ssh-config", "multiplex", "a b"]));
    assert_eq!(code, 1);
    assert!(err.contains("not a host name"), "{err}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), after);
}

/// Containers: the engine CLI is looked for (with a container target, or
/// in a folder with a devcontainer.json) and its absence is a problem that
/// says what to install.
#[test]
fn a_missing_container_engine_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    // A PATH with the OpenSSH tools and no docker or podman.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for t in ["ssh", "ssh-keygen", "ssh-add", "ssh-keyscan"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{t}"), bin.join(t)).unwrap();
    }
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join(".devcontainer")).unwrap();
    std::fs::write(project.join(".devcontainer/devcontainer.json"), "{}").unwrap();
    for (cwd, args) in [
        (dir.path(), vec!["doctor", "container://web", "--json"]),
        (project.as_path(), vec!["doctor", "--json"]),
    ] {
        let (code, out, err) = run(Command::new(YONDER)
            .current_dir(cwd)
            .env("PATH", &bin)
            .env("HOME", &home)
            .args(&args));
        assert_eq!(code, 1, "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let c = check(&v, "container-engine");
        assert_eq!(c["status"], "problem", "{c}");
        assert!(
            c["summary"]
                .as_str()
                .unwrap()
                .contains("neither docker nor podman"),
            "{c}"
        );
        assert!(
            c["fix"]["command"]
                .as_str()
                .unwrap()
                .contains("apt-get install podman"),
            "{c}"
        );
    }
    // An engine chosen by YONDER_DOCKER_PATH that is not there.
    let (code, out, _) = run(Command::new(YONDER)
        .current_dir(&project)
        .env("PATH", &bin)
        .env("HOME", &home)
        .env("YONDER_DOCKER_PATH", "/nonexistent/docker")
        .args(["doctor", "--json"]));
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let c = check(&v, "container-engine");
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .contains("YONDER_DOCKER_PATH names /nonexistent/docker"),
        "{c}"
    );
    // No container in sight: no engine check.
    let (_, out, _) = run(Command::new(YONDER)
        .current_dir(dir.path())
        .env("PATH", &bin)
        .env("HOME", &home)
        .args(["doctor", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != "container-engine")
    );
}

fn tmux(sock: &str, args: &[&str]) -> String {
    let o = Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "tmux {args:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

/// The user's story: key login broke because the remote home became
/// world-writable. Doctor, in a terminal, logs in with the password
/// (through askpass), finds the mode, fixes it over ssh, and key login
/// works again.
#[test]
fn doctor_logs_in_with_a_password_to_fix_what_broke_key_login() {
    let s = Sshd::start_with(&[
        "-o",
        "AuthorizedKeysFile=.ssh/authorized_keys",
        "-o",
        "PasswordAuthentication=yes",
    ]);
    let u = user_with_key_login(&s);
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).unwrap();
    let password = format!("pw-{}", hex::encode(rnd));
    u.set_password(&password);
    chmod(&u.home, 0o777);
    let (ok, _) = login(&u);
    assert!(!ok, "a world-writable home breaks key login");
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("config");
    std::fs::write(
        &cfg,
        format!(
            "Host yd\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  PreferredAuthentications publickey,password\n",
            s.port,
            u.name,
            u.home.join(".ssh/id_ed25519").display(),
            s.dir.join("known_hosts").display()
        ),
    )
    .unwrap();
    let sock = s.dir.join("tmux-doctor.sock").display().to_string();
    let cmd = format!(
        "env HOME={} YONDER_SSH_CONFIG={} {YONDER} doctor yd --fix --yes; echo exit=$?; sleep 60",
        home.path().display(),
        cfg.display()
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
            "50",
            &cmd,
        ],
    );
    let start = std::time::Instant::now();
    let mut answered = 0;
    let screen = loop {
        let screen = tmux(&sock, &["capture-pane", "-p", "-S", "-", "-t", "p"]);
        if screen.contains("exit=") {
            break screen;
        }
        let prompts = screen.matches("password:").count();
        if prompts > answered {
            assert!(prompts <= 4, "too many password prompts:\n{screen}");
            tmux(&sock, &["send-keys", "-t", "p", &password, "Enter"]);
            answered = prompts;
        }
        // A whole doctor run with several password logins: more than the
        // usual bound on a loaded machine.
        assert!(
            start.elapsed() < 4 * DEADLINE,
            "doctor did not finish:\n{screen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = Command::new("tmux")
        .arg("-S")
        .arg(&sock)
        .arg("kill-server")
        .status();
    assert!(answered >= 1, "the password was asked for:\n{screen}");
    assert!(
        screen.contains("problem  remote ~: mode 777 is group/world-writable"),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("fixed: yd: chmod go-w {}", u.home.display())),
        "{screen}"
    );
    assert!(screen.contains("exit=0"), "{screen}\n{}", s.log());
    assert!(!screen.contains(&password), "the password is not echoed");
    assert_eq!(mode(&u.home) & 0o022, 0);
    let (ok, err) = login(&u);
    assert!(ok, "key login works again: {err}");
}

/// No ssh client: a problem with this OS's install command.
#[test]
fn a_missing_ssh_client_says_how_to_install_it() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = run(Command::new(YONDER)
        .env("HOME", home.path())
        .env("YONDER_SSH", "/nonexistent/ssh")
        .args(["doctor", "--json"]));
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let c = check(&v, "ssh-client");
    assert_eq!(c["status"], "problem", "{c}");
    // This machine is Debian: the Debian line of the install table.
    assert_eq!(
        c["fix"]["command"], "sudo apt-get install openssh-client",
        "{c}"
    );
}

/// A PuTTY key named by an IdentityFile anywhere: found, and converted by
/// `--fix` into a key ssh reads.
#[test]
fn a_referenced_ppk_is_converted_by_fix() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    chmod(home, 0o700);
    std::fs::create_dir_all(home.join("keys")).unwrap();
    std::fs::create_dir(home.join(".ssh")).unwrap();
    chmod(&home.join(".ssh"), 0o700);
    let st = Command::new("puttygen")
        .args([
            "-q",
            "-t",
            "ecdsa",
            "-O",
            "private",
            "--new-passphrase",
            "/dev/null",
            "-o",
        ])
        .arg(home.join("keys/work.ppk"))
        .status()
        .unwrap();
    assert!(st.success());
    let cfg = home.join(".ssh/config");
    std::fs::write(&cfg, "Host work\n  IdentityFile ~/keys/work.ppk\n").unwrap();
    chmod(&cfg, 0o600);
    let doctor = |args: &[&str]| {
        run(Command::new(YONDER)
            .env("HOME", home)
            .env("YONDER_SSH_CONFIG", &cfg)
            .env_remove("SSH_AUTH_SOCK")
            .arg("doctor")
            .args(args))
    };
    let (_, out, err) = doctor(&["--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    let c = check(&v, "key-ppk");
    assert_eq!(c["summary"], "~/keys/work.ppk is a PuTTY key", "{c}");
    assert_eq!(c["fix"]["automatic"], true);
    let (code, out, err) = doctor(&["--fix", "--yes"]);
    assert_eq!(code, 0, "{}\n{err}", text(&out));
    assert!(
        text(&out).contains("fixed: converted to ~/keys/work"),
        "{}",
        text(&out)
    );
    assert_eq!(mode(&home.join("keys/work")), 0o600);
    let expected = Command::new("puttygen")
        .arg(home.join("keys/work.ppk"))
        .args(["-O", "public-openssh", "-o", "/dev/stdout"])
        .output()
        .unwrap();
    let derived = Command::new("ssh-keygen")
        .args(["-y", "-f"])
        .arg(home.join("keys/work"))
        .output()
        .unwrap();
    assert_eq!(
        text(&derived.stdout).split_whitespace().nth(1),
        text(&expected.stdout).split_whitespace().nth(1)
    );
    let (_, out, _) = doctor(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != "key-ppk"),
        "{v:#}"
    );
}
