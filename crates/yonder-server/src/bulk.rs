//! `yonder server bulk`: one file in or out on stdin/stdout, for the bulk
//! channel (protocol in [`yonder_proto::bulk`]). It runs on its own ssh
//! session as the connecting user, needs no daemon, and handles exactly
//! one request.

use crate::ops::fs::{PreparedWrite, to_metadata};
use crate::ops::request_path;
use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, FromRawFd};
use std::path::Path;
use yonder_proto::RemoteError;
use yonder_proto::bulk::{self, error_reply, read_message, write_message};
use yonder_proto::pb::{self, ErrorKind};

/// Serves one request on fds 0 and 1; the exit code (0 when the request
/// was carried out, 1 when it failed: the reason went to the client, or to
/// stderr when there was no client to tell).
pub fn serve() -> i32 {
    // Unbuffered views of fds 0 and 1: a buffered stdin would read past the
    // request into the file's bytes.
    // SAFETY: fds 0 and 1 stay open for the life of the process; ManuallyDrop
    // never closes them.
    let mut input = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
    let mut output = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    // ssh may hang up on us when the connection drops: carry on to the end
    // of stdin, so that a cut upload still removes its temp file. Killed,
    // the temp file goes too.
    // SAFETY: setting a signal to be ignored; installing a handler that
    // only calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        for sig in [libc::SIGTERM, libc::SIGINT] {
            libc::signal(sig, on_kill as *const () as libc::sighandler_t);
        }
    }
    yonder_proto::limits::grow_pipe(input.as_fd());
    yonder_proto::limits::grow_pipe(output.as_fd());
    if output.write_all(bulk::MAGIC).is_err() {
        return 1;
    }
    let req: pb::BulkRequest = match read_message(&mut *input) {
        Ok(r) => r,
        Err(e) => {
            let err = RemoteError::new(
                ErrorKind::InvalidArgument,
                format!("yonder server bulk: no valid request on stdin: {e}"),
            );
            eprintln!("{err}");
            let _ = write_message(&mut *output, &error_reply(&err));
            return 1;
        }
    };
    let result = match request_path(&req.path) {
        Err(e) => Err(Failure::Untold(e)),
        Ok(path) if req.write => receive(&mut input, &mut output, &path, &req),
        Ok(path) => send(&mut output, &path, req.offset),
    };
    match result {
        Ok(()) => 0,
        Err(Failure::Told) => 1,
        Err(Failure::Untold(err)) => {
            if write_message(&mut *output, &error_reply(&err)).is_err() {
                eprintln!("yonder server bulk: {err}");
            }
            1
        }
    }
}

/// The temp file of the write in progress, for [`on_kill`].
static TEMP: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// SIGTERM/SIGINT: remove the unfinished temp file, then exit.
extern "C" fn on_kill(_: libc::c_int) {
    if let Some(p) = TEMP.get() {
        // SAFETY: unlink and _exit are async-signal-safe; the string lives
        // in a static that is never dropped.
        unsafe { libc::unlink(p.as_ptr()) };
    }
    unsafe { libc::_exit(1) }
}

enum Failure {
    /// Not yet reported: the reply carries it.
    Untold(RemoteError),
    /// Reported already (or the data stream broke after the reply went out:
    /// the client sees a short transfer), and written to stderr.
    Told,
}

impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Self {
        Failure::Untold(e)
    }
}

/// Sends the file at `path`: its metadata, then its bytes from `offset`.
fn send(output: &mut File, path: &Path, offset: u64) -> Result<(), Failure> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path).map_err(|e| RemoteError::from_io(&e, path))?;
    let m = file
        .metadata()
        .map_err(|e| RemoteError::from_io(&e, path))?;
    if !m.is_file() {
        return Err(RemoteError::new(
            ErrorKind::InvalidArgument,
            "not a regular file (the bulk channel sends files only)",
        )
        .with_path(path)
        .into());
    }
    if offset > m.len() {
        return Err(RemoteError::new(
            ErrorKind::InvalidArgument,
            format!(
                "offset {offset} is past the end of the file ({} bytes)",
                m.len()
            ),
        )
        .with_path(path)
        .into());
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| RemoteError::from_io(&e, path))?;
    let reply = pb::BulkReply {
        error: None,
        metadata: Some(to_metadata(path, &m)),
    };
    write_message(output, &reply).map_err(|e| {
        eprintln!("yonder server bulk: sending {}: {e}", path.display());
        Failure::Told
    })?;
    bulk::move_bytes(file.as_fd(), output.as_fd(), m.len() - offset, |_| {}).map_err(|e| {
        // The reply promised m.len() bytes; stopping short is how the client
        // learns, and stderr (relayed by ssh) says why.
        eprintln!("yonder server bulk: reading {}: {e}", path.display());
        Failure::Told
    })?;
    output.flush().map_err(|_| Failure::Told)?;
    Ok(())
}

/// Receives `req.size` bytes into a temp file and renames it over `path`.
fn receive(
    input: &mut File,
    output: &mut File,
    path: &Path,
    req: &pb::BulkRequest,
) -> Result<(), Failure> {
    let mut prepared = PreparedWrite::new(path, req.mode, false, None)?;
    if let Ok(c) = std::ffi::CString::new(prepared.temp_path().as_os_str().as_encoded_bytes()) {
        let _ = TEMP.set(c);
    }
    let file = prepared.take_file();
    if let Err(e) = bulk::move_bytes(input.as_fd(), file.as_fd(), req.size, |_| {}) {
        // The temp file is removed when `prepared` drops: the destination
        // never changes.
        let err = if e.kind() == io::ErrorKind::UnexpectedEof {
            RemoteError::new(
                ErrorKind::Cancelled,
                format!("the upload was interrupted ({e}); the file was not changed"),
            )
            .with_path(path)
        } else {
            RemoteError::from_io(&e, path)
        };
        return Err(err.into());
    }
    // Like the HTTP/2 write of `fs put`: atomic, no fsync (as cp and rsync).
    let metadata = prepared.finish(file, path, true, None)?;
    let reply = pb::BulkReply {
        error: None,
        metadata: Some(metadata),
    };
    write_message(output, &reply).map_err(|e| {
        eprintln!(
            "yonder server bulk: {} written, but the reply failed: {e}",
            path.display()
        );
        Failure::Told
    })
}
