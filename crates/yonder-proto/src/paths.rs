//! Paths travel as raw bytes so that names which are not UTF-8 survive.

use bytes::Bytes;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The wire form of a path.
pub fn to_wire(path: &Path) -> Bytes {
    Bytes::copy_from_slice(path.as_os_str().as_bytes())
}

/// A path from the wire.
pub fn from_wire(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}
