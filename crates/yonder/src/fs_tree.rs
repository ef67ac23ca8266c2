//! `yonder fs put/get` of a directory: one `PutTree`/`GetTree` call for the
//! whole tree (see `yonder_proto::tree`), so thousands of small files cost a
//! few large messages instead of a round trip each. The walk and the writer
//! run on blocking threads joined to the call by bounded queues.

use crate::progress::Progress;
use anyhow::{Context as _, bail};
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;
use yonder_client::tree::{TreeBatch, TreeSummary};
use yonder_client::{Client, RemoteError};
use yonder_proto::limits::STREAM_QUEUE;
use yonder_proto::pb::ErrorKind;
use yonder_proto::tree::{send_tree, spawn_writer};

/// Uploads the local directory `src` to `dest` on the target.
pub async fn put_dir(client: &Client, src: &Path, dest: &Path) -> anyhow::Result<()> {
    let progress = Arc::new(Progress::new(None, "upload"));
    // One walk per attempt (the upload starts over after a dropped
    // connection); the last one's result is the one that counts. When an
    // attempt ends early its queue's receiver is gone and its walk stops.
    let mut walker = None;
    let sent = client
        .put_tree(dest, || {
            let (tx, rx) = mpsc::channel::<TreeBatch>(STREAM_QUEUE);
            let (root, p) = (src.to_path_buf(), progress.clone());
            walker = Some(tokio::task::spawn_blocking(move || {
                send_tree(&root, |b| tx.blocking_send(b).is_ok(), |n| p.add(n))
            }));
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
        })
        .await;
    let walker = walker.expect("put_tree makes at least one stream");
    let walked = walker.await.context("the directory walk failed")?;
    progress.finish();
    walked.with_context(|| format!("cannot read {}", src.display()))?;
    let summary = sent.with_context(|| format!("uploading {} failed", src.display()))?;
    report(&summary)
}

/// Downloads the target's directory `src` to the local `dest`.
pub async fn get_dir(client: &Client, src: &Path, dest: &Path) -> anyhow::Result<()> {
    let mut stream = client.get_tree(src).await?;
    let progress = Arc::new(Progress::new(None, "download"));
    // A hostile or broken stream: the writer keeps what is complete, stops.
    let p = progress.clone();
    let (tx, writer) = spawn_writer(dest.to_path_buf(), move |n| p.add(n));
    let mut interrupted = None;
    while let Some(batch) = stream.next().await {
        match batch {
            Ok(b) => {
                if tx.send(b).await.is_err() {
                    break; // the writer stopped: its result says why
                }
            }
            Err(e) => {
                interrupted = Some(e);
                break;
            }
        }
    }
    drop(tx);
    drop(stream);
    let written = writer.await.context("the local writer failed")?;
    progress.finish();
    let summary = written.with_context(|| {
        format!(
            "the target sent a tree that cannot be written under {}",
            dest.display()
        )
    })?;
    if let Some(e) = interrupted {
        report(&summary).ok();
        return Err(anyhow::Error::new(e).context(format!(
            "downloading {} was interrupted; files not complete were not written",
            src.display()
        )));
    }
    report(&summary)
}

/// Prints every per-entry error; fails if any entry was not copied (entries
/// skipped for their type, like sockets, are only warnings, as before).
fn report(s: &TreeSummary) -> anyhow::Result<()> {
    let mut failed = s.more_errors;
    for d in &s.errors {
        let e = RemoteError::from_detail(d.clone());
        if e.kind == ErrorKind::Unsupported {
            eprintln!("yonder: warning: {e}");
        } else {
            eprintln!("yonder: {e}");
            failed += 1;
        }
    }
    if s.more_errors > 0 {
        eprintln!("yonder: … and {} more errors", s.more_errors);
    }
    if failed > 0 {
        bail!("{failed} entries were not copied (see above); everything else was");
    }
    Ok(())
}
