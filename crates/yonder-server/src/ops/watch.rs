//! File watching: the `Watch` service.
//!
//! One watch request owns one inotify instance and one thread. The tree is
//! walked once; every directory that is not ignored gets its own
//! *non-recursive* kernel watch, so ignored directories (`node_modules`,
//! gitignored build output) cost no watch at all. Directories that appear later
//! are watched when their `IN_CREATE`/`IN_MOVED_TO` arrives and then scanned,
//! so files created inside them before the watch existed are still reported.
//!
//! Kernel events go through a per-path coalescer ([`Coalescer`]): a file
//! created and written is one `CREATED`, created and deleted is nothing, and
//! the two halves of a rename (paired by the inotify cookie) are one
//! `RENAMED` with both names. Events are released after a quiet period (the
//! debounce) in `WatchEvents` batches through the call's bounded queue.
//!
//! When a kernel watch cannot be had (the request's `max_watches` cap or the
//! kernel's `fs.inotify.max_user_watches`, `ENOSPC`), or the kernel's event
//! queue overflows, the affected subtree is *polled* instead: the client gets
//! `OVERFLOW` naming the subtree and the reason, then `RESYNC`, and changes
//! there keep being reported from a stat scan every `poll_interval_ms`.
//! `force_polling` polls the whole tree from the start.
//!
//! A path that is not a directory is refused with `NOT_A_DIRECTORY`: watching
//! a single file is better done by watching its directory and filtering,
//! which a client can do with this same call.
//!
//! When the client goes away the thread ends and the inotify instance is
//! closed, which releases all its kernel watches at once.

use super::{blocking, request_path};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use yonder_proto::RemoteError;
use yonder_proto::limits::STREAM_QUEUE;
use yonder_proto::paths::to_wire;
use yonder_proto::pb::{self, ErrorKind, WatchEventKind, watch_server::Watch};

type RespStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// Quiet period before changes are released when the request says 0: long
/// enough to fold an editor's write-then-chmod or a `cp`'s many writes into
/// one event, short enough to feel instant.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);
/// Polling interval when the request says 0: one stat scan a second is what
/// other watchers (VS Code, watchman's fallback) use.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// Smallest polling interval we accept: below it a big polled tree would keep
/// a core busy scanning.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A path that keeps changing (a log being appended to) is still reported at
/// least this often instead of being held back forever by the debounce.
const MAX_HOLD: Duration = Duration::from_millis(500);
/// Distinct paths held in the coalescer before it is released early, so a
/// `git checkout` of a huge tree cannot grow memory without bound.
const MAX_PENDING: usize = 16 * 1024;
/// Events per `WatchEvents` message: a few tens of KiB, far under the message
/// cap, and few messages for a burst.
const EVENT_BATCH: usize = 512;
/// inotify read buffer: many events per read(2); each is 16 bytes plus name.
const EVENT_BUFFER: usize = 64 * 1024;

/// What we ask the kernel about each directory. No `IN_OPEN`/`IN_ACCESS`:
/// reads do not change anything and would wake us on every build.
/// `IN_EXCL_UNLINK` stops events for files already unlinked but still open.
fn dir_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
        | WatchMask::EXCL_UNLINK
}

/// Watches one daemon runs at once. Each holds a thread and an inotify
/// instance (the kernel allows a user 128 by default, past which watches are
/// polled); a runaway client must not be able to exhaust the daemon's threads.
pub const MAX_LIVE_WATCHES: usize = 512;

#[derive(Debug, Default, Clone)]
pub struct WatchService {
    /// Watches running now; each watch thread holds a [`LiveGuard`].
    live: Arc<AtomicUsize>,
}

/// Counts one running watch for as long as it lives.
struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn acquire(live: &Arc<AtomicUsize>) -> Result<Self, RemoteError> {
        let prev = live.fetch_add(1, Ordering::SeqCst);
        let guard = Self(live.clone());
        if prev >= MAX_LIVE_WATCHES {
            return Err(RemoteError::new(
                ErrorKind::NoSpace,
                format!("this server already runs {MAX_LIVE_WATCHES} watches; end some first"),
            ));
        }
        Ok(guard)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = RespStream<pb::WatchEvents>;
    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let req = req.into_inner();
        let live = LiveGuard::acquire(&self.live).map_err(|e| e.to_status())?;
        let opts = Options::from_request(&req).map_err(|e| e.to_status())?;
        let filter = {
            let (root, ignore, gitignore) = (opts.root.clone(), req.ignore, req.use_gitignore);
            blocking(move || {
                let m = fs::metadata(&root).map_err(|e| RemoteError::from_io(&e, &root))?;
                if !m.is_dir() {
                    return Err(RemoteError::new(
                        ErrorKind::NotADirectory,
                        "only directories can be watched (watch the parent to follow one file)",
                    )
                    .with_path(&root));
                }
                Filter::new(&root, &ignore, gitignore)
            })
            .await
            .map_err(|e| e.to_status())?
        };

        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        // The watch thread sleeps in poll(2); it learns that the client went
        // away when the other end of this socket pair is closed.
        let (stop_rx, stop_tx) = UnixStream::pair()
            .map_err(|e| RemoteError::new(ErrorKind::Internal, e.to_string()).to_status())?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let closed = tx.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = closed.closed() => {}
                _ = done_rx => {}
            }
            drop(stop_tx);
        });
        std::thread::Builder::new()
            .name("yonder-watch".into())
            .spawn(move || {
                let (_done, _live) = (done_tx, live);
                Tree::new(opts, filter).run(&stop_rx, &tx);
            })
            .map_err(|e| RemoteError::new(ErrorKind::Internal, e.to_string()).to_status())?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A request, with the defaults applied.
#[derive(Debug)]
struct Options {
    root: PathBuf,
    force_polling: bool,
    debounce: Duration,
    poll_interval: Duration,
    max_watches: usize,
}

impl Options {
    fn from_request(req: &pb::WatchRequest) -> Result<Self, RemoteError> {
        let root = request_path(&req.path)?;
        // The root must be absolute so every reported path is; relative paths
        // mean the daemon's working directory (the home), as for `Fs`.
        let root = std::path::absolute(&root).map_err(|e| RemoteError::from_io(&e, &root))?;
        let ms = |v: u32, default: Duration| match v {
            0 => default,
            v => Duration::from_millis(u64::from(v)),
        };
        Ok(Self {
            root,
            force_polling: req.force_polling,
            debounce: ms(req.debounce_ms, DEFAULT_DEBOUNCE),
            poll_interval: ms(req.poll_interval_ms, DEFAULT_POLL_INTERVAL).max(MIN_POLL_INTERVAL),
            max_watches: match req.max_watches {
                0 => usize::MAX,
                n => n as usize,
            },
        })
    }
}

// ---------------------------------------------------------------- filtering

/// Decides which paths are neither watched nor reported: the request's globs
/// (gitignore syntax, rooted at the watched directory) and, when asked, the
/// `.gitignore` files in the tree (and `.git` itself).
///
/// Not honoured: `.git/info/exclude` and the user's global excludes file;
/// a changed `.gitignore` applies to later events but does not add or remove
/// watches on directories already walked.
struct Filter {
    root: PathBuf,
    globs: Gitignore,
    gitignore: bool,
    /// Per directory, its `.gitignore` matcher (None: no file or empty).
    cache: HashMap<PathBuf, Option<Arc<Gitignore>>>,
}

impl Filter {
    fn new(root: &Path, globs: &[String], gitignore: bool) -> Result<Self, RemoteError> {
        let mut b = GitignoreBuilder::new(root);
        for g in globs {
            b.add_line(None, g).map_err(|e| {
                RemoteError::new(
                    ErrorKind::InvalidArgument,
                    format!("bad ignore glob {g:?}: {e}"),
                )
            })?;
        }
        let globs = b
            .build()
            .map_err(|e| RemoteError::new(ErrorKind::InvalidArgument, e.to_string()))?;
        Ok(Self {
            root: root.to_path_buf(),
            globs,
            gitignore,
            cache: HashMap::new(),
        })
    }

    fn matcher(&mut self, dir: &Path) -> Option<Arc<Gitignore>> {
        if let Some(m) = self.cache.get(dir) {
            return m.clone();
        }
        let file = dir.join(".gitignore");
        let m = if file.is_file() {
            let (gi, _partial_error) = Gitignore::new(&file);
            (!gi.is_empty()).then(|| Arc::new(gi))
        } else {
            None
        };
        self.cache.insert(dir.to_path_buf(), m.clone());
        m
    }

    /// A `.gitignore` in `dir` changed.
    fn invalidate(&mut self, dir: &Path) {
        self.cache.remove(dir);
    }

    fn is_ignored(&mut self, path: &Path, is_dir: bool) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        if rel.as_os_str().is_empty() {
            return false;
        }
        if self
            .globs
            .matched_path_or_any_parents(path, is_dir)
            .is_ignore()
        {
            return true;
        }
        if !self.gitignore {
            return false;
        }
        if rel.components().any(|c| c.as_os_str() == ".git") {
            return true;
        }
        // The deepest .gitignore with an opinion wins, as in git.
        // The parent, its parent, … up to and including the root.
        let depth = rel.components().count();
        for d in path.ancestors().skip(1).take(depth) {
            if let Some(m) = self.matcher(d) {
                let verdict = m.matched_path_or_any_parents(path, is_dir);
                if verdict.is_ignore() {
                    return true;
                }
                if verdict.is_whitelist() {
                    return false;
                }
            }
        }
        false
    }
}

// ---------------------------------------------------------------- coalescing

/// What happened to one path since the last release.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Created,
    Changed,
    Removed,
    /// This path is the new name of `from`; `changed`: written too.
    Renamed {
        from: PathBuf,
        changed: bool,
    },
}

#[derive(Debug)]
struct Entry {
    change: Change,
    is_dir: bool,
    /// First-seen order, so released events keep the order they happened in.
    seq: u64,
}

/// Folds events per path until they are released.
#[derive(Debug, Default)]
struct Coalescer {
    entries: HashMap<PathBuf, Entry>,
    /// OVERFLOW and RESYNC notices: never folded.
    notices: Vec<(u64, pb::WatchEvent)>,
    seq: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn event(kind: WatchEventKind, path: &Path, is_dir: bool) -> pb::WatchEvent {
    pb::WatchEvent {
        kind: kind as i32,
        path: to_wire(path),
        is_dir,
        ..Default::default()
    }
}

impl Coalescer {
    fn touch(&mut self) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn put(&mut self, path: PathBuf, change: Change, is_dir: bool) {
        self.touch();
        let seq = match self.entries.get(&path) {
            Some(e) => e.seq,
            None => self.next_seq(),
        };
        self.entries.insert(
            path,
            Entry {
                change,
                is_dir,
                seq,
            },
        );
    }

    fn created(&mut self, path: PathBuf, is_dir: bool) {
        match self.entries.get(&path).map(|e| &e.change) {
            None => self.put(path, Change::Created, is_dir),
            // Deleted and created again within the window: replaced.
            Some(Change::Removed) => self.put(path, Change::Changed, is_dir),
            Some(_) => self.touch(),
        }
    }

    fn changed(&mut self, path: PathBuf, is_dir: bool) {
        match self.entries.get_mut(&path) {
            None => self.put(path, Change::Changed, is_dir),
            Some(Entry {
                change: Change::Renamed { changed, .. },
                ..
            }) => {
                *changed = true;
                self.touch();
            }
            Some(Entry {
                change: Change::Removed,
                ..
            }) => self.put(path, Change::Changed, is_dir),
            Some(_) => self.touch(),
        }
    }

    fn removed(&mut self, path: PathBuf, is_dir: bool) {
        match self.entries.get(&path).map(|e| e.change.clone()) {
            None | Some(Change::Changed) => self.put(path, Change::Removed, is_dir),
            // Born and gone within the window: nothing happened.
            Some(Change::Created) => {
                self.entries.remove(&path);
                self.touch();
            }
            Some(Change::Removed) => self.touch(),
            Some(Change::Renamed { from, .. }) => {
                self.entries.remove(&path);
                match self.entries.get(&from).map(|e| &e.change) {
                    None => self.put(from, Change::Removed, is_dir),
                    Some(Change::Created) => self.put(from, Change::Changed, is_dir),
                    Some(_) => self.touch(),
                }
            }
        }
    }

    fn renamed(&mut self, from: PathBuf, to: PathBuf, is_dir: bool) {
        let prev = self.entries.remove(&from).map(|e| e.change);
        match prev {
            // Created under a temporary name and renamed into place (an
            // editor's atomic save of a new file): created.
            Some(Change::Created) => {
                self.entries.remove(&to);
                self.created(to, is_dir);
            }
            Some(Change::Renamed {
                from: orig,
                changed,
            }) if orig == to => {
                // Renamed there and back.
                if changed {
                    self.changed(to, is_dir);
                } else {
                    self.touch();
                }
            }
            Some(Change::Renamed {
                from: orig,
                changed,
            }) => self.put(
                to,
                Change::Renamed {
                    from: orig,
                    changed,
                },
                is_dir,
            ),
            Some(Change::Changed) => self.put(
                to,
                Change::Renamed {
                    from,
                    changed: true,
                },
                is_dir,
            ),
            None | Some(Change::Removed) => self.put(
                to,
                Change::Renamed {
                    from,
                    changed: false,
                },
                is_dir,
            ),
        }
    }

    fn notice(&mut self, kind: WatchEventKind, path: &Path, message: String) {
        self.touch();
        let seq = self.next_seq();
        let mut e = event(kind, path, true);
        e.message = message;
        self.notices.push((seq, e));
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.notices.is_empty()
    }

    /// When the held events are due, if any are held.
    fn deadline(&self, debounce: Duration) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        let quiet = self.last? + debounce;
        let hold = self.first? + MAX_HOLD.max(debounce);
        Some(quiet.min(hold))
    }

    /// The held events in the order they first happened, if they are due.
    fn take_due(&mut self, now: Instant, debounce: Duration) -> Option<Vec<pb::WatchEvent>> {
        let due =
            self.entries.len() >= MAX_PENDING || self.deadline(debounce).is_some_and(|d| now >= d);
        if !due {
            return None;
        }
        let mut all: Vec<(u64, Vec<pb::WatchEvent>)> = self
            .entries
            .drain()
            .map(|(path, e)| {
                let evs = match e.change {
                    Change::Created => vec![event(WatchEventKind::Created, &path, e.is_dir)],
                    Change::Changed => vec![event(WatchEventKind::Changed, &path, e.is_dir)],
                    Change::Removed => vec![event(WatchEventKind::Removed, &path, e.is_dir)],
                    Change::Renamed { from, changed } => {
                        let mut r = event(WatchEventKind::Renamed, &from, e.is_dir);
                        r.new_path = to_wire(&path);
                        let mut v = vec![r];
                        if changed {
                            v.push(event(WatchEventKind::Changed, &path, e.is_dir));
                        }
                        v
                    }
                };
                (e.seq, evs)
            })
            .collect();
        all.extend(self.notices.drain(..).map(|(s, e)| (s, vec![e])));
        all.sort_by_key(|(s, _)| *s);
        self.first = None;
        self.last = None;
        Some(all.into_iter().flat_map(|(_, v)| v).collect())
    }
}

// ---------------------------------------------------------------- polling

/// What a stat scan remembers about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    is_dir: bool,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            is_dir: m.is_dir(),
            mode: m.mode(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// A directory's times and size move whenever an entry is added or
    /// removed, which is reported as that entry's own event; only its
    /// identity and mode count as a change of the directory.
    fn differs(&self, other: &Stamp) -> bool {
        if self.is_dir && other.is_dir {
            (self.dev, self.ino, self.mode) != (other.dev, other.ino, other.mode)
        } else {
            self != other
        }
    }
}

/// Everything under one polled directory (not the directory itself, whose
/// own changes its watched parent reports).
type Snapshot = HashMap<PathBuf, Stamp>;

fn scan(filter: &mut Filter, dir: &Path) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for entry in rd.flatten() {
            // DirEntry::metadata does not follow symlinks.
            let Ok(m) = entry.metadata() else { continue };
            let path = entry.path();
            if filter.is_ignored(&path, m.is_dir()) {
                continue;
            }
            if m.is_dir() {
                stack.push(path.clone());
            }
            snap.insert(path, Stamp::of(&m));
        }
    }
    snap
}

/// Reports the difference between two scans. A path that vanished and one
/// that appeared with the same inode are a rename (a reused inode number
/// within one interval is indistinguishable from that, and reported so);
/// renames of entries inside a renamed directory are implied by it.
fn diff(old: &Snapshot, new: &Snapshot, out: &mut Coalescer) {
    let mut gone: HashMap<(u64, u64), &Path> = HashMap::new();
    for (p, s) in old {
        if !new.contains_key(p) {
            gone.insert((s.dev, s.ino), p);
        }
    }
    let mut created: Vec<(&Path, &Stamp)> = new
        .iter()
        .filter(|(p, _)| !old.contains_key(*p))
        .map(|(p, s)| (p.as_path(), s))
        .collect();
    created.sort_by(|a, b| a.0.cmp(b.0));
    let mut renames: Vec<(&Path, &Path, bool)> = Vec::new();
    let mut renamed_from: HashSet<&Path> = HashSet::new();
    for (p, s) in created {
        match gone.get(&(s.dev, s.ino)) {
            Some(from) if !renamed_from.contains(from) => {
                renamed_from.insert(from);
                renames.push((from, p, s.is_dir));
            }
            _ => out.created(p.to_path_buf(), s.is_dir),
        }
    }
    let pairs: HashMap<&Path, &Path> = renames.iter().map(|(f, t, _)| (*f, *t)).collect();
    for (from, to, is_dir) in &renames {
        let implied = match (from.parent(), to.parent()) {
            (Some(fp), Some(tp)) => {
                pairs.get(fp) == Some(&tp) && from.file_name() == to.file_name()
            }
            _ => false,
        };
        if !implied {
            out.renamed(from.to_path_buf(), to.to_path_buf(), *is_dir);
        }
        if let (Some(a), Some(b)) = (old.get(*from), new.get(*to))
            && !a.is_dir
            && (a.size, a.mtime) != (b.size, b.mtime)
        {
            out.changed(to.to_path_buf(), *is_dir);
        }
    }
    let mut removed: Vec<(&PathBuf, &Stamp)> = old
        .iter()
        .filter(|(p, _)| !new.contains_key(*p) && !renamed_from.contains(p.as_path()))
        .collect();
    removed.sort_by(|a, b| b.0.cmp(a.0));
    for (p, s) in removed {
        out.removed(p.clone(), s.is_dir);
    }
    let mut changed: Vec<(&PathBuf, &Stamp)> = new
        .iter()
        .filter(|(p, s)| old.get(*p).is_some_and(|o| o.differs(s)))
        .collect();
    changed.sort_by(|a, b| a.0.cmp(b.0));
    for (p, s) in changed {
        out.changed(p.clone(), s.is_dir);
    }
}

// ---------------------------------------------------------------- the tree

/// Why a directory did not get a kernel watch.
enum NoWatch {
    /// Gone or unreadable: nothing to watch.
    Skip,
    /// Out of watches: poll it; the reason goes to the client.
    Poll(String),
}

/// One watch request's state, owned by its thread.
struct Tree {
    opts: Options,
    filter: Filter,
    /// None when polling everything (asked for, or no inotify instance).
    inotify: Option<Inotify>,
    /// Kernel-watched directories, both ways. Paths are shared (a 100,000
    /// directory tree would otherwise hold each path twice).
    by_wd: HashMap<WatchDescriptor, Arc<Path>>,
    by_dir: BTreeMap<Arc<Path>, WatchDescriptor>,
    /// Polled subtrees and their last scan.
    polled: BTreeMap<PathBuf, Snapshot>,
    /// `IN_MOVED_FROM` halves waiting for their `IN_MOVED_TO`, by cookie:
    /// the path, whether it is a directory, whether it was ignored.
    moves: HashMap<u32, (PathBuf, bool, bool)>,
    out: Coalescer,
}

/// Paths in `map` equal to `p` or under it (a BTreeMap of paths keeps a
/// subtree contiguous: paths compare component by component).
fn subtree<K: std::borrow::Borrow<Path> + Ord, V>(map: &BTreeMap<K, V>, p: &Path) -> Vec<PathBuf> {
    map.range::<Path, _>((std::ops::Bound::Included(p), std::ops::Bound::Unbounded))
        .map(|(k, _)| k.borrow())
        .take_while(|k| k.starts_with(p))
        .map(Path::to_path_buf)
        .collect()
}

impl Tree {
    fn new(opts: Options, filter: Filter) -> Self {
        Self {
            opts,
            filter,
            inotify: None,
            by_wd: HashMap::new(),
            by_dir: BTreeMap::new(),
            polled: BTreeMap::new(),
            moves: HashMap::new(),
            out: Coalescer::default(),
        }
    }

    /// Establishes the watch, sends READY, then reports until the client goes
    /// away.
    fn run(mut self, stop: &UnixStream, tx: &mpsc::Sender<Result<pb::WatchEvents, Status>>) {
        let root = self.opts.root.clone();
        if self.opts.force_polling {
            self.start_polling(root, None, false);
        } else {
            match Inotify::init() {
                Ok(i) => {
                    self.inotify = Some(i);
                    self.add_tree(root, false);
                }
                // EMFILE: fs.inotify.max_user_instances (128 by default) is
                // used up by other watchers of this user.
                Err(e) => self.start_polling(
                    root,
                    Some(format!("no inotify instance available ({e})")),
                    false,
                ),
            }
        }
        let ready = pb::WatchEvents {
            events: vec![event(WatchEventKind::Ready, &self.opts.root, true)],
        };
        if tx.blocking_send(Ok(ready)).is_err() {
            return;
        }
        if let Err(e) = self.serve(stop, tx) {
            let _ = tx.blocking_send(Err(e.to_status()));
        }
    }

    fn serve(
        &mut self,
        stop: &UnixStream,
        tx: &mpsc::Sender<Result<pb::WatchEvents, Status>>,
    ) -> Result<(), RemoteError> {
        let mut buf = vec![0u8; EVENT_BUFFER];
        let mut next_poll = Instant::now() + self.opts.poll_interval;
        loop {
            let now = Instant::now();
            let mut deadline = self.out.deadline(self.opts.debounce);
            if !self.polled.is_empty() {
                deadline = Some(deadline.map_or(next_poll, |d| d.min(next_poll)));
            }
            let timeout = deadline.map(|d| d.saturating_duration_since(now));
            let (inotify_ready, stopped) = wait(
                self.inotify.as_ref().map(AsRawFd::as_raw_fd),
                stop.as_raw_fd(),
                timeout,
            )
            .map_err(|e| RemoteError::new(ErrorKind::Internal, format!("poll: {e}")))?;
            if stopped {
                return Ok(());
            }
            if inotify_ready {
                self.drain(&mut buf)?;
            }
            let now = Instant::now();
            if !self.polled.is_empty() && now >= next_poll {
                self.poll_all();
                next_poll = Instant::now() + self.opts.poll_interval;
            }
            if let Some(events) = self.out.take_due(Instant::now(), self.opts.debounce) {
                for chunk in events.chunks(EVENT_BATCH) {
                    let msg = pb::WatchEvents {
                        events: chunk.to_vec(),
                    };
                    if tx.blocking_send(Ok(msg)).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Watches `dir` and every directory under it that is not ignored.
    /// `report`: the directory appeared after the watch started, so what is
    /// in it is new too and reported as created.
    fn add_tree(&mut self, dir: PathBuf, report: bool) {
        let mut queue = VecDeque::from([dir]);
        while let Some(d) = queue.pop_front() {
            if self.is_polled(&d) {
                continue;
            }
            match self.add_watch(&d) {
                Ok(()) => {}
                Err(NoWatch::Skip) => continue,
                Err(NoWatch::Poll(reason)) => {
                    self.start_polling(d, Some(reason), report);
                    continue;
                }
            }
            // Listed after the watch is in place: an entry created meanwhile
            // is seen twice (and folded) rather than never.
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for entry in rd.flatten() {
                let Ok(ft) = entry.file_type() else { continue };
                let path = entry.path();
                if self.filter.is_ignored(&path, ft.is_dir()) {
                    continue;
                }
                if report {
                    self.out.created(path.clone(), ft.is_dir());
                }
                if ft.is_dir() {
                    queue.push_back(path);
                }
            }
        }
    }

    fn add_watch(&mut self, dir: &Path) -> Result<(), NoWatch> {
        let Some(inotify) = self.inotify.as_mut() else {
            return Err(NoWatch::Skip);
        };
        if self.by_dir.len() >= self.opts.max_watches {
            return Err(NoWatch::Poll(format!(
                "the cap of {} kernel watches for this watch is reached; polling",
                self.opts.max_watches
            )));
        }
        // The root may be a symlink the user named on purpose; below it,
        // symlinks are never followed.
        let mask = if dir == self.opts.root {
            dir_mask() - WatchMask::DONT_FOLLOW
        } else {
            dir_mask()
        };
        match inotify.watches().add(dir, mask) {
            Ok(wd) => {
                let p: Arc<Path> = Arc::from(dir);
                self.by_wd.insert(wd.clone(), p.clone());
                self.by_dir.insert(p, wd);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Err(NoWatch::Poll(
                "the kernel's inotify watch limit is reached (fs.inotify.max_user_watches); polling"
                    .into(),
            )),
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "not watching");
                Err(NoWatch::Skip)
            }
        }
    }

    fn is_polled(&self, p: &Path) -> bool {
        p.ancestors().any(|a| self.polled.contains_key(a))
    }

    /// Polls `dir`'s subtree from now on. With a reason, the client is told
    /// (OVERFLOW then RESYNC); `report`: its contents are new.
    fn start_polling(&mut self, dir: PathBuf, reason: Option<String>, report: bool) {
        self.forget(&dir);
        let snap = scan(&mut self.filter, &dir);
        if report {
            let mut new: Vec<_> = snap.iter().collect();
            new.sort_by(|a, b| a.0.cmp(b.0));
            for (p, s) in new {
                self.out.created(p.clone(), s.is_dir);
            }
        }
        if let Some(reason) = reason {
            tracing::info!(dir = %dir.display(), %reason, "watch falls back to polling");
            self.out.notice(WatchEventKind::Overflow, &dir, reason);
            self.out.notice(
                WatchEventKind::Resync,
                &dir,
                "re-read this subtree: it is polled from now on".into(),
            );
        }
        self.polled.insert(dir, snap);
    }

    fn poll_all(&mut self) {
        let roots: Vec<PathBuf> = self.polled.keys().cloned().collect();
        for root in roots {
            let new = scan(&mut self.filter, &root);
            if let Some(old) = self.polled.get(&root) {
                diff(old, &new, &mut self.out);
            }
            self.polled.insert(root, new);
        }
    }

    /// Drops the kernel watches and polling of `p`'s subtree (it is gone).
    fn forget(&mut self, p: &Path) {
        for dir in subtree(&self.by_dir, p) {
            if let Some(wd) = self.by_dir.remove(dir.as_path()) {
                self.by_wd.remove(&wd);
                if let Some(i) = self.inotify.as_mut() {
                    let _ = i.watches().remove(wd);
                }
            }
        }
        for dir in subtree(&self.polled, p) {
            self.polled.remove(&dir);
        }
    }

    /// A watched directory was renamed from `from` to `to`: its kernel
    /// watches stay (they follow the inode), only our names for them change.
    fn moved(&mut self, from: &Path, to: &Path) {
        for dir in subtree(&self.by_dir, from) {
            if let Some(wd) = self.by_dir.remove(dir.as_path()) {
                let rel = dir.strip_prefix(from).unwrap_or(Path::new(""));
                let new: Arc<Path> = if rel.as_os_str().is_empty() {
                    Arc::from(to)
                } else {
                    Arc::from(to.join(rel))
                };
                self.by_wd.insert(wd.clone(), new.clone());
                self.by_dir.insert(new, wd);
            }
        }
        for dir in subtree(&self.polled, from) {
            self.polled.remove(&dir);
            let rel = dir.strip_prefix(from).unwrap_or(Path::new(""));
            let new = to.join(rel);
            let snap = scan(&mut self.filter, &new);
            self.polled.insert(new, snap);
        }
    }

    /// Reads every queued kernel event.
    fn drain(&mut self, buf: &mut [u8]) -> Result<(), RemoteError> {
        loop {
            if self.out.entries.len() >= MAX_PENDING {
                // Release what is held first (the caller does); the rest
                // stays queued in the kernel, and so do unpaired renames.
                return Ok(());
            }
            let Some(inotify) = self.inotify.as_mut() else {
                return Ok(());
            };
            let events: Vec<(WatchDescriptor, EventMask, u32, Option<Box<OsStr>>)> =
                match inotify.read_events(buf) {
                    Ok(evs) => evs
                        .map(|e| (e.wd, e.mask, e.cookie, e.name.map(Box::from)))
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(RemoteError::new(
                            ErrorKind::Io,
                            format!("reading inotify events: {e}"),
                        ));
                    }
                };
            if events.is_empty() {
                break;
            }
            for (wd, mask, cookie, name) in events {
                self.handle(wd, mask, cookie, name.as_deref());
            }
        }
        // The kernel queues both halves of a rename in one go, so a half
        // still unpaired after the queue is empty moved out of the tree.
        for (_, (path, is_dir, ignored)) in std::mem::take(&mut self.moves) {
            if !ignored {
                self.out.removed(path.clone(), is_dir);
            }
            if is_dir {
                self.forget(&path);
            }
        }
        Ok(())
    }

    fn handle(&mut self, wd: WatchDescriptor, mask: EventMask, cookie: u32, name: Option<&OsStr>) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            // Events were lost somewhere in the tree: poll all of it.
            let root = self.opts.root.clone();
            self.moves.clear();
            self.start_polling(
                root,
                Some("the kernel's event queue overflowed (fs.inotify.max_queued_events)".into()),
                false,
            );
            return;
        }
        if mask.contains(EventMask::IGNORED) {
            // The kernel dropped this watch (its directory is gone).
            if let Some(p) = self.by_wd.remove(&wd)
                && self.by_dir.get(&p) == Some(&wd)
            {
                self.by_dir.remove(&p);
            }
            return;
        }
        let Some(dir) = self.by_wd.get(&wd).cloned() else {
            return;
        };
        let Some(name) = name else {
            // About the watched directory itself; its parent reports it,
            // except for the root, which has no watched parent.
            if *dir == *self.opts.root
                && mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
            {
                self.out.removed(self.opts.root.clone(), true);
            }
            return;
        };
        let path = dir.join(name);
        let is_dir = mask.contains(EventMask::ISDIR);
        if name == ".gitignore" {
            self.filter.invalidate(&dir);
        }
        let ignored = self.filter.is_ignored(&path, is_dir);
        if mask.contains(EventMask::MOVED_FROM) {
            self.moves.insert(cookie, (path, is_dir, ignored));
            return;
        }
        if mask.contains(EventMask::MOVED_TO) {
            match self.moves.remove(&cookie) {
                Some((from, _, from_ignored)) => match (from_ignored, ignored) {
                    (false, false) => {
                        self.out.renamed(from.clone(), path.clone(), is_dir);
                        if is_dir {
                            self.moved(&from, &path);
                        }
                    }
                    (true, false) => self.arrived(path, is_dir),
                    (false, true) => {
                        self.out.removed(from.clone(), is_dir);
                        if is_dir {
                            self.forget(&from);
                        }
                    }
                    (true, true) => {}
                },
                None if !ignored => self.arrived(path, is_dir),
                None => {}
            }
            return;
        }
        if ignored {
            return;
        }
        if mask.contains(EventMask::CREATE) {
            self.arrived(path, is_dir);
        } else if mask.contains(EventMask::DELETE) {
            self.out.removed(path.clone(), is_dir);
            if is_dir {
                self.forget(&path);
            }
        } else if mask.intersects(EventMask::MODIFY | EventMask::CLOSE_WRITE | EventMask::ATTRIB) {
            self.out.changed(path, is_dir);
        }
    }

    /// `path` appeared (created or moved in).
    fn arrived(&mut self, path: PathBuf, is_dir: bool) {
        self.out.created(path.clone(), is_dir);
        if is_dir {
            self.add_tree(path, true);
        }
    }
}

/// Waits until the inotify descriptor has events, the stop socket is closed,
/// or `timeout` passes. Returns (inotify readable, stopped).
fn wait(
    inotify: Option<RawFd>,
    stop: RawFd,
    timeout: Option<Duration>,
) -> std::io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: stop,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            // A negative descriptor is skipped by poll(2).
            fd: inotify.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // Round up so a deadline 0.4 ms away does not spin with timeout 0.
    let ms = timeout.map_or(-1, |t| {
        i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
    });
    loop {
        // SAFETY: `fds` is a valid array of two pollfd for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n >= 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok((fds[1].revents != 0, fds[0].revents != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(evs: &[pb::WatchEvent]) -> Vec<(WatchEventKind, String, String)> {
        evs.iter()
            .map(|e| {
                (
                    e.kind(),
                    String::from_utf8_lossy(&e.path).into_owned(),
                    String::from_utf8_lossy(&e.new_path).into_owned(),
                )
            })
            .collect()
    }

    fn release(c: &mut Coalescer) -> Vec<(WatchEventKind, String, String)> {
        kinds(
            &c.take_due(Instant::now() + MAX_HOLD * 2, Duration::ZERO)
                .unwrap_or_default(),
        )
    }

    #[test]
    fn live_watches_are_capped_and_released() {
        let live = Arc::new(AtomicUsize::new(0));
        let mut held: Vec<LiveGuard> = (0..MAX_LIVE_WATCHES)
            .map(|_| LiveGuard::acquire(&live).unwrap())
            .collect();
        let e = LiveGuard::acquire(&live).err().expect("over the cap");
        assert_eq!(e.kind, ErrorKind::NoSpace);
        held.pop();
        assert!(LiveGuard::acquire(&live).is_ok());
        drop(held);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn created_then_written_is_created_and_created_then_removed_is_nothing() {
        let mut c = Coalescer::default();
        c.created("/t/a".into(), false);
        c.changed("/t/a".into(), false);
        c.created("/t/b".into(), false);
        c.removed("/t/b".into(), false);
        assert_eq!(
            release(&mut c),
            vec![(WatchEventKind::Created, "/t/a".into(), String::new())]
        );
        assert!(c.is_empty());
    }

    #[test]
    fn atomic_save_of_a_new_file_is_created_under_the_final_name() {
        let mut c = Coalescer::default();
        c.created("/t/.a.tmp".into(), false);
        c.changed("/t/.a.tmp".into(), false);
        c.renamed("/t/.a.tmp".into(), "/t/a".into(), false);
        assert_eq!(
            release(&mut c),
            vec![(WatchEventKind::Created, "/t/a".into(), String::new())]
        );
    }

    #[test]
    fn rename_chain_keeps_the_first_name_and_removal_after_rename_removes_it() {
        let mut c = Coalescer::default();
        c.renamed("/t/a".into(), "/t/b".into(), false);
        c.renamed("/t/b".into(), "/t/c".into(), false);
        assert_eq!(
            release(&mut c),
            vec![(WatchEventKind::Renamed, "/t/a".into(), "/t/c".into())]
        );
        c.renamed("/t/a".into(), "/t/b".into(), false);
        c.removed("/t/b".into(), false);
        assert_eq!(
            release(&mut c),
            vec![(WatchEventKind::Removed, "/t/a".into(), String::new())]
        );
    }

    #[test]
    fn events_are_held_for_the_quiet_period() {
        let mut c = Coalescer::default();
        c.changed("/t/a".into(), false);
        let now = Instant::now();
        assert!(c.take_due(now, Duration::from_secs(60)).is_none());
        assert!(
            c.take_due(
                now + MAX_HOLD.max(Duration::from_secs(60)),
                Duration::from_secs(60)
            )
            .is_some()
        );
    }

    #[test]
    fn globs_use_gitignore_syntax_at_any_depth() {
        let mut f = Filter::new(
            Path::new("/t"),
            &["node_modules".into(), "*.log".into()],
            false,
        )
        .unwrap();
        assert!(f.is_ignored(Path::new("/t/a/node_modules"), true));
        assert!(f.is_ignored(Path::new("/t/a/node_modules/x/y.js"), false));
        assert!(f.is_ignored(Path::new("/t/b.log"), false));
        assert!(!f.is_ignored(Path::new("/t/b.txt"), false));
        assert!(!f.is_ignored(Path::new("/t"), true));
        assert!(Filter::new(Path::new("/t"), &["{a".into()], false).is_err());
    }

    #[test]
    fn poll_diff_pairs_renames_by_inode_and_implies_children() {
        let st = |ino, is_dir| Stamp {
            dev: 1,
            ino,
            is_dir,
            mode: 0o644,
            size: 1,
            mtime: (1, 0),
            ctime: (1, 0),
        };
        let old: Snapshot = [
            ("/t/d".into(), st(1, true)),
            ("/t/d/f".into(), st(2, false)),
            ("/t/g".into(), st(3, false)),
        ]
        .into();
        let new: Snapshot = [
            ("/t/e".into(), st(1, true)),
            ("/t/e/f".into(), st(2, false)),
            ("/t/h".into(), st(4, false)),
        ]
        .into();
        let mut c = Coalescer::default();
        diff(&old, &new, &mut c);
        let mut got = release(&mut c);
        got.sort();
        let mut want = vec![
            (
                WatchEventKind::Renamed,
                "/t/d".to_string(),
                "/t/e".to_string(),
            ),
            (WatchEventKind::Created, "/t/h".into(), String::new()),
            (WatchEventKind::Removed, "/t/g".into(), String::new()),
        ];
        want.sort();
        assert_eq!(got, want);
    }
}
