//! Whole files on a session of their own (the bulk channel, protocol in
//! [`yonder_proto::bulk`]): the target says how to start `yonder server
//! bulk` there ([`BulkOpener`]; the SSH target runs it through its master),
//! and the bytes move between the local file and that session's pipes in
//! the kernel.

use crate::{Client, Result};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, ChildStderr};
use std::sync::Arc;
use yonder_proto::bulk::{move_bytes, read_message, skip_to_magic, write_message};
use yonder_proto::pb::{self, ErrorKind};
use yonder_proto::{RemoteError, paths};

/// Starts `yonder server bulk` on the target, with stdin, stdout and stderr
/// piped.
pub trait BulkOpener: Send + Sync {
    fn open(&self) -> io::Result<Child>;
    /// What the session runs over, for messages ("the ssh master for HOST").
    fn describe(&self) -> String;
}

/// Progress callback: bytes moved since the last call.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

impl Client {
    /// Gives this client a bulk channel (see the module docs).
    pub fn with_bulk(mut self, opener: Arc<dyn BulkOpener>) -> Self {
        self.bulk = Some(opener);
        self
    }

    /// Whether this client has a bulk channel.
    pub fn has_bulk(&self) -> bool {
        self.bulk.is_some()
    }

    /// Downloads the remote file `path` into `file` (new and empty) on the
    /// bulk channel; its metadata. `Ok(None)`: no bulk channel, or it could
    /// not be started and nothing was transferred (use the HTTP/2 read).
    pub async fn bulk_read(
        &self,
        path: &Path,
        file: std::fs::File,
        progress: Progress,
    ) -> Result<Option<pb::Metadata>> {
        let Some(opener) = self.bulk.clone() else {
            return Ok(None);
        };
        let path = path.to_path_buf();
        blocking(move || read_blocking(&*opener, &path, &file, &progress)).await
    }

    /// Uploads `size` bytes of `file` (positioned at its start) to the remote
    /// `path` on the bulk channel, atomically; the new file's metadata.
    /// `Ok(None)` as for [`Client::bulk_read`].
    pub async fn bulk_write(
        &self,
        path: &Path,
        file: std::fs::File,
        size: u64,
        mode: Option<u32>,
        progress: Progress,
    ) -> Result<Option<pb::Metadata>> {
        let Some(opener) = self.bulk.clone() else {
            return Ok(None);
        };
        let path = path.to_path_buf();
        blocking(move || write_blocking(&*opener, &path, &file, size, mode, &progress)).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RemoteError::new(ErrorKind::Internal, format!("bulk transfer: {e}")))?
}

/// A started session: the child and a thread collecting its stderr (ssh's
/// and the remote program's messages), bounded.
struct Session {
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
    what: String,
}

/// Bytes of the session's stderr kept for an error message.
const STDERR_KEEP: u64 = 16 * 1024;

impl Session {
    fn open(opener: &dyn BulkOpener) -> Option<Self> {
        let what = opener.describe();
        let mut child = match opener.open() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "bulk channel over {what} did not start ({e}); using the main connection"
                );
                return None;
            }
        };
        let stderr = child.stderr.take().map(|s: ChildStderr| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut s = s;
                let _ = (&mut s).take(STDERR_KEEP).read_to_end(&mut kept);
                // Drain the rest so the session never blocks on it.
                let _ = io::copy(&mut s, &mut io::sink());
                String::from_utf8_lossy(&kept).trim().to_string()
            })
        });
        if let Some(fd) = child.stdin.as_ref() {
            yonder_proto::limits::grow_pipe(fd.as_fd());
        }
        if let Some(fd) = child.stdout.as_ref() {
            yonder_proto::limits::grow_pipe(fd.as_fd());
        }
        Some(Self {
            child,
            stderr,
            what,
        })
    }

    /// Ends the session (closing our pipe ends first) and returns what it
    /// wrote to stderr.
    fn finish(mut self) -> String {
        drop(self.child.stdin.take());
        drop(self.child.stdout.take());
        let _ = self.child.wait();
        self.stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }

    /// The session broke: an error naming what we were doing and what the
    /// session said.
    fn broken(self, path: &Path, doing: &str, e: &io::Error) -> RemoteError {
        let what = self.what.clone();
        let said = self.finish();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!("; it said: {said}")
        };
        RemoteError::new(
            ErrorKind::Io,
            format!("{doing} over the bulk session on {what} failed: {e}{said}"),
        )
        .with_path(path)
    }
}

fn reply_to_result(reply: pb::BulkReply, path: &Path) -> Result<pb::Metadata> {
    if let Some(e) = reply.error {
        return Err(RemoteError::from_detail(e));
    }
    reply.metadata.ok_or_else(|| {
        RemoteError::new(ErrorKind::Internal, "bulk reply without metadata").with_path(path)
    })
}

fn read_blocking(
    opener: &dyn BulkOpener,
    path: &Path,
    file: &std::fs::File,
    progress: &Progress,
) -> Result<Option<pb::Metadata>> {
    let Some(mut s) = Session::open(opener) else {
        return Ok(None);
    };
    let req = pb::BulkRequest {
        path: paths::to_wire(path),
        write: false,
        size: 0,
        mode: None,
    };
    let sent = write_message(s.child.stdin.as_mut().expect("piped"), &req);
    let reply = sent.and_then(|()| {
        let out = s.child.stdout.as_mut().expect("piped");
        skip_to_magic(out)?;
        read_message::<pb::BulkReply>(out)
    });
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            // Nothing moved yet: the session never came up (no master, an
            // old server): say so in the log and let the caller fall back.
            let what = s.what.clone();
            let said = s.finish();
            tracing::warn!(
                "bulk channel over {what} failed ({e}: {said}); using the main connection"
            );
            return Ok(None);
        }
    };
    let meta = match reply_to_result(reply, path) {
        Ok(m) => m,
        Err(e) => {
            s.finish();
            return Err(e);
        }
    };
    let out = s.child.stdout.take().expect("piped");
    let moved = move_bytes(out.as_fd(), file.as_fd(), meta.size, |n| progress(n));
    s.child.stdout = Some(out);
    match moved {
        Ok(method) => {
            tracing::info!(
                "{} bytes of {} through the bulk session ({method:?})",
                meta.size,
                path.display()
            );
            s.finish();
            Ok(Some(meta))
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(s.broken(path, "a download", &e)),
        Err(e) => {
            s.finish();
            Err(
                RemoteError::new(ErrorKind::Io, format!("writing the downloaded file: {e}"))
                    .with_path(path),
            )
        }
    }
}

fn write_blocking(
    opener: &dyn BulkOpener,
    path: &Path,
    file: &std::fs::File,
    size: u64,
    mode: Option<u32>,
    progress: &Progress,
) -> Result<Option<pb::Metadata>> {
    let Some(mut s) = Session::open(opener) else {
        return Ok(None);
    };
    let req = pb::BulkRequest {
        path: paths::to_wire(path),
        write: true,
        size,
        mode,
    };
    let mut moved = 0u64;
    let stdin = s.child.stdin.take().expect("piped");
    let sent = write_message(&mut &stdin, &req).and_then(|()| {
        move_bytes(file.as_fd(), stdin.as_fd(), size, |n| {
            moved += n;
            progress(n);
        })
    });
    // All sent (or the session stopped taking bytes): our end of stdin
    // closes, and the answer says whether the file was written. A server
    // that refused early (permission denied, disk full) has answered and
    // exited, which is what broke our writes.
    drop(stdin);
    let reply = {
        let out = s.child.stdout.as_mut().expect("piped");
        skip_to_magic(out).and_then(|()| read_message::<pb::BulkReply>(out))
    };
    match (sent, reply) {
        (_, Ok(reply)) => {
            let r = reply_to_result(reply, path);
            s.finish();
            if r.is_ok() {
                tracing::info!(
                    "{size} bytes to {} through the bulk session",
                    path.display()
                );
            }
            r.map(Some)
        }
        (Err(e), Err(_)) if moved == 0 => {
            let what = s.what.clone();
            let said = s.finish();
            tracing::warn!(
                "bulk channel over {what} failed ({e}: {said}); using the main connection"
            );
            Ok(None)
        }
        (Err(e), Err(_)) | (Ok(_), Err(e)) => Err(s.broken(path, "an upload", &e)),
    }
}
