//! `portcullis policy` (placeholder until its issue lands).
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PolicyCommand { Check }

pub fn run(_cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`portcullis policy` is not built yet")
}
