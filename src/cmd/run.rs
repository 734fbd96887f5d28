//! `portcullis run`: load config, CA and rules, then serve until Ctrl-C / SIGTERM.
//!
//! Works on a fresh clone with no setup: the embedded `portcullis.toml` is the default config, the
//! CA is created in `certs/` on first run and the built-in detectors load. The first line on
//! stderr that says `listening on ADDR` gives the bound address (tests use `--listen
//! 127.0.0.1:0` and read it).
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use portcullis_proxy::{LogRecorder, Proxy};
use portcullis_scan::Ruleset;

use crate::config::{Overrides, RawConfig};
use crate::gate::DlpGate;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Configuration file (default: the embedded portcullis.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (overrides the config), e.g. 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    /// DNS override HOST:PORT:ADDR (curl syntax); repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    resolve: Vec<String>,
    /// Extra trusted root(s) for upstream servers (PEM file); repeatable.
    #[arg(long, value_name = "PEM")]
    upstream_ca: Vec<PathBuf>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    let cfg = RawConfig::load(args.config.as_deref())?.validate(Overrides {
        listen: args.listen,
        resolve: args.resolve,
        upstream_ca: args.upstream_ca,
    })?;
    let ca = portcullis_ca::CertificateAuthority::load_or_create(&cfg.ca_dir)
        .with_context(|| format!("interception CA in {}", cfg.ca_dir.display()))?;
    let rules = match &cfg.rules_dir {
        Some(dir) => Arc::new(Ruleset::load_dir(dir).with_context(|| format!("rules in {}", dir.display()))?),
        None => Ruleset::builtin(),
    };
    let leaves = Arc::new(portcullis_ca::LeafCache::new(Arc::new(ca), cfg.proxy.limits.leaf_cache_capacity)?);
    let gate = Arc::new(DlpGate::new(rules, cfg.bypass.clone(), cfg.opaque, cfg.block_unscannable));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    runtime.block_on(async move {
        let proxy = Proxy::bind(cfg.proxy, leaves, gate, Arc::new(LogRecorder)).await?;
        let addr = proxy.local_addr();
        tracing::info!(ca = %cfg.ca_dir.join("ca.pem").display(), "listening on {addr}");
        eprintln!("portcullis: listening on {addr} (CA certificate: {})", cfg.ca_dir.join("ca.pem").display());
        proxy.serve(shutdown_signal()).await;
        tracing::info!("stopped accepting connections");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
