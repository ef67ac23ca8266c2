//! `yonder fs TARGET watch`.
//!
//! One line per event, flushed as it arrives:
//!
//! ```text
//! ready /abs/root
//! created /abs/root/a.txt
//! changed /abs/root/a.txt
//! renamed /abs/root/a.txt -> /abs/root/b.txt
//! removed /abs/root/b.txt
//! overflow /abs/root/deep: the cap of 8 kernel watches for this watch is reached; polling
//! resync /abs/root/deep
//! ```
//!
//! Directories get a trailing `/`. `--json` prints one JSON object per line:
//! `{"kind":"renamed","path":"…","new_path":"…","is_dir":false}` (with
//! `message` for overflow, and `path_bytes`/`new_path_bytes` holding the raw
//! bytes when a name is not UTF-8). Runs until interrupted; a closed stdout
//! (`| head`) ends it quietly.
//!
//! When the connection to a remote target drops, the client dials again
//! and the watch is opened again: its first event after that is `resync
//! ROOT` (changes during the gap were not seen: rescan what matters)
//! instead of `ready`. Without a way back (the local daemon stopped, or the
//! target stays away for about two minutes) the command fails.

use crate::cli::FsOp;
use futures::StreamExt;
use serde::Serialize;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use yonder_client::Client;
use yonder_client::watch::WatchEvent;
use yonder_proto::pb;

/// `local`: relative paths are made absolute against the current directory.
pub async fn run(client: &Client, local: bool, op: FsOp) -> anyhow::Result<()> {
    let FsOp::Watch {
        path,
        ignore,
        gitignore,
        poll,
        poll_interval,
        debounce,
        max_watches,
        json,
    } = op
    else {
        anyhow::bail!("internal error: not a watch command");
    };
    let path = if local && path.is_relative() {
        std::path::absolute(&path)?
    } else {
        path
    };
    let req = pb::WatchRequest {
        path: yonder_proto::paths::to_wire(&path),
        ignore,
        use_gitignore: gitignore,
        force_polling: poll,
        // 0 means "the default" on the wire; `--debounce 0` asks for no
        // quiet period, which the server reads as the smallest one it has.
        debounce_ms: debounce.map_or(0, |d| d.max(1)),
        poll_interval_ms: poll_interval.unwrap_or(0),
        max_watches: max_watches.unwrap_or(0),
    };
    let mut out = std::io::stdout().lock();
    let mut reopened = false;
    let mut attempt = 0;
    loop {
        let failure = match client.watch(req.clone()).await {
            Ok(mut events) => loop {
                match events.next().await {
                    Some(Ok(ev)) => {
                        attempt = 0;
                        // After a reconnect, `ready` means "look again".
                        let ev = match ev {
                            WatchEvent::Ready { root } if reopened => {
                                WatchEvent::Resync { path: root }
                            }
                            ev => ev,
                        };
                        if !emit(&mut out, &ev, json)? {
                            return Ok(());
                        }
                    }
                    Some(Err(e)) => break anyhow::Error::new(e),
                    None => break anyhow::anyhow!("the watch ended"),
                }
            },
            Err(e) if reopened => anyhow::Error::new(e),
            Err(e) => return Err(e.into()),
        };
        // The client dials again on the next call; give up after its
        // budget, like a one-shot call would.
        if !client.redials() || attempt >= crate::REOPEN_DELAYS_MS.len() {
            return Err(failure.context("the watch ended: the connection to the server was lost"));
        }
        tracing::warn!("the watch stopped ({failure:#}); opening it again");
        tokio::time::sleep(std::time::Duration::from_millis(
            crate::REOPEN_DELAYS_MS[attempt],
        ))
        .await;
        attempt += 1;
        reopened = true;
    }
}

/// Prints one event; false when stdout is closed (the reader went away).
fn emit(out: &mut impl Write, ev: &WatchEvent, json: bool) -> anyhow::Result<bool> {
    {
        let mut line = if json {
            serde_json::to_vec(&JsonEvent::from(ev))?
        } else {
            human(ev)
        };
        line.push(b'\n');
        match out.write_all(&line).and_then(|()| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn push_path(line: &mut Vec<u8>, p: &Path, is_dir: bool) {
    line.extend_from_slice(p.as_os_str().as_bytes());
    if is_dir && !line.ends_with(b"/") {
        line.push(b'/');
    }
}

fn human(ev: &WatchEvent) -> Vec<u8> {
    let mut line = Vec::new();
    match ev {
        WatchEvent::Ready { root } => {
            line.extend_from_slice(b"ready ");
            push_path(&mut line, root, false);
        }
        WatchEvent::Created { path, is_dir } => {
            line.extend_from_slice(b"created ");
            push_path(&mut line, path, *is_dir);
        }
        WatchEvent::Changed { path, is_dir } => {
            line.extend_from_slice(b"changed ");
            push_path(&mut line, path, *is_dir);
        }
        WatchEvent::Removed { path, is_dir } => {
            line.extend_from_slice(b"removed ");
            push_path(&mut line, path, *is_dir);
        }
        WatchEvent::Renamed { from, to, is_dir } => {
            line.extend_from_slice(b"renamed ");
            push_path(&mut line, from, *is_dir);
            line.extend_from_slice(b" -> ");
            push_path(&mut line, to, *is_dir);
        }
        WatchEvent::Overflow { path, reason } => {
            line.extend_from_slice(b"overflow ");
            push_path(&mut line, path, false);
            line.extend_from_slice(b": ");
            line.extend_from_slice(reason.as_bytes());
        }
        WatchEvent::Resync { path } => {
            line.extend_from_slice(b"resync ");
            push_path(&mut line, path, false);
        }
    }
    line
}

#[derive(Serialize)]
struct JsonEvent {
    kind: &'static str,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<Vec<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_path_bytes: Option<Vec<u8>>,
    is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// The path as text, and its raw bytes when it is not UTF-8.
fn json_path(p: &Path) -> (String, Option<Vec<u8>>) {
    let raw = p.as_os_str().as_bytes();
    (
        p.to_string_lossy().into_owned(),
        std::str::from_utf8(raw).is_err().then(|| raw.to_vec()),
    )
}

impl From<&WatchEvent> for JsonEvent {
    fn from(ev: &WatchEvent) -> Self {
        let (kind, path, new_path, is_dir, message) = match ev {
            WatchEvent::Ready { root } => ("ready", root, None, true, None),
            WatchEvent::Created { path, is_dir } => ("created", path, None, *is_dir, None),
            WatchEvent::Changed { path, is_dir } => ("changed", path, None, *is_dir, None),
            WatchEvent::Removed { path, is_dir } => ("removed", path, None, *is_dir, None),
            WatchEvent::Renamed { from, to, is_dir } => ("renamed", from, Some(to), *is_dir, None),
            WatchEvent::Overflow { path, reason } => {
                ("overflow", path, None, true, Some(reason.clone()))
            }
            WatchEvent::Resync { path } => ("resync", path, None, true, None),
        };
        let (path, path_bytes) = json_path(path);
        let (new_path, new_path_bytes) = match new_path.map(|p| json_path(p)) {
            Some((p, b)) => (Some(p), b),
            None => (None, None),
        };
        Self {
            kind,
            path,
            path_bytes,
            new_path,
            new_path_bytes,
            is_dir,
            message,
        }
    }
}
