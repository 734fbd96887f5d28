//! `portcullis scan`: run the DLP rules over files or stdin, the way compliance officers try
//! rules before they go live.
//!
//! Each input is read in chunks and pushed through one streaming inspection (`inspect_stream`),
//! exactly as the proxy pushes request-body chunks: the command never holds a whole file.
//! Content decoding (archives, documents, compression) happens in `inspect_stream` through a
//! `portcullis_extract::Inspection`, the same one the proxy uses for request bodies.
//!
//! Exit status: 0 every input clean; 1 some input matched or could not be scanned; 2 an error
//! (unreadable file, broken rules) — 2 wins over 1.
//!
//! `--format json` prints one object per input per line:
//! `{"path", "verdict": "clean"|"match"|"unscannable", "findings": [Finding...], "reason"}`,
//! where a Finding is `{"detector", "severity", "count", "confidence", "samples" (masked),
//! "offsets", "value_hmacs"}` (see `portcullis_scan::Finding`).
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use portcullis_audit::export::printable;
use portcullis_extract::{BodyHints, Inspection, Limits, Step};
use portcullis_scan::{Finding, Ruleset};
use serde::Serialize;

/// Bytes read per chunk.
const CHUNK: usize = 64 * 1024;

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Directory of detector rule files (*.toml) to use instead of the built-in rules.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Files to scan; `-` reads standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The outcome for one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Clean,
    Match,
    /// Content that could not be inspected (encrypted, corrupt, over a limit); see `reason`.
    Unscannable,
}

/// One line of `--format json`.
#[derive(Debug, Serialize)]
pub struct InputReport {
    pub path: String,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    pub reason: Option<String>,
}

/// Loads `--rules DIR` or the built-in rules.
pub fn load_rules(dir: Option<&std::path::Path>) -> anyhow::Result<Arc<Ruleset>> {
    match dir {
        None => Ok(Ruleset::builtin()),
        Some(dir) => Ok(Arc::new(Ruleset::load_dir(dir).context("loading rules")?)),
    }
}

/// Streams `reader` through content extraction (portcullis-extract: compression, archives,
/// documents, forms...) and the scanner in chunks, and decides a verdict. `file_name` is a
/// hint only; types come from the bytes.
pub fn inspect_stream(
    rules: &Arc<Ruleset>,
    reader: &mut dyn Read,
    file_name: Option<String>,
) -> std::io::Result<(Verdict, Vec<Finding>, Option<String>)> {
    let hints = BodyHints { file_name, ..Default::default() };
    let mut inspection = Inspection::new(Arc::clone(rules), hints, Limits::default()).exhaustive(true);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Step::Done(_) = inspection.chunk(&buf[..n]) {
            break;
        }
    }
    let report = inspection.finish();
    let verdict = match report.verdict {
        portcullis_extract::Verdict::Clean => Verdict::Clean,
        portcullis_extract::Verdict::Match => Verdict::Match,
        portcullis_extract::Verdict::Unscannable => Verdict::Unscannable,
    };
    Ok((verdict, report.findings, report.reason))
}

fn scan_one(rules: &Arc<Ruleset>, path: &std::path::Path) -> anyhow::Result<InputReport> {
    let label = path.display().to_string();
    let (verdict, findings, reason) = if label == "-" {
        inspect_stream(rules, &mut std::io::stdin().lock(), None).context("reading standard input")?
    } else {
        if path.is_dir() {
            anyhow::bail!("{label}: is a directory");
        }
        let mut file = std::fs::File::open(path).with_context(|| format!("{label}: cannot open"))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        inspect_stream(rules, &mut file, name).with_context(|| format!("{label}: read error"))?
    };
    Ok(InputReport { path: label, verdict, findings, reason })
}

fn print_text(out: &mut impl Write, r: &InputReport) -> std::io::Result<()> {
    let verdict = match r.verdict {
        Verdict::Clean => "clean",
        Verdict::Match => "MATCH",
        Verdict::Unscannable => "UNSCANNABLE",
    };
    // Paths, reasons (which quote archive member names) and samples come from the files
    // scanned: shown with control characters escaped.
    let path = printable(&r.path);
    match &r.reason {
        Some(reason) => writeln!(out, "{path}: {verdict} ({})", printable(reason))?,
        None => writeln!(out, "{path}: {verdict}")?,
    }
    for f in &r.findings {
        writeln!(
            out,
            "  {:<24} count={:<5} severity={:<8} confidence={:<6} samples: {}",
            f.detector,
            f.count,
            f.severity.as_str(),
            f.confidence.as_str(),
            printable(&f.samples.join(", "))
        )?;
    }
    Ok(())
}

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let rules = load_rules(args.rules.as_deref())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut worst = 0u8;
    for path in &args.paths {
        match scan_one(&rules, path) {
            Ok(report) => {
                if report.verdict != Verdict::Clean {
                    worst = worst.max(1);
                }
                match args.format {
                    Format::Json => {
                        serde_json::to_writer(&mut out, &report)?;
                        writeln!(out)?;
                    }
                    Format::Text => print_text(&mut out, &report)?,
                }
            }
            Err(err) => {
                out.flush()?;
                eprintln!("portcullis: {err:#}");
                worst = 2;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::from(worst))
}
