//! Size caps and buffer bounds shared by client and server.
//!
//! Every message has a cap: a peer that announces more is cut off before the
//! bytes are buffered, so hostile input cannot grow memory without bound.

/// Largest handshake frame (Hello / HelloReply). Real ones are under 200 bytes;
/// 64 KiB leaves room for many capabilities and still rejects garbage early.
pub const MAX_HANDSHAKE_FRAME: usize = 64 * 1024;

/// Largest encoded gRPC message either side accepts. Data moves in
/// [`DATA_CHUNK`]-sized messages and directory listings in
/// [`DIR_BATCH`]-entry batches, so honest traffic stays far below this.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Size of the chunks files and process output are streamed in. 256 KiB keeps
/// syscall and per-message overhead small while HTTP/2 can still interleave
/// other streams' frames between chunks.
pub const DATA_CHUNK: usize = 256 * 1024;

/// Directory entries per streamed batch.
pub const DIR_BATCH: usize = 512;

/// HTTP/2 per-stream window: how many bytes one call may have in flight
/// before the receiver reads them. Bounded, so a slow reader of a 1 GiB file
/// holds at most this much in memory for that stream. 8 MiB rather than 2:
/// over ssh the window updates travel back through ssh's own buffers, and a
/// 2 MiB window held 1 GiB downloads at 0.59–0.86× scp (0.93–0.98× with
/// 8 MiB); a keystroke's echo during a 1 GiB read stayed at p99 2.95 ms.
pub const STREAM_WINDOW: u32 = 8 * 1024 * 1024;

/// HTTP/2 connection window, shared by all streams of a connection.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// How many gRPC messages a streaming call may queue on the server before the
/// producer waits for the network.
pub const STREAM_QUEUE: usize = 8;

/// A tree transfer's batch is sent once its entries hold this many bytes:
/// ~250 small files per message, so per-message costs vanish, and still far
/// below [`MAX_MESSAGE`] (a batch ends before it can exceed this plus one
/// [`DATA_CHUNK`]).
pub const TREE_BATCH_BYTES: usize = 256 * 1024;

/// ... or once it holds this many entries (empty files and symlinks carry
/// almost no bytes; this keeps their batches bounded as well).
pub const TREE_BATCH_ENTRIES: usize = 1024;

/// Per-entry errors a tree transfer lists in its summary; past this they
/// are only counted, so a tree of a million unreadable files stays bounded.
pub const MAX_TREE_ERRORS: usize = 100;

/// Capacity asked for the pipes between yonder and ssh or `podman exec`
/// (both ends): a bulk transfer crosses them in 1 MiB steps instead of the
/// default 64 KiB, a sixteenth of the wake-ups. Above
/// `/proc/sys/fs/pipe-max-size` for an unprivileged user it is refused and
/// the pipe keeps its default.
pub const PIPE_SIZE: i32 = 1 << 20;

/// Raises a pipe's capacity to [`PIPE_SIZE`] where the system allows
/// (`/proc/sys/fs/pipe-max-size`, per-user limits). Refused, or not a pipe:
/// nothing changes, and the pipe still works at its default size.
pub fn grow_pipe(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor the caller holds open.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
}

/// A new close-on-exec pipe, (read end, write end), grown with [`grow_pipe`].
pub fn pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::AsFd;
    let (r, w) = std::io::pipe()?;
    let (r, w) = (std::os::fd::OwnedFd::from(r), std::os::fd::OwnedFd::from(w));
    grow_pipe(w.as_fd());
    Ok((r, w))
}
