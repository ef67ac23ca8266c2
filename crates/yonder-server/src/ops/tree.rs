//! Whole-tree transfers (`Fs.PutTree`, `Fs.GetTree`): the network half. The
//! walking and writing, with their guarantees, are `yonder_proto::tree`;
//! here they run on a blocking thread joined to the call's stream by a
//! bounded queue, so memory stays at a few batches whatever the tree's size.

use super::fs::RespStream;
use super::request_path;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use yonder_proto::RemoteError;
use yonder_proto::limits::STREAM_QUEUE;
use yonder_proto::pb::{self, ErrorKind, put_tree_message::Message};
use yonder_proto::tree::{Feed, send_tree, spawn_writer};

/// Receives a `PutTree` stream into a [`TreeWriter`].
pub async fn put_tree(
    mut input: Streaming<pb::PutTreeMessage>,
) -> Result<pb::TreeSummary, RemoteError> {
    let first = input
        .message()
        .await
        .map_err(|s| RemoteError::from_status(&s))?;
    let Some(pb::PutTreeMessage {
        message: Some(Message::Start(start)),
    }) = first
    else {
        return Err(RemoteError::new(
            ErrorKind::InvalidArgument,
            "a tree upload must begin with its start message",
        ));
    };
    let root = request_path(&start.path)?;
    // Fatal (hostile path, unusable root): the writer keeps what is done
    // and stops; the failed send below ends the upload.
    let (tx, writer) = spawn_writer(root, |_| {});
    let mut interrupted = None;
    loop {
        match input.message().await {
            Ok(Some(pb::PutTreeMessage {
                message: Some(Message::Batch(b)),
            })) => {
                if tx.send(Feed::Batch(b)).await.is_err() {
                    break; // the writer stopped: its result says why
                }
            }
            Ok(None) => break,
            Ok(Some(_)) => {
                interrupted = Some(RemoteError::new(
                    ErrorKind::InvalidArgument,
                    "unexpected message in a tree upload",
                ));
                break;
            }
            Err(s) => {
                interrupted = Some(RemoteError::new(
                    ErrorKind::Cancelled,
                    format!(
                        "the tree upload was interrupted ({}); files not complete were not written",
                        s.message()
                    ),
                ));
                break;
            }
        }
    }
    drop(tx);
    let summary = writer
        .await
        .map_err(|e| RemoteError::new(ErrorKind::Internal, format!("tree writer failed: {e}")))??;
    match interrupted {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Streams the tree under `path`. The root is checked before the stream
/// starts, so a missing or non-directory path fails the call itself.
pub async fn get_tree(path: &[u8]) -> Result<RespStream<pb::TreeBatch>, RemoteError> {
    let root = request_path(path)?;
    let m = tokio::fs::metadata(&root)
        .await
        .map_err(|e| RemoteError::from_io(&e, &root))?;
    if !m.is_dir() {
        return Err(RemoteError::new(ErrorKind::NotADirectory, "not a directory").with_path(&root));
    }
    let (tx, rx) = mpsc::channel::<Result<pb::TreeBatch, Status>>(STREAM_QUEUE);
    tokio::task::spawn_blocking(move || {
        // A send fails when the client went away: the walk stops.
        let r = send_tree(&root, |b| tx.blocking_send(Ok(b)).is_ok(), |_| {});
        if let Err(e) = r {
            let _ = tx.blocking_send(Err(e.to_status()));
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
