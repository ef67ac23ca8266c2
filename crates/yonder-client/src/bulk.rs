//! Whole files on a session of their own (the bulk channel, protocol in
//! [`yonder_proto::bulk`]): the target says how to start `yonder server
//! bulk` there ([`BulkOpener`]; the SSH target runs it through its master),
//! and the bytes move between the local file and that session's pipes in
//! the kernel. A session that breaks (a dropped connection) is started
//! again once the client's connection is back: a download resumes at the
//! byte where it stopped, an upload starts over (it only replaces the file
//! once complete, so sending it again is safe).

use crate::{Client, Result};
use std::io::{self, Read, Seek, SeekFrom};
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

/// Progress callback: bytes moved since the last call; negative when an
/// upload starts again from the beginning.
pub type Progress = Arc<dyn Fn(i64) + Send + Sync>;

/// Tries of one transfer: the first, then up to three after drops.
const ATTEMPTS: usize = 4;

/// How one try of a transfer ended.
enum Attempt {
    Done(pb::Metadata),
    /// The session did not come up and nothing moved; why, for the log.
    Unavailable(String),
    /// The session broke after the server took the request: `moved` bytes
    /// went through in this try; `meta` is the file as the server described
    /// it (reads only).
    Broken {
        moved: u64,
        meta: Option<pb::Metadata>,
        err: RemoteError,
    },
}

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
    /// After a drop it resumes where it stopped, unless the file changed on
    /// the server meanwhile (then it fails with `Conflict`).
    pub async fn bulk_read(
        &self,
        path: &Path,
        file: std::fs::File,
        progress: Progress,
    ) -> Result<Option<pb::Metadata>> {
        let Some(opener) = self.bulk.clone() else {
            return Ok(None);
        };
        let mut done = 0u64;
        let mut first: Option<pb::Metadata> = None;
        for attempt in 1..=ATTEMPTS {
            let (opener, p, expect, progress) = (
                opener.clone(),
                path.to_path_buf(),
                first.clone(),
                progress.clone(),
            );
            let f = file
                .try_clone()
                .map_err(|e| RemoteError::from_io(&e, path))?;
            let r =
                blocking(move || read_attempt(&*opener, &p, &f, done, expect.as_ref(), &progress))
                    .await?;
            match settle(attempt, r, path, "the download") {
                Next::Return(r) => return r,
                Next::Again { moved, meta, err } => {
                    done += moved;
                    first = first.or(meta);
                    self.recover(attempt, path, &err, done).await?;
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Uploads `size` bytes of `file` to the remote `path` on the bulk
    /// channel, atomically; the new file's metadata. `Ok(None)` as for
    /// [`Client::bulk_read`]. After a drop it sends the file again.
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
        for attempt in 1..=ATTEMPTS {
            let (opener, p, each) = (opener.clone(), path.to_path_buf(), progress.clone());
            let f = file
                .try_clone()
                .map_err(|e| RemoteError::from_io(&e, path))?;
            let r = blocking(move || write_attempt(&*opener, &p, &f, size, mode, &each)).await?;
            match settle(attempt, r, path, "the upload") {
                Next::Return(r) => return r,
                Next::Again { moved, err, .. } => {
                    progress(-(moved as i64));
                    self.recover(attempt, path, &err, 0).await?;
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// After a broken try: gives up with `err` on the last try or when the
    /// connection is not redialled; else waits until the connection is back
    /// (a call on it redials, which starts a new master when the old one
    /// died).
    async fn recover(&self, attempt: usize, path: &Path, err: &RemoteError, at: u64) -> Result<()> {
        if attempt == ATTEMPTS || !self.redials() {
            return Err(err.clone());
        }
        tracing::warn!("{err}; going on from byte {at} once the connection is back");
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(path);
        self.stat(parent, true).await.map(|_| ())
    }
}

/// What follows one try.
enum Next {
    /// The transfer is over: done, left to the main connection (`Ok(None)`),
    /// or failed.
    Return(Result<Option<pb::Metadata>>),
    /// The session broke mid-way: try again once the connection is back.
    Again {
        moved: u64,
        meta: Option<pb::Metadata>,
        err: RemoteError,
    },
}

/// The ends common to reads and writes: a finished try, or a session that
/// did not start (on the first try the caller falls back to the main
/// connection; later, the connection came back without its master).
fn settle(attempt: usize, r: Attempt, path: &Path, doing: &str) -> Next {
    match r {
        Attempt::Done(m) => Next::Return(Ok(Some(m))),
        Attempt::Unavailable(why) if attempt == 1 => {
            tracing::warn!("{why}; using the main connection");
            Next::Return(Ok(None))
        }
        Attempt::Unavailable(why) => Next::Return(Err(RemoteError::new(
            ErrorKind::Io,
            format!("{doing} was cut off and could not go on: {why}"),
        )
        .with_path(path))),
        Attempt::Broken { moved, meta, err } => Next::Again { moved, meta, err },
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
    fn open(opener: &dyn BulkOpener) -> std::result::Result<Self, String> {
        let what = opener.describe();
        let mut child = opener
            .open()
            .map_err(|e| format!("the bulk session over {what} did not start ({e})"))?;
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
        Ok(Self {
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

    /// Ends the session and describes why it could not be used.
    fn unavailable(self, e: &io::Error) -> Attempt {
        let what = self.what.clone();
        let said = self.finish();
        Attempt::Unavailable(format!("the bulk session over {what} failed ({e}: {said})"))
    }

    /// The session broke while moving data: an error naming what we were
    /// doing and what the session said.
    fn broken(
        self,
        path: &Path,
        doing: &str,
        e: &io::Error,
        moved: u64,
        meta: Option<pb::Metadata>,
    ) -> Attempt {
        let what = self.what.clone();
        let said = self.finish();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!("; it said: {said}")
        };
        Attempt::Broken {
            moved,
            meta,
            err: RemoteError::new(
                ErrorKind::Io,
                format!("{doing} over the bulk session on {what} broke: {e}{said}"),
            )
            .with_path(path),
        }
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

/// One try of a download, from byte `offset` of the remote file (which
/// must still look like `expect`, when given) to `file`'s position.
fn read_attempt(
    opener: &dyn BulkOpener,
    path: &Path,
    file: &std::fs::File,
    offset: u64,
    expect: Option<&pb::Metadata>,
    progress: &Progress,
) -> Result<Attempt> {
    let mut s = match Session::open(opener) {
        Ok(s) => s,
        Err(why) => return Ok(Attempt::Unavailable(why)),
    };
    let req = pb::BulkRequest {
        path: paths::to_wire(path),
        write: false,
        size: 0,
        mode: None,
        offset,
    };
    let sent = write_message(s.child.stdin.as_mut().expect("piped"), &req);
    let reply = sent.and_then(|()| {
        let out = s.child.stdout.as_mut().expect("piped");
        skip_to_magic(out)?;
        read_message::<pb::BulkReply>(out)
    });
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return Ok(s.unavailable(&e)),
    };
    let meta = match reply_to_result(reply, path) {
        Ok(m) => m,
        Err(e) => {
            s.finish();
            return Err(e);
        }
    };
    if let Some(want) = expect
        && (want.size != meta.size || want.mtime_ns != meta.mtime_ns)
    {
        s.finish();
        return Err(RemoteError::new(
            ErrorKind::Conflict,
            format!(
                "the file changed on the server while it was downloading (cut off after {offset} bytes); run the download again"
            ),
        )
        .with_path(path));
    }
    let out = s.child.stdout.take().expect("piped");
    let mut moved = 0u64;
    let r = move_bytes(out.as_fd(), file.as_fd(), meta.size - offset, |n| {
        moved += n;
        progress(n as i64);
    });
    s.child.stdout = Some(out);
    match r {
        Ok(method) => {
            tracing::info!(
                "{} bytes of {} through the bulk session ({method:?})",
                meta.size - offset,
                path.display()
            );
            s.finish();
            Ok(Attempt::Done(meta))
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Ok(s.broken(path, "a download", &e, moved, Some(meta)))
        }
        Err(e) => {
            s.finish();
            Err(
                RemoteError::new(ErrorKind::Io, format!("writing the downloaded file: {e}"))
                    .with_path(path),
            )
        }
    }
}

/// One try of an upload of `file` from its start.
fn write_attempt(
    opener: &dyn BulkOpener,
    path: &Path,
    mut file: &std::fs::File,
    size: u64,
    mode: Option<u32>,
    progress: &Progress,
) -> Result<Attempt> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| RemoteError::from_io(&e, path))?;
    let mut s = match Session::open(opener) {
        Ok(s) => s,
        Err(why) => return Ok(Attempt::Unavailable(why)),
    };
    let req = pb::BulkRequest {
        path: paths::to_wire(path),
        write: true,
        size,
        mode,
        offset: 0,
    };
    let mut moved = 0u64;
    let stdin = s.child.stdin.take().expect("piped");
    let sent = write_message(&mut &stdin, &req).and_then(|()| {
        move_bytes(file.as_fd(), stdin.as_fd(), size, |n| {
            moved += n;
            progress(n as i64);
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
            r.map(Attempt::Done)
        }
        (Err(e), Err(_)) if moved == 0 => Ok(s.unavailable(&e)),
        (Err(e), Err(_)) | (Ok(_), Err(e)) => Ok(s.broken(path, "an upload", &e, moved, None)),
    }
}
