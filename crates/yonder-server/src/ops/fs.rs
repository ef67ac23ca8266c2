//! File operations: the `Fs` service.
//!
//! Relative paths are resolved against the daemon's working directory, which
//! is the user's home (the daemon changes there at start), as with `scp` and
//! `sftp`. Writes are atomic: new content goes to a temp file in the same
//! directory, which is renamed over the target only when the whole stream
//! arrived and the precondition still holds.

use super::{blocking, io_err, request_path};
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use yonder_proto::RemoteError;
use yonder_proto::limits::{DATA_CHUNK, DIR_BATCH, STREAM_QUEUE};
use yonder_proto::paths;
use yonder_proto::pb::{self, ErrorKind, FileType, fs_server::Fs};

use super::replay::{Replay, request_id};
use std::sync::Arc;

pub(crate) type RespStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// The file operations. Changes that carry a request id are applied at
/// most once per id ([`Replay`]): a client retrying after a dropped
/// connection never removes, moves or writes twice.
#[derive(Debug, Default, Clone)]
pub struct FsService {
    replay: Arc<Replay>,
}

fn file_type(ft: fs::FileType) -> FileType {
    if ft.is_symlink() {
        FileType::Symlink
    } else if ft.is_dir() {
        FileType::Directory
    } else if ft.is_file() {
        FileType::File
    } else {
        FileType::Other
    }
}

/// The precondition token of a file: changes whenever its content may have.
/// ctime moves on every write, even one that restores the old mtime.
pub fn version_of(m: &fs::Metadata) -> String {
    format!(
        "{:x}-{:x}-{:x}-{:x}.{:x}-{:x}.{:x}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Metadata for `path` as the protocol describes it (`m` from lstat, or stat
/// when following links).
pub fn to_metadata(path: &Path, m: &fs::Metadata) -> pb::Metadata {
    let ft = file_type(m.file_type());
    let (symlink_target, symlink_target_type) = if ft == FileType::Symlink {
        let target = fs::read_link(path).ok().map(|t| paths::to_wire(&t));
        let tt = fs::metadata(path)
            .map(|t| file_type(t.file_type()))
            .unwrap_or(FileType::Unspecified);
        (target, tt)
    } else {
        (None, FileType::Unspecified)
    };
    pb::Metadata {
        file_type: ft as i32,
        size: m.size(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        atime_ns: ns(m.atime(), m.atime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        inode: m.ino(),
        nlink: m.nlink(),
        version: version_of(m),
        symlink_target,
        symlink_target_type: symlink_target_type as i32,
    }
}

pub fn stat(path: &Path, follow: bool) -> Result<pb::Metadata, RemoteError> {
    let m = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    };
    Ok(to_metadata(path, &m.map_err(io_err(path))?))
}

/// A temp file beside `target` that is removed unless committed.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
    committed: bool,
}

impl TempFile {
    fn create(target: &Path, mode: u32) -> Result<Self, RemoteError> {
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = target.file_name().ok_or_else(|| {
            RemoteError::new(ErrorKind::InvalidArgument, "not a file name").with_path(target)
        })?;
        let mut last = None;
        for _ in 0..16 {
            let mut suffix = [0u8; 6];
            getrandom::fill(&mut suffix)
                .map_err(|e| RemoteError::new(ErrorKind::Internal, e.to_string()))?;
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".yonder-{}.tmp", hex::encode(suffix)));
            let path = dir.join(tmp_name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Self {
                        path,
                        file: Some(file),
                        committed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                // Report the error against the file the user named: the temp
                // name is our business, the directory's permissions are theirs.
                Err(e) => return Err(RemoteError::from_io(&e, target)),
            }
        }
        Err(RemoteError::from_io(&last.expect("loop ran"), target))
    }
}

impl TempFile {
    /// The temp file was renamed into place: nothing to clean up.
    fn keep(&mut self) {
        self.committed = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn check_precondition(path: &Path, if_version: Option<&str>) -> Result<(), RemoteError> {
    let Some(want) = if_version else {
        return Ok(());
    };
    match fs::metadata(path) {
        Ok(m) if want.is_empty() => Err(RemoteError::new(
            ErrorKind::Conflict,
            format!(
                "the file exists (version {}) but the write required that it does not",
                version_of(&m)
            ),
        )
        .with_path(path)),
        Ok(m) => {
            let have = version_of(&m);
            if have == want {
                Ok(())
            } else {
                Err(RemoteError::new(
                    ErrorKind::Conflict,
                    format!("the file changed since version {want} (it is now at {have}); it was not written"),
                )
                .with_path(path))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && want.is_empty() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RemoteError::new(
            ErrorKind::Conflict,
            format!("the file was removed since version {want}; it was not written"),
        )
        .with_path(path)),
        Err(e) => Err(RemoteError::from_io(&e, path)),
    }
}

/// Where a write to `path` lands: through a symlink to its target, so that
/// saving a linked file keeps the link.
fn write_destination(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// Renames `from` to `to`, failing with ALREADY_EXISTS instead of replacing
/// when `overwrite` is false (atomically on Linux with RENAME_NOREPLACE).
fn rename(from: &Path, to: &Path, overwrite: bool) -> Result<(), RemoteError> {
    let two = |e: std::io::Error| RemoteError::from_io(&e, from).with_other_path(to);
    if overwrite {
        return fs::rename(from, to).map_err(two);
    }
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        let f = CString::new(from.as_os_str().as_bytes()).map_err(|_| {
            RemoteError::new(ErrorKind::InvalidArgument, "path contains NUL").with_path(from)
        })?;
        let t = CString::new(to.as_os_str().as_bytes()).map_err(|_| {
            RemoteError::new(ErrorKind::InvalidArgument, "path contains NUL").with_path(to)
        })?;
        // SAFETY: both pointers are valid NUL-terminated strings for the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        // Some file systems (older NFS, overlay on old kernels) lack the flag.
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(two(e));
        }
    }
    if fs::symlink_metadata(to).is_ok() {
        return Err(
            RemoteError::new(ErrorKind::AlreadyExists, "the destination exists")
                .with_path(from)
                .with_other_path(to),
        );
    }
    fs::rename(from, to).map_err(two)
}

fn copy_tree(from: &Path, to: &Path, recursive: bool, overwrite: bool) -> Result<(), RemoteError> {
    let m = fs::symlink_metadata(from).map_err(io_err(from))?;
    let exists = fs::symlink_metadata(to).is_ok();
    let ft = m.file_type();
    if ft.is_dir() {
        if !recursive {
            return Err(RemoteError::new(
                ErrorKind::IsADirectory,
                "copying a directory needs recursive",
            )
            .with_path(from));
        }
        if to.starts_with(from) {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                "cannot copy a directory into itself",
            )
            .with_path(from)
            .with_other_path(to));
        }
        if exists && !overwrite {
            return Err(
                RemoteError::new(ErrorKind::AlreadyExists, "the destination exists").with_path(to),
            );
        }
        if !exists {
            fs::DirBuilder::new()
                .mode(m.mode() & 0o7777)
                .create(to)
                .map_err(io_err(to))?;
        }
        for entry in fs::read_dir(from).map_err(io_err(from))? {
            let entry = entry.map_err(io_err(from))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()), true, overwrite)?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err(to))?;
        return Ok(());
    }
    if exists && !overwrite {
        return Err(
            RemoteError::new(ErrorKind::AlreadyExists, "the destination exists").with_path(to),
        );
    }
    if ft.is_symlink() {
        let target = fs::read_link(from).map_err(io_err(from))?;
        if exists {
            fs::remove_file(to).map_err(io_err(to))?;
        }
        return std::os::unix::fs::symlink(target, to).map_err(io_err(to));
    }
    // Copy into a temp file and rename, so an interrupted copy never leaves a
    // half-written destination.
    let mut tmp = TempFile::create(to, 0o600)?;
    let mut src = File::open(from).map_err(io_err(from))?;
    let mut dst = tmp.file.take().expect("fresh temp file");
    std::io::copy(&mut src, &mut dst).map_err(io_err(to))?;
    dst.set_permissions(fs::Permissions::from_mode(m.mode() & 0o7777))
        .map_err(io_err(to))?;
    drop(dst);
    fs::rename(&tmp.path, to).map_err(io_err(to))?;
    tmp.keep();
    Ok(())
}

fn remove(path: &Path, recursive: bool) -> Result<(), RemoteError> {
    let m = fs::symlink_metadata(path).map_err(io_err(path))?;
    if m.is_dir() {
        if recursive {
            fs::remove_dir_all(path)
        } else {
            fs::remove_dir(path)
        }
        .map_err(io_err(path))
    } else {
        fs::remove_file(path).map_err(io_err(path))
    }
}

fn mkdir(path: &Path, parents: bool, mode: Option<u32>) -> Result<(), RemoteError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(parents).mode(mode.unwrap_or(0o777));
    match b.create(path) {
        Ok(()) => Ok(()),
        Err(e) => {
            // `mkdir -p` on an existing file must fail, which create_dir_all
            // reports as AlreadyExists; make the error say what is in the way.
            if parents && fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
                return Err(RemoteError::new(
                    ErrorKind::AlreadyExists,
                    "a file exists where the directory should be",
                )
                .with_path(path));
            }
            Err(RemoteError::from_io(&e, path))
        }
    }
}

/// Streams `items` produced by blocking work `f` through a bounded queue. When
/// the client goes away the send fails and `f` stops early.
fn stream_blocking<T, F>(f: F) -> RespStream<T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T, Status>>) + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    tokio::task::spawn_blocking(move || f(tx));
    Box::pin(ReceiverStream::new(rx))
}

fn list_dir(path: PathBuf, with_metadata: bool, tx: mpsc::Sender<Result<pb::DirEntries, Status>>) {
    let rd = match fs::read_dir(&path) {
        Ok(rd) => rd,
        Err(e) => {
            let _ = tx.blocking_send(Err(RemoteError::from_io(&e, &path).to_status()));
            return;
        }
    };
    let mut batch = Vec::with_capacity(DIR_BATCH);
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let _ = tx.blocking_send(Err(RemoteError::from_io(&e, &path).to_status()));
                return;
            }
        };
        let full = entry.path();
        let ft = entry
            .file_type()
            .map(file_type)
            .unwrap_or(FileType::Unspecified);
        // An entry removed between readdir and lstat is simply skipped.
        let metadata = if with_metadata {
            match fs::symlink_metadata(&full) {
                Ok(m) => Some(to_metadata(&full, &m)),
                Err(_) => continue,
            }
        } else {
            None
        };
        batch.push(pb::DirEntry {
            name: Bytes::copy_from_slice(entry.file_name().as_bytes()),
            file_type: ft as i32,
            metadata,
        });
        if batch.len() == DIR_BATCH {
            let full_batch = std::mem::replace(&mut batch, Vec::with_capacity(DIR_BATCH));
            if tx
                .blocking_send(Ok(pb::DirEntries {
                    entries: full_batch,
                }))
                .is_err()
            {
                return;
            }
        }
    }
    // Always send the last batch, even empty, so an empty directory still
    // yields one message and the client can tell "empty" from "no reply".
    let _ = tx.blocking_send(Ok(pb::DirEntries { entries: batch }));
}

fn read_file(
    path: PathBuf,
    offset: u64,
    length: Option<u64>,
    tx: mpsc::Sender<Result<pb::DataChunk, Status>>,
) {
    let fail = |e: std::io::Error| {
        let _ = tx.blocking_send(Err(RemoteError::from_io(&e, &path).to_status()));
    };
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    match f.metadata() {
        Ok(m) if m.is_dir() => return fail(std::io::Error::from_raw_os_error(libc::EISDIR)),
        Err(e) => return fail(e),
        _ => {}
    }
    if offset > 0
        && let Err(e) = f.seek(SeekFrom::Start(offset))
    {
        return fail(e);
    }
    let mut left = length.unwrap_or(u64::MAX);
    while left > 0 {
        let want = DATA_CHUNK.min(usize::try_from(left).unwrap_or(usize::MAX));
        // Read into spare capacity (read_to_end does not zero it, as a
        // zeroed BytesMut of 256 KiB per chunk did), up to one chunk.
        let mut buf = Vec::with_capacity(want);
        let n = match (&mut f).take(want as u64).read_to_end(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => return fail(e),
        };
        left -= n as u64;
        if tx
            .blocking_send(Ok(pb::DataChunk { data: buf.into() }))
            .is_err()
        {
            return;
        }
    }
}

/// Receives a write stream into a temp file and renames it into place.
async fn write(mut input: Streaming<pb::WriteMessage>) -> Result<pb::WriteReply, RemoteError> {
    let first = input
        .message()
        .await
        .map_err(|s| RemoteError::from_status(&s))?
        .ok_or_else(|| {
            RemoteError::new(
                ErrorKind::InvalidArgument,
                "write stream ended before its start message",
            )
        })?;
    let Some(pb::write_message::Message::Start(start)) = first.message else {
        return Err(RemoteError::new(
            ErrorKind::InvalidArgument,
            "a write must begin with its start message",
        ));
    };
    let path = request_path(&start.path)?;
    let if_version = start.if_version.clone();
    let skip_fsync = start.skip_fsync;
    let mut prepared = {
        let path = path.clone();
        let if_version = if_version.clone();
        blocking(move || {
            PreparedWrite::new(
                &path,
                start.mode,
                start.create_parents,
                if_version.as_deref(),
            )
        })
        .await?
    };
    // One blocking thread writes the whole file, fed the received chunks
    // as they are (`Bytes`, no copy). `tokio::fs::File` copied every chunk
    // into its own buffer and hopped to the blocking pool per chunk: 11% of
    // the daemon's CPU in a profile of a 1 GiB `fs put` over ssh.
    let (chunks, mut queue) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let mut file = prepared.take_file();
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        while let Some(d) = queue.blocking_recv() {
            file.write_all(&d)?;
        }
        Ok::<_, std::io::Error>(file)
    });
    let mut written = 0u64;
    loop {
        let msg = input.message().await.map_err(|s| {
            // The client went away or broke the stream: the temp file is
            // dropped and the destination never changes.
            RemoteError::new(
                ErrorKind::Cancelled,
                format!(
                    "the upload was interrupted ({}); the file was not changed",
                    s.message()
                ),
            )
            .with_path(&path)
        })?;
        let Some(msg) = msg else { break };
        match msg.message {
            Some(pb::write_message::Message::Data(d)) => {
                written += d.len() as u64;
                if chunks.send(d).await.is_err() {
                    // The writer stopped on an error: it is reported below.
                    break;
                }
            }
            _ => {
                return Err(RemoteError::new(
                    ErrorKind::InvalidArgument,
                    "unexpected message in a write stream",
                )
                .with_path(&path));
            }
        }
    }
    drop(chunks);
    let file = writer
        .await
        .map_err(|e| RemoteError::new(ErrorKind::Internal, format!("writing the file: {e}")))?
        .map_err(io_err(&path))?;
    blocking(move || {
        let metadata = prepared.finish(file, &path, skip_fsync, if_version.as_deref())?;
        Ok(pb::WriteReply {
            metadata: Some(metadata),
            bytes_written: written,
        })
    })
    .await
}

/// A write in progress: the temp file next to its destination, and what the
/// destination was (its mode and owner are kept).
pub(crate) struct PreparedWrite {
    dest: PathBuf,
    tmp: TempFile,
    existing: Option<(u32, u32, u32)>,
}

impl PreparedWrite {
    /// Checks the precondition, resolves a symlink to its target, creates
    /// the parents when asked, refuses a directory, and creates the temp
    /// file (a new file gets `mode` through the umask, like open(2)).
    pub(crate) fn new(
        path: &Path,
        mode: Option<u32>,
        create_parents: bool,
        if_version: Option<&str>,
    ) -> Result<Self, RemoteError> {
        check_precondition(path, if_version)?;
        let dest = write_destination(path);
        if create_parents && let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty())
        {
            mkdir(parent, true, None)?;
        }
        let existing = match fs::metadata(&dest) {
            Ok(m) if m.is_dir() => {
                return Err(RemoteError::new(
                    ErrorKind::IsADirectory,
                    "cannot write over a directory",
                )
                .with_path(path));
            }
            Ok(m) => Some((m.mode() & 0o7777, m.uid(), m.gid())),
            Err(_) => None,
        };
        let tmp = TempFile::create(&dest, mode.unwrap_or(0o666))?;
        Ok(Self {
            dest,
            tmp,
            existing,
        })
    }

    /// Where the content goes until [`PreparedWrite::finish`].
    pub(crate) fn temp_path(&self) -> &Path {
        &self.tmp.path
    }

    /// The temp file, to write the content into.
    pub(crate) fn take_file(&mut self) -> File {
        self.tmp.file.take().expect("fresh temp file")
    }

    /// Gives the written `file` the old file's mode and owner, syncs it
    /// unless `skip_fsync`, checks the precondition again and renames it
    /// into place. Dropped without this, the temp file is removed.
    pub(crate) fn finish(
        mut self,
        file: File,
        path: &Path,
        skip_fsync: bool,
        if_version: Option<&str>,
    ) -> Result<pb::Metadata, RemoteError> {
        if let Some((mode, uid, gid)) = self.existing {
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_err(path))?;
            // Keep the owner when we may (we own the file, or are root); a
            // group we are not in is silently not kept, like editors do.
            let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
        }
        if !skip_fsync {
            file.sync_all().map_err(io_err(path))?;
        }
        drop(file);
        // Check again just before the rename: the window left is between this
        // check and the rename, microseconds instead of the whole upload.
        check_precondition(path, if_version)?;
        fs::rename(&self.tmp.path, &self.dest).map_err(io_err(path))?;
        self.tmp.keep();
        let m = fs::metadata(&self.dest).map_err(io_err(path))?;
        Ok(to_metadata(&self.dest, &m))
    }
}

/// Received chunks a write may have queued for its writing thread: the
/// disk stays busy while the next arrive, and a slower disk holds back the
/// sender (through the HTTP/2 window) at a bounded cost ([`DATA_CHUNK`]
/// each).
const WRITE_QUEUE: usize = 8;

#[tonic::async_trait]
impl Fs for FsService {
    async fn stat(&self, req: Request<pb::StatRequest>) -> Result<Response<pb::Metadata>, Status> {
        // Inline, not on the blocking pool: stat is one syscall (about 1 µs),
        // and the hand-off to a blocking thread cost more than half of the
        // round trip (benchmarked: p50 210 µs -> 158 µs). A hung network
        // mount would block one async worker; the other keeps serving.
        let r = req.into_inner();
        let path = request_path(&r.path)?;
        Ok(Response::new(stat(&path, r.follow_symlinks)?))
    }

    type ListDirStream = RespStream<pb::DirEntries>;
    async fn list_dir(
        &self,
        req: Request<pb::ListDirRequest>,
    ) -> Result<Response<Self::ListDirStream>, Status> {
        let r = req.into_inner();
        let path = request_path(&r.path)?;
        Ok(Response::new(stream_blocking(move |tx| {
            list_dir(path, r.with_metadata, tx)
        })))
    }

    type ReadStream = RespStream<pb::DataChunk>;
    async fn read(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let r = req.into_inner();
        let path = request_path(&r.path)?;
        Ok(Response::new(stream_blocking(move |tx| {
            read_file(path, r.offset, r.length, tx)
        })))
    }

    async fn write(
        &self,
        req: Request<Streaming<pb::WriteMessage>>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let id = request_id(&req)?;
        let input = req.into_inner();
        Ok(Response::new(self.replay.run(id, write(input)).await?))
    }

    async fn mkdir(&self, req: Request<pb::MkdirRequest>) -> Result<Response<pb::Empty>, Status> {
        let id = request_id(&req)?;
        let r = req.into_inner();
        let path = request_path(&r.path)?;
        let change = blocking(move || mkdir(&path, r.parents, r.mode));
        self.replay.run(id, change).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn remove(&self, req: Request<pb::RemoveRequest>) -> Result<Response<pb::Empty>, Status> {
        let id = request_id(&req)?;
        let r = req.into_inner();
        let path = request_path(&r.path)?;
        let change = blocking(move || remove(&path, r.recursive));
        self.replay.run(id, change).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn rename(&self, req: Request<pb::RenameRequest>) -> Result<Response<pb::Empty>, Status> {
        let id = request_id(&req)?;
        let r = req.into_inner();
        let (from, to) = (request_path(&r.from)?, request_path(&r.to)?);
        let change = blocking(move || rename(&from, &to, r.overwrite));
        self.replay.run(id, change).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn copy(&self, req: Request<pb::CopyRequest>) -> Result<Response<pb::Empty>, Status> {
        let id = request_id(&req)?;
        let r = req.into_inner();
        let (from, to) = (request_path(&r.from)?, request_path(&r.to)?);
        let change = blocking(move || copy_tree(&from, &to, r.recursive, r.overwrite));
        self.replay.run(id, change).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn chmod(&self, req: Request<pb::ChmodRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        let path = request_path(&r.path)?;
        if r.mode > 0o7777 {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                format!("mode {:o} is not a permission mode", r.mode),
            )
            .with_path(&path)
            .into());
        }
        blocking(move || {
            fs::set_permissions(&path, fs::Permissions::from_mode(r.mode)).map_err(io_err(&path))
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn symlink(
        &self,
        req: Request<pb::SymlinkRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let id = request_id(&req)?;
        let r = req.into_inner();
        let (target, link) = (request_path(&r.target)?, request_path(&r.link)?);
        let change =
            blocking(move || std::os::unix::fs::symlink(&target, &link).map_err(io_err(&link)));
        self.replay.run(id, change).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn read_link(
        &self,
        req: Request<pb::PathRequest>,
    ) -> Result<Response<pb::PathReply>, Status> {
        let path = request_path(&req.into_inner().path)?;
        let target = blocking(move || fs::read_link(&path).map_err(io_err(&path))).await?;
        Ok(Response::new(pb::PathReply {
            path: paths::to_wire(&target),
        }))
    }

    async fn put_tree(
        &self,
        req: Request<Streaming<pb::PutTreeMessage>>,
    ) -> Result<Response<pb::TreeSummary>, Status> {
        Ok(Response::new(
            super::tree::put_tree(req.into_inner()).await?,
        ))
    }

    type GetTreeStream = RespStream<pb::TreeBatch>;
    async fn get_tree(
        &self,
        req: Request<pb::GetTreeRequest>,
    ) -> Result<Response<Self::GetTreeStream>, Status> {
        Ok(Response::new(
            super::tree::get_tree(&req.into_inner().path).await?,
        ))
    }

    async fn canonicalize(
        &self,
        req: Request<pb::PathRequest>,
    ) -> Result<Response<pb::PathReply>, Status> {
        let path = request_path(&req.into_inner().path)?;
        let full = blocking(move || fs::canonicalize(&path).map_err(io_err(&path))).await?;
        Ok(Response::new(pb::PathReply {
            path: paths::to_wire(&full),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_without_overwrite_refuses_an_existing_destination() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::write(&a, "a").unwrap();
        fs::write(&b, "b").unwrap();
        let e = rename(&a, &b, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&b).unwrap(), "b");
        rename(&a, &b, true).unwrap();
        assert_eq!(fs::read_to_string(&b).unwrap(), "a");
    }

    #[test]
    fn precondition_follows_content_changes() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        fs::write(&p, "one").unwrap();
        let v = version_of(&fs::metadata(&p).unwrap());
        check_precondition(&p, Some(&v)).unwrap();
        fs::write(&p, "two").unwrap();
        assert_eq!(
            check_precondition(&p, Some(&v)).unwrap_err().kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            check_precondition(&p, Some("")).unwrap_err().kind,
            ErrorKind::Conflict
        );
        check_precondition(&t.path().join("new"), Some("")).unwrap();
    }

    #[test]
    fn copying_a_directory_into_itself_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        fs::create_dir(&d).unwrap();
        let e = copy_tree(&d, &d.join("inner"), true, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
    }
}
