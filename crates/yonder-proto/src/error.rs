//! Typed errors that cross the wire.
//!
//! A server operation fails with a [`RemoteError`]: a stable [`ErrorKind`], a
//! message, and the path(s) it concerns. It travels as a gRPC status whose
//! details hold an encoded [`pb::ErrorDetail`], so the client rebuilds the same
//! typed error instead of a flattened string.

use crate::paths;
use crate::pb::{self, ErrorKind};
use prost::Message;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An error from an operation on the server, typed and naming its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub message: String,
    pub path: Option<PathBuf>,
    pub other_path: Option<PathBuf>,
    pub errno: Option<i32>,
}

impl std::error::Error for RemoteError {}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, &self.other_path) {
            (Some(p), Some(o)) => {
                write!(
                    f,
                    "{}: {} -> {}: {}",
                    kind_label(self.kind),
                    p.display(),
                    o.display(),
                    self.message
                )
            }
            (Some(p), None) => write!(
                f,
                "{}: {}: {}",
                kind_label(self.kind),
                p.display(),
                self.message
            ),
            _ => write!(f, "{}: {}", kind_label(self.kind), self.message),
        }
    }
}

/// A short human label for an error kind ("not found", "conflict", ...).
pub fn kind_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unspecified => "error",
        ErrorKind::NotFound => "not found",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::NotADirectory => "not a directory",
        ErrorKind::IsADirectory => "is a directory",
        ErrorKind::AlreadyExists => "already exists",
        ErrorKind::Conflict => "conflict",
        ErrorKind::DirectoryNotEmpty => "directory not empty",
        ErrorKind::InvalidArgument => "invalid argument",
        ErrorKind::NoSpace => "no space left",
        ErrorKind::TooLarge => "too large",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::VersionMismatch => "version mismatch",
        ErrorKind::Unauthenticated => "unauthenticated",
        ErrorKind::Cancelled => "cancelled",
        ErrorKind::Io => "I/O error",
        ErrorKind::Internal => "internal error",
    }
}

impl RemoteError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            path: None,
            other_path: None,
            errno: None,
        }
    }

    pub fn with_path(mut self, path: impl AsRef<Path>) -> Self {
        self.path = Some(path.as_ref().to_path_buf());
        self
    }

    pub fn with_other_path(mut self, path: impl AsRef<Path>) -> Self {
        self.other_path = Some(path.as_ref().to_path_buf());
        self
    }

    /// Classifies an OS error about `path`.
    pub fn from_io(err: &io::Error, path: impl AsRef<Path>) -> Self {
        let errno = err.raw_os_error();
        let kind = match errno {
            Some(libc::ENOENT) => ErrorKind::NotFound,
            Some(libc::EACCES) | Some(libc::EPERM) => ErrorKind::PermissionDenied,
            Some(libc::ENOTDIR) => ErrorKind::NotADirectory,
            Some(libc::EISDIR) => ErrorKind::IsADirectory,
            Some(libc::EEXIST) => ErrorKind::AlreadyExists,
            Some(libc::ENOTEMPTY) => ErrorKind::DirectoryNotEmpty,
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorKind::NoSpace,
            Some(libc::EFBIG) | Some(libc::ENAMETOOLONG) => ErrorKind::TooLarge,
            Some(libc::EINVAL) | Some(libc::ELOOP) => ErrorKind::InvalidArgument,
            Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => ErrorKind::Unsupported,
            Some(_) => ErrorKind::Io,
            None => match err.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                    ErrorKind::InvalidArgument
                }
                _ => ErrorKind::Io,
            },
        };
        // The OS message without the " (os error N)" suffix std appends.
        let mut message = err.to_string();
        if let Some(i) = message.find(" (os error") {
            message.truncate(i);
        }
        Self {
            kind,
            message,
            path: Some(path.as_ref().to_path_buf()),
            other_path: None,
            errno,
        }
    }

    /// The wire form of this error (a status's details, a tree entry).
    pub fn to_detail(&self) -> pb::ErrorDetail {
        pb::ErrorDetail {
            kind: self.kind as i32,
            message: self.message.clone(),
            path: self.path.as_deref().map(paths::to_wire).unwrap_or_default(),
            other_path: self
                .other_path
                .as_deref()
                .map(paths::to_wire)
                .unwrap_or_default(),
            errno: self.errno.unwrap_or(0),
        }
    }

    /// The typed error from its wire form.
    pub fn from_detail(d: pb::ErrorDetail) -> Self {
        let opt = |b: &[u8]| (!b.is_empty()).then(|| paths::from_wire(b));
        Self {
            kind: ErrorKind::try_from(d.kind).unwrap_or(ErrorKind::Internal),
            path: opt(&d.path),
            other_path: opt(&d.other_path),
            errno: (d.errno != 0).then_some(d.errno),
            message: d.message,
        }
    }

    /// The gRPC status this error travels as.
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::with_details(
            grpc_code(self.kind),
            self.to_string(),
            self.to_detail().encode_to_vec().into(),
        )
    }

    /// Rebuilds the typed error from a status. Statuses that carry no detail
    /// (transport failures, limits enforced by the gRPC layer) are classified
    /// by their gRPC code.
    pub fn from_status(status: &tonic::Status) -> Self {
        if let Ok(d) = pb::ErrorDetail::decode(status.details())
            && d.kind != 0
        {
            return Self::from_detail(d);
        }
        use tonic::Code;
        let kind = match status.code() {
            Code::NotFound => ErrorKind::NotFound,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::FailedPrecondition | Code::Aborted => ErrorKind::Conflict,
            Code::InvalidArgument => ErrorKind::InvalidArgument,
            Code::ResourceExhausted | Code::OutOfRange => ErrorKind::TooLarge,
            Code::Unimplemented => ErrorKind::Unsupported,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::Cancelled => ErrorKind::Cancelled,
            Code::Unavailable => ErrorKind::Io,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, status.message().to_string())
    }
}

impl From<RemoteError> for tonic::Status {
    fn from(e: RemoteError) -> Self {
        e.to_status()
    }
}

fn grpc_code(kind: ErrorKind) -> tonic::Code {
    use tonic::Code;
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::DirectoryNotEmpty
        | ErrorKind::InvalidArgument => Code::FailedPrecondition,
        ErrorKind::NoSpace | ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::VersionMismatch => Code::FailedPrecondition,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Io => Code::Unavailable,
        ErrorKind::Internal | ErrorKind::Unspecified => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_kind_and_path_across_a_status() {
        let io = io::Error::from_raw_os_error(libc::ENOTEMPTY);
        let e = RemoteError::from_io(&io, "/tmp/d");
        assert_eq!(e.kind, ErrorKind::DirectoryNotEmpty);
        let back = RemoteError::from_status(&e.to_status());
        assert_eq!(back, e);
        assert_eq!(
            back.to_string(),
            "directory not empty: /tmp/d: Directory not empty"
        );
    }

    #[test]
    fn non_utf8_paths_survive_a_status() {
        use std::os::unix::ffi::OsStrExt;
        let p = PathBuf::from(std::ffi::OsStr::from_bytes(b"/x/\xff\xfe"));
        let e = RemoteError::new(ErrorKind::NotFound, "gone").with_path(&p);
        assert_eq!(RemoteError::from_status(&e.to_status()).path, Some(p));
    }

    #[test]
    fn statuses_without_detail_are_classified_by_code() {
        let s = tonic::Status::resource_exhausted("message too large");
        assert_eq!(RemoteError::from_status(&s).kind, ErrorKind::TooLarge);
    }
}
