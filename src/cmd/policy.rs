//! `portcullis policy check [FILE]`: validate a policy (and the app catalog it names) before it
//! goes live. Prints one problem per line, `file:line: what is wrong`: syntax and schema errors,
//! unknown app ids, categories and detector ids, unknown tenant-restriction vendors and headers,
//! expired exceptions. Exit 0: no problems; 1: problems; 2: error (unreadable file).
//!
//! `portcullis policy hash-password`: read a password from stdin, print its Argon2id hash for
//! the users file.
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis_classify::{Catalog, LoadError, Problem};
use portcullis_policy::{Policy, Users};

use super::explain::when;

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file (default: the embedded one).
    Check(CheckArgs),
    /// Hash a password read from stdin for the users file.
    HashPassword,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Policy file to check (default: the embedded rules/policy.toml).
    pub file: Option<PathBuf>,
    /// App catalog directory (default: the embedded rules/apps).
    #[arg(long, value_name = "DIR")]
    pub apps: Option<PathBuf>,
    /// Detector rules directory, to check detector ids (default: the embedded detectors).
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// A users file to validate too.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// Check expiry at this time (RFC 3339 or date) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check(args) => check(args),
        PolicyCommand::HashPassword => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "empty password on stdin");
            let hash = portcullis_policy::hash_password(password).map_err(|e| anyhow::anyhow!(e))?;
            println!("{hash}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Problems are reported (exit 1); unreadable files are errors (exit 2).
fn problems_or_error<T>(r: Result<T, LoadError>, out: &mut Vec<Problem>) -> anyhow::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e @ LoadError::Io { .. }) => Err(e.into()),
        Err(LoadError::Invalid(p)) => {
            out.extend(p.0);
            Ok(None)
        }
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let now = when(args.at.as_deref())?;
    let mut problems = Vec::new();
    let catalog = match &args.apps {
        Some(dir) => problems_or_error(Catalog::load_dir(dir), &mut problems)?.map(Arc::new),
        None => Some(Catalog::builtin()),
    };
    let policy = match &args.file {
        Some(file) => problems_or_error(Policy::load(file), &mut problems)?.map(Arc::new),
        None => Some(Policy::builtin()),
    };
    if let Some(users) = &args.users {
        problems_or_error(Users::load(users), &mut problems)?;
    }
    let detectors = match &args.rules {
        Some(dir) => portcullis_scan::Ruleset::load_dir(dir).map(Arc::new)?,
        None => portcullis_scan::Ruleset::builtin(),
    };
    let ids: Vec<String> = detectors.detectors().iter().map(|d| d.id.clone()).collect();
    if let (Some(catalog), Some(policy)) = (&catalog, &policy) {
        problems.extend(policy.check(catalog, Some(&ids), now));
    }
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        let (rules, exceptions) = policy.as_ref().map_or((0, 0), |p| (p.rules().len(), p.exceptions().len()));
        eprintln!("policy ok: {rules} rules, {exceptions} exceptions");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} problem(s)", problems.len());
        Ok(ExitCode::from(1))
    }
}
