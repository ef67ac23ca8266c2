//! `yonder search` and `yonder find`.

use crate::cli::{FindArgs, SearchArgs};
use std::path::Path;

pub async fn search(_run_dir: Option<&Path>, _args: SearchArgs) -> anyhow::Result<()> {
    anyhow::bail!("yonder search is not implemented yet")
}

pub async fn find(_run_dir: Option<&Path>, _args: FindArgs) -> anyhow::Result<()> {
    anyhow::bail!("yonder find is not implemented yet")
}
