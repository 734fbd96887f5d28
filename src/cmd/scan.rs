//! `portcullis scan` (placeholder until its issue lands).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ScanArgs {}

pub fn run(_args: ScanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`portcullis scan` is not built yet")
}
