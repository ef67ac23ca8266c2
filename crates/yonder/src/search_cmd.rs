//! `yonder search` and `yonder find`.
//!
//! `search` prints like `rg --no-heading --column` and exits like rg: 0 when
//! a line matched, 1 when none did, other codes for errors.

use crate::cli::{FindArgs, SearchArgs};
use crate::connect;
use futures::StreamExt;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use yonder_client::search::{
    CaseMode, FindRequest, FoundPath, SearchEvent, SearchLine, SearchRequest, SearchStats,
};
use yonder_proto::paths::to_wire;

/// Where to search, and how to print the paths that come back.
struct Root {
    /// Sent to the server.
    request: PathBuf,
    /// What the user typed, which printed paths start with (as with rg);
    /// `None`: print paths relative to the root.
    shown: Option<PathBuf>,
}

impl Root {
    /// On `local`, relative paths mean the current directory (sent
    /// absolute); elsewhere they mean the home directory, the daemon's
    /// working directory, as in scp.
    fn new(local: bool, path: Option<PathBuf>) -> anyhow::Result<Self> {
        Ok(match (local, path) {
            (true, None) => Root {
                request: std::env::current_dir()?,
                shown: None,
            },
            (true, Some(p)) if p.is_relative() => Root {
                request: std::path::absolute(&p)?,
                shown: Some(p),
            },
            (false, None) => Root {
                request: PathBuf::from("."),
                shown: None,
            },
            (_, Some(p)) => Root {
                request: p.clone(),
                shown: Some(p),
            },
        })
    }

    /// A path from the server, as the user should read it.
    fn display(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.request) {
            Ok(rel) => match &self.shown {
                Some(s) if rel.as_os_str().is_empty() => s.clone(),
                Some(s) => s.join(rel),
                None if rel.as_os_str().is_empty() => path.to_path_buf(),
                None => rel.to_path_buf(),
            },
            Err(_) => path.to_path_buf(),
        }
    }
}

/// Text for JSON: the lossy string always, and the exact bytes when they are
/// not UTF-8 (as `format::JsonMetadata` does for paths).
fn lossy(bytes: &[u8]) -> (String, Option<Vec<u8>>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(bytes.to_vec()),
        ),
    }
}

#[derive(Serialize)]
struct JsonLine {
    #[serde(rename = "type")]
    kind: &'static str,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<Vec<u8>>,
    line_number: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u64>,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    text_bytes: Option<Vec<u8>>,
    /// Byte ranges `[start, end)` of the matches in the text.
    ranges: Vec<[usize; 2]>,
}

#[derive(Serialize)]
struct JsonSummary {
    #[serde(rename = "type")]
    kind: &'static str,
    files_searched: u64,
    files_matched: u64,
    matched_lines: u64,
    truncated: bool,
}

fn search_request(args: &SearchArgs, path: &Path) -> SearchRequest {
    let case_mode = if args.smart_case {
        CaseMode::CaseSmart
    } else if args.ignore_case {
        CaseMode::CaseInsensitive
    } else {
        CaseMode::CaseSensitive
    };
    let (before, after) = match args.context {
        Some(c) => (
            args.before_context.unwrap_or(c),
            args.after_context.unwrap_or(c),
        ),
        None => (
            args.before_context.unwrap_or(0),
            args.after_context.unwrap_or(0),
        ),
    };
    SearchRequest {
        path: to_wire(path),
        pattern: args.pattern.clone(),
        fixed_strings: args.fixed_strings,
        case_mode: case_mode as i32,
        whole_word: args.word_regexp,
        globs: args.globs.clone(),
        hidden: args.hidden,
        respect_gitignore: !args.no_ignore,
        max_results: args.max_count.unwrap_or(0),
        max_file_size: args.max_filesize.unwrap_or(0),
        context_before: before,
        context_after: after,
        follow_symlinks: args.follow,
    }
}

/// Prints lines as rg does, with `--` between groups that are not adjacent
/// when context is asked for.
struct Printer<W: Write> {
    out: W,
    json: bool,
    context: bool,
    /// Flush after every line: a person is watching.
    interactive: bool,
    /// The previous line's path from the server and as it is printed:
    /// lines come grouped by file, so most lines reuse it rather than
    /// re-deriving it (which cost a third of the CLI's time on a search
    /// printing a million lines).
    shown: Option<(std::sync::Arc<Path>, PathBuf)>,
    /// The previous line's number.
    last: Option<u64>,
}

impl<W: Write> Printer<W> {
    fn line(&mut self, root: &Root, l: &SearchLine) -> std::io::Result<()> {
        let same_file = matches!(&self.shown, Some((p, _)) if std::sync::Arc::ptr_eq(p, &l.path) || p.as_os_str() == l.path.as_os_str());
        if !same_file {
            self.shown = Some((l.path.clone(), root.display(&l.path)));
        }
        let Some((_, path)) = &self.shown else {
            unreachable!("set just above")
        };
        if self.json {
            let (p, pb) = lossy(path.as_os_str().as_bytes());
            let (text, tb) = lossy(&l.line);
            let j = JsonLine {
                kind: if l.is_context { "context" } else { "match" },
                path: p,
                path_bytes: pb,
                line_number: l.line_number,
                column: l.column(),
                text,
                text_bytes: tb,
                ranges: l.ranges.iter().map(|r| [r.start, r.end]).collect(),
            };
            serde_json::to_writer(&mut self.out, &j)?;
            self.out.write_all(b"\n")?;
        } else {
            if self.context
                && let Some(ln) = self.last
                && (!same_file || l.line_number != ln + 1)
            {
                self.out.write_all(b"--\n")?;
            }
            self.out.write_all(path.as_os_str().as_bytes())?;
            match l.column() {
                Some(col) if !l.is_context => {
                    write!(self.out, ":{}:{}:", l.line_number, col)?;
                }
                _ => write!(self.out, "-{}-", l.line_number)?,
            }
            self.out.write_all(&l.line)?;
            self.out.write_all(b"\n")?;
            self.last = Some(l.line_number);
        }
        if self.interactive {
            self.out.flush()?;
        }
        Ok(())
    }

    fn summary(&mut self, s: &SearchStats) -> std::io::Result<()> {
        if self.json {
            let j = JsonSummary {
                kind: "summary",
                files_searched: s.files_searched,
                files_matched: s.files_matched,
                matched_lines: s.matched_lines,
                truncated: s.truncated,
            };
            serde_json::to_writer(&mut self.out, &j)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }
}

pub async fn search(run_dir: Option<&Path>, args: SearchArgs) -> anyhow::Result<()> {
    let (target, client) = connect(run_dir, &args.target).await?;
    let root = Root::new(target.is_local(), args.path.clone())?;
    let req = search_request(&args, &root.request);
    let mut stream = client.grep(req).await?;
    let stdout = std::io::stdout();
    let mut p = Printer {
        interactive: stdout.is_terminal(),
        out: std::io::BufWriter::new(stdout.lock()),
        json: args.json,
        context: req_has_context(&args),
        shown: None,
        last: None,
    };
    let mut stats = None;
    while let Some(ev) = stream.next().await {
        let printed = match ev? {
            SearchEvent::Line(l) => p.line(&root, &l),
            SearchEvent::Done(s) => {
                let r = p.summary(&s);
                stats = Some(s);
                r
            }
        };
        match printed {
            // `yonder search … | head`: the reader has what it wanted.
            // Dropping the stream stops the search on the target; leave
            // quietly, as rg does.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
    }
    match p.out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        r => r?,
    }
    match stats {
        Some(s) if s.matched_lines > 0 => Ok(()),
        // Like rg and grep: 1 means "ran fine, found nothing".
        _ => Err(crate::exit_with(1)),
    }
}

fn req_has_context(a: &SearchArgs) -> bool {
    a.context.unwrap_or(0) > 0
        || a.before_context.unwrap_or(0) > 0
        || a.after_context.unwrap_or(0) > 0
}

#[derive(Serialize)]
struct JsonFound {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<Vec<u8>>,
    score: u32,
    /// Byte offsets of the matched characters in `path`.
    positions: Vec<usize>,
}

pub async fn find(run_dir: Option<&Path>, args: FindArgs) -> anyhow::Result<()> {
    let (target, client) = connect(run_dir, &args.target).await?;
    let root = Root::new(target.is_local(), args.path.clone())?;
    let done = client
        .find_all(FindRequest {
            path: to_wire(&root.request),
            query: args.query.clone(),
            max_results: args.max,
            hidden: args.hidden,
            respect_gitignore: !args.no_ignore,
            globs: Vec::new(),
        })
        .await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let v: Vec<JsonFound> = done.results.iter().map(json_found).collect();
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
    } else {
        // Paths relative to the searched directory, best first: what quick
        // open shows.
        for r in &done.results {
            out.write_all(r.path.as_os_str().as_bytes())?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    if done.results.is_empty() {
        return Err(crate::exit_with(1));
    }
    Ok(())
}

fn json_found(r: &FoundPath) -> JsonFound {
    let (path, path_bytes) = lossy(r.path.as_os_str().as_bytes());
    JsonFound {
        path,
        path_bytes,
        score: r.score,
        positions: r.positions.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_paths_start_as_the_user_typed_them() {
        let r = Root {
            request: "/home/u/proj/src".into(),
            shown: Some("src".into()),
        };
        assert_eq!(
            r.display(Path::new("/home/u/proj/src/a/b.rs")),
            Path::new("src/a/b.rs")
        );
        let r = Root {
            request: "/home/u/proj".into(),
            shown: None,
        };
        assert_eq!(r.display(Path::new("/home/u/proj/a.rs")), Path::new("a.rs"));
        let r = Root {
            request: ".".into(),
            shown: None,
        };
        assert_eq!(r.display(Path::new("./a.rs")), Path::new("a.rs"));
    }
}
