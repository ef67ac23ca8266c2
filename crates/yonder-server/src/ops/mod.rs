//! The operations the server offers, one gRPC service per concept.

pub mod exec;
pub mod forward;
pub mod fs;
pub mod pty;
pub mod replay;
pub mod search;
pub mod system;
pub mod terminal;
pub mod tree;
pub mod watch;
use std::path::{Path, PathBuf};
use yonder_proto::RemoteError;
use yonder_proto::pb::ErrorKind;

/// Runs blocking file-system work off the async threads. A panic in the work
/// becomes an internal error for this one request, never a dead daemon.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, RemoteError>
where
    F: FnOnce() -> Result<T, RemoteError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(RemoteError::new(
            ErrorKind::Internal,
            format!("operation failed: {e}"),
        )),
    }
}

/// A path from a request: must not be empty or contain NUL.
pub(crate) fn request_path(bytes: &[u8]) -> Result<PathBuf, RemoteError> {
    if bytes.is_empty() {
        return Err(RemoteError::new(ErrorKind::InvalidArgument, "empty path"));
    }
    if bytes.contains(&0) {
        return Err(
            RemoteError::new(ErrorKind::InvalidArgument, "path contains a NUL byte").with_path(
                yonder_proto::paths::from_wire(
                    &bytes[..bytes.iter().position(|b| *b == 0).unwrap_or(0)],
                ),
            ),
        );
    }
    Ok(yonder_proto::paths::from_wire(bytes))
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RemoteError + '_ {
    move |e| RemoteError::from_io(&e, path)
}
