//! `portcullis rules` (placeholder until its issue lands).
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum RulesCommand { Check, Test }

pub fn run(_cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`portcullis rules` is not built yet")
}
