//! A channel's input, flow-controlled end to end: what the client sends
//! reaches the program (stdin or terminal) or the forwarded connection in
//! order, and the client may only send as much as it has not taken yet.
//!
//! Without this, a program that does not read its stdin while the client
//! floods it (`head -c 64M /dev/zero | ssh HOST 'sleep 9'`) stalled the
//! whole connection: russh grants the client window as soon as data
//! arrives, the channel's queue fills while the program's pipe is full,
//! and then russh's session loop waits on that queue, so no channel's
//! output (nor this program's exit) went out until the program ended.
//!
//! Now, as sshd does (RFC 4254 §5.2): the channel's window is granted by
//! us (the patched russh's `Config::manual_window`, set for every channel
//! from its first byte), only for data the program has taken. The channel's queue is always read at once, into a
//! queue that the client's window bounds; a second task writes that queue
//! to the program and grants window as each chunk goes in. A program that
//! does not read leaves the client's window at zero: the client stops
//! sending on that channel, and everything else keeps moving.

use crate::server::{clamp, signal_from_ssh};
use bytes::Bytes;
use russh::server::Handle;
use russh::{ChannelId, ChannelMsg, ChannelReadHalf};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// The client's window on a session channel: how much it may have sent
/// that the program has not taken yet. OpenSSH's sshd uses 2 MiB too
/// (`CHAN_SES_WINDOW_DEFAULT`); it keeps bulk transfers (sftp, rsync)
/// moving across the round trip of a window grant.
pub(crate) const WINDOW: u32 = 2 * 1024 * 1024;

/// Window taken by the program that is granted back in one message once
/// this much has gone in (or at once, when no more input is queued). sshd
/// batches its window messages likewise; one per 32 KiB packet cost the
/// session loop an encrypted packet each.
const GRANT_BATCH: u32 = WINDOW / 8;

/// Input queued for the program beyond which the client is ignoring its
/// window (OpenSSH never does): the channel is closed rather than memory
/// grown. The window is the exact bound, since every byte of it is granted
/// here; twice it is the margin. (It used to be hit under load: russh
/// granted window on its own until this pump told it not to, which came
/// late when starting the program was slow; now channels start that way.)
const INPUT_LIMIT: usize = 2 * WINDOW as usize;

/// After the client closed the channel, how long input already received
/// may take to reach its destination. A forward's far end that reads
/// takes the at most [`INPUT_LIMIT`] bytes in milliseconds; one that does
/// not read is given up on, as sshd hangs up a closed session.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);

/// Requests on the channel that are not input: they bypass queued input
/// (a Ctrl-C signal must not wait behind data the program is not reading).
pub(crate) enum Control {
    Signal(i32),
    /// Rows and columns.
    Resize(u16, u16),
}

/// Where a session channel's input goes.
pub(crate) trait InputSink: Clone + Send + Sync + 'static {
    /// Passes one chunk on; waits while the program is not taking input.
    /// `false`: it takes no more (further input is dropped, as a closed
    /// pipe would).
    fn write(&self, data: Bytes) -> impl Future<Output = bool> + Send;
    /// The client's end of input.
    fn eof(&self) -> impl Future<Output = ()> + Send;
    fn control(&self, c: Control) -> impl Future<Output = ()> + Send;
}

enum Input {
    Data(Bytes),
    Eof,
}

/// Reads the channel until the client closes it (or breaks flow control),
/// passing input to `sink`. Returns when the channel is done.
pub(crate) async fn pump<S: InputSink>(
    mut rd: ChannelReadHalf,
    id: ChannelId,
    handle: Handle,
    sink: S,
) {
    let queued = Arc::new(AtomicUsize::new(0));
    // Unbounded in messages, bounded in bytes by the client's window
    // (checked against INPUT_LIMIT below).
    let (data_tx, mut data_rx) = mpsc::unbounded_channel::<Input>();
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<Control>();
    let mut writer = {
        let (sink, handle, queued) = (sink.clone(), handle.clone(), queued.clone());
        tokio::spawn(async move {
            let mut open = true;
            // Taken but not yet granted back: granted in batches, as sshd
            // does, rather than one window message per 32 KiB packet.
            let mut owed: u32 = 0;
            while let Some(input) = data_rx.recv().await {
                match input {
                    Input::Data(data) => {
                        let n = data.len();
                        if open {
                            open = sink.write(data).await;
                        }
                        queued.fetch_sub(n, Ordering::Relaxed);
                        // n fits: one SSH packet.
                        owed += n as u32;
                        // Grant at once when nothing else is queued (the
                        // client may be waiting), else in batches.
                        if owed >= GRANT_BATCH || data_rx.is_empty() {
                            let _ = handle.grant_window(id, owed);
                            owed = 0;
                        }
                    }
                    Input::Eof => {
                        if open {
                            sink.eof().await;
                        }
                    }
                }
            }
        })
    };
    let controls = tokio::spawn(async move {
        while let Some(c) = ctl_rx.recv().await {
            sink.control(c).await;
        }
    });
    while let Some(m) = rd.wait().await {
        match m {
            ChannelMsg::Data { data } => {
                let n = data.len();
                if queued.fetch_add(n, Ordering::Relaxed) + n > INPUT_LIMIT {
                    tracing::warn!(
                        "the client sent more than {INPUT_LIMIT} bytes beyond its window; closing the channel"
                    );
                    // Said to the client too, or it would wait on a
                    // channel nobody serves any more.
                    let _ = handle.close(id).await;
                    break;
                }
                let _ = data_tx.send(Input::Data(data));
            }
            // No program reads a second input stream: taken and dropped.
            ChannelMsg::ExtendedData { data, .. } => {
                let _ = handle.grant_window(id, data.len() as u32);
            }
            ChannelMsg::Eof => {
                let _ = data_tx.send(Input::Eof);
            }
            ChannelMsg::Signal { signal } => {
                if let Some(n) = signal_from_ssh(&signal) {
                    let _ = ctl_tx.send(Control::Signal(n));
                }
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => {
                let _ = ctl_tx.send(Control::Resize(clamp(row_height, 1), clamp(col_width, 1)));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    // Input received before the close still goes in (a forward's client
    // may send its last bytes, EOF and close at once).
    drop(data_tx);
    if tokio::time::timeout(CLOSE_DRAIN, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    controls.abort();
}
