//! Whole-tree transfers: [`Client::put_tree`] and [`Client::get_tree`]. The
//! batches are made and applied by `yonder_proto::tree` (`send_tree`,
//! `TreeWriter`), which both ends share.

use crate::{Client, RemoteStream, Result, remote};
use futures::{Stream, StreamExt};
use std::path::Path;
use yonder_proto::paths::to_wire;
use yonder_proto::pb::{self, put_tree_message::Message};

pub use yonder_proto::pb::{TreeBatch, TreeSummary};

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
    pub async fn put_tree<S>(&self, dest: impl AsRef<Path>, batches: S) -> Result<TreeSummary>
    where
        S: Stream<Item = TreeBatch> + Send + 'static,
    {
        let start = pb::PutTreeMessage {
            message: Some(Message::Start(pb::PutTreeStart {
                path: to_wire(dest.as_ref()),
            })),
        };
        let messages = futures::stream::once(async move { start }).chain(batches.map(|b| {
            pb::PutTreeMessage {
                message: Some(Message::Batch(b)),
            }
        }));
        Ok(self
            .fs
            .clone()
            .put_tree(messages)
            .await
            .map_err(remote)?
            .into_inner())
    }

    /// Streams the tree under the directory `path` on the target, to be
    /// applied with a `yonder_proto::tree::TreeWriter`.
    pub async fn get_tree(&self, path: impl AsRef<Path>) -> Result<RemoteStream<TreeBatch>> {
        let req = pb::GetTreeRequest {
            path: to_wire(path.as_ref()),
        };
        let s = self
            .fs
            .clone()
            .get_tree(req)
            .await
            .map_err(remote)?
            .into_inner();
        Ok(RemoteStream {
            inner: Box::pin(s.map(|b| b.map_err(remote))),
        })
    }
}
