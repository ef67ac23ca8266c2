//! A real OpenSSH server for tests: 127.0.0.1, a random port, throwaway host
//! and user keys, the non-root user `yondertest` that `scripts/setup`
//! creates. Each test gets its own sshd, keys, known_hosts, client config,
//! yonder runtime directory and remote install path.

use super::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

pub const TEST_USER: &str = "yondertest";

pub struct Sshd {
    /// Root-owned 0755 directory under /var/lib (sshd's StrictModes rejects
    /// key files below world-writable /tmp).
    pub dir: PathBuf,
    child: Child,
    pub port: u16,
    /// Client ssh_config with `Host yt` (key auth, known host).
    pub config: PathBuf,
    /// The yonder runtime directory for the client side (masters live here).
    pub run_dir: PathBuf,
    /// Install path on the remote, relative to the test user's home.
    pub install_path: String,
}

fn keygen(path: &Path, passphrase: &str) {
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "yonder-test",
            "-f",
        ])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

pub use super::free_port;

impl Sshd {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts sshd with extra `-o` style arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        assert!(
            is_root(),
            "the SSH tests start sshd and need root (CI runs as root)"
        );
        assert!(
            Command::new("id")
                .arg(TEST_USER)
                .output()
                .is_ok_and(|o| o.status.success()),
            "the test user {TEST_USER} is missing: run ./scripts/setup"
        );
        let base = Path::new("/var/lib/yonder-tests");
        std::fs::create_dir_all(base).unwrap();
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("s")
            .tempdir_in(base)
            .unwrap()
            .keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        keygen(&dir.join("host_key"), "");
        keygen(&dir.join("id_ed25519"), "");
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        std::fs::set_permissions(
            dir.join("authorized_keys"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()])
            .args([
                "-o",
                "ListenAddress=127.0.0.1",
                "-o",
                "PidFile=none",
                "-o",
                "PermitRootLogin=no",
            ])
            .args(["-o", "AcceptEnv=YONDER_TEST_PATH", "-o", "LogLevel=VERBOSE"])
            .args(extra)
            .arg("-h")
            .arg(dir.join("host_key"))
            .arg("-o")
            .arg(format!(
                "AuthorizedKeysFile={}",
                dir.join("authorized_keys").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < DEADLINE, "sshd did not start");
            if let Some(st) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
                panic!("sshd on port {port} ended ({st}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .unwrap();
        let mut rnd = [0u8; 4];
        getrandom::fill(&mut rnd).unwrap();
        let install_path = format!(".yonder-test/{}/server", hex::encode(rnd));
        let s = Self {
            run_dir: dir.join("run"),
            config: dir.join("config"),
            dir,
            child,
            port,
            install_path,
        };
        s.write_config("config", "yt", "id_ed25519", "known_hosts", "");
        s
    }

    /// Writes a client config `name` with `Host alias`.
    pub fn write_config(
        &self,
        name: &str,
        alias: &str,
        key: &str,
        known_hosts: &str,
        extra: &str,
    ) -> PathBuf {
        let path = self.dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        write!(
            f,
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  ConnectTimeout 10\n{extra}",
            self.port,
            self.dir.join(key).display(),
            self.dir.join(known_hosts).display()
        )
        .unwrap();
        path
    }

    /// A config for `yt` whose sessions run with PATH set to the directory
    /// `bin` (made world-readable) followed by `rest` (through the test
    /// user's .bashrc, which reads YONDER_TEST_PATH).
    #[allow(dead_code)]
    pub fn config_with_path(&self, name: &str, bin: &Path, rest: &str) -> PathBuf {
        std::fs::set_permissions(bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = format!("  SetEnv YONDER_TEST_PATH={}{rest}\n", bin.display());
        self.write_config(name, "yt", "id_ed25519", "known_hosts", &env)
    }

    /// `NAME=VALUE ...` for a shell command line (tmux panes) that runs the
    /// yonder CLI the way [`Sshd::cli_with`] sets it up.
    pub fn env_line(&self, config: &Path) -> String {
        format!(
            "YONDER_SSH_CONFIG={} YONDER_RUNTIME_DIR={} YONDER_SERVER_INSTALL_PATH={} YONDER_REMOTE_RUNTIME_DIR={}",
            config.display(),
            self.run_dir.display(),
            self.install_path,
            self.remote_run_dir()
        )
    }

    /// The yonder CLI set up for this server (`yt` is the target).
    pub fn cli(&self) -> Command {
        self.cli_with(&self.config)
    }

    pub fn cli_with(&self, config: &Path) -> Command {
        let mut c = Command::new(YONDER);
        c.env("YONDER_SSH_CONFIG", config)
            .env("YONDER_RUNTIME_DIR", &self.run_dir)
            .env("YONDER_SERVER_INSTALL_PATH", &self.install_path)
            .env("YONDER_REMOTE_RUNTIME_DIR", self.remote_run_dir());
        c
    }

    /// Runs a command on the remote with plain ssh (to check what yonder did).
    pub fn ssh(&self, command: &str) -> String {
        let out = Command::new("ssh")
            .arg("-F")
            .arg(&self.config)
            .args(["yt", command])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// This test's own remote daemon (its environment, e.g. PATH, is the
    /// one of the session that started it: tests must not share one).
    /// Stops (SIGSTOP) every sshd process serving a connection of this
    /// server, not the listener: each link stays open but nothing answers,
    /// as when a network path dies without a reset. Returns their pids
    /// (SIGKILL them when done).
    #[allow(dead_code)]
    pub fn freeze_sessions(&self) -> Vec<i32> {
        let ppid = |pid: i32| -> Option<i32> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The field after the ")" that ends the command name is the state,
            // then the parent's pid.
            stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
        };
        let listener = self.child.id() as i32;
        let mut frozen = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if pid == listener || !comm.starts_with("sshd") {
                continue;
            }
            // A descendant of the listener (monitor or session process).
            let mut p = pid;
            let mut depth = 0;
            while let Some(up) = ppid(p) {
                if up == listener {
                    frozen.push(pid);
                    break;
                }
                if up <= 1 || depth > 8 {
                    break;
                }
                (p, depth) = (up, depth + 1);
            }
        }
        for &pid in &frozen {
            // SAFETY: plain kill(2) on a pid we just found.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
        frozen
    }

    /// A path named `name` in the test user's home, unique to this server.
    #[allow(dead_code)]
    pub fn remote_path(&self, name: &str) -> PathBuf {
        self.remote_home()
            .join(format!("{}-{name}", self.install_path.replace('/', "_")))
    }

    pub fn remote_run_dir(&self) -> String {
        format!("{}/run", self.install_path.trim_end_matches("/server"))
    }

    pub fn remote_home(&self) -> PathBuf {
        PathBuf::from(format!("/home/{TEST_USER}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Stop the master connections this test's client left behind.
        let _ = Command::new("ssh")
            .arg("-F")
            .arg(&self.config)
            .arg("-o")
            .arg(format!("ControlPath={}/ssh/%C", self.run_dir.display()))
            .args(["-O", "exit", "yt"])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("pkill")
            .args(["-u", TEST_USER, "-f", &self.remote_run_dir()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(
            self.remote_home()
                .join(self.install_path.trim_end_matches("/server")),
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
