//! `portcullis run` (placeholder until its issue lands).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct RunArgs {}

pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`portcullis run` is not built yet")
}
