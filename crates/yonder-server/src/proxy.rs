//! `yonder server proxy`: relays its own stdin/stdout to the daemon's socket,
//! starting the daemon first when none runs.
//!
//! This is what an SSH session or `docker exec -i` runs on the target. The
//! proxy is disposable: when the network drops, it dies with its ssh session,
//! and the daemon (with every terminal and process) lives on for the next one.
//! It relays raw bytes; the handshake and HTTP/2 run end to end between the
//! client and the daemon.

use crate::rundir::{RunDir, RunDirError};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Relay buffer: large enough that a bulk transfer costs few syscalls.
const RELAY_BUFFER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Start(#[from] RunDirError),
    #[error("relaying to the daemon failed: {0}")]
    Relay(std::io::Error),
}

pub async fn run(run: &RunDir, exe: &Path, daemon_args: &[String]) -> Result<(), ProxyError> {
    let sock = run.connect_or_start(exe, daemon_args).await?;
    let (mut sock_r, mut sock_w) = sock.into_split();
    let up = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; RELAY_BUFFER];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                // Our client closed its side: pass the half-close on.
                sock_w.shutdown().await?;
                return Ok::<_, std::io::Error>(());
            }
            sock_w.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut stdout = tokio::io::stdout();
        let mut buf = vec![0u8; RELAY_BUFFER];
        loop {
            let n = sock_r.read(&mut buf).await?;
            if n == 0 {
                stdout.flush().await?;
                return Ok::<_, std::io::Error>(());
            }
            stdout.write_all(&buf[..n]).await?;
            stdout.flush().await?;
        }
    };
    // The daemon closing its side ends the session; stdin reaching EOF only
    // half-closes, since replies may still be on their way.
    tokio::pin!(up);
    tokio::select! {
        r = down => r.map_err(ProxyError::Relay),
        r = &mut up => {
            r.map_err(ProxyError::Relay)?;
            Ok(())
        }
    }
}
