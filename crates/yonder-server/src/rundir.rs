//! The daemon's runtime directory and race-free start.
//!
//! The directory holds the socket (`daemon.sock`), the lock that makes the
//! daemon a singleton (`daemon.lock`, flock held for the daemon's lifetime),
//! its pid and its log. Only the user may enter it (mode 0700): on the unix
//! socket that mode *is* the authentication, so we refuse a directory that
//! someone else owns or that others can enter.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::net::UnixStream;

/// Overrides the runtime directory (tests, several daemons side by side).
pub const RUNTIME_DIR_ENV: &str = "YONDER_RUNTIME_DIR";

/// How long a starter waits for a freshly spawned daemon to accept. A cold
/// start is a few milliseconds; slow disks and loaded CI machines get slack.
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(15);

/// `sun_path` holds 108 bytes on Linux (104 on macOS) including the NUL.
pub(crate) const MAX_SOCKET_PATH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error(
        "cannot find a runtime directory: neither $XDG_RUNTIME_DIR nor $HOME is set (set {RUNTIME_DIR_ENV})"
    )]
    NoHome,
    #[error("cannot create the runtime directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "the runtime directory {path} belongs to uid {owner}, not to you (uid {me}); \
         refusing to use it: remove it or set {RUNTIME_DIR_ENV}"
    )]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "the socket path {0} is too long for a unix socket (over {MAX_SOCKET_PATH} bytes); set {RUNTIME_DIR_ENV} to a shorter directory"
    )]
    PathTooLong(PathBuf),
    #[error("could not start the yonder daemon ({exe}): {reason}{log}")]
    Start {
        exe: PathBuf,
        reason: String,
        log: String,
    },
}

/// The files of one runtime directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub dir: PathBuf,
}

impl RunDir {
    /// `$YONDER_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/yonder/VERSION`, else
    /// `~/.yonder/run/VERSION`. The version in the path lets an upgraded
    /// client start its own daemon while an older one (serving an older
    /// client) idles out, instead of the two refusing each other.
    pub fn default_path() -> Result<PathBuf, RunDirError> {
        if let Some(d) = std::env::var_os(RUNTIME_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d));
        }
        Ok(Self::default_base()?.join(yonder_proto::YONDER_VERSION))
    }

    fn default_base() -> Result<PathBuf, RunDirError> {
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            let d = PathBuf::from(d);
            // systemd makes it 0700 and ours; anything else (a stale value from
            // `su`, say) is not a private place.
            if std::fs::metadata(&d).is_ok_and(|m| m.is_dir() && m.uid() == current_uid()) {
                return Ok(d.join("yonder"));
            }
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(RunDirError::NoHome)?;
        Ok(PathBuf::from(home).join(".yonder").join("run"))
    }

    /// Opens (creating it 0700 when missing) and checks the directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, RunDirError> {
        let dir = dir.into();
        let create = |e| RunDirError::Create {
            path: dir.clone(),
            source: e,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(create)?;
        let meta = std::fs::metadata(&dir).map_err(create)?;
        let me = current_uid();
        if meta.uid() != me {
            return Err(RunDirError::NotOwned {
                path: dir,
                owner: meta.uid(),
                me,
            });
        }
        if meta.mode() & 0o077 != 0 {
            // Ours but too open (made by hand, or by an old umask): tighten it.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(create)?;
        }
        let run = Self { dir };
        if run.socket().as_os_str().len() > MAX_SOCKET_PATH {
            return Err(RunDirError::PathTooLong(run.socket()));
        }
        Ok(run)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("daemon.sock")
    }
    /// Where the daemon takes file descriptors ([`yonder_proto::fdpass`]).
    /// Same length as `daemon.sock`, so the path length check covers both.
    pub fn fdpass(&self) -> PathBuf {
        self.dir.join("fdpass.sock")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("daemon.lock")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("daemon.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
    /// Address and token of the TCP listener, when there is one (mode 0600).
    pub fn tcp_info(&self) -> PathBuf {
        self.dir.join("tcp.json")
    }

    /// Connects to the running daemon, starting `exe server daemon` first when
    /// none answers.
    ///
    /// Race-free by construction: any number of starters may spawn a daemon at
    /// once; each daemon takes an exclusive flock on `daemon.lock` before it
    /// touches the socket, the losers exit at once, and every starter keeps
    /// trying to connect until the winner accepts.
    pub async fn connect_or_start(
        &self,
        exe: &Path,
        daemon_args: &[String],
    ) -> Result<UnixStream, RunDirError> {
        self.connect_or_start_at(&self.socket(), exe, daemon_args)
            .await
    }

    /// [`Self::connect_or_start`] for the daemon's fd socket
    /// ([`Self::fdpass`]).
    pub async fn connect_or_start_fdpass(
        &self,
        exe: &Path,
        daemon_args: &[String],
    ) -> Result<UnixStream, RunDirError> {
        self.connect_or_start_at(&self.fdpass(), exe, daemon_args)
            .await
    }

    async fn connect_or_start_at(
        &self,
        sock: &Path,
        exe: &Path,
        daemon_args: &[String],
    ) -> Result<UnixStream, RunDirError> {
        if let Ok(s) = UnixStream::connect(sock).await {
            return Ok(s);
        }
        use std::os::unix::fs::OpenOptionsExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .mode(0o600)
            .append(true)
            .open(self.log())
            .map_err(|e| {
                self.start_error(
                    exe,
                    format!("cannot open the log {}: {e}", self.log().display()),
                )
            })?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("server")
            .arg("daemon")
            .arg("--run-dir")
            .arg(&self.dir)
            .args(daemon_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // The daemon must outlive the proxy, its ssh session and its terminal:
        // a new session means no SIGHUP when they go away.
        unsafe_setsid(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| self.start_error(exe, e.to_string()))?;
        let deadline = Instant::now() + DAEMON_START_TIMEOUT;
        let mut exited: Option<std::process::ExitStatus> = None;
        loop {
            if let Ok(s) = UnixStream::connect(sock).await {
                // Reap the child later without blocking: it is the daemon (or a
                // loser that exits at once); either way it must not linger as a
                // zombie of a long-lived starter.
                std::thread::spawn(move || child.wait());
                return Ok(s);
            }
            if exited.is_none()
                && let Ok(Some(status)) = child.try_wait()
            {
                exited = Some(status);
                // A failed start that is not "another daemon won the race".
                if !status.success() {
                    return Err(self.start_error(exe, format!("the daemon exited with {status}")));
                }
            }
            if Instant::now() > deadline {
                return Err(self.start_error(
                    exe,
                    format!(
                        "no daemon accepted on {} within {DAEMON_START_TIMEOUT:?}",
                        sock.display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn start_error(&self, exe: &Path, reason: String) -> RunDirError {
        let tail = std::fs::read_to_string(self.log())
            .map(|s| {
                let lines: Vec<&str> = s.lines().rev().take(5).collect();
                lines.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            })
            .unwrap_or_default();
        let log = if tail.is_empty() {
            String::new()
        } else {
            format!("\n  last lines of {}:\n  {tail}", self.log().display())
        };
        RunDirError::Start {
            exe: exe.to_path_buf(),
            reason,
            log,
        }
    }
}

pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn unsafe_setsid(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_a_private_directory_and_tightens_a_loose_one() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        RunDir::open(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        RunDir::open(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn an_overlong_socket_path_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("x".repeat(120));
        let err = RunDir::open(&d).unwrap_err();
        assert!(matches!(err, RunDirError::PathTooLong(_)), "{err}");
    }
}
