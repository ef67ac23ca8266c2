//! `yonder forward`.

use crate::cli::ForwardArgs;
use std::path::Path;

pub async fn run(_run_dir: Option<&Path>, _args: ForwardArgs) -> anyhow::Result<()> {
    anyhow::bail!("yonder forward is not implemented yet")
}
