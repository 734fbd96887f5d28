//! `portcullis explain` (placeholder until its issue lands).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ExplainArgs {}

pub fn run(_args: ExplainArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`portcullis explain` is not built yet")
}
