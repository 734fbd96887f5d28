//! `portcullis logs`: query, show, export and summarise the blocked-transfer log.
//!
//! Reads the audit database directly (`--db`, default [`DEFAULT_DB_PATH`], the proxy's default
//! too); WAL mode lets this run while the proxy writes. All formatting lives in
//! `portcullis_audit::export` so the admin API, tests and this command agree.
//! Exit codes: 0 ok, 1 `show` of an unknown id, 2 error.
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use portcullis_audit::{AuditStore, DEFAULT_DB_PATH, Event, Filter, SqliteStore, export, is_valid_id, parse_time_bound};
use time::OffsetDateTime;

#[derive(clap::Subcommand)]
pub enum LogsCommand {
    /// List events matching the filters, newest first.
    Query(QueryArgs),
    /// Show one incident in full.
    Show(ShowArgs),
    /// Export events (oldest first) for SIEM import.
    Export(ExportArgs),
    /// Count blocks by category, app, detector and user over a period.
    Stats(StatsArgs),
}

#[derive(clap::Args)]
pub struct DbArg {
    /// Audit database file.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DB_PATH, env = "PORTCULLIS_AUDIT_DB")]
    db: PathBuf,
}

#[derive(clap::Args, Default)]
pub struct FilterArgs {
    /// Only this action: allow, block, log, inspect, bypass, or simulate (simulated decisions).
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    /// Only this user.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Only this app id (e.g. gmail).
    #[arg(long, value_name = "APP")]
    app: Option<String>,
    /// Only this category (webmail, cloud-storage, instant-messaging).
    #[arg(long, value_name = "CATEGORY")]
    category: Option<String>,
    /// Only events in which this detector matched (e.g. payment-card).
    #[arg(long, value_name = "DETECTOR")]
    detector: Option<String>,
    /// Only events that carried the value with this HMAC (hex, from `logs show`): finds every
    /// transfer of the same leaked value without revealing it.
    #[arg(long, value_name = "HEX")]
    value_hmac: Option<String>,
    /// Only this host or its subdomains.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// From this time: a duration back from now (30m, 24h, 7d) or an RFC 3339 time / date.
    #[arg(long, value_name = "DURATION|RFC3339")]
    since: Option<String>,
    /// Up to this time (same forms as --since).
    #[arg(long, value_name = "DURATION|RFC3339")]
    until: Option<String>,
}

impl FilterArgs {
    fn to_filter(&self) -> Result<Filter> {
        let now = OffsetDateTime::now_utc();
        let mut f = Filter {
            user: self.user.clone(),
            app: self.app.clone(),
            category: self.category.clone(),
            detector: self.detector.clone(),
            value_hmac: self.value_hmac.clone(),
            host: self.host.clone(),
            ..Filter::default()
        };
        if let Some(a) = &self.action {
            f.set_action(a).map_err(anyhow::Error::msg).context("--action")?;
        }
        if let Some(s) = &self.since {
            f.since = Some(parse_time_bound(s, now).map_err(anyhow::Error::msg).context("--since")?);
        }
        if let Some(u) = &self.until {
            f.until = Some(parse_time_bound(u, now).map_err(anyhow::Error::msg).context("--until")?);
        }
        Ok(f)
    }
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum ShowFormat {
    Text,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Elastic Common Schema, one JSON document per line.
    EcsJson,
    /// CSV with a header line.
    Csv,
}

#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    filter: FilterArgs,
    /// At most N events (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
    /// table (readable) or json (one event per line, all fields).
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    db: DbArg,
    /// Incident id (PC-...), as shown on the block page.
    id: String,
    #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
    format: ShowFormat,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    filter: FilterArgs,
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    filter: FilterArgs,
    /// Entries per breakdown.
    #[arg(long, value_name = "N", default_value_t = 20)]
    top: usize,
    #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
    format: ShowFormat,
}

pub fn run(cmd: LogsCommand) -> Result<ExitCode> {
    let result = match cmd {
        LogsCommand::Query(a) => query(a),
        LogsCommand::Show(a) => show(a),
        LogsCommand::Export(a) => export_events(a),
        LogsCommand::Stats(a) => stats(a),
    };
    // `portcullis logs query | head` closes stdout early: that is success, not an error.
    match result {
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

fn open(db: &DbArg) -> Result<SqliteStore> {
    Ok(SqliteStore::open_existing(&db.db)?)
}

fn query(a: QueryArgs) -> Result<ExitCode> {
    let store = open(&a.db)?;
    let mut filter = a.filter.to_filter()?;
    filter.limit = (a.limit > 0).then_some(a.limit);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match a.format {
        ListFormat::Json => stream(&store, &filter, &mut |e| export::write_json_line(&mut out, e))?,
        ListFormat::Table => {
            let events = store.query(&filter)?;
            if events.is_empty() {
                eprintln!("no matching events in {}", a.db.db.display());
            } else {
                out.write_all(export::table(&events).as_bytes())?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    let mut id = a.id.trim().to_owned();
    if id.len() > 3 && id[..3].eq_ignore_ascii_case("pc-") {
        // Generated ids are upper-case Crockford base32; accept them typed in lower case.
        id = id.to_ascii_uppercase();
    }
    if !is_valid_id(&id) {
        bail!("{:?} is not an incident id (expected e.g. PC- followed by 20 characters)", a.id);
    }
    let store = open(&a.db)?;
    let Some(event) = store.get(&id)? else {
        eprintln!("portcullis: no event {id} in {}", a.db.db.display());
        return Ok(ExitCode::from(1));
    };
    let mut out = io::stdout().lock();
    match a.format {
        ShowFormat::Text => out.write_all(export::detail(&event).as_bytes())?,
        ShowFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &event)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn export_events(a: ExportArgs) -> Result<ExitCode> {
    let store = open(&a.db)?;
    let mut filter = a.filter.to_filter()?;
    filter.ascending = true;
    let sink: Box<dyn Write> = match &a.output {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    if a.format == ExportFormat::Csv {
        export::write_csv_header(&mut out)?;
    }
    stream(&store, &filter, &mut |e| match a.format {
        ExportFormat::EcsJson => export::write_ecs_line(&mut out, e),
        ExportFormat::Csv => export::write_csv_row(&mut out, e),
    })?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Writes every event matching `filter` with `write`, streaming; stops at the first write error.
fn stream(store: &SqliteStore, filter: &Filter, write: &mut dyn FnMut(&Event) -> io::Result<()>) -> Result<()> {
    let mut write_err = None;
    store.scan(filter, &mut |e| match write(&e) {
        Ok(()) => Ok(true),
        Err(err) => {
            write_err = Some(err);
            Ok(false)
        }
    })?;
    match write_err {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

fn stats(a: StatsArgs) -> Result<ExitCode> {
    let store = open(&a.db)?;
    let mut filter = a.filter.to_filter()?;
    filter.limit = Some(a.top.max(1));
    let st = store.stats(&filter)?;
    let mut out = io::stdout().lock();
    match a.format {
        ShowFormat::Text => out.write_all(export::stats_text(&st).as_bytes())?,
        ShowFormat::Json => {
            serde_json::to_writer(&mut out, &st)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
