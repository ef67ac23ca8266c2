//! yonder's wire protocol.
//!
//! One byte stream (a child's stdio, a unix socket, loopback TCP) carries one
//! connection. It opens with a handshake ([`handshake`]): magic bytes and a
//! length-prefixed [`pb::Hello`] from the client, a [`pb::HelloReply`] from the
//! server, each capped at [`limits::MAX_HANDSHAKE_FRAME`]. After that the same
//! stream speaks HTTP/2 carrying the gRPC services of `proto/yonder/v1/yonder.proto`
//! (the schema is the API reference). Errors cross the wire as [`RemoteError`]:
//! a stable [`pb::ErrorKind`] plus the path they concern.

pub mod bulk;
pub mod error;
pub mod fdpass;
pub mod frame;
pub mod guarded;
pub mod handshake;
pub mod limits;
pub mod paths;
pub mod search_pack;
pub mod tree;

pub use error::RemoteError;

/// `host:port`, with brackets around an IPv6 address (`[::1]:22`): how
/// every side names a forward's endpoint, in messages and on `fdpass.sock`.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Code generated from `proto/yonder/v1/yonder.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("yonder.v1");
}

/// Version of the wire protocol. Bump it on every incompatible schema change;
/// a client and a server with different numbers refuse each other with an
/// error naming both yonder versions.
pub const PROTOCOL_VERSION: u32 = 2;

/// gRPC metadata header carrying a client's id for a change it may send
/// again after a reconnect; the server applies each id at most once.
pub const REQUEST_ID_HEADER: &str = "yonder-request-id";

/// The yonder release this crate belongs to.
pub const YONDER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Capabilities this build understands, exchanged in the handshake so that a
/// newer peer can tell which optional features it may use.
pub const CAPABILITIES: &[&str] = &["fs.v1", "exec.v1", "system.v1", CAP_FS_TREE];

/// The server has `Fs.PutTree` and `Fs.GetTree` (whole-tree transfers).
/// Adding calls keeps the protocol version (an older peer answers
/// UNIMPLEMENTED); clients check this before using them.
pub const CAP_FS_TREE: &str = "fs.tree.v1";
