//! `portcullis ca init` / `portcullis ca export`: the interception CA.
//!
//! `init` creates the CA in the configured directory (default `certs/`) if it does not exist and
//! says where it is; `export` prints the CA certificate PEM (the thing to install in browsers and OS
//! trust stores), creating the CA first if needed. The private key is never printed.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Overrides, RawConfig};

#[derive(clap::Subcommand)]
pub enum CaCommand {
    /// Create the CA (certs/ca.pem, certs/ca.key with mode 0600) if it does not exist.
    Init(CaArgs),
    /// Print the CA certificate (PEM) to install in browsers and OS trust stores.
    Export(CaArgs),
}

#[derive(clap::Args)]
pub struct CaArgs {
    /// Configuration file (its `ca_dir` is used); default: the embedded portcullis.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// CA directory (overrides the config's `ca_dir`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn ca_dir(args: &CaArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &args.dir {
        return Ok(d.clone());
    }
    Ok(RawConfig::load(args.config.as_deref())?.validate(Overrides::default())?.ca_dir)
}

pub fn run(cmd: CaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::Init(args) => {
            let dir = ca_dir(&args)?;
            let existed = dir.join("ca.pem").exists();
            portcullis_ca::CertificateAuthority::load_or_create(&dir).with_context(|| format!("CA in {}", dir.display()))?;
            let what = if existed { "exists" } else { "created" };
            eprintln!("portcullis: CA {what}: {} (key {}, mode 0600)", dir.join("ca.pem").display(), dir.join("ca.key").display());
            eprintln!(
                "Install {} in your browser / OS trust store, or print it with `portcullis ca export`.",
                dir.join("ca.pem").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Export(args) => {
            let dir = ca_dir(&args)?;
            let ca = portcullis_ca::CertificateAuthority::load_or_create(&dir).with_context(|| format!("CA in {}", dir.display()))?;
            print!("{}", ca.cert_pem());
            Ok(ExitCode::SUCCESS)
        }
    }
}
