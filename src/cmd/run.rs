//! `portcullis run`: load config, CA and rules, then serve until Ctrl-C / SIGTERM.
//!
//! Works on a fresh clone with no setup: the embedded `portcullis.toml` is the default config, the
//! CA is created in `certs/` on first run and the built-in detectors load. The first line on
//! stderr that says `listening on ADDR` gives the bound address (tests use `--listen
//! 127.0.0.1:0` and read it).
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use portcullis_audit::api;
use portcullis_proxy::Proxy;
use portcullis_telemetry::{CertCacheCounts, Metrics};

use crate::config::{Overrides, RawConfig};
use crate::policy_gate::{Controls, PolicyGate};
use crate::recorder::AuditRecorder;

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
    /// Log format on stderr: text or json (overrides the config).
    #[arg(long, value_name = "text|json")]
    log_format: Option<String>,
    /// Admin API listen address (loopback; empty string disables it).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Detector rules directory (overrides the config; default: built-in detectors).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// App catalog directory (overrides the config; default: shipped catalog).
    #[arg(long, value_name = "DIR")]
    apps: Option<PathBuf>,
    /// Policy file (overrides the config; default: shipped rules/policy.toml).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Users file for proxy authentication (overrides the config; default: anonymous).
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = RawConfig::load(args.config.as_deref())?.validate(Overrides {
        listen: args.listen,
        resolve: args.resolve,
        upstream_ca: args.upstream_ca,
        log_format: args.log_format,
        admin_listen: args.admin_listen,
        rules_dir: args.rules,
        apps_dir: args.apps,
        policy_file: args.policy,
        users_file: args.users,
    })?;
    // Already initialised only in tests that call `run` twice; not an error worth stopping for.
    let _ = portcullis_telemetry::init_tracing(cfg.log_format, "info");

    let ca = portcullis_ca::CertificateAuthority::load_or_create(&cfg.ca_dir)
        .with_context(|| format!("interception CA in {}", cfg.ca_dir.display()))?;
    let controls = Arc::new(Controls::load(cfg.sources.clone())?);
    let metrics = Arc::new(Metrics::new());
    let writer = cfg.audit.open_writer(Some(Arc::clone(&metrics))).with_context(|| format!("audit log {}", cfg.audit.db.display()))?;
    let hmac_key = value_hmac_key(&cfg.value_hmac_key_file)?;
    let leaves = Arc::new(portcullis_ca::LeafCache::new(Arc::new(ca), cfg.proxy.limits.leaf_cache_capacity)?);
    let cache = Arc::clone(&leaves);
    metrics.set_cert_cache_source(move || {
        let s = cache.stats();
        CertCacheCounts { hits: s.hits, misses: s.misses }
    });
    let gate = Arc::new(
        PolicyGate::new(Arc::clone(&controls), cfg.bypass.clone(), portcullis_extract::Limits::default())
            .with_hmac_key(hmac_key)
            .with_audit(writer.clone(), cfg.audit.record_allowed)
            .with_metrics(Arc::clone(&metrics)),
    );
    let recorder = Arc::new(AuditRecorder::new(writer.clone()));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    runtime.block_on(async move {
        let proxy = Proxy::bind(cfg.proxy, leaves, gate, recorder).await?;
        let addr = proxy.local_addr();
        if !cfg.admin.listen.trim().is_empty() {
            let reload_controls = Arc::clone(&controls);
            let reload: api::ReloadFn = Arc::new(move || reload_controls.reload());
            let admin = api::AdminConfig::new(cfg.admin.token()?, cfg.audit.open_reader()?, Arc::clone(&metrics))
                .with_writer(writer.clone())
                .with_reload(reload);
            let router = api::admin_router(admin)?;
            let listener = tokio::net::TcpListener::bind(cfg.admin.listen.trim())
                .await
                .with_context(|| format!("admin API: cannot listen on {}", cfg.admin.listen))?;
            let admin_addr = listener.local_addr()?;
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, router).await {
                    tracing::error!("admin API stopped: {err}");
                }
            });
            tracing::info!(token_file = %cfg.admin.token_file.display(), "admin API on http://{admin_addr}");
            eprintln!("portcullis: admin API on http://{admin_addr} (bearer token: {})", cfg.admin.token_file.display());
        }
        spawn_reload_on_sighup(Arc::clone(&controls));
        tracing::info!(ca = %cfg.ca_dir.join("ca.pem").display(), audit = %cfg.audit.db.display(), "listening on {addr}");
        eprintln!("portcullis: listening on {addr} (CA certificate: {})", cfg.ca_dir.join("ca.pem").display());
        proxy.serve(shutdown_signal()).await;
        tracing::info!("stopped accepting connections; committing queued audit events");
        writer.close().await.context("audit log: final commit")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The HMAC key for matched values: 64 hex characters in a 0600 file, created on first run.
fn value_hmac_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = portcullis_audit::load_or_create_token(path).with_context(|| format!("value HMAC key {}", path.display()))?;
    let bytes = hex::decode(&text).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
    bytes.with_context(|| format!("value HMAC key {}: must hold 64 hex characters (32 bytes)", path.display()))
}

/// `kill -HUP` re-reads rules, apps, policy and users; a broken file keeps the running set.
fn spawn_reload_on_sighup(controls: Arc<Controls>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        // Errors are logged by reload itself; the old set stays.
                        let _ = controls.reload();
                    }
                });
            }
            Err(err) => tracing::warn!("SIGHUP reload unavailable: {err}"),
        }
    }
    #[cfg(not(unix))]
    let _ = controls;
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
