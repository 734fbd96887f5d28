//! `portcullis`: the thin binary that wires the crates under `crates/` together.
//!
//! Data flow of the proxy: accept → classify → intercept → extract → scan → decide → record.
//! Every subcommand lives in its own module under `cmd/`; each returns the process exit code,
//! and errors are printed once, here, with their context chain.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod config;
mod policy_gate;
mod recorder;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "TLS-intercepting forward proxy with DLP inspection")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the intercepting proxy.
    Run(cmd::run::RunArgs),
    /// Scan files (or stdin) for sensitive data with the DLP rules.
    Scan(cmd::scan::ScanArgs),
    /// Validate and test detector rule files.
    #[command(subcommand)]
    Rules(cmd::rules::RulesCommand),
    /// Manage the interception certificate authority.
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
    /// Show how the policy classifies and decides a request.
    Explain(cmd::explain::ExplainArgs),
    /// Validate the policy file.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Query the blocked-transfer log.
    #[command(subcommand)]
    Logs(cmd::logs::LogsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Rules(c) => cmd::rules::run(c),
        Command::Ca(c) => cmd::ca::run(c),
        Command::Explain(args) => cmd::explain::run(args),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Logs(c) => cmd::logs::run(c),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("portcullis: {err:#}");
            ExitCode::from(2)
        }
    }
}
