//! `yonder fs TARGET watch`.

use crate::cli::FsOp;
use yonder_client::Client;

/// `local`: relative paths are made absolute against the current directory.
pub async fn run(_client: &Client, _local: bool, _op: FsOp) -> anyhow::Result<()> {
    anyhow::bail!("yonder fs watch is not implemented yet")
}
