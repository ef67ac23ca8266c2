//! `yonder shell` and `yonder terminals`.

use crate::cli::TerminalsOp;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub async fn shell(
    _run_dir: Option<&Path>,
    _target: &str,
    _cwd: Option<PathBuf>,
    _command: Vec<OsString>,
) -> anyhow::Result<()> {
    anyhow::bail!("yonder shell is not implemented yet")
}

pub async fn terminals(
    _run_dir: Option<&Path>,
    _target: &str,
    _json: bool,
    _op: Option<TerminalsOp>,
) -> anyhow::Result<()> {
    anyhow::bail!("yonder terminals is not implemented yet")
}
