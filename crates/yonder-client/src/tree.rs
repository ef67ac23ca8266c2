//! Whole-tree transfers: [`Client::put_tree`] and [`Client::get_tree`]. The
//! batches are made and applied by `yonder_proto::tree` (`send_tree`,
//! `TreeWriter`), which both ends share.

use crate::{Client, RETRY_DELAYS_MS, RemoteStream, Result, is_link_error, remote, resume};
use futures::{Stream, StreamExt};
use std::path::Path;
use yonder_proto::paths::to_wire;
use yonder_proto::pb::{self, put_tree_message::Message};

pub use yonder_proto::pb::{TreeBatch, TreeSummary};
pub use yonder_proto::tree::Feed;

impl Client {
    /// Whether the server has the tree calls (older servers do not).
    pub fn supports_tree(&self) -> bool {
        self.server()
            .capabilities
            .iter()
            .any(|c| c == yonder_proto::CAP_FS_TREE)
    }

    /// Writes the tree that `batches` describe under `dest` on the target
    /// (created if missing). Errors about single entries are in the summary;
    /// an `Err` means the transfer stopped (files already renamed into place
    /// stay, no file is left half-written). Dropping the future cancels it.
    ///
    /// On a client that redials, an upload cut by a dropped connection is
    /// made again from the start with a new stream from `batches`: each
    /// file replaces its namesake whole, so writing one twice changes
    /// nothing.
    pub async fn put_tree<S, F>(
        &self,
        dest: impl AsRef<Path>,
        mut batches: F,
    ) -> Result<TreeSummary>
    where
        F: FnMut() -> S,
        S: Stream<Item = TreeBatch> + Send + 'static,
    {
        let dest = to_wire(dest.as_ref());
        let mut attempt = 0;
        loop {
            let start = pb::PutTreeMessage {
                message: Some(Message::Start(pb::PutTreeStart { path: dest.clone() })),
            };
            let messages = futures::stream::once(async move { start }).chain(batches().map(|b| {
                pb::PutTreeMessage {
                    message: Some(Message::Batch(b)),
                }
            }));
            match self.fs.clone().put_tree(messages).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if self.redials() && is_link_error(&s) => {
                    let Some(&pause) = RETRY_DELAYS_MS.get(attempt) else {
                        return Err(remote(s));
                    };
                    tracing::warn!(
                        "the connection dropped ({}); sending the tree again",
                        s.message()
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    attempt += 1;
                }
                Err(s) => return Err(remote(s)),
            }
        }
    }

    /// Streams the tree under the directory `path` on the target, to be
    /// fed to a `yonder_proto::tree::spawn_writer`. On a client that
    /// redials, a stream cut by a dropped connection is asked for again from
    /// the start, announced by [`Feed::Again`] (the writer keeps the files
    /// already complete and writes each again).
    pub async fn get_tree(&self, path: impl AsRef<Path>) -> Result<RemoteStream<Feed>> {
        let req = pb::GetTreeRequest {
            path: to_wire(path.as_ref()),
        };
        let fs = self.fs.clone();
        let call = move |again: &mut bool, resumed| {
            *again = resumed;
            let (mut fs, req) = (fs.clone(), req.clone());
            async move { Ok(fs.get_tree(req).await?.into_inner()) }
        };
        let take = |again: &mut bool, b: TreeBatch| {
            let mut v = Vec::with_capacity(2);
            if std::mem::take(again) {
                v.push(Feed::Again);
            }
            v.push(Feed::Batch(b));
            v
        };
        let s = self.resumable(false, call, take).await?;
        Ok(resume::flatten(s))
    }
}
