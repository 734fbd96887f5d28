//! `portcullis rules check|test [DIR]`: validate detector rule files and run their examples.
//! Without DIR the embedded built-in rules are used. Exit 0 when all is well, 1 when a rule file
//! is broken or an example fails (file:line and what is wrong on stderr), 2 on other errors.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis_scan::{RuleError, Ruleset};

#[derive(clap::Subcommand)]
pub enum RulesCommand {
    /// Parse and compile every detector (all *.toml in DIR; default: built-in rules).
    Check {
        /// Directory of rule files.
        dir: Option<PathBuf>,
    },
    /// Run every detector's `examples.match` / `examples.no_match` and report failures.
    Test {
        /// Directory of rule files.
        dir: Option<PathBuf>,
    },
}

fn load(dir: Option<&PathBuf>) -> Result<(Arc<Ruleset>, String), RuleError> {
    match dir {
        None => Ok((Ruleset::builtin(), "built-in rules".to_string())),
        Some(d) => Ok((Arc::new(Ruleset::load_dir(d)?), d.display().to_string())),
    }
}

/// Loads rules, reporting a broken file as exit 1 (an I/O problem is an error: exit 2).
fn load_or_report(dir: Option<&PathBuf>) -> Result<(Arc<Ruleset>, String), ExitCode> {
    load(dir).map_err(|e| {
        eprintln!("portcullis: {e}");
        match e {
            RuleError::Io { .. } => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    })
}

pub fn run(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RulesCommand::Check { dir } => {
            let (rules, label) = match load_or_report(dir.as_ref()) {
                Ok(r) => r,
                Err(code) => return Ok(code),
            };
            for d in rules.detectors() {
                if d.prefilter() == "full-scan" {
                    eprintln!(
                        "{}:{}: detector `{}`: warning: no keyword, literal prefix or min_digit_run; \
                         its regex runs over all input (slow)",
                        d.file, d.line, d.id
                    );
                }
            }
            println!("ok: {} detectors, {} prefilter literals ({label})", rules.detectors().len(), rules.literal_count());
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Test { dir } => {
            let (rules, label) = match load_or_report(dir.as_ref()) {
                Ok(r) => r,
                Err(code) => return Ok(code),
            };
            let failures = rules.test_examples();
            let examples: usize = rules.detectors().iter().map(|d| d.examples.matches.len() + d.examples.no_matches.len()).sum();
            for f in &failures {
                eprintln!("FAIL {f}");
            }
            println!("{} detectors, {examples} examples, {} failed ({label})", rules.detectors().len(), failures.len());
            Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
