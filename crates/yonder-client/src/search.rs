//! Search calls (see the `search` service in the schema).
//!
//! [`Client::grep`] flattens the server's batches into one item per line and
//! ends with the stats; [`Client::find`] yields the server's successive
//! "best so far" lists. Dropping either stream stops the walk on the server.

use crate::{Client, RemoteStream, Result, remote};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use yonder_proto::RemoteError;
use yonder_proto::paths::from_wire;
use yonder_proto::pb;
use yonder_proto::pb::ErrorKind;
use yonder_proto::search_pack::{self, PackError, PackedLine};

/// The lines a grep stream has delivered, so that a search run again after a
/// drop gives only new ones: per file, the last line number delivered. Lines
/// come grouped by file, so the current file is kept aside (one compare of
/// its path per line) and the map, keyed by a hash of the path, is only
/// touched when the file changes. The current file's path is made once and
/// shared by its lines.
///
/// It also keeps the request's `max_results` across runs: a run after a drop
/// is asked for that many plus those already given (it may find the given
/// ones again first, or other files first), and the lines given stop at the
/// limit, so a cut search gives as many as an uncut one.
#[derive(Default)]
struct Delivered {
    files: HashMap<u64, u64>,
    /// The wire path of the last line's file, its hash and its path.
    current: Option<(Bytes, u64, Arc<Path>)>,
    line: u64,
    /// The request's `max_results` (0: none).
    max: u64,
    /// Matching lines delivered.
    matched: u64,
    /// A run after a drop is under way.
    resumed: bool,
    /// Hash of the file of the last matching line delivered.
    last_match_file: u64,
}

impl Delivered {
    /// The request for the next run: the first as asked, later ones with
    /// room for the lines they find again.
    fn request(&mut self, req: &SearchRequest, again: bool) -> SearchRequest {
        let mut req = req.clone();
        self.max = req.max_results;
        if again {
            self.resumed = true;
            if req.max_results > 0 {
                req.max_results = req.max_results.saturating_add(self.matched);
            }
        }
        req
    }

    /// The limit is used up by lines already delivered.
    fn full(&self) -> bool {
        self.max > 0 && self.matched >= self.max
    }

    /// A run's stats, with the count of a run after a drop held to the
    /// limit it was asked to stay under.
    fn stats(&self, mut stats: SearchStats) -> SearchStats {
        if self.resumed && self.max > 0 && stats.matched_lines >= self.max {
            stats.matched_lines = self.max;
            stats.truncated = true;
        }
        stats
    }

    /// `l` as a [`SearchLine`], or None if it was delivered before, or is
    /// over the limit (after a drop; a single run stops there itself).
    fn line(&mut self, l: PackedLine) -> Option<SearchLine> {
        if !matches!(&self.current, Some((p, ..)) if *p == l.path) {
            let hash = fnv1a(&l.path);
            if let Some((_, before, _)) = &self.current {
                self.files.insert(*before, self.line);
            }
            self.line = self.files.get(&hash).copied().unwrap_or(0);
            let path = Arc::from(from_wire(&l.path));
            self.current = Some((l.path.clone(), hash, path));
        }
        if l.line_number <= self.line {
            return None;
        }
        self.line = l.line_number;
        let (_, hash, path) = self.current.as_ref()?;
        if !l.is_context {
            if self.full() {
                return None;
            }
            self.matched += 1;
            self.last_match_file = *hash;
        } else if self.resumed && self.full() && *hash != self.last_match_file {
            // Context of a match over the limit, in another file.
            return None;
        }
        Some(search_line(l, path.clone()))
    }
}

/// FNV-1a, 64 bits: a path's key in [`Delivered`] (no copy of the path
/// kept; a collision would only hide lines after a drop).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub use yonder_proto::pb::{CaseMode, FindRequest, SearchRequest, SearchStats};

/// One line of a search result: a match, or context around one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchLine {
    /// Shared by the lines of one file.
    pub path: Arc<Path>,
    /// 1-based.
    pub line_number: u64,
    /// The line without its terminator.
    pub line: Bytes,
    /// Byte ranges of every match in `line`; empty for context lines.
    pub ranges: Vec<Range<usize>>,
    pub is_context: bool,
}

impl SearchLine {
    /// 1-based byte column of the first match, as rg's `--column` prints it.
    pub fn column(&self) -> Option<u64> {
        self.ranges.first().map(|r| r.start as u64 + 1)
    }
}

/// What a grep stream yields: lines as they are found, then the stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchEvent {
    Line(SearchLine),
    Done(SearchStats),
}

/// One path found by [`Client::find`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPath {
    /// Relative to the request's path.
    pub path: PathBuf,
    /// Higher is better.
    pub score: u32,
    /// Byte offsets of the matched characters in `path`.
    pub positions: Vec<usize>,
}

/// The best paths so far; replaces the previous update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindUpdate {
    /// Best first.
    pub results: Vec<FoundPath>,
    /// The walk is complete: this is the final list.
    pub done: bool,
    pub files_scanned: u64,
}

fn search_line(l: PackedLine, path: Arc<Path>) -> SearchLine {
    SearchLine {
        path,
        line_number: l.line_number,
        ranges: l
            .ranges
            .iter()
            .map(|&(start, end)| start as usize..end as usize)
            .collect(),
        line: l.line,
        is_context: l.is_context,
    }
}

fn malformed(e: PackError) -> RemoteError {
    RemoteError::new(
        ErrorKind::Internal,
        format!("bad search results from the server: {e}"),
    )
}

fn ended_early(what: &str) -> RemoteError {
    RemoteError::new(
        ErrorKind::Io,
        format!("the {what} ended before its last message (connection lost?)"),
    )
}

impl Client {
    /// Searches file contents under `req.path`, like rg. Lines arrive as the
    /// server finds them (in no particular file order; the lines of one file
    /// in order); the last item is [`SearchEvent::Done`]. A bad pattern or
    /// glob fails the call with `InvalidArgument`, a missing path with
    /// `NotFound`.
    pub async fn grep(&self, req: SearchRequest) -> Result<RemoteStream<SearchEvent>> {
        let search = self.search.clone();
        let call = move |seen: &mut Delivered, again| {
            let (mut c, req) = (search.clone(), seen.request(&req, again));
            async move { Ok(c.grep(req).await?.into_inner()) }
        };
        // After a drop the search runs again from the start; the lines of
        // one file come in order, so a file's last line number delivered
        // says which of its lines to leave out.
        let take = |seen: &mut Delivered, b: pb::SearchResults| {
            let mut v: Vec<Result<SearchEvent>> = Vec::new();
            for l in search_pack::unpack(b.packed) {
                match l {
                    Ok(l) => {
                        if let Some(l) = seen.line(l) {
                            v.push(Ok(SearchEvent::Line(l)));
                        }
                    }
                    Err(e) => v.push(Err(malformed(e))),
                }
            }
            (v, b.stats.map(|st| seen.stats(st)))
        };
        let s = self.resumable(Delivered::default(), call, take).await?;
        let mut finished = false;
        let s = s
            .map(Some)
            .chain(futures::stream::iter([None]))
            .flat_map(move |batch| {
                let items: Vec<Result<SearchEvent>> = match batch {
                    Some(Ok((mut v, stats))) => {
                        if let Some(stats) = stats {
                            finished = true;
                            v.push(Ok(SearchEvent::Done(stats)));
                        }
                        v
                    }
                    Some(Err(e)) => {
                        finished = true;
                        vec![Err(remote(e))]
                    }
                    None if finished => vec![],
                    None => vec![Err(ended_early("search"))],
                };
                futures::stream::iter(items)
            });
        Ok(RemoteStream { inner: Box::pin(s) })
    }

    /// Finds files whose path (relative to `req.path`) fuzzy-matches
    /// `req.query`, for quick open. Yields the best results so far a few
    /// times a second, then a last update with `done` set.
    pub async fn find(&self, req: FindRequest) -> Result<RemoteStream<FindUpdate>> {
        let search = self.search.clone();
        // Each update is a whole list: after a drop the walk starts over and
        // its updates simply follow.
        let call = move |_: &mut (), _| {
            let (mut c, req) = (search.clone(), req.clone());
            async move { Ok(c.find(req).await?.into_inner()) }
        };
        let s = self.resumable((), call, |_, m| m).await?;
        let mut finished = false;
        let s = s
            .map(Some)
            .chain(futures::stream::iter([None]))
            .filter_map(move |m| {
                let item = match m {
                    Some(Ok(m)) => {
                        finished |= m.done;
                        Some(Ok(FindUpdate {
                            results: m
                                .results
                                .into_iter()
                                .map(|r| FoundPath {
                                    path: from_wire(&r.path),
                                    score: r.score,
                                    positions: r.positions.iter().map(|&p| p as usize).collect(),
                                })
                                .collect(),
                            done: m.done,
                            files_scanned: m.files_scanned,
                        }))
                    }
                    Some(Err(e)) => {
                        finished = true;
                        Some(Err(remote(e)))
                    }
                    None if finished => None,
                    None => Some(Err(ended_early("find"))),
                };
                futures::future::ready(item)
            });
        Ok(RemoteStream { inner: Box::pin(s) })
    }

    /// The final result list of a find.
    pub async fn find_all(&self, req: FindRequest) -> Result<FindUpdate> {
        let mut s = self.find(req).await?;
        while let Some(u) = s.next().await {
            let u = u?;
            if u.done {
                return Ok(u);
            }
        }
        Err(ended_early("find"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_run_again_gives_only_the_lines_not_delivered() {
        let line = |p: &str, n: u64| PackedLine {
            path: Bytes::copy_from_slice(p.as_bytes()),
            line_number: n,
            line: Bytes::new(),
            ranges: vec![],
            is_context: false,
        };
        let mut d = Delivered::default();
        let first: Vec<_> = [("a", 1), ("a", 5), ("", 2), ("b", 1)]
            .into_iter()
            .filter_map(|(p, n)| d.line(line(p, n)))
            .collect();
        assert_eq!(first.len(), 4);
        assert!(
            Arc::ptr_eq(&first[0].path, &first[1].path),
            "one path per file"
        );
        // The run again, in another file order, after the drop.
        let again = [
            ("b", 1),
            ("b", 3),
            ("", 2),
            ("", 9),
            ("a", 1),
            ("a", 5),
            ("a", 6),
        ];
        let new: Vec<_> = again
            .into_iter()
            .filter_map(|(p, n)| d.line(line(p, n)))
            .map(|l| (l.path.to_string_lossy().into_owned(), l.line_number))
            .collect();
        let want = [("b", 3), ("", 9), ("a", 6)].map(|(p, n)| (p.to_string(), n));
        assert_eq!(new, want);
    }

    /// With a limit of 4: 2 lines, a drop, then the run again finds other
    /// files first. It is asked for 4 + 2 lines, and 4 lines are given in
    /// all, with the last match's trailing context but no other context.
    #[test]
    fn a_search_run_again_keeps_the_limit_of_one_run() {
        let line = |p: &str, n: u64, is_context: bool| PackedLine {
            path: Bytes::copy_from_slice(p.as_bytes()),
            line_number: n,
            line: Bytes::new(),
            ranges: vec![],
            is_context,
        };
        let req = SearchRequest {
            max_results: 4,
            ..Default::default()
        };
        let mut d = Delivered::default();
        assert_eq!(d.request(&req, false).max_results, 4);
        let first = [("a", 1), ("a", 2)]
            .into_iter()
            .filter_map(|(p, n)| d.line(line(p, n, false)))
            .count();
        assert_eq!(first, 2);
        assert_eq!(d.request(&req, true).max_results, 6, "room for the 2 again");
        let again = [
            ("b", 1, false),
            ("b", 2, false),
            ("b", 3, true),
            ("c", 4, true),
            ("c", 5, false),
            ("a", 1, false),
            ("a", 2, false),
            ("a", 3, false),
        ];
        let new: Vec<_> = again
            .into_iter()
            .filter_map(|(p, n, c)| d.line(line(p, n, c)))
            .map(|l| (l.path.to_string_lossy().into_owned(), l.line_number))
            .collect();
        let want = [("b", 1), ("b", 2), ("b", 3)].map(|(p, n)| (p.to_string(), n));
        assert_eq!(new, want);
        let stats = d.stats(SearchStats {
            matched_lines: 6,
            ..Default::default()
        });
        assert_eq!((stats.matched_lines, stats.truncated), (4, true));
    }
}
