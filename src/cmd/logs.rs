//! `portcullis logs` (placeholder until its issue lands).
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum LogsCommand { Query, Show, Export, Stats }

pub fn run(_cmd: LogsCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`portcullis logs` is not built yet")
}
