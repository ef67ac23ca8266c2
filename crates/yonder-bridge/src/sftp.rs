//! An SFTP version 3 server over a byte stream, the way OpenSSH's
//! `sftp-server` is one: it runs **on the target** (as `yonder server sftp`,
//! started through the yonder exec service by the bridge for the `sftp`
//! subsystem), reads requests from stdin and answers on stdout, with plain
//! POSIX file calls. Running next to the files instead of translating each
//! request into yonder file calls keeps every SFTP semantic that sshfs and
//! editors rely on (random-access writes into an open file, append,
//! `fsetstat`, hard links) and costs one round trip per request at most.
//!
//! Protocol: draft-ietf-secsh-filexfer-02 (version 3, which every OpenSSH
//! client speaks), plus the OpenSSH extensions that sftp, scp, sshfs and
//! rsync-over-sshfs use (PROTOCOL in the OpenSSH sources, §4.x):
//! `posix-rename`, `statvfs`/`fstatvfs`, `hardlink`, `fsync`, `lsetstat`,
//! `limits`, `expand-path`.
//!
//! Requests are served one at a time in arrival order (like `sftp-server`);
//! clients pipeline many requests, and responses are written in batches:
//! the output is flushed only when no further request is already buffered.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The protocol version we speak (the last one OpenSSH implements).
const VERSION: u32 = 3;

/// Largest request we accept, the same as OpenSSH's `SFTP_MAX_MSG_LENGTH`
/// (256 KiB): a corrupt length must not make us allocate gigabytes.
const MAX_PACKET: u32 = 256 * 1024;

/// Largest READ answered at once: a full packet less room for the header.
/// Clients ask for less (32–64 KiB) unless `limits@openssh.com` invites more.
const MAX_READ: u32 = MAX_PACKET - 1024;

/// Open handles per session: bounds the table a misbehaving client can grow.
const MAX_HANDLES: usize = 1024;

/// Directory entries per READDIR answer (OpenSSH's sftp-server sends 100).
const READDIR_BATCH: usize = 100;

/// Buffer sizes for stdin/stdout: a whole pipelined burst of 32 KiB writes
/// is read with one system call, and batched replies go out together.
const IO_BUFFER: usize = 1024 * 1024;

mod msg {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const LSTAT: u8 = 7;
    pub const FSTAT: u8 = 8;
    pub const SETSTAT: u8 = 9;
    pub const FSETSTAT: u8 = 10;
    pub const OPENDIR: u8 = 11;
    pub const READDIR: u8 = 12;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const RMDIR: u8 = 15;
    pub const REALPATH: u8 = 16;
    pub const STAT: u8 = 17;
    pub const RENAME: u8 = 18;
    pub const READLINK: u8 = 19;
    pub const SYMLINK: u8 = 20;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
    pub const EXTENDED: u8 = 200;
    pub const EXTENDED_REPLY: u8 = 201;
}

/// Status codes (filexfer-02 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    Eof = 1,
    NoSuchFile = 2,
    PermissionDenied = 3,
    Failure = 4,
    BadMessage = 5,
    OpUnsupported = 8,
}

mod attr {
    pub const SIZE: u32 = 0x1;
    pub const UIDGID: u32 = 0x2;
    pub const PERMISSIONS: u32 = 0x4;
    pub const ACMODTIME: u32 = 0x8;
    pub const EXTENDED: u32 = 0x8000_0000;
}

mod pflag {
    pub const READ: u32 = 0x1;
    pub const WRITE: u32 = 0x2;
    pub const APPEND: u32 = 0x4;
    pub const CREAT: u32 = 0x8;
    pub const TRUNC: u32 = 0x10;
    pub const EXCL: u32 = 0x20;
}

/// The extensions announced in VERSION, with their versions.
const EXTENSIONS: [(&str, &str); 9] = [
    ("posix-rename@openssh.com", "1"),
    ("statvfs@openssh.com", "2"),
    ("fstatvfs@openssh.com", "2"),
    ("hardlink@openssh.com", "1"),
    ("fsync@openssh.com", "1"),
    ("lsetstat@openssh.com", "1"),
    ("limits@openssh.com", "1"),
    ("expand-path@openssh.com", "1"),
    ("home-directory", "1"),
];

/// A request that failed: the status to answer with and a message.
#[derive(Debug)]
struct Failure(Status, String);

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        let status = match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP) => Status::NoSuchFile,
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => Status::PermissionDenied,
            Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Status::OpUnsupported,
            _ => match e.kind() {
                io::ErrorKind::NotFound => Status::NoSuchFile,
                io::ErrorKind::PermissionDenied => Status::PermissionDenied,
                _ => Status::Failure,
            },
        };
        // strerror-like text without Rust's " (os error N)" suffix.
        let text = e.to_string();
        let text = match text.find(" (os error") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        Failure(status, text)
    }
}

fn bad(what: &str) -> Failure {
    Failure(Status::BadMessage, what.to_string())
}

type Reply = Result<Vec<u8>, Failure>;

// ------------------------------------------------------------- wire helpers

/// Reads the fields of one request.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32, Failure> {
        if self.buf.len() < 4 {
            return Err(bad("short packet"));
        }
        let (b, rest) = self.buf.split_at(4);
        self.buf = rest;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Failure> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Ok(hi << 32 | lo)
    }
    fn bytes(&mut self) -> Result<&'a [u8], Failure> {
        let n = self.u32()? as usize;
        if self.buf.len() < n {
            return Err(bad("short packet"));
        }
        let (b, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(b)
    }
    fn path(&mut self) -> Result<PathBuf, Failure> {
        let b = self.bytes()?;
        if b.contains(&0) {
            return Err(bad("a path contains a NUL byte"));
        }
        Ok(PathBuf::from(OsStr::from_bytes(b)))
    }
    fn attrs(&mut self) -> Result<Attrs, Failure> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & attr::SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & attr::UIDGID != 0 {
            a.uid_gid = Some((self.u32()?, self.u32()?));
        }
        if flags & attr::PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & attr::ACMODTIME != 0 {
            a.times = Some((self.u32()?, self.u32()?));
        }
        if flags & attr::EXTENDED != 0 {
            let n = self.u32()?;
            for _ in 0..n {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(a)
    }
}

/// Builds one reply packet; the length prefix is filled in by [`Writer::finish`].
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn new(kind: u8, id: u32) -> Self {
        let mut w = Self {
            buf: Vec::with_capacity(64),
        };
        w.buf.extend_from_slice(&[0, 0, 0, 0, kind]);
        w.u32(id);
        w
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }
    fn attrs(&mut self, m: &fs::Metadata) {
        self.u32(attr::SIZE | attr::UIDGID | attr::PERMISSIONS | attr::ACMODTIME);
        self.u64(m.size());
        self.u32(m.uid());
        self.u32(m.gid());
        // The whole st_mode: clients tell directories from the type bits.
        self.u32(m.mode());
        // Version 3 carries 32-bit seconds.
        self.u32(m.atime() as u32);
        self.u32(m.mtime() as u32);
    }
    fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

fn status(id: u32, s: Status, message: &str) -> Vec<u8> {
    let mut w = Writer::new(msg::STATUS, id);
    w.u32(s as u32);
    w.bytes(message.as_bytes());
    w.bytes(b"en");
    w.finish()
}

fn ok(id: u32) -> Reply {
    Ok(status(id, Status::Ok, "Success"))
}

/// Attributes a client asked to set.
#[derive(Debug, Default)]
struct Attrs {
    size: Option<u64>,
    uid_gid: Option<(u32, u32)>,
    permissions: Option<u32>,
    times: Option<(u32, u32)>,
}

enum Handle {
    File(File),
    Dir {
        path: PathBuf,
        entries: fs::ReadDir,
        /// `.` and `..` come first, as readdir(3) gives them.
        dots_sent: bool,
    },
}

/// One SFTP session's state.
struct Server {
    handles: HashMap<u32, Handle>,
    next_handle: u32,
    home: PathBuf,
}

fn cstring(p: &Path) -> Result<CString, Failure> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| bad("a path contains a NUL byte"))
}

fn last_os_error() -> Failure {
    io::Error::last_os_error().into()
}

/// Sets times on a path (not following a final symlink when `nofollow`).
fn set_times(path: &Path, atime: u32, mtime: u32, nofollow: bool) -> Result<(), Failure> {
    let c = cstring(path)?;
    let ts = [
        libc::timespec {
            tv_sec: atime.into(),
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime.into(),
            tv_nsec: 0,
        },
    ];
    let flags = if nofollow {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        0
    };
    // SAFETY: a valid C string and an array of two timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), flags) } != 0 {
        return Err(last_os_error());
    }
    Ok(())
}

/// `ls -l`-style line for READDIR's longname (sftp's `ls -l` prints it).
fn longname(name: &[u8], m: &fs::Metadata) -> Vec<u8> {
    let mode = m.mode();
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut perms = String::with_capacity(10);
    perms.push(kind);
    for (shift, special, s_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        perms.push(match (mode & special != 0, x) {
            (true, true) => s_char,
            (true, false) => s_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    let mut line = format!(
        "{perms} {:>4} {:<8} {:<8} {:>8} {} ",
        m.nlink(),
        m.uid(),
        m.gid(),
        m.size(),
        format_mtime(m.mtime())
    )
    .into_bytes();
    line.extend_from_slice(name);
    line
}

/// "Mon DD HH:MM" in UTC, the shape `ls -l` uses for recent files.
fn format_mtime(secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!(
        "{} {:>2} {:02}:{:02}",
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Removes `.` and resolves `..` lexically (for paths that do not exist).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

impl Server {
    fn absolute(&self, p: &Path) -> PathBuf {
        if p.as_os_str().is_empty() {
            return std::env::current_dir().unwrap_or_else(|_| self.home.clone());
        }
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .unwrap_or_else(|_| self.home.clone())
                .join(p)
        }
    }

    /// realpath(3), but a missing final part (or more) is allowed, as
    /// OpenSSH's sftp-server allows it since 8.x: clients ask for the real
    /// path of a file they are about to create.
    fn realpath(&self, p: &Path) -> PathBuf {
        let abs = normalize(&self.absolute(p));
        if let Ok(c) = fs::canonicalize(&abs) {
            return c;
        }
        let mut tail = Vec::new();
        let mut head = abs.clone();
        while let Some(name) = head.file_name().map(OsStr::to_os_string) {
            tail.push(name);
            head.pop();
            if let Ok(c) = fs::canonicalize(&head) {
                let mut out = c;
                for n in tail.iter().rev() {
                    out.push(n);
                }
                return out;
            }
        }
        abs
    }

    /// `~` and `~/…` name the home directory (expand-path@openssh.com).
    fn expand_tilde(&self, p: &Path) -> PathBuf {
        let b = p.as_os_str().as_bytes();
        if b == b"~" {
            return self.home.clone();
        }
        if let Some(rest) = b.strip_prefix(b"~/") {
            return self.home.join(OsStr::from_bytes(rest));
        }
        p.to_path_buf()
    }

    fn new_handle(&mut self, h: Handle) -> Reply {
        if self.handles.len() >= MAX_HANDLES {
            return Err(Failure(
                Status::Failure,
                format!("too many open handles (at most {MAX_HANDLES})"),
            ));
        }
        let n = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1);
        self.handles.insert(n, h);
        Ok(n.to_be_bytes().to_vec())
    }

    fn handle_id(r: &mut Reader<'_>) -> Result<u32, Failure> {
        let b = r.bytes()?;
        let arr: [u8; 4] = b.try_into().map_err(|_| bad("invalid handle"))?;
        Ok(u32::from_be_bytes(arr))
    }

    fn file(&self, h: u32) -> Result<&File, Failure> {
        match self.handles.get(&h) {
            Some(Handle::File(f)) => Ok(f),
            _ => Err(Failure(Status::Failure, "invalid file handle".into())),
        }
    }

    fn attrs_reply(id: u32, m: &fs::Metadata) -> Vec<u8> {
        let mut w = Writer::new(msg::ATTRS, id);
        w.attrs(m);
        w.finish()
    }

    fn name_reply(id: u32, path: &Path) -> Vec<u8> {
        let mut w = Writer::new(msg::NAME, id);
        w.u32(1);
        w.bytes(path.as_os_str().as_bytes());
        w.bytes(path.as_os_str().as_bytes());
        // Attributes are not required for REALPATH-style answers.
        w.u32(0);
        w.finish()
    }

    fn apply_attrs(
        &self,
        path: Option<&Path>,
        file: Option<&File>,
        a: &Attrs,
        nofollow: bool,
    ) -> Result<(), Failure> {
        if let Some(size) = a.size {
            match (file, path) {
                (Some(f), _) => f.set_len(size)?,
                (None, Some(p)) => OpenOptions::new().write(true).open(p)?.set_len(size)?,
                _ => {}
            }
        }
        if let Some(perm) = a.permissions {
            let perm = fs::Permissions::from_mode(perm & 0o7777);
            match (file, path) {
                (Some(f), _) => f.set_permissions(perm)?,
                // chmod on a symlink changes its target; lsetstat skips it
                // like OpenSSH does (Linux has no lchmod).
                (None, Some(p)) if !nofollow || !fs::symlink_metadata(p)?.is_symlink() => {
                    fs::set_permissions(p, perm)?
                }
                _ => {}
            }
        }
        if let Some((atime, mtime)) = a.times {
            match (file, path) {
                (Some(f), _) => {
                    use std::os::fd::AsRawFd;
                    let ts = [
                        libc::timespec {
                            tv_sec: atime.into(),
                            tv_nsec: 0,
                        },
                        libc::timespec {
                            tv_sec: mtime.into(),
                            tv_nsec: 0,
                        },
                    ];
                    // SAFETY: an open fd and an array of two timespecs.
                    if unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) } != 0 {
                        return Err(last_os_error());
                    }
                }
                (None, Some(p)) => set_times(p, atime, mtime, nofollow)?,
                _ => {}
            }
        }
        if let Some((uid, gid)) = a.uid_gid {
            match (file, path) {
                (Some(f), _) => std::os::unix::fs::fchown(f, Some(uid), Some(gid))?,
                (None, Some(p)) if nofollow => std::os::unix::fs::lchown(p, Some(uid), Some(gid))?,
                (None, Some(p)) => std::os::unix::fs::chown(p, Some(uid), Some(gid))?,
                _ => {}
            }
        }
        Ok(())
    }

    fn open(&mut self, id: u32, r: &mut Reader<'_>) -> Reply {
        let path = r.path()?;
        let flags = r.u32()?;
        let a = r.attrs()?;
        let mut o = OpenOptions::new();
        o.read(flags & pflag::READ != 0)
            .write(flags & pflag::WRITE != 0)
            .append(flags & pflag::APPEND != 0)
            .truncate(flags & pflag::TRUNC != 0);
        if flags & pflag::CREAT != 0 {
            if flags & pflag::EXCL != 0 {
                o.create_new(true);
            } else {
                o.create(true);
            }
        }
        o.mode(a.permissions.map_or(0o666, |p| p & 0o7777));
        let f = o.open(&path)?;
        let h = self.new_handle(Handle::File(f))?;
        let mut w = Writer::new(msg::HANDLE, id);
        w.bytes(&h);
        Ok(w.finish())
    }

    fn read(&mut self, id: u32, r: &mut Reader<'_>) -> Reply {
        let h = Self::handle_id(r)?;
        let offset = r.u64()?;
        let len = r.u32()?.min(MAX_READ) as usize;
        let f = self.file(h)?;
        let mut w = Writer::new(msg::DATA, id);
        let start = w.buf.len();
        w.u32(0);
        w.buf.resize(start + 4 + len, 0);
        let mut got = 0;
        // Short reads happen (pipes, network file systems); fill what we can
        // so that clients are not made to ask again for every fragment.
        while got < len {
            match f.read_at(&mut w.buf[start + 4 + got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if got == 0 => return Err(e.into()),
                Err(_) => break,
            }
        }
        if got == 0 {
            return Ok(status(id, Status::Eof, "End of file"));
        }
        w.buf.truncate(start + 4 + got);
        w.buf[start..start + 4].copy_from_slice(&(got as u32).to_be_bytes());
        Ok(w.finish())
    }

    fn write(&mut self, id: u32, r: &mut Reader<'_>) -> Reply {
        let h = Self::handle_id(r)?;
        let offset = r.u64()?;
        let data = r.bytes()?;
        let mut f = self.file(h)?;
        // A file opened for append ignores the offset, as with O_APPEND.
        let append = fcntl_flags(f).is_some_and(|fl| fl & libc::O_APPEND != 0);
        if append {
            f.write_all(data)?;
        } else {
            f.write_all_at(data, offset)?;
        }
        ok(id)
    }

    fn readdir(&mut self, id: u32, h: u32) -> Reply {
        let Some(Handle::Dir {
            path,
            entries,
            dots_sent,
        }) = self.handles.get_mut(&h)
        else {
            return Err(Failure(Status::Failure, "invalid directory handle".into()));
        };
        let mut names: Vec<(Vec<u8>, fs::Metadata)> = Vec::new();
        if !*dots_sent {
            *dots_sent = true;
            for dot in [".", ".."] {
                if let Ok(m) = fs::symlink_metadata(path.join(dot)) {
                    names.push((dot.as_bytes().to_vec(), m));
                }
            }
        }
        while names.len() < READDIR_BATCH {
            match entries.next() {
                None => break,
                Some(Err(e)) => {
                    if names.is_empty() {
                        return Err(e.into());
                    }
                    break;
                }
                Some(Ok(e)) => {
                    // An entry removed since the listing began is skipped.
                    if let Ok(m) = fs::symlink_metadata(e.path()) {
                        names.push((e.file_name().into_vec(), m));
                    }
                }
            }
        }
        if names.is_empty() {
            return Ok(status(id, Status::Eof, "End of file"));
        }
        let mut w = Writer::new(msg::NAME, id);
        w.u32(names.len() as u32);
        for (name, m) in &names {
            w.bytes(name);
            w.bytes(&longname(name, m));
            w.attrs(m);
        }
        Ok(w.finish())
    }

    fn extended(&mut self, id: u32, r: &mut Reader<'_>) -> Reply {
        let name = r.bytes()?;
        match name {
            b"posix-rename@openssh.com" => {
                let from = r.path()?;
                let to = r.path()?;
                fs::rename(from, to)?;
                ok(id)
            }
            b"hardlink@openssh.com" => {
                let from = r.path()?;
                let to = r.path()?;
                fs::hard_link(from, to)?;
                ok(id)
            }
            b"fsync@openssh.com" => {
                let h = Self::handle_id(r)?;
                self.file(h)?.sync_all()?;
                ok(id)
            }
            b"lsetstat@openssh.com" => {
                let path = r.path()?;
                let a = r.attrs()?;
                self.apply_attrs(Some(&path), None, &a, true)?;
                ok(id)
            }
            b"statvfs@openssh.com" => {
                let path = r.path()?;
                let c = cstring(&path)?;
                // SAFETY: statvfs fills a zeroed out-parameter.
                let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
                if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
                    return Err(last_os_error());
                }
                Ok(statvfs_reply(id, &s))
            }
            b"fstatvfs@openssh.com" => {
                use std::os::fd::AsRawFd;
                let h = Self::handle_id(r)?;
                let fd = self.file(h)?.as_raw_fd();
                // SAFETY: fstatvfs on an open fd fills a zeroed out-parameter.
                let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
                if unsafe { libc::fstatvfs(fd, &mut s) } != 0 {
                    return Err(last_os_error());
                }
                Ok(statvfs_reply(id, &s))
            }
            b"limits@openssh.com" => {
                let mut w = Writer::new(msg::EXTENDED_REPLY, id);
                w.u64(MAX_PACKET.into());
                w.u64(MAX_READ.into());
                w.u64(MAX_READ.into());
                w.u64(MAX_HANDLES as u64);
                Ok(w.finish())
            }
            b"expand-path@openssh.com" => {
                let path = r.path()?;
                let p = self.realpath(&self.expand_tilde(&path));
                Ok(Self::name_reply(id, &p))
            }
            b"home-directory" => {
                let _user = r.bytes()?;
                Ok(Self::name_reply(id, &self.home))
            }
            other => Err(Failure(
                Status::OpUnsupported,
                format!("unsupported extension {:?}", String::from_utf8_lossy(other)),
            )),
        }
    }

    /// Answers one request (`kind`, then the rest after the id).
    fn request(&mut self, kind: u8, id: u32, r: &mut Reader<'_>) -> Reply {
        match kind {
            msg::OPEN => self.open(id, r),
            msg::CLOSE => {
                let h = Self::handle_id(r)?;
                match self.handles.remove(&h) {
                    Some(_) => ok(id),
                    None => Err(Failure(Status::Failure, "invalid handle".into())),
                }
            }
            msg::READ => self.read(id, r),
            msg::WRITE => self.write(id, r),
            msg::LSTAT => Ok(Self::attrs_reply(id, &fs::symlink_metadata(r.path()?)?)),
            msg::STAT => Ok(Self::attrs_reply(id, &fs::metadata(r.path()?)?)),
            msg::FSTAT => {
                let h = Self::handle_id(r)?;
                Ok(Self::attrs_reply(id, &self.file(h)?.metadata()?))
            }
            msg::SETSTAT => {
                let path = r.path()?;
                let a = r.attrs()?;
                self.apply_attrs(Some(&path), None, &a, false)?;
                ok(id)
            }
            msg::FSETSTAT => {
                let h = Self::handle_id(r)?;
                let a = r.attrs()?;
                let f = self.file(h)?;
                self.apply_attrs(None, Some(f), &a, false)?;
                ok(id)
            }
            msg::OPENDIR => {
                let path = r.path()?;
                let entries = fs::read_dir(&path)?;
                let h = self.new_handle(Handle::Dir {
                    path,
                    entries,
                    dots_sent: false,
                })?;
                let mut w = Writer::new(msg::HANDLE, id);
                w.bytes(&h);
                Ok(w.finish())
            }
            msg::READDIR => {
                let h = Self::handle_id(r)?;
                self.readdir(id, h)
            }
            msg::REMOVE => {
                fs::remove_file(r.path()?)?;
                ok(id)
            }
            msg::MKDIR => {
                let path = r.path()?;
                let a = r.attrs()?;
                let mut b = fs::DirBuilder::new();
                b.mode(a.permissions.map_or(0o777, |p| p & 0o7777));
                b.create(path)?;
                ok(id)
            }
            msg::RMDIR => {
                fs::remove_dir(r.path()?)?;
                ok(id)
            }
            msg::REALPATH => {
                let path = r.path()?;
                Ok(Self::name_reply(id, &self.realpath(&path)))
            }
            msg::RENAME => {
                // Version 3 RENAME must not replace an existing target
                // (posix-rename@openssh.com is the replacing one).
                let from = r.path()?;
                let to = r.path()?;
                if fs::symlink_metadata(&to).is_ok() {
                    return Err(Failure(
                        Status::Failure,
                        format!("{} already exists", to.display()),
                    ));
                }
                fs::rename(from, to)?;
                ok(id)
            }
            msg::READLINK => {
                let target = fs::read_link(r.path()?)?;
                Ok(Self::name_reply(id, &target))
            }
            msg::SYMLINK => {
                // OpenSSH sends (and its server reads) the link target
                // first and the new link's path second: the reverse of the
                // draft. Every client follows OpenSSH, so we do too.
                let target = r.path()?;
                let link = r.path()?;
                std::os::unix::fs::symlink(target, link)?;
                ok(id)
            }
            msg::EXTENDED => self.extended(id, r),
            _ => Err(Failure(
                Status::OpUnsupported,
                format!("unsupported request type {kind}"),
            )),
        }
    }
}

fn fcntl_flags(f: &File) -> Option<i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL on an open fd.
    let fl = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    (fl >= 0).then_some(fl)
}

fn statvfs_reply(id: u32, s: &libc::statvfs) -> Vec<u8> {
    let mut w = Writer::new(msg::EXTENDED_REPLY, id);
    #[allow(clippy::unnecessary_cast)] // the field types differ between libcs
    for v in [
        s.f_bsize as u64,
        s.f_frsize as u64,
        s.f_blocks as u64,
        s.f_bfree as u64,
        s.f_bavail as u64,
        s.f_files as u64,
        s.f_ffree as u64,
        s.f_favail as u64,
        s.f_fsid as u64,
    ] {
        w.u64(v);
    }
    let mut flag = 0u64;
    if s.f_flag & libc::ST_RDONLY != 0 {
        flag |= 1;
    }
    if s.f_flag & libc::ST_NOSUID != 0 {
        flag |= 2;
    }
    w.u64(flag);
    #[allow(clippy::unnecessary_cast)]
    w.u64(s.f_namemax as u64);
    w.finish()
}

/// Reads one length-prefixed packet; `None` at a clean end of input.
fn read_packet(input: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len);
    if len == 0 || len > MAX_PACKET + 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("an SFTP packet of {len} bytes (the limit is {MAX_PACKET})"),
        ));
    }
    buf.resize(len as usize, 0);
    input.read_exact(buf)?;
    Ok(Some(()))
}

/// Serves one SFTP session: requests from `input`, replies to `output`,
/// until `input` ends. `home` answers `~` in expand-path requests; relative
/// paths are relative to the process's working directory (start it in the
/// home directory, as sshd does).
pub fn serve(input: impl Read, output: impl Write, home: PathBuf) -> io::Result<()> {
    let mut input = BufReader::with_capacity(IO_BUFFER, input);
    let mut output = BufWriter::with_capacity(IO_BUFFER, output);
    let mut server = Server {
        handles: HashMap::new(),
        next_handle: 0,
        home,
    };
    let mut buf = Vec::new();
    let mut initialised = false;
    loop {
        // Flush the batch of replies before we might block on input.
        if input.buffer().is_empty() {
            output.flush()?;
        }
        if read_packet(&mut input, &mut buf)?.is_none() {
            output.flush()?;
            return Ok(());
        }
        let kind = buf[0];
        let mut r = Reader { buf: &buf[1..] };
        if kind == msg::INIT {
            // The client's version follows; we answer with ours (3), which
            // every client accepts.
            let mut w = Writer {
                buf: vec![0, 0, 0, 0, msg::VERSION],
            };
            w.u32(VERSION);
            for (name, version) in EXTENSIONS {
                w.bytes(name.as_bytes());
                w.bytes(version.as_bytes());
            }
            output.write_all(&w.finish())?;
            initialised = true;
            continue;
        }
        let Ok(id) = r.u32() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an SFTP request without an id",
            ));
        };
        let reply = if initialised {
            server.request(kind, id, &mut r)
        } else {
            Err(bad("the session was not initialised"))
        };
        let packet = match reply {
            Ok(p) => p,
            Err(Failure(s, m)) => status(id, s, &m),
        };
        output.write_all(&packet)?;
    }
}

/// The home directory for `~`: `$HOME`, else the password database's.
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we
    // copy the string out at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_dir.is_null() {
            let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
            return PathBuf::from(OsString::from_vec(dir.to_bytes().to_vec()));
        }
    }
    PathBuf::from("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, id: Option<u32>, body: &[u8]) -> Vec<u8> {
        let mut p = vec![kind];
        if let Some(id) = id {
            p.extend_from_slice(&id.to_be_bytes());
        }
        p.extend_from_slice(body);
        let mut out = (p.len() as u32).to_be_bytes().to_vec();
        out.extend(p);
        out
    }

    fn string(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    /// Splits the output into (kind, body-after-kind) packets.
    fn replies(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        while !out.is_empty() {
            let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
            v.push((out[4], out[5..4 + len].to_vec()));
            out = &out[4 + len..];
        }
        v
    }

    #[test]
    fn write_then_read_back_through_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let p = path.as_os_str().as_bytes();
        let mut input = packet(msg::INIT, None, &3u32.to_be_bytes());
        let mut open = string(p);
        open.extend((pflag::WRITE | pflag::CREAT | pflag::TRUNC).to_be_bytes());
        open.extend(0u32.to_be_bytes());
        input.extend(packet(msg::OPEN, Some(1), &open));
        // Handle 0: write "world" at 6, then "hello " at 0 (out of order).
        let mut w1 = string(&0u32.to_be_bytes());
        w1.extend(6u64.to_be_bytes());
        w1.extend(string(b"world"));
        input.extend(packet(msg::WRITE, Some(2), &w1));
        let mut w0 = string(&0u32.to_be_bytes());
        w0.extend(0u64.to_be_bytes());
        w0.extend(string(b"hello "));
        input.extend(packet(msg::WRITE, Some(3), &w0));
        input.extend(packet(msg::CLOSE, Some(4), &string(&0u32.to_be_bytes())));
        // A request on a closed handle fails instead of crashing.
        let mut rd = string(&0u32.to_be_bytes());
        rd.extend(0u64.to_be_bytes());
        rd.extend(100u32.to_be_bytes());
        input.extend(packet(msg::READ, Some(5), &rd));
        let mut out = Vec::new();
        serve(&input[..], &mut out, dir.path().into()).unwrap();
        let r = replies(&out);
        assert_eq!(r[0].0, msg::VERSION);
        assert_eq!(r[1].0, msg::HANDLE);
        for (kind, body) in &r[2..5] {
            assert_eq!(*kind, msg::STATUS);
            assert_eq!(&body[4..8], &0u32.to_be_bytes(), "status OK");
        }
        assert_eq!(r[5].0, msg::STATUS);
        assert_eq!(&r[5].1[4..8], &(Status::Failure as u32).to_be_bytes());
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    }

    #[test]
    fn missing_file_is_no_such_file_and_oversized_packet_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut input = packet(msg::INIT, None, &3u32.to_be_bytes());
        input.extend(packet(
            msg::STAT,
            Some(7),
            &string(dir.path().join("nope").as_os_str().as_bytes()),
        ));
        let mut out = Vec::new();
        serve(&input[..], &mut out, dir.path().into()).unwrap();
        let r = replies(&out);
        assert_eq!(r[1].0, msg::STATUS);
        assert_eq!(&r[1].1[..4], &7u32.to_be_bytes());
        assert_eq!(&r[1].1[4..8], &(Status::NoSuchFile as u32).to_be_bytes());

        let huge = (MAX_PACKET * 4).to_be_bytes();
        let err = serve(&huge[..], Vec::new(), dir.path().into()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn realpath_allows_a_missing_tail_and_tilde_is_home() {
        let dir = tempfile::tempdir().unwrap();
        let s = Server {
            handles: HashMap::new(),
            next_handle: 0,
            home: dir.path().into(),
        };
        let base = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            s.realpath(&dir.path().join("a/../new/file")),
            base.join("new/file")
        );
        assert_eq!(s.expand_tilde(Path::new("~/x")), dir.path().join("x"));
        assert_eq!(s.expand_tilde(Path::new("~")), dir.path());
        assert_eq!(s.expand_tilde(Path::new("/~/x")), Path::new("/~/x"));
    }

    #[test]
    fn longname_looks_like_ls() {
        let dir = tempfile::tempdir().unwrap();
        let m = fs::symlink_metadata(dir.path()).unwrap();
        let l = String::from_utf8(longname(b"d", &m)).unwrap();
        assert!(l.starts_with("drwx"), "{l}");
        assert!(l.ends_with(" d"), "{l}");
        assert_eq!(format_mtime(0), "Jan  1 00:00");
        assert_eq!(format_mtime(951_782_400), "Feb 29 00:00");
    }
}
