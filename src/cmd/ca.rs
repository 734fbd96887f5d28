//! `portcullis ca` (placeholder until its issue lands).
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum CaCommand { Init, Export }

pub fn run(_cmd: CaCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`portcullis ca` is not built yet")
}
