//! Text and file-name search: the `Search` service.
//!
//! Both calls walk the tree with ripgrep's own libraries, so that "what is
//! searched" means exactly what it means to `rg`: `ignore` decides which files
//! (hidden, `.gitignore`/`.ignore`/`.rgignore`, `-g` globs, size limit) and
//! walks directories on several threads; `grep-regex` and `grep-searcher`
//! find the matching lines (binary files stop at their first NUL, like rg's
//! default for files found by walking).
//!
//! Nothing is collected whole: each walker thread keeps a small batch of
//! matches, packed into one byte string (`yonder_proto::search_pack`), and
//! hands it to a bounded queue ([`STREAM_QUEUE`] messages), so a
//! slow client slows the walk instead of growing the daemon. When the client
//! drops the call the queue closes; every walker thread checks for that
//! before each file and inside each file's search, and quits the walk.
//!
//! `Find` keeps only the best `max_results` paths (a bounded heap shared by
//! the walker threads) and sends a snapshot of them a few times a second.

mod prefilter;

use super::request_path;
use bytes::Bytes;
use grep_regex::RegexMatcherBuilder;
use grep_searcher::{
    BinaryDetection, Searcher, SearcherBuilder, Sink, SinkContext, SinkFinish, SinkMatch,
};
use ignore::overrides::{Override, OverrideBuilder};
use ignore::{DirEntry, WalkBuilder, WalkState};
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Utf32Str};
use prefilter::{LineMatcher, PatternKind};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use yonder_proto::RemoteError;
use yonder_proto::limits::STREAM_QUEUE;
use yonder_proto::pb::{self, CaseMode, ErrorKind, search_server::Search};
use yonder_proto::search_pack::PackWriter;

type RespStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// A batch of matches is sent once it holds this many bytes of lines. Big
/// enough that per-message overhead vanishes next to the search, small
/// enough that [`STREAM_QUEUE`] full batches stay a few MiB.
const BATCH_BYTES: usize = 256 * 1024;

/// ... or once its oldest match waited this long, so that a search that finds
/// little still shows what it found while it goes on walking.
const BATCH_INTERVAL: Duration = Duration::from_millis(20);

/// Longest line sent whole. A match in a minified 50 MB file must not make a
/// message larger than `limits::MAX_MESSAGE` (4 MiB); longer lines are cut
/// here and their ranges clipped to the part that is sent.
const MAX_LINE: usize = 1024 * 1024;

/// `Find`'s result count when the request says 0.
const FIND_DEFAULT_RESULTS: usize = 100;

/// `Find`'s largest result count: one snapshot of this many paths stays well
/// under the message cap.
const FIND_MAX_RESULTS: usize = 10_000;

/// How often `Find` sends the best results so far while the walk goes on.
const FIND_INTERVAL: Duration = Duration::from_millis(100);

/// Walks that may run at once; more searches wait for a turn. Each walk
/// takes one thread per core and the page cache's attention, so a burst of
/// searches (an editor searching as the user types, a script in a loop)
/// queues instead of multiplying threads. Cancelled searches leave at once,
/// so the queue drains fast when a newer search replaces an older one.
const MAX_CONCURRENT_WALKS: usize = 4;

#[derive(Debug, Clone)]
struct WalkSlots(Arc<Semaphore>);

impl Default for WalkSlots {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(MAX_CONCURRENT_WALKS)))
    }
}

impl WalkSlots {
    async fn acquire(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.0
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RemoteError::new(ErrorKind::Internal, "search slots closed").to_status())
    }
}

#[derive(Debug, Default, Clone)]
pub struct SearchService {
    /// Shared by all connections: the daemon holds one service.
    walks: WalkSlots,
}

fn invalid(message: impl Into<String>) -> RemoteError {
    RemoteError::new(ErrorKind::InvalidArgument, message)
}

/// The root must exist: a walk over a missing path would just find nothing,
/// and "no matches" would hide a typo in the path.
fn check_root(path: &Path) -> Result<(), RemoteError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| RemoteError::from_io(&e, path))
}

/// rg's `-g`: a glob includes (and then only matching files are searched),
/// `!glob` excludes. `ignore`'s overrides implement exactly that.
fn overrides(root: &Path, globs: &[String]) -> Result<Override, RemoteError> {
    let mut b = OverrideBuilder::new(root);
    for g in globs {
        b.add(g)
            .map_err(|e| invalid(format!("bad glob {g:?}: {e}")))?;
    }
    b.build().map_err(|e| invalid(format!("bad globs: {e}")))
}

/// The walk rg would do over `root` with these flags.
fn walker(
    root: &Path,
    hidden: bool,
    respect_gitignore: bool,
    follow: bool,
    max_filesize: u64,
    overrides: Override,
) -> WalkBuilder {
    let mut b = WalkBuilder::new(root);
    b.hidden(!hidden)
        .parents(respect_gitignore)
        .ignore(respect_gitignore)
        .git_ignore(respect_gitignore)
        .git_global(respect_gitignore)
        .git_exclude(respect_gitignore)
        // As in rg, .gitignore files count only inside a git repository
        // (`require_git` stays at its default, true); .ignore and .rgignore
        // count everywhere.
        .follow_links(follow)
        .max_filesize((max_filesize > 0).then_some(max_filesize))
        .overrides(overrides)
        // 0: one thread per core, as rg picks (it caps at 12).
        .threads(0);
    if respect_gitignore {
        b.add_custom_ignore_filename(".rgignore");
    }
    b
}

/// Only regular files are searched (with `follow_links` the walker already
/// reports a link by its target's type, as rg does).
fn is_file(e: &DirEntry) -> bool {
    e.file_type().is_some_and(|t| t.is_file())
}

fn matcher(r: &pb::SearchRequest) -> Result<LineMatcher, RemoteError> {
    let mut b = RegexMatcherBuilder::new();
    let case = CaseMode::try_from(r.case_mode).unwrap_or(CaseMode::CaseSensitive);
    match case {
        CaseMode::CaseSensitive => {}
        CaseMode::CaseInsensitive => {
            b.case_insensitive(true);
        }
        CaseMode::CaseSmart => {
            b.case_smart(true);
        }
    }
    b.word(r.whole_word)
        .fixed_strings(r.fixed_strings)
        // Like rg: a match never spans lines, which lets the searcher look
        // at whole buffers and report only the matching lines.
        .line_terminator(Some(b'\n'));
    let regex = b
        .build(&r.pattern)
        .map_err(|e| invalid(format!("bad pattern: {e}")))?;
    let kind = PatternKind {
        fixed_strings: r.fixed_strings,
        may_fold_case: case != CaseMode::CaseSensitive,
    };
    Ok(LineMatcher::new(regex, &r.pattern, kind))
}

// ---------------------------------------------------------------- grep

/// What the walker threads of one `Grep` share.
struct GrepShared {
    tx: mpsc::Sender<Result<pb::SearchResults, Status>>,
    /// 0: no limit.
    max_results: u64,
    /// Matching lines claimed so far (may run past `max_results` by the
    /// claims that were refused).
    matched_lines: AtomicU64,
    files_searched: AtomicU64,
    files_matched: AtomicU64,
    /// The client went away: nothing more is sent.
    cancelled: AtomicBool,
    /// `max_results` was reached: no new file is started, batches in hand
    /// are still delivered.
    limit_reached: AtomicBool,
    /// Until the first batch went out, every match is sent at once: time to
    /// first result is what a user waiting on a big tree feels.
    first_sent: AtomicBool,
}

impl GrepShared {
    fn stopped(&self) -> bool {
        self.cancelled.load(Relaxed) || self.limit_reached.load(Relaxed)
    }

    /// Claims one matching line under the limit; false when the limit is
    /// already used up.
    fn claim_line(&self) -> bool {
        let n = self.matched_lines.fetch_add(1, Relaxed);
        if self.max_results == 0 {
            return true;
        }
        if n + 1 >= self.max_results {
            self.limit_reached.store(true, Relaxed);
        }
        n < self.max_results
    }
}

/// One walker thread's unsent matches, packed (see
/// `yonder_proto::search_pack`).
struct Batch<'s> {
    shared: &'s GrepShared,
    lines: PackWriter,
    /// One line's match ranges, reused from line to line.
    ranges: Vec<(u32, u32)>,
    started: Instant,
}

impl<'s> Batch<'s> {
    fn new(shared: &'s GrepShared) -> Self {
        Self {
            shared,
            lines: PackWriter::new(),
            ranges: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Makes room for a line of `len` bytes: sends the batch first if the
    /// line would take it past [`BATCH_BYTES`].
    fn make_room(&mut self, path: &[u8], len: usize) {
        if self.lines.len() + path.len() + len + 64 > BATCH_BYTES {
            self.flush();
        }
        if self.lines.is_empty() {
            self.started = Instant::now();
        }
    }

    /// Adds a matching line (cut at [`MAX_LINE`]) with the ranges in
    /// `self.ranges`.
    fn push_match(&mut self, path: &[u8], line_number: u64, line: &[u8]) {
        let line = &line[..line.len().min(MAX_LINE)];
        self.make_room(path, line.len());
        self.lines.push_match(path, line_number, line, &self.ranges);
        self.sent_first();
    }

    fn push_context(&mut self, path: &[u8], line_number: u64, line: &[u8]) {
        let line = &line[..line.len().min(MAX_LINE)];
        self.make_room(path, line.len());
        self.lines.push_context(path, line_number, line);
        self.sent_first();
    }

    /// Until the first batch went out, every line goes at once.
    fn sent_first(&mut self) {
        if !self.shared.first_sent.load(Relaxed) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.lines.is_empty() || self.shared.cancelled.load(Relaxed) {
            return;
        }
        let packed = self.lines.take();
        // Walker threads are plain OS threads, not tokio workers, so waiting
        // here for the client is fine: it is the back-pressure.
        if self
            .shared
            .tx
            .blocking_send(Ok(pb::SearchResults {
                packed,
                stats: None,
            }))
            .is_err()
        {
            self.shared.cancelled.store(true, Relaxed);
        } else {
            self.shared.first_sent.store(true, Relaxed);
        }
    }

    fn flush_if_old(&mut self) {
        if !self.lines.is_empty() && self.started.elapsed() >= BATCH_INTERVAL {
            self.flush();
        }
    }
}

impl Drop for Batch<'_> {
    /// A walker thread's last matches go out when the thread ends.
    fn drop(&mut self) {
        self.flush();
    }
}

/// Receives one file's matching and context lines from the searcher.
struct FileSink<'a, 's> {
    batch: &'a mut Batch<'s>,
    matcher: &'a LineMatcher,
    path: &'a [u8],
    matched: bool,
}

fn without_terminator(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

impl Sink for FileSink<'_, '_> {
    type Error = std::io::Error;

    fn matched(&mut self, _: &Searcher, m: &SinkMatch<'_>) -> Result<bool, Self::Error> {
        let first = m.line_number().unwrap_or(0);
        // Without multi-line mode each SinkMatch is one line; iterating keeps
        // this right should that ever change.
        for (i, line) in m.lines().enumerate() {
            let shared = self.batch.shared;
            if shared.cancelled.load(Relaxed) || !shared.claim_line() {
                return Ok(false);
            }
            self.matched = true;
            let line = without_terminator(line);
            let mut ranges = std::mem::take(&mut self.batch.ranges);
            ranges.clear();
            let found = self.matcher.line_matches(line, |r| {
                if r.start() < MAX_LINE {
                    ranges.push((r.start() as u32, r.end().min(MAX_LINE) as u32));
                }
                true
            });
            self.batch.ranges = ranges;
            found.map_err(std::io::Error::other)?;
            self.batch.push_match(self.path, first + i as u64, line);
        }
        // The last allowed line was just claimed: stop this file too.
        Ok(!self.batch.shared.stopped())
    }

    fn context(&mut self, _: &Searcher, c: &SinkContext<'_>) -> Result<bool, Self::Error> {
        if self.batch.shared.cancelled.load(Relaxed) {
            return Ok(false);
        }
        self.batch.push_context(
            self.path,
            c.line_number().unwrap_or(0),
            without_terminator(c.bytes()),
        );
        Ok(true)
    }

    fn finish(&mut self, _: &Searcher, _: &SinkFinish) -> Result<(), Self::Error> {
        if self.matched {
            self.batch.shared.files_matched.fetch_add(1, Relaxed);
        }
        Ok(())
    }
}

/// One walker thread: its own searcher (they hold buffers) and batch.
struct GrepWorker<'s> {
    searcher: Searcher,
    matcher: LineMatcher,
    batch: Batch<'s>,
}

impl GrepWorker<'_> {
    fn visit(&mut self, entry: Result<DirEntry, ignore::Error>) -> WalkState {
        let shared = self.batch.shared;
        if shared.stopped() {
            return WalkState::Quit;
        }
        // A client that went away while this thread had nothing to send is
        // noticed here, before the next file.
        if shared.tx.is_closed() {
            shared.cancelled.store(true, Relaxed);
            return WalkState::Quit;
        }
        // rg reports unreadable directories on stderr and goes on; the
        // protocol has no place for such warnings, so they are skipped.
        let Ok(entry) = entry else {
            return WalkState::Continue;
        };
        if is_file(&entry) {
            let mut sink = FileSink {
                batch: &mut self.batch,
                matcher: &self.matcher,
                path: entry.path().as_os_str().as_bytes(),
                matched: false,
            };
            self.matcher.forget();
            // A file that vanished or cannot be read is skipped, as rg does.
            if self
                .searcher
                .search_path(&self.matcher, entry.path(), &mut sink)
                .is_ok()
            {
                shared.files_searched.fetch_add(1, Relaxed);
            }
            self.batch.flush_if_old();
        }
        if shared.stopped() {
            WalkState::Quit
        } else {
            WalkState::Continue
        }
    }
}

fn grep_walk(walk: WalkBuilder, matcher: LineMatcher, searcher: Searcher, shared: GrepShared) {
    walk.build_parallel().run(|| {
        let mut w = GrepWorker {
            searcher: searcher.clone(),
            matcher: matcher.clone(),
            batch: Batch::new(&shared),
        };
        Box::new(move |entry| w.visit(entry))
    });
    // Every worker (and its batch) is dropped when `run` returns, so all
    // matches are queued before the stats.
    if shared.cancelled.load(Relaxed) {
        return;
    }
    let matched = shared.matched_lines.load(Relaxed);
    let stats = pb::SearchStats {
        files_searched: shared.files_searched.load(Relaxed),
        files_matched: shared.files_matched.load(Relaxed),
        matched_lines: if shared.max_results > 0 {
            matched.min(shared.max_results)
        } else {
            matched
        },
        // Reaching the limit stops the search, so more matches may exist.
        truncated: shared.limit_reached.load(Relaxed),
    };
    let _ = shared.tx.blocking_send(Ok(pb::SearchResults {
        packed: Bytes::new(),
        stats: Some(stats),
    }));
}

// ---------------------------------------------------------------- find

/// A ranked path: higher score first, then the shorter path, then bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ranked {
    score: u32,
    path: Bytes,
    positions: Vec<u32>,
}

impl Ord for Ranked {
    /// `Greater` means better.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .cmp(&other.score)
            .then_with(|| other.path.len().cmp(&self.path.len()))
            .then_with(|| other.path.cmp(&self.path))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The best `cap` paths seen so far.
struct TopK {
    cap: usize,
    /// Min-heap: the worst kept result is on top, ready to be replaced.
    heap: BinaryHeap<Reverse<Ranked>>,
    /// Bumped on every change, so unchanged snapshots are not resent.
    generation: u64,
}

impl TopK {
    /// Whether a result with `score` could enter (checked before the work of
    /// computing match positions).
    fn admits_score(&self, score: u32) -> bool {
        self.heap.len() < self.cap || self.heap.peek().is_some_and(|w| score >= w.0.score)
    }

    fn offer(&mut self, r: Ranked) {
        if self.heap.len() < self.cap {
            self.heap.push(Reverse(r));
        } else if self.heap.peek().is_some_and(|w| r > w.0) {
            self.heap.pop();
            self.heap.push(Reverse(r));
        } else {
            return;
        }
        self.generation += 1;
    }

    fn snapshot(&self) -> Vec<pb::FindResult> {
        let mut v: Vec<&Ranked> = self.heap.iter().map(|r| &r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter()
            .map(|r| pb::FindResult {
                path: r.path.clone(),
                score: r.score,
                positions: r.positions.clone(),
            })
            .collect()
    }
}

struct FindShared {
    pattern: Pattern,
    root: PathBuf,
    top: Mutex<TopK>,
    files_scanned: AtomicU64,
    cancelled: AtomicBool,
}

/// A path as the matcher sees it: chars, and the byte offset each starts at.
/// Bytes that are not UTF-8 become U+FFFD one byte each, so positions still
/// point at the right bytes of a non-UTF-8 name.
fn decode(bytes: &[u8], chars: &mut Vec<char>, offsets: &mut Vec<u32>) {
    chars.clear();
    offsets.clear();
    let mut at = 0usize;
    for chunk in bytes.utf8_chunks() {
        for (i, c) in chunk.valid().char_indices() {
            chars.push(c);
            offsets.push((at + i) as u32);
        }
        at += chunk.valid().len();
        for _ in chunk.invalid() {
            chars.push(char::REPLACEMENT_CHARACTER);
            offsets.push(at as u32);
            at += 1;
        }
    }
}

struct FindWorker<'s> {
    shared: &'s FindShared,
    matcher: nucleo_matcher::Matcher,
    chars: Vec<char>,
    offsets: Vec<u32>,
    indices: Vec<u32>,
}

impl FindWorker<'_> {
    fn visit(&mut self, entry: Result<DirEntry, ignore::Error>) -> WalkState {
        let shared = self.shared;
        if shared.cancelled.load(Relaxed) {
            return WalkState::Quit;
        }
        let Ok(entry) = entry else {
            return WalkState::Continue;
        };
        // Quick open lists files, and links (to files, usually), not
        // directories.
        let wanted = entry
            .file_type()
            .is_some_and(|t| t.is_file() || t.is_symlink());
        if !wanted {
            return WalkState::Continue;
        }
        shared.files_scanned.fetch_add(1, Relaxed);
        let rel = entry
            .path()
            .strip_prefix(&shared.root)
            .unwrap_or(entry.path());
        let rel = if rel.as_os_str().is_empty() {
            // The root itself is a file: name it by its file name.
            Path::new(entry.file_name())
        } else {
            rel
        };
        let bytes = rel.as_os_str().as_bytes();
        decode(bytes, &mut self.chars, &mut self.offsets);
        let hay = if bytes.is_ascii() {
            Utf32Str::Ascii(bytes)
        } else {
            Utf32Str::Unicode(&self.chars)
        };
        let Some(score) = shared.pattern.score(hay, &mut self.matcher) else {
            return WalkState::Continue;
        };
        // Cheap check without the positions; the lock is short and taken
        // only by candidates that can still make the list.
        if !shared
            .top
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admits_score(score)
        {
            return WalkState::Continue;
        }
        self.indices.clear();
        shared
            .pattern
            .indices(hay, &mut self.matcher, &mut self.indices);
        self.indices.sort_unstable();
        self.indices.dedup();
        let positions = self
            .indices
            .iter()
            .filter_map(|&i| self.offsets.get(i as usize).copied())
            .collect();
        shared
            .top
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .offer(Ranked {
                score,
                path: Bytes::copy_from_slice(bytes),
                positions,
            });
        WalkState::Continue
    }
}

fn find_snapshot(shared: &FindShared, done: bool) -> pb::FindResults {
    let top = shared.top.lock().unwrap_or_else(|e| e.into_inner());
    pb::FindResults {
        results: top.snapshot(),
        done,
        files_scanned: shared.files_scanned.load(Relaxed),
    }
}

/// Drives a `Find`: the walk on the blocking pool, snapshots from here.
async fn find_task(
    walk: WalkBuilder,
    shared: Arc<FindShared>,
    tx: mpsc::Sender<Result<pb::FindResults, Status>>,
) {
    let walk_shared = shared.clone();
    let mut walk_done = tokio::task::spawn_blocking(move || {
        let s = &*walk_shared;
        walk.build_parallel().run(|| {
            let mut w = FindWorker {
                shared: s,
                matcher: nucleo_matcher::Matcher::new(Config::DEFAULT.match_paths()),
                chars: Vec::new(),
                offsets: Vec::new(),
                indices: Vec::new(),
            };
            Box::new(move |entry| w.visit(entry))
        });
    });
    let mut tick = tokio::time::interval(FIND_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut sent_generation = 0;
    loop {
        tokio::select! {
            r = &mut walk_done => {
                if let Err(e) = r {
                    let _ = tx.send(Err(RemoteError::new(ErrorKind::Internal, format!("find failed: {e}")).to_status())).await;
                    return;
                }
                let _ = tx.send(Ok(find_snapshot(&shared, true))).await;
                return;
            }
            _ = tx.closed() => {
                shared.cancelled.store(true, Relaxed);
                return;
            }
            _ = tick.tick() => {
                let generation = shared.top.lock().unwrap_or_else(|e| e.into_inner()).generation;
                if generation != sent_generation {
                    sent_generation = generation;
                    // A slow client delays snapshots, never the walk.
                    if tx.send(Ok(find_snapshot(&shared, false))).await.is_err() {
                        shared.cancelled.store(true, Relaxed);
                        return;
                    }
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Search for SearchService {
    type GrepStream = RespStream<pb::SearchResults>;
    async fn grep(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<Self::GrepStream>, Status> {
        let r = req.into_inner();
        let root = request_path(&r.path)?;
        let matcher = matcher(&r)?;
        let overrides = overrides(&root, &r.globs)?;
        check_root(&root)?;
        let walk = walker(
            &root,
            r.hidden,
            r.respect_gitignore,
            r.follow_symlinks,
            r.max_file_size,
            overrides,
        );
        let searcher = SearcherBuilder::new()
            // rg's default for files found by walking: stop reading a file
            // at its first NUL (matches before it are still reported).
            .binary_detection(BinaryDetection::quit(b'\x00'))
            .line_number(true)
            .before_context(r.context_before as usize)
            .after_context(r.context_after as usize)
            .build();
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let shared = GrepShared {
            tx,
            max_results: r.max_results,
            matched_lines: AtomicU64::new(0),
            files_searched: AtomicU64::new(0),
            files_matched: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            limit_reached: AtomicBool::new(false),
            first_sent: AtomicBool::new(false),
        };
        // Waiting here holds back the response headers; a client that gives
        // up while waiting drops this future and its place in the queue.
        let slot = self.walks.acquire().await?;
        tokio::task::spawn_blocking(move || {
            grep_walk(walk, matcher, searcher, shared);
            drop(slot);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type FindStream = RespStream<pb::FindResults>;
    async fn find(
        &self,
        req: Request<pb::FindRequest>,
    ) -> Result<Response<Self::FindStream>, Status> {
        let r = req.into_inner();
        let root = request_path(&r.path)?;
        let overrides = overrides(&root, &r.globs)?;
        check_root(&root)?;
        let walk = walker(&root, r.hidden, r.respect_gitignore, false, 0, overrides);
        let cap = match r.max_results as usize {
            0 => FIND_DEFAULT_RESULTS,
            n => n.min(FIND_MAX_RESULTS),
        };
        let shared = Arc::new(FindShared {
            pattern: Pattern::parse(&r.query, CaseMatching::Smart, Normalization::Smart),
            root,
            top: Mutex::new(TopK {
                cap,
                heap: BinaryHeap::with_capacity(cap + 1),
                generation: 0,
            }),
            files_scanned: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let slot = self.walks.acquire().await?;
        tokio::spawn(async move {
            find_task(walk, shared, tx).await;
            drop(slot);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_keeps_byte_offsets_of_non_utf8_names() {
        let (mut c, mut o) = (Vec::new(), Vec::new());
        decode(b"a\xffb\xc3\xa9c", &mut c, &mut o);
        assert_eq!(c, vec!['a', '\u{fffd}', 'b', 'é', 'c']);
        assert_eq!(o, vec![0, 1, 2, 3, 5]);
    }

    #[test]
    fn ranking_prefers_score_then_shorter_path() {
        let r = |score, p: &'static [u8]| Ranked {
            score,
            path: Bytes::from_static(p),
            positions: vec![],
        };
        let mut top = TopK {
            cap: 2,
            heap: BinaryHeap::new(),
            generation: 0,
        };
        top.offer(r(10, b"long/path/x"));
        top.offer(r(10, b"x"));
        top.offer(r(5, b"y"));
        top.offer(r(20, b"z/z"));
        let s: Vec<_> = top.snapshot().into_iter().map(|r| r.path).collect();
        assert_eq!(
            s,
            vec![Bytes::from_static(b"z/z"), Bytes::from_static(b"x")]
        );
        assert!(!top.admits_score(9));
    }
}
