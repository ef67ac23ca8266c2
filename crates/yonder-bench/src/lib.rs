//! What every benchmark binary shares: finding the `yonder` built next to it
//! and running a real daemon for the duration of a run.

use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a freshly spawned daemon has to accept.
const DAEMON_START: Duration = Duration::from_secs(10);

/// The `yonder` binary built beside the running benchmark.
pub fn yonder_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?.with_file_name("yonder");
    if !exe.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p yonder)",
            exe.display()
        );
    }
    Ok(exe)
}

/// `yonder server daemon` on a private runtime directory, killed on drop.
#[derive(Debug)]
pub struct BenchDaemon {
    child: Child,
    /// The daemon's unix socket.
    pub socket: PathBuf,
}

impl BenchDaemon {
    /// Starts the daemon in `run_dir` and waits until it accepts.
    pub fn start(run_dir: &Path) -> anyhow::Result<Self> {
        let child = Command::new(yonder_exe()?)
            .args(["server", "daemon", "--idle-timeout", "0", "--run-dir"])
            .arg(run_dir)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let d = Self {
            child,
            socket: run_dir.join("daemon.sock"),
        };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            if start.elapsed() > DAEMON_START {
                bail!("the daemon did not start within {DAEMON_START:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(d)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
