//! One page's websocket, bridged to the [`Client`].
//!
//! The page sends JSON requests `{"id": N, "op": "...", ...}` ([`Op`] is the
//! reference: one variant per operation, its fields are the request's).
//! Answers carry the request's id:
//!
//! - `{"id": N, "ok": VALUE}`: the one answer of a simple request;
//! - `{"id": N, "ev": VALUE}`: one event of a stream (watch, search, find,
//!   terminal attach, ports), any number of times, then
//! - `{"id": N, "end": true}` when the stream is over;
//! - `{"id": N, "err": {"kind": "conflict", "message": "..."}}` ends either.
//!
//! `{"target": {"state": "connecting"|"failed"|"connected"|"reconnecting"|"lost",
//! "generation": G, "message"?: M}}` (no id) tells the page about the link to
//! the target; after a reconnect (a new generation) the page re-opens its
//! streams. Requests made while connecting wait for the connection.
//!
//! `{"prompts": [{"id": P, "text": T, "secret": B}]}` (no id) lists ssh's
//! questions (password, passphrase, 2FA code, host key) waiting for an
//! answer; the page answers with `{"op": "answer", "prompt": P, "answer": A}`.
//!
//! `{"op": "cancel", "target": N}` stops request N (a search, a watch, a
//! terminal attachment: the terminal itself keeps running). Closing the
//! websocket cancels everything the page started except terminals and
//! forwards, which outlive the page on purpose.
//!
//! Paths are absolute on the target, as UTF-8 strings (names that are not
//! UTF-8 are shown with replacement characters). File contents travel as
//! text; terminal output and uploads as base64.

use crate::Shared;
use axum::extract::ws::{Message, WebSocket};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use yonder_client::search::{CaseMode, FindRequest, SearchEvent, SearchRequest};
use yonder_client::terminal::{OpenTerminal, TerminalEvent, TerminalWriter};
use yonder_client::watch::WatchEvent;
use yonder_client::{Client, FileType, RemoteError, WriteOptions};
use yonder_proto::pb::{self, ErrorKind};

/// Messages queued for the page. Bounded: a page that stops reading slows
/// its streams (and through them the target), it never grows our memory.
const OUT_QUEUE: usize = 64;

/// Largest file the editor opens. The page holds the text in CodeMirror
/// (which copes with tens of MiB) and the JSON message costs as much again.
const MAX_OPEN: u64 = 48 * 1024 * 1024;

/// Matching lines a workspace search shows before it stops: more is not
/// useful in a list and would only load the page.
const MAX_SEARCH_RESULTS: u64 = 5_000;

/// A result line is cut to this many bytes around the first match (minified
/// files have lines of megabytes).
const MAX_LINE_SHOWN: usize = 400;

/// Items gathered into one websocket message from a stream that has them
/// ready at once (search results, watch events).
const BATCH: usize = 256;

/// Paths the watch stream never reports: churn that no one edits.
const WATCH_IGNORE: &[&str] = &[".git/objects/**", "node_modules/**", "target/**"];

/// One request from the page.
#[derive(Debug, Deserialize)]
struct Request {
    id: u64,
    #[serde(flatten)]
    op: Op,
}

/// Every operation the page can ask for.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
enum Op {
    /// → `{target, root, version, host, user, os, home}`.
    Info,
    /// A directory's entries → `[{name, kind: "file"|"dir"|"symlink"|"other", dir}]`
    /// (`dir`: a directory or a link to one).
    List {
        path: String,
    },
    /// A file → `{text, version, size}`, or `{binary: true, version, size}`.
    Read {
        path: String,
    },
    /// Saves `text`; with `ifVersion` only if the file is still at that
    /// version (else the error kind is `conflict`) → `{version}`.
    Write {
        path: String,
        text: String,
        if_version: Option<String>,
    },
    /// A new empty file, or a directory with `dir`; fails if it exists.
    Create {
        path: String,
        dir: bool,
    },
    /// Renames; never replaces an existing `to`.
    Rename {
        from: String,
        to: String,
    },
    /// Deletes a file or a whole directory.
    Remove {
        path: String,
    },
    /// A file dropped onto the tree: base64 `data`; fails if it exists.
    Upload {
        path: String,
        data: String,
    },
    /// Stream of `[{kind, path, to?, dir}]` batches for the tree under `path`.
    Watch {
        path: String,
    },
    /// Workspace search: stream of `[{path, line, text, ranges: [[from, to]]}]`
    /// batches (UTF-16 columns, as the editor counts), then
    /// `{done: {files, lines, truncated}}`.
    Search {
        path: String,
        pattern: String,
        #[serde(default)]
        fixed: bool,
        #[serde(default)]
        case_insensitive: bool,
        #[serde(default)]
        word: bool,
        #[serde(default)]
        globs: Vec<String>,
    },
    /// Quick open: stream of `{results: [{path, positions}], done}`.
    Find {
        path: String,
        query: String,
    },
    /// A new terminal (the login shell) → `{id}`; attach to see it.
    TermOpen {
        rows: u16,
        cols: u16,
        cwd: Option<String>,
    },
    /// Stream: `{t: "attached", info}`, `{t: "data", offset, data}` (base64),
    /// `{t: "lost", bytes}`, `{t: "exit", code, signal}`. `from`: the offset
    /// to resume at (none: everything retained).
    TermAttach {
        term: String,
        from: Option<u64>,
    },
    /// Typed input (UTF-8, or base64 `data` with `binary`).
    TermInput {
        term: String,
        data: String,
        #[serde(default)]
        binary: bool,
    },
    TermResize {
        term: String,
        rows: u16,
        cols: u16,
    },
    /// SIGHUP, then SIGKILL if it lingers.
    TermKill {
        term: String,
    },
    /// → `[{id, command, cwd, pid, attached, exited}]`.
    TermList,
    /// Stream of the target's listening ports:
    /// `{open, address, port, pid, process, own}` (`own`: this process's
    /// own listener, seen because the target is this machine).
    Ports,
    /// Forwards the target's `port` (listening on `address`) → `{port, host, localPort}`.
    Forward {
        port: u16,
        address: String,
    },
    /// → `true` if it was forwarded.
    Unforward {
        port: u16,
    },
    /// → `[{port, host, localPort}]`.
    Forwards,
    /// Stops request `target`.
    Cancel {
        target: u64,
    },
    /// Answers ssh's question `prompt` (from a `prompts` message); no
    /// `answer` cancels it → `true` if it was still waiting.
    Answer {
        prompt: u64,
        answer: Option<String>,
    },
    /// Tries the first connection to the target again after it failed.
    Retry,
}

/// The page's end of the websocket: answers go through a bounded queue to
/// the one task that writes the socket.
#[derive(Clone)]
struct Out {
    tx: mpsc::Sender<String>,
}

fn wire_error(e: &RemoteError) -> Value {
    json!({
        "kind": e.kind.as_str_name().to_ascii_lowercase(),
        "message": e.to_string(),
    })
}

impl Out {
    async fn send(&self, v: Value) -> bool {
        self.tx.send(v.to_string()).await.is_ok()
    }
    async fn ok(&self, id: u64, v: Value) {
        self.send(json!({"id": id, "ok": v})).await;
    }
    async fn err(&self, id: u64, e: &RemoteError) {
        self.send(json!({"id": id, "err": wire_error(e)})).await;
    }
    /// False when the page is gone: the stream should stop.
    async fn ev(&self, id: u64, v: Value) -> bool {
        self.send(json!({"id": id, "ev": v})).await
    }
    async fn end(&self, id: u64) {
        self.send(json!({"id": id, "end": true})).await;
    }
}

/// The writers of the terminals this page is attached to, with the id of
/// the attach request that owns each (a re-attach replaces the entry).
type Writers = Arc<Mutex<HashMap<String, (u64, TerminalWriter)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves one page until its websocket closes.
pub async fn run(socket: WebSocket, s: Arc<Shared>) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(Message::Text(m.into())).await.is_err() {
                break;
            }
        }
    });
    let out = Out { tx };
    // The target link's state, pushed to the page as `{"target": {...}}`
    // (no id): the status bar shows it, and a new generation makes the page
    // re-open its streams.
    let mut states = s.link.subscribe();
    let status_out = out.clone();
    let status = tokio::spawn(async move {
        loop {
            let st = states.borrow_and_update().clone();
            if !status_out.send(json!({"target": st})).await {
                break;
            }
            if states.changed().await.is_err() {
                break;
            }
        }
    });
    // ssh's questions, pushed as `{"prompts": [{id, text, secret}]}` (no
    // id) on every change: the page shows a dialog for each.
    let mut changes = s.prompts.subscribe();
    let prompts_out = out.clone();
    let prompts = s.prompts.clone();
    let asking = tokio::spawn(async move {
        loop {
            changes.borrow_and_update();
            if !prompts_out.send(json!({"prompts": prompts.list()})).await {
                break;
            }
            if changes.changed().await.is_err() {
                break;
            }
        }
    });
    let writers: Writers = Arc::default();
    let mut tasks: HashMap<u64, AbortHandle> = HashMap::new();
    while let Some(msg) = incoming.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let req: Request = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                // Without an id there is no one to answer: say it on the
                // first request id we can find, else drop it.
                let id = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_u64));
                if let Some(id) = id {
                    let e =
                        RemoteError::new(ErrorKind::InvalidArgument, format!("bad request: {e}"));
                    out.err(id, &e).await;
                }
                continue;
            }
        };
        tasks.retain(|_, h| !h.is_finished());
        let id = req.id;
        match req.op {
            // Input, resizes and cancels are handled in order, here: typed
            // characters must reach the shell in the order they were typed.
            Op::TermInput { term, data, binary } => {
                let w = lock(&writers).get(&term).map(|(_, w)| w.clone());
                let bytes = if binary {
                    B64.decode(data.as_bytes()).unwrap_or_default()
                } else {
                    data.into_bytes()
                };
                if let Some(w) = w {
                    let _ = w.write(bytes).await;
                }
            }
            Op::TermResize { term, rows, cols } => {
                let w = lock(&writers).get(&term).map(|(_, w)| w.clone());
                if let Some(w) = w {
                    let _ = w.resize(rows.max(1), cols.max(1)).await;
                }
            }
            Op::Cancel { target } => {
                if let Some(h) = tasks.remove(&target) {
                    h.abort();
                }
            }
            // Answered here, not in a task: the connection being made may
            // be what every other request is waiting for.
            Op::Answer { prompt, answer } => {
                let taken = s.prompts.answer(prompt, answer);
                out.ok(id, json!(taken)).await;
            }
            Op::Retry => {
                s.link.retry();
                out.ok(id, json!(true)).await;
            }
            op => {
                let (s, out, writers) = (s.clone(), out.clone(), writers.clone());
                let h = tokio::spawn(async move {
                    if let Err(e) = handle(id, op, &s, &out, &writers).await {
                        out.err(id, &e).await;
                    }
                })
                .abort_handle();
                tasks.insert(id, h);
            }
        }
    }
    for h in tasks.values() {
        h.abort();
    }
    status.abort();
    asking.abort();
    writer.abort();
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::File => "file",
        FileType::Directory => "dir",
        FileType::Symlink => "symlink",
        _ => "other",
    }
}

/// UTF-16 length of the bytes before `byte` in `line` (CodeMirror counts
/// columns in UTF-16 code units, the server in bytes).
fn utf16_col(line: &[u8], byte: usize) -> usize {
    String::from_utf8_lossy(&line[..byte.min(line.len())])
        .encode_utf16()
        .count()
}

/// A result line for the list: cut around the first match when long, with
/// match ranges in UTF-16 units of the text sent.
fn shown_line(line: &[u8], ranges: &[std::ops::Range<usize>]) -> (String, Vec<[usize; 2]>) {
    let first = ranges.first().map_or(0, |r| r.start);
    let start = if line.len() > MAX_LINE_SHOWN {
        first.saturating_sub(MAX_LINE_SHOWN / 4)
    } else {
        0
    };
    let end = (start + MAX_LINE_SHOWN).min(line.len());
    let part = &line[start..end];
    let text = String::from_utf8_lossy(part).into_owned();
    let ranges = ranges
        .iter()
        .filter(|r| r.start >= start && r.start < end)
        .map(|r| {
            [
                utf16_col(part, r.start - start),
                utf16_col(part, r.end.min(end) - start),
            ]
        })
        .collect();
    (text, ranges)
}

fn watch_json(e: &WatchEvent) -> Value {
    match e {
        WatchEvent::Ready { root } => json!({"kind": "ready", "path": path_str(root)}),
        WatchEvent::Created { path, is_dir } => {
            json!({"kind": "created", "path": path_str(path), "dir": is_dir})
        }
        WatchEvent::Changed { path, is_dir } => {
            json!({"kind": "changed", "path": path_str(path), "dir": is_dir})
        }
        WatchEvent::Removed { path, is_dir } => {
            json!({"kind": "removed", "path": path_str(path), "dir": is_dir})
        }
        WatchEvent::Renamed { from, to, is_dir } => {
            json!({"kind": "renamed", "path": path_str(from), "to": path_str(to), "dir": is_dir})
        }
        WatchEvent::Overflow { path, reason } => {
            json!({"kind": "overflow", "path": path_str(path), "reason": reason})
        }
        WatchEvent::Resync { path } => json!({"kind": "resync", "path": path_str(path)}),
    }
}

fn terminal_json(t: &pb::TerminalInfo) -> Value {
    json!({
        "id": t.id,
        "command": t.command,
        "cwd": String::from_utf8_lossy(&t.cwd),
        "pid": t.pid,
        "attached": t.attached,
        "exited": t.exit.is_some(),
        "outputStart": t.output_start,
        "outputEnd": t.output_end,
    })
}

async fn handle(
    id: u64,
    op: Op,
    s: &Shared,
    out: &Out,
    writers: &Writers,
) -> Result<(), RemoteError> {
    let client = s.link.client().await?;
    let c: &Client = &client;
    match op {
        Op::Info => {
            let i = c.info().await?;
            let root = s.link.root().await?;
            out.ok(
                id,
                json!({
                    "target": s.opts.target,
                    "root": path_str(&root),
                    "version": c.server().yonder_version,
                    "webVersion": env!("CARGO_PKG_VERSION"),
                    "host": i.hostname,
                    "user": i.user,
                    "os": i.os,
                    "home": String::from_utf8_lossy(&i.home),
                }),
            )
            .await;
        }
        Op::List { path } => {
            let entries = c.read_dir(&path, true).await?;
            let v: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let kind = e.file_type();
                    let target = e.metadata.as_ref().map(|m| m.symlink_target_type());
                    let dir = kind == FileType::Directory
                        || (kind == FileType::Symlink && target == Some(FileType::Directory));
                    json!({
                        "name": String::from_utf8_lossy(&e.name),
                        "kind": kind_name(kind),
                        "dir": dir,
                    })
                })
                .collect();
            out.ok(id, Value::Array(v)).await;
        }
        Op::Read { path } => {
            // The version is taken *before* the read: if the file changes in
            // between, the saved version is older than the text and a save
            // reports a conflict rather than overwriting the newer file.
            let m = c.stat(&path, true).await?;
            if m.size > MAX_OPEN {
                return Err(RemoteError::new(
                    ErrorKind::TooLarge,
                    format!(
                        "{} bytes is more than the editor opens ({MAX_OPEN}); use a terminal",
                        m.size
                    ),
                )
                .with_path(&path));
            }
            let bytes = c.read_to_vec(&path).await?;
            let size = bytes.len();
            match String::from_utf8(bytes) {
                Ok(text) => {
                    out.ok(
                        id,
                        json!({"text": text, "version": m.version, "size": size}),
                    )
                    .await
                }
                Err(_) => {
                    out.ok(
                        id,
                        json!({"binary": true, "version": m.version, "size": size}),
                    )
                    .await
                }
            }
        }
        Op::Write {
            path,
            text,
            if_version,
        } => {
            let opts = WriteOptions {
                if_version,
                ..Default::default()
            };
            let r = c.write_bytes(&path, opts, text.into_bytes()).await?;
            let version = r.metadata.map(|m| m.version).unwrap_or_default();
            out.ok(id, json!({"version": version})).await;
        }
        Op::Create { path, dir } => {
            if dir {
                c.mkdir(&path, false, None).await?;
            } else {
                let opts = WriteOptions {
                    if_version: Some(String::new()),
                    ..Default::default()
                };
                c.write_bytes(&path, opts, Vec::new()).await?;
            }
            out.ok(id, Value::Bool(true)).await;
        }
        Op::Rename { from, to } => {
            c.rename(&from, &to, false).await?;
            out.ok(id, Value::Bool(true)).await;
        }
        Op::Remove { path } => {
            c.remove(&path, true).await?;
            out.ok(id, Value::Bool(true)).await;
        }
        Op::Upload { path, data } => {
            let bytes = B64.decode(data.as_bytes()).map_err(|e| {
                RemoteError::new(ErrorKind::InvalidArgument, format!("bad base64: {e}"))
            })?;
            let opts = WriteOptions {
                if_version: Some(String::new()),
                ..Default::default()
            };
            c.write_bytes(&path, opts, bytes).await?;
            out.ok(id, Value::Bool(true)).await;
        }
        Op::Watch { path } => {
            let req = pb::WatchRequest {
                path: yonder_proto::paths::to_wire(Path::new(&path)),
                ignore: WATCH_IGNORE.iter().map(|s| s.to_string()).collect(),
                // A big workspace's build output and dependencies cost no
                // kernel watches (as VS Code's watcher excludes).
                use_gitignore: true,
                ..Default::default()
            };
            let mut s = c.watch(req).await?.ready_chunks(BATCH);
            while let Some(batch) = s.next().await {
                let mut v = Vec::with_capacity(batch.len());
                for e in batch {
                    v.push(watch_json(&e?));
                }
                if !out.ev(id, Value::Array(v)).await {
                    return Ok(());
                }
            }
            out.end(id).await;
        }
        Op::Search {
            path,
            pattern,
            fixed,
            case_insensitive,
            word,
            globs,
        } => {
            let req = SearchRequest {
                path: yonder_proto::paths::to_wire(Path::new(&path)),
                pattern,
                fixed_strings: fixed,
                case_mode: if case_insensitive {
                    CaseMode::CaseInsensitive
                } else {
                    CaseMode::CaseSmart
                } as i32,
                whole_word: word,
                globs,
                respect_gitignore: true,
                max_results: MAX_SEARCH_RESULTS,
                max_file_size: MAX_OPEN,
                ..Default::default()
            };
            let mut s = c.grep(req).await?.ready_chunks(BATCH);
            while let Some(batch) = s.next().await {
                let mut lines = Vec::with_capacity(batch.len());
                let mut done = None;
                for e in batch {
                    match e? {
                        SearchEvent::Line(l) if !l.is_context => {
                            let (text, ranges) = shown_line(&l.line, &l.ranges);
                            lines.push(json!({
                                "path": path_str(&l.path),
                                "line": l.line_number,
                                "text": text,
                                "ranges": ranges,
                            }));
                        }
                        SearchEvent::Line(_) => {}
                        SearchEvent::Done(st) => done = Some(st),
                    }
                }
                if !lines.is_empty() && !out.ev(id, json!({"lines": lines})).await {
                    return Ok(());
                }
                if let Some(st) = done {
                    out.ev(
                        id,
                        json!({"done": {
                            "files": st.files_matched,
                            "lines": st.matched_lines,
                            "truncated": st.truncated,
                        }}),
                    )
                    .await;
                }
            }
            out.end(id).await;
        }
        Op::Find { path, query } => {
            let req = FindRequest {
                path: yonder_proto::paths::to_wire(Path::new(&path)),
                query,
                max_results: 50,
                respect_gitignore: true,
                ..Default::default()
            };
            let mut s = c.find(req).await?;
            while let Some(u) = s.next().await {
                let u = u?;
                let results: Vec<Value> = u
                    .results
                    .iter()
                    .map(|r| json!({"path": path_str(&r.path), "positions": r.positions}))
                    .collect();
                if !out
                    .ev(id, json!({"results": results, "done": u.done}))
                    .await
                {
                    return Ok(());
                }
            }
            out.end(id).await;
        }
        Op::TermOpen { rows, cols, cwd } => {
            let t = c
                .open_terminal(OpenTerminal {
                    rows,
                    cols,
                    cwd: Some(match cwd {
                        Some(c) => PathBuf::from(c),
                        None => s.link.root().await?,
                    }),
                    ..Default::default()
                })
                .await?;
            out.ok(id, json!({"id": t.id})).await;
        }
        Op::TermAttach { term, from } => {
            let mut sess = c.attach_terminal(&term, from).await?;
            lock(writers).insert(term.clone(), (id, sess.writer()));
            // Detaching (cancel, page gone) forgets the writer, unless a
            // newer attachment has replaced it.
            struct Forget<'a>(&'a Writers, String, u64);
            impl Drop for Forget<'_> {
                fn drop(&mut self) {
                    let mut w = lock(self.0);
                    if w.get(&self.1).is_some_and(|(owner, _)| *owner == self.2) {
                        w.remove(&self.1);
                    }
                }
            }
            let _forget = Forget(writers, term.clone(), id);
            if !out
                .ev(
                    id,
                    json!({"t": "attached", "info": terminal_json(&sess.info)}),
                )
                .await
            {
                return Ok(());
            }
            while let Some(ev) = sess.next().await {
                let v = match ev? {
                    TerminalEvent::Data { offset, data } => {
                        json!({"t": "data", "offset": offset, "data": B64.encode(&data)})
                    }
                    TerminalEvent::Lost(n) => json!({"t": "lost", "bytes": n}),
                    TerminalEvent::Exit(st) => {
                        json!({"t": "exit", "code": st.code, "signal": st.signal})
                    }
                };
                if !out.ev(id, v).await {
                    return Ok(());
                }
            }
            out.end(id).await;
        }
        Op::TermKill { term } => {
            c.kill_terminal(&term, 0).await?;
            out.ok(id, Value::Bool(true)).await;
        }
        Op::TermList => {
            let v: Vec<Value> = c
                .list_terminals()
                .await?
                .iter()
                .map(terminal_json)
                .collect();
            out.ok(id, Value::Array(v)).await;
        }
        Op::Ports => {
            let mut ports = c.watch_ports(None).await?;
            while let Some(e) = ports.next().await {
                let e = e?;
                let own = u16::try_from(e.port).is_ok_and(|p| s.forwards.own_ports().contains(&p));
                let v = json!({
                    "open": e.open,
                    "address": e.address,
                    "port": e.port,
                    "pid": e.pid,
                    "process": e.process,
                    "own": own,
                });
                if !out.ev(id, v).await {
                    return Ok(());
                }
            }
            out.end(id).await;
        }
        Op::Forward { port, address } => {
            let f = s.forwards.start(port, &address).await.map_err(|e| {
                RemoteError::new(ErrorKind::Io, format!("cannot listen for the forward: {e}"))
            })?;
            out.ok(id, serde_json::to_value(f).unwrap_or_default())
                .await;
        }
        Op::Unforward { port } => {
            out.ok(id, Value::Bool(s.forwards.stop(port))).await;
        }
        Op::Forwards => {
            out.ok(
                id,
                serde_json::to_value(s.forwards.list()).unwrap_or_default(),
            )
            .await;
        }
        Op::TermInput { .. }
        | Op::TermResize { .. }
        | Op::Cancel { .. }
        | Op::Answer { .. }
        | Op::Retry => {
            unreachable!("handled in order by the reader loop")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_the_pages_json() {
        let r: Request = serde_json::from_str(
            r#"{"id":7,"op":"write","path":"/a","text":"x","ifVersion":"v1"}"#,
        )
        .unwrap();
        assert_eq!(r.id, 7);
        assert!(
            matches!(&r.op, Op::Write { if_version: Some(v), .. } if v == "v1"),
            "{:?}",
            r.op
        );
        let r: Request =
            serde_json::from_str(r#"{"id":1,"op":"termAttach","term":"ab","from":null}"#).unwrap();
        assert!(matches!(r.op, Op::TermAttach { from: None, .. }));
        assert!(serde_json::from_str::<Request>(r#"{"id":1,"op":"nope"}"#).is_err());
    }

    #[test]
    fn utf16_columns_count_like_the_editor() {
        // "é" is 2 bytes, 1 UTF-16 unit; "😀" is 4 bytes, 2 units.
        let line = "é😀x".as_bytes();
        assert_eq!(utf16_col(line, 2), 1);
        assert_eq!(utf16_col(line, 6), 3);
    }

    #[test]
    fn long_lines_are_cut_around_the_match() {
        let mut line = vec![b'a'; 10_000];
        line[9_000..9_003].copy_from_slice(b"xyz");
        let matches = vec![9_000..9_003, 9_010..9_012];
        let (text, ranges) = shown_line(&line, &matches);
        assert_eq!(text.len(), MAX_LINE_SHOWN);
        let [a, b] = ranges[0];
        assert_eq!(&text[a..b], "xyz");
    }
}
