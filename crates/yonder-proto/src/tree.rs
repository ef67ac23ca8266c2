//! Whole-tree transfers (`Fs.PutTree`, `Fs.GetTree`): both halves of the
//! format, shared by client and server.
//!
//! [`send_tree`] walks a local directory and emits [`pb::TreeBatch`]es: small
//! files go whole inside one entry, big ones as a header and data chunks, so
//! 10,000 files of 1 KiB travel in about forty messages instead of 10,000
//! calls. [`TreeWriter`] applies those entries under a destination. `PutTree`
//! sends on the client and writes on the server; `GetTree` the other way
//! round, so both directions keep the same guarantees:
//!
//! - every path from the wire is checked ([`tree_path`]: relative, no `..`,
//!   no empty or `.` component, no NUL) and no symlink is followed in a
//!   path's directories, so hostile input cannot write outside the root;
//! - every file is written to a temp name beside its final one and renamed
//!   into place after its last byte: an interrupted transfer leaves each file
//!   complete, or as it was;
//! - modes and modification times are kept (directories get theirs at the
//!   end, so a read-only directory can still be filled);
//! - an error about one entry is recorded (the first [`MAX_TREE_ERRORS`]
//!   listed, the rest counted) and the rest carries on; only a broken stream
//!   or a hostile path stops the transfer;
//! - memory is bounded: one batch at a time on the sending side; the writer
//!   keeps one open file and the list of directories (for their final modes),
//!   never file contents.
//!
//! This is blocking `std::fs` code: run it on a blocking thread.

use crate::RemoteError;
use crate::limits::{DATA_CHUNK, MAX_TREE_ERRORS, TREE_BATCH_BYTES, TREE_BATCH_ENTRIES};
use crate::paths::{from_wire, to_wire};
use crate::pb::{self, ErrorKind, tree_entry::Entry};
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest part of a file name kept in its temp name, so that the temp name
/// (with its dot, tag and suffix) stays under NAME_MAX (255 bytes).
const TMP_NAME_KEEP: usize = 200;

/// Checks a tree-relative path from the wire: the empty path (the root) or
/// '/'-separated components, none empty, `.` or `..`, no NUL, not absolute.
pub fn tree_path(bytes: &[u8]) -> Result<PathBuf, RemoteError> {
    let refuse = |why: &str| {
        RemoteError::new(
            ErrorKind::InvalidArgument,
            format!(
                "refused a tree entry named {:?}: {why}; nothing is written outside the destination",
                String::from_utf8_lossy(bytes)
            ),
        )
    };
    if bytes.is_empty() {
        return Ok(PathBuf::new());
    }
    if bytes.contains(&0) {
        return Err(refuse("it contains a NUL byte"));
    }
    if bytes[0] == b'/' {
        return Err(refuse("it is absolute"));
    }
    for c in bytes.split(|b| *b == b'/') {
        if c.is_empty() || c == b"." || c == b".." {
            return Err(refuse("it has an empty, `.` or `..` component"));
        }
    }
    Ok(from_wire(bytes))
}

fn mtime_ns(m: &fs::Metadata) -> i64 {
    m.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec())
}

fn system_time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

// ------------------------------------------------------------------ sending

/// Collects entries into batches and hands full ones to `send`.
struct Batcher<S> {
    entries: Vec<pb::TreeEntry>,
    bytes: usize,
    send: S,
    gone: bool,
}

impl<S: FnMut(pb::TreeBatch) -> bool> Batcher<S> {
    /// Adds an entry; false once the receiver is gone (stop walking).
    fn push(&mut self, entry: Entry, size: usize) -> bool {
        self.entries.push(pb::TreeEntry { entry: Some(entry) });
        // Paths and per-entry framing are small; count a nominal 64 bytes.
        self.bytes += size + 64;
        if self.bytes >= TREE_BATCH_BYTES || self.entries.len() >= TREE_BATCH_ENTRIES {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        if !self.entries.is_empty() && !self.gone {
            let entries = std::mem::take(&mut self.entries);
            self.bytes = 0;
            self.gone = !(self.send)(pb::TreeBatch { entries });
        }
        !self.gone
    }

    fn error(&mut self, e: RemoteError) -> bool {
        self.push(Entry::Error(e.to_detail()), 0)
    }
}

/// Walks the directory `root` (a symlink there is followed: the user named
/// it; links inside are sent as links) and passes its entries, in batches, to
/// `send`, which returns false when the receiver has gone (the walk stops).
/// `progress` hears about every file byte read. Unreadable entries become
/// error entries; only an unreadable root fails the call.
pub fn send_tree(
    root: &Path,
    send: impl FnMut(pb::TreeBatch) -> bool,
    mut progress: impl FnMut(u64),
) -> Result<(), RemoteError> {
    let m = fs::metadata(root).map_err(|e| RemoteError::from_io(&e, root))?;
    if !m.is_dir() {
        return Err(RemoteError::new(ErrorKind::NotADirectory, "not a directory").with_path(root));
    }
    let top = fs::read_dir(root).map_err(|e| RemoteError::from_io(&e, root))?;
    let mut b = Batcher {
        entries: Vec::new(),
        bytes: 0,
        send,
        gone: false,
    };
    b.push(
        Entry::Dir(pb::TreeDir {
            path: Bytes::new(),
            mode: m.mode() & 0o7777,
            mtime_ns: mtime_ns(&m),
        }),
        0,
    );
    // Depth first with an explicit stack: one open directory per level.
    let mut stack = vec![(top, PathBuf::new())];
    while let Some((rd, rel)) = stack.last_mut() {
        let next = rd.next();
        let rel = rel.clone();
        let de = match next {
            None => {
                stack.pop();
                continue;
            }
            Some(Err(e)) => {
                stack.pop();
                if !b.error(RemoteError::from_io(&e, root.join(&rel))) {
                    return Ok(());
                }
                continue;
            }
            Some(Ok(de)) => de,
        };
        let r = rel.join(de.file_name());
        let full = root.join(&r);
        let m = match fs::symlink_metadata(&full) {
            Ok(m) => m,
            // Removed since the listing: nothing to send.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                if !b.error(RemoteError::from_io(&e, &full)) {
                    return Ok(());
                }
                continue;
            }
        };
        let ft = m.file_type();
        let more = if ft.is_dir() {
            let more = b.push(
                Entry::Dir(pb::TreeDir {
                    path: to_wire(&r),
                    mode: m.mode() & 0o7777,
                    mtime_ns: mtime_ns(&m),
                }),
                0,
            );
            match fs::read_dir(&full) {
                Ok(rd) => {
                    stack.push((rd, r));
                    more
                }
                Err(e) => more && b.error(RemoteError::from_io(&e, &full)),
            }
        } else if ft.is_symlink() {
            match fs::read_link(&full) {
                Ok(t) => b.push(
                    Entry::Symlink(pb::TreeSymlink {
                        path: to_wire(&r),
                        target: to_wire(&t),
                    }),
                    t.as_os_str().len(),
                ),
                Err(e) => b.error(RemoteError::from_io(&e, &full)),
            }
        } else if ft.is_file() {
            send_file(&mut b, &full, &r, &m, &mut progress)
        } else {
            b.error(
                RemoteError::new(
                    ErrorKind::Unsupported,
                    "skipped: not a file, directory or symlink",
                )
                .with_path(&full),
            )
        };
        if !more {
            return Ok(());
        }
    }
    b.flush();
    Ok(())
}

/// One regular file: whole in one entry when it fits a chunk, else a header
/// and data entries. Reads to the end, whatever the size said.
fn send_file<S: FnMut(pb::TreeBatch) -> bool>(
    b: &mut Batcher<S>,
    full: &Path,
    rel: &Path,
    m: &fs::Metadata,
    progress: &mut impl FnMut(u64),
) -> bool {
    let mut f = match File::open(full) {
        Ok(f) => f,
        Err(e) => return b.error(RemoteError::from_io(&e, full)),
    };
    let mut first = true;
    // One spare byte so that a file of exactly its size is read in one go
    // and the next read sees the end.
    let mut cap = usize::try_from(m.size())
        .unwrap_or(DATA_CHUNK)
        .saturating_add(1)
        .min(DATA_CHUNK);
    loop {
        let mut buf = Vec::with_capacity(cap);
        cap = DATA_CHUNK;
        if let Err(e) = (&mut f).take(DATA_CHUNK as u64).read_to_end(&mut buf) {
            let more = first
                || b.push(
                    Entry::Data(pb::TreeData {
                        data: Bytes::new(),
                        eof: true,
                        abort: true,
                    }),
                    0,
                );
            return more && b.error(RemoteError::from_io(&e, full));
        }
        // `take` stops at the chunk size, so a short read is the end.
        let eof = buf.len() < DATA_CHUNK;
        let n = buf.len();
        progress(n as u64);
        let entry = if first {
            Entry::File(pb::TreeFile {
                path: to_wire(rel),
                mode: m.mode() & 0o7777,
                mtime_ns: mtime_ns(m),
                data: buf.into(),
                eof,
            })
        } else {
            Entry::Data(pb::TreeData {
                data: buf.into(),
                eof,
                abort: false,
            })
        };
        if !b.push(entry, n) {
            return false;
        }
        if eof {
            return true;
        }
        first = false;
    }
}

// ------------------------------------------------------------------ writing

/// A file being received: its temp file, removed unless renamed into place.
struct Incoming {
    dest: PathBuf,
    tmp: PathBuf,
    /// None when creating the temp file or writing failed (the error is
    /// recorded; the rest of the file's data is skipped).
    file: Option<File>,
    mode: u32,
    mtime_ns: i64,
    bytes: u64,
    committed: bool,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.committed && !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// An existing directory the tree writes into gets the owner's access (a
/// read-only one from an earlier copy, or from a first pass cut short);
/// [`TreeWriter::finish`] then sets the mode the tree gives it.
fn writable_until_finish(dir: &Path) {
    if let Ok(m) = fs::symlink_metadata(dir)
        && m.is_dir()
        && m.mode() & 0o700 != 0o700
    {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(m.mode() & 0o7777 | 0o700));
    }
}

/// What a writer thread is fed.
#[derive(Debug)]
pub enum Feed {
    Batch(pb::TreeBatch),
    /// The sender starts the tree over (its stream broke and was asked for
    /// again): see [`TreeWriter::start_over`].
    Again,
}

/// A [`TreeWriter`] on a blocking thread, fed through a bounded queue: send
/// batches into the returned sender, drop it, then await the handle for the
/// summary. A fatal batch (a hostile path, an unusable root) stops the
/// writer at once, keeping what is complete; the sender then fails, and
/// the handle says why.
pub fn spawn_writer(
    root: PathBuf,
    progress: impl FnMut(u64) + Send + 'static,
) -> (
    tokio::sync::mpsc::Sender<Feed>,
    tokio::task::JoinHandle<Result<pb::TreeSummary, RemoteError>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Feed>(crate::limits::STREAM_QUEUE);
    let writer = tokio::task::spawn_blocking(move || {
        let mut w = TreeWriter::new(root, progress);
        while let Some(feed) = rx.blocking_recv() {
            let batch = match feed {
                Feed::Batch(b) => b,
                Feed::Again => {
                    w.start_over();
                    continue;
                }
            };
            if let Err(e) = w.apply_batch(batch) {
                drop(rx);
                let _ = w.finish();
                return Err(e);
            }
        }
        Ok(w.finish())
    });
    (tx, writer)
}

/// Applies tree entries under a destination directory (see the module docs).
pub struct TreeWriter {
    root: PathBuf,
    /// Every directory made or found (relative, mode, mtime), in arrival
    /// order; their modes and times are set deepest first by `finish`. Grows
    /// with the number of directories, never with files.
    dirs: Vec<(PathBuf, u32, i64)>,
    current: Option<Incoming>,
    /// The last parent directory (relative) checked to be a real directory.
    checked_parent: Option<PathBuf>,
    summary: pb::TreeSummary,
    /// Makes this transfer's temp names unique: pid and start time.
    tag: String,
    counter: u64,
    progress: Box<dyn FnMut(u64) + Send>,
}

impl TreeWriter {
    /// A writer into `root`, which the first entry (the root directory)
    /// creates if missing. `progress` hears about every byte written.
    pub fn new(root: impl Into<PathBuf>, progress: impl FnMut(u64) + Send + 'static) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Self {
            root: root.into(),
            dirs: Vec::new(),
            current: None,
            checked_parent: None,
            summary: pb::TreeSummary::default(),
            tag: format!("{:x}{:x}", std::process::id(), nanos),
            counter: 0,
            progress: Box::new(progress),
        }
    }

    /// Forgets the transfer so far, for a sender that starts the whole tree
    /// again: a file still open is dropped (its temp file removed, its
    /// final name untouched), the counts and errors start from zero. What
    /// is complete stays; directories keep the owner's access (their modes
    /// are set once, by [`Self::finish`]) so the second pass can write.
    pub fn start_over(&mut self) {
        self.current = None;
        self.dirs.clear();
        self.checked_parent = None;
        self.summary = pb::TreeSummary::default();
    }

    /// Applies every entry of a batch. An `Err` is fatal (a hostile path, a
    /// broken entry sequence, an unusable root): stop the transfer.
    pub fn apply_batch(&mut self, batch: pb::TreeBatch) -> Result<(), RemoteError> {
        for e in batch.entries {
            self.apply(e)?;
        }
        Ok(())
    }

    /// Applies one entry; `Err` is fatal, as for [`Self::apply_batch`].
    pub fn apply(&mut self, entry: pb::TreeEntry) -> Result<(), RemoteError> {
        let Some(entry) = entry.entry else {
            return Err(self.broken("an empty tree entry"));
        };
        if self.current.is_some() && !matches!(entry, Entry::Data(_)) {
            return Err(self.broken("a new entry before the end of the last file"));
        }
        match entry {
            Entry::Dir(d) => self.dir(d),
            Entry::File(f) => self.file(f),
            Entry::Data(d) => self.data(d),
            Entry::Symlink(s) => self.symlink(s),
            Entry::Error(e) => {
                self.record(RemoteError::from_detail(e));
                Ok(())
            }
        }
    }

    /// Ends the transfer: a file still open is dropped (its final name stays
    /// as it was), directories get their modes and times. Call it on an
    /// interrupted transfer too, then report the interruption.
    pub fn finish(mut self) -> pb::TreeSummary {
        if let Some(inc) = self.current.take() {
            let e = RemoteError::new(
                ErrorKind::Cancelled,
                "the transfer ended before this file's last byte; it was not written",
            )
            .with_path(&inc.dest);
            self.record(e);
        }
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, mode, mtime) in dirs.iter().rev() {
            let path = self.root.join(rel);
            let mut o = OpenOptions::new();
            o.read(true).custom_flags(libc::O_DIRECTORY);
            // The root may be a symlink the user chose; nothing below it is
            // followed.
            if !rel.as_os_str().is_empty() {
                o.custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW);
            }
            let r = o.open(&path).and_then(|d| {
                d.set_permissions(fs::Permissions::from_mode(*mode))?;
                d.set_modified(system_time(*mtime))
            });
            if let Err(e) = r {
                self.record(RemoteError::from_io(&e, &path));
            }
        }
        self.summary
    }

    fn broken(&self, what: &str) -> RemoteError {
        RemoteError::new(
            ErrorKind::InvalidArgument,
            format!("broken tree stream: {what}"),
        )
        .with_path(&self.root)
    }

    fn record(&mut self, e: RemoteError) {
        if self.summary.errors.len() < MAX_TREE_ERRORS {
            self.summary.errors.push(e.to_detail());
        } else {
            self.summary.more_errors += 1;
        }
    }

    /// The absolute parent of `rel`, after checking that every directory
    /// between the root and it is a real directory (not a symlink).
    fn parent(&mut self, rel: &Path) -> Result<PathBuf, RemoteError> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if self.checked_parent.as_deref() != Some(parent) {
            let mut cur = self.root.clone();
            for c in parent.components() {
                cur.push(c);
                match fs::symlink_metadata(&cur) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(RemoteError::new(
                            ErrorKind::NotADirectory,
                            "not a directory (a file or symlink is in the way; nothing is written through it)",
                        )
                        .with_path(&cur));
                    }
                    Err(e) => return Err(RemoteError::from_io(&e, &cur)),
                }
            }
            self.checked_parent = Some(parent.to_path_buf());
        }
        Ok(self.root.join(parent))
    }

    fn nonempty(&self, bytes: &[u8]) -> Result<PathBuf, RemoteError> {
        let rel = tree_path(bytes)?;
        if rel.as_os_str().is_empty() {
            return Err(self.broken("only a directory may be the root (empty path)"));
        }
        Ok(rel)
    }

    fn dir(&mut self, d: pb::TreeDir) -> Result<(), RemoteError> {
        let rel = tree_path(&d.path)?;
        if rel.as_os_str().is_empty() {
            // The root: its parent must exist; failing here fails everything.
            match fs::DirBuilder::new().mode(0o700).create(&self.root) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !self.root.is_dir() {
                        return Err(RemoteError::new(
                            ErrorKind::AlreadyExists,
                            "a file is where the directory should be",
                        )
                        .with_path(&self.root));
                    }
                    writable_until_finish(&self.root);
                }
                Err(e) => return Err(RemoteError::from_io(&e, &self.root)),
            }
            self.dirs.push((rel, d.mode & 0o7777, d.mtime_ns));
            self.summary.dirs += 1;
            return Ok(());
        }
        let path = match self.parent(&rel) {
            Ok(p) => p.join(rel.file_name().expect("checked path has a name")),
            Err(e) => {
                self.record(e);
                return Ok(());
            }
        };
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    self.record(
                        RemoteError::new(
                            ErrorKind::AlreadyExists,
                            "a file or symlink is where the directory should be",
                        )
                        .with_path(&path),
                    );
                    return Ok(());
                }
                writable_until_finish(&path);
            }
            Err(e) => {
                self.record(RemoteError::from_io(&e, &path));
                return Ok(());
            }
        }
        self.dirs.push((rel, d.mode & 0o7777, d.mtime_ns));
        self.summary.dirs += 1;
        Ok(())
    }

    /// A fresh temp file beside `dest` (never following a link there).
    fn temp_for(&mut self, dest: &Path) -> std::io::Result<(PathBuf, File)> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let name = dest.file_name().unwrap_or_default().as_bytes();
        let keep = &name[..name.len().min(TMP_NAME_KEEP)];
        let mut last = None;
        for _ in 0..16 {
            self.counter += 1;
            let mut tmp_name = b".".to_vec();
            tmp_name.extend_from_slice(keep);
            tmp_name
                .extend_from_slice(format!(".yonder-{}-{}.tmp", self.tag, self.counter).as_bytes());
            let tmp = dir.join(std::ffi::OsStr::from_bytes(&tmp_name));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
            {
                Ok(f) => return Ok((tmp, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("loop ran"))
    }

    fn file(&mut self, f: pb::TreeFile) -> Result<(), RemoteError> {
        let rel = self.nonempty(&f.path)?;
        let mut inc = Incoming {
            dest: self.root.join(&rel),
            tmp: PathBuf::new(),
            file: None,
            mode: f.mode & 0o7777,
            mtime_ns: f.mtime_ns,
            bytes: 0,
            committed: false,
        };
        match self.parent(&rel) {
            Ok(_) => match self.temp_for(&inc.dest) {
                Ok((tmp, file)) => {
                    inc.tmp = tmp;
                    inc.file = Some(file);
                }
                // Name the file the user will look for, not our temp name.
                Err(e) => self.record(RemoteError::from_io(&e, &inc.dest)),
            },
            Err(e) => self.record(e),
        }
        self.current = Some(inc);
        self.data(pb::TreeData {
            data: f.data,
            eof: f.eof,
            abort: false,
        })
    }

    fn data(&mut self, d: pb::TreeData) -> Result<(), RemoteError> {
        let Some(inc) = self.current.as_mut() else {
            return Err(self.broken("file data without a file"));
        };
        if d.abort {
            // The sender could not read the rest (it sends its own error).
            self.current = None;
            return Ok(());
        }
        if let Some(file) = inc.file.as_mut() {
            if let Err(e) = file.write_all(&d.data) {
                let e = RemoteError::from_io(&e, &inc.dest);
                inc.file = None;
                self.record(e);
            } else {
                inc.bytes += d.data.len() as u64;
                (self.progress)(d.data.len() as u64);
            }
        }
        if d.eof {
            let inc = self.current.take().expect("checked above");
            self.commit(inc);
        }
        Ok(())
    }

    fn commit(&mut self, mut inc: Incoming) {
        let Some(file) = inc.file.take() else {
            return; // its error is recorded
        };
        let r = file
            .set_permissions(fs::Permissions::from_mode(inc.mode))
            .and_then(|()| file.set_modified(system_time(inc.mtime_ns)));
        drop(file);
        // No fsync, like cp and rsync: the rename keeps each file whole for
        // readers and across a crash of any process.
        match r.and_then(|()| fs::rename(&inc.tmp, &inc.dest)) {
            Ok(()) => {
                inc.committed = true;
                self.summary.files += 1;
                self.summary.bytes += inc.bytes;
            }
            Err(e) => {
                let e = if fs::symlink_metadata(&inc.dest).is_ok_and(|m| m.is_dir()) {
                    RemoteError::new(ErrorKind::IsADirectory, "a directory is in the way")
                        .with_path(&inc.dest)
                } else {
                    RemoteError::from_io(&e, &inc.dest)
                };
                self.record(e);
            }
        }
    }

    fn symlink(&mut self, s: pb::TreeSymlink) -> Result<(), RemoteError> {
        let rel = self.nonempty(&s.path)?;
        let target = from_wire(&s.target);
        let dest = match self.parent(&rel) {
            Ok(p) => p.join(rel.file_name().expect("checked path has a name")),
            Err(e) => {
                self.record(e);
                return Ok(());
            }
        };
        // A link replacing a directory we checked must not be walked later.
        if self
            .checked_parent
            .as_deref()
            .is_some_and(|c| c.starts_with(&rel))
        {
            self.checked_parent = None;
        }
        // Made under a temp name and renamed, so an existing file or link is
        // replaced atomically (rename refuses to replace a directory).
        let mut made = None;
        for _ in 0..16 {
            self.counter += 1;
            let mut tmp_name = b".".to_vec();
            let name = rel.file_name().unwrap_or_default().as_bytes();
            tmp_name.extend_from_slice(&name[..name.len().min(TMP_NAME_KEEP)]);
            tmp_name
                .extend_from_slice(format!(".yonder-{}-{}.tmp", self.tag, self.counter).as_bytes());
            let tmp = dest.with_file_name(std::ffi::OsStr::from_bytes(&tmp_name));
            match std::os::unix::fs::symlink(&target, &tmp) {
                Ok(()) => {
                    made = Some(Ok(tmp));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => made = Some(Err(e)),
                Err(e) => {
                    made = Some(Err(e));
                    break;
                }
            }
        }
        let tmp = match made.expect("loop ran") {
            Ok(t) => t,
            Err(e) => {
                self.record(RemoteError::from_io(&e, &dest));
                return Ok(());
            }
        };
        match fs::rename(&tmp, &dest) {
            Ok(()) => self.summary.symlinks += 1,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.record(RemoteError::from_io(&e, &dest));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_tree_paths_are_refused() {
        for bad in [
            &b"/etc/passwd"[..],
            b"..",
            b"../x",
            b"a/../../x",
            b"a//b",
            b"a/./b",
            b"a/",
            b"a\0b",
        ] {
            let e = tree_path(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert_eq!(tree_path(b"a/b..c/.d").unwrap(), Path::new("a/b..c/.d"));
        assert_eq!(tree_path(b"").unwrap(), Path::new(""));
    }

    fn round_trip(src: &Path, dst: &Path) -> pb::TreeSummary {
        let mut w = TreeWriter::new(dst, |_| {});
        let mut fatal = None;
        send_tree(
            src,
            |batch| match w.apply_batch(batch) {
                Ok(()) => true,
                Err(e) => {
                    fatal = Some(e);
                    false
                }
            },
            |_| {},
        )
        .unwrap();
        assert!(fatal.is_none(), "{fatal:?}");
        w.finish()
    }

    #[test]
    fn a_tree_round_trips_with_modes_links_and_a_big_file() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/small"), b"hello").unwrap();
        fs::write(src.join("empty"), b"").unwrap();
        let big: Vec<u8> = (0..DATA_CHUNK * 3 + 17).map(|i| (i % 251) as u8).collect();
        fs::write(src.join("a/big"), &big).unwrap();
        fs::set_permissions(src.join("a/b/small"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("../empty", src.join("a/link")).unwrap();
        fs::set_permissions(src.join("a/b"), fs::Permissions::from_mode(0o555)).unwrap();
        let dst = t.path().join("dst");
        let s = round_trip(&src, &dst);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!((s.files, s.dirs, s.symlinks), (3, 3, 1));
        assert_eq!(fs::read(dst.join("a/big")).unwrap(), big);
        assert_eq!(fs::read(dst.join("a/b/small")).unwrap(), b"hello");
        assert_eq!(fs::read(dst.join("empty")).unwrap(), b"");
        let mode = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("a/b/small"), 0o751);
        assert_eq!(mode("a/b"), 0o555);
        assert_eq!(
            fs::read_link(dst.join("a/link")).unwrap(),
            Path::new("../empty")
        );
        let mt = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(mt(&dst.join("a/big")), mt(&src.join("a/big")));
        fs::set_permissions(src.join("a/b"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dst.join("a/b"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn entry(e: Entry) -> pb::TreeEntry {
        pb::TreeEntry { entry: Some(e) }
    }

    #[test]
    fn a_symlink_in_the_tree_is_never_written_through() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let dst = t.path().join("dst");
        let mut w = TreeWriter::new(&dst, |_| {});
        w.apply(entry(Entry::Dir(pb::TreeDir::default()))).unwrap();
        w.apply(entry(Entry::Symlink(pb::TreeSymlink {
            path: Bytes::from_static(b"esc"),
            target: to_wire(&outside),
        })))
        .unwrap();
        w.apply(entry(Entry::File(pb::TreeFile {
            path: Bytes::from_static(b"esc/pwned"),
            mode: 0o644,
            data: Bytes::from_static(b"x"),
            eof: true,
            ..Default::default()
        })))
        .unwrap();
        let e = w
            .apply(entry(Entry::File(pb::TreeFile {
                path: Bytes::from_static(b"../pwned"),
                eof: true,
                ..Default::default()
            })))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let s = w.finish();
        assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
        assert_eq!(s.errors[0].kind, ErrorKind::NotADirectory as i32);
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        assert!(!t.path().join("pwned").exists());
    }

    #[test]
    fn a_tree_started_over_mid_file_ends_whole_even_through_read_only_dirs() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("ro")).unwrap();
        let big: Vec<u8> = (0..DATA_CHUNK * 2 + 5).map(|i| (i % 253) as u8).collect();
        fs::write(src.join("ro/big"), &big).unwrap();
        fs::write(src.join("ro/small"), b"small").unwrap();
        fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        let mut batches = Vec::new();
        send_tree(
            &src,
            |b| {
                batches.push(b);
                true
            },
            |_| {},
        )
        .unwrap();
        let entries: Vec<pb::TreeEntry> = batches.into_iter().flat_map(|b| b.entries).collect();
        // The first pass stops inside the big file (after its first chunk).
        let cut = entries
            .iter()
            .position(|e| matches!(&e.entry, Some(Entry::File(f)) if f.path == "ro/big" && !f.eof))
            .expect("the big file comes in chunks");
        let dst = t.path().join("dst");
        let mut w = TreeWriter::new(&dst, |_| {});
        for e in entries.iter().take(cut + 1).cloned() {
            w.apply(e).unwrap();
        }
        w.start_over();
        for e in entries.iter().cloned() {
            w.apply(e).unwrap();
        }
        let s = w.finish();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!((s.files, s.dirs), (2, 2), "counted once");
        assert_eq!(fs::read(dst.join("ro/big")).unwrap(), big);
        assert_eq!(fs::read(dst.join("ro/small")).unwrap(), b"small");
        let names = |d: &Path| -> Vec<_> {
            let mut v: Vec<_> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(&dst.join("ro")),
            ["big", "small"],
            "no temp file stays"
        );
        assert_eq!(fs::metadata(dst.join("ro")).unwrap().mode() & 0o7777, 0o555);

        // A second copy into the read-only result writes through it too.
        fs::write(src.join("new"), b"n").unwrap();
        fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(src.join("ro/small"), b"changed").unwrap();
        fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        let s = round_trip(&src, &dst);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(fs::read(dst.join("ro/small")).unwrap(), b"changed");
        assert_eq!(fs::metadata(dst.join("ro")).unwrap().mode() & 0o7777, 0o555);
        for d in [&src, &dst] {
            fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn an_unfinished_file_is_not_written() {
        let t = tempfile::tempdir().unwrap();
        let dst = t.path().join("dst");
        fs::create_dir(&dst).unwrap();
        fs::write(dst.join("f"), b"old").unwrap();
        let mut w = TreeWriter::new(&dst, |_| {});
        w.apply(entry(Entry::Dir(pb::TreeDir {
            mode: 0o755,
            ..Default::default()
        })))
        .unwrap();
        w.apply(entry(Entry::File(pb::TreeFile {
            path: Bytes::from_static(b"f"),
            mode: 0o644,
            data: Bytes::from_static(b"new, but only half"),
            eof: false,
            ..Default::default()
        })))
        .unwrap();
        let s = w.finish();
        assert_eq!(s.errors[0].kind, ErrorKind::Cancelled as i32);
        assert_eq!(fs::read(dst.join("f")).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(&dst)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("f")],
            "no temp file left"
        );
    }
}
