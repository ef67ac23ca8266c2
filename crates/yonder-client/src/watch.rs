//! Watch calls (see the `watch` service in the schema).
//!
//! [`Client::watch`] yields one [`WatchEvent`] at a time (the server sends
//! them in batches). The first is [`WatchEvent::Ready`]. Dropping the stream
//! ends the watch on the server and releases its kernel watches.

use crate::{Client, RemoteStream, Result, remote};
use futures::StreamExt;
use std::path::PathBuf;
use yonder_proto::paths::from_wire;
use yonder_proto::pb::{self, WatchEventKind};

/// One change in a watched tree. Paths are absolute on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The watch is established: changes from now on are reported.
    Ready {
        root: PathBuf,
    },
    Created {
        path: PathBuf,
        is_dir: bool,
    },
    Changed {
        path: PathBuf,
        is_dir: bool,
    },
    Removed {
        path: PathBuf,
        is_dir: bool,
    },
    Renamed {
        from: PathBuf,
        to: PathBuf,
        is_dir: bool,
    },
    /// Events under `path` were or could be lost (`reason` says why); a
    /// [`WatchEvent::Resync`] follows.
    Overflow {
        path: PathBuf,
        reason: String,
    },
    /// Re-read `path` (a subtree) instead of trusting earlier events.
    Resync {
        path: PathBuf,
    },
}

impl WatchEvent {
    /// The event from its wire form; `None` for kinds this client does not
    /// know (a newer server), which are skipped.
    pub fn from_wire(e: pb::WatchEvent) -> Option<Self> {
        let path = from_wire(&e.path);
        let is_dir = e.is_dir;
        Some(match e.kind() {
            WatchEventKind::Ready => Self::Ready { root: path },
            WatchEventKind::Created => Self::Created { path, is_dir },
            WatchEventKind::Changed => Self::Changed { path, is_dir },
            WatchEventKind::Removed => Self::Removed { path, is_dir },
            WatchEventKind::Renamed => Self::Renamed {
                from: path,
                to: from_wire(&e.new_path),
                is_dir,
            },
            WatchEventKind::Overflow => Self::Overflow {
                path,
                reason: e.message,
            },
            WatchEventKind::Resync => Self::Resync { path },
            WatchEventKind::Unspecified => return None,
        })
    }
}

impl Client {
    /// Watches a directory tree. Fails with `NOT_FOUND` or `NOT_A_DIRECTORY`
    /// naming the path before any event.
    pub async fn watch(&self, req: pb::WatchRequest) -> Result<RemoteStream<WatchEvent>> {
        let s = self
            .watch
            .clone()
            .watch(req)
            .await
            .map_err(remote)?
            .into_inner();
        let s = s.flat_map(|batch| {
            let items: Vec<Result<WatchEvent>> = match batch {
                Ok(b) => b
                    .events
                    .into_iter()
                    .filter_map(WatchEvent::from_wire)
                    .map(Ok)
                    .collect(),
                Err(s) => vec![Err(remote(s))],
            };
            futures::stream::iter(items)
        });
        Ok(RemoteStream { inner: Box::pin(s) })
    }
}
