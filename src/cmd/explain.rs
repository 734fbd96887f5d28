//! `portcullis explain [--user NAME] [--method METHOD] URL`: how the proxy would classify and
//! decide a request, as one JSON object, so officers can test a policy before it goes live.
//!
//! It runs `portcullis_policy::Engine::explain`, the same stage sequence the proxy's gate runs
//! (CONNECT for https, then the request, then — with `--finding`/`--unscannable` — the body).
//!
//! Output (one line): `{"app": id|null, "category": id|null, "activity": name|null,
//! "action": "allow"|"block"|"log"|"inspect", "rule": id|null, "exception": {"id", "approver",
//! "reason", "expires"}|null, "stage": "connect"|"request"|"body", "host", "matched",
//! "simulated_rule", "would"}`. `inspect` at the request stage means: the body would be scanned
//! and blocked on findings (try `--finding payment-card`).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use portcullis_policy::{BodyFacts, Engine, Identity, Users, parse_expiry_text};
use serde_json::json;

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The user making the request (groups come from --users when given).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Extra groups for the user.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// HTTP method (CONNECT shows the tunnel decision only).
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Pretend the body scan found this detector id (repeatable).
    #[arg(long = "finding", value_name = "DETECTOR")]
    pub findings: Vec<String>,
    /// Pretend the body could not be scanned.
    #[arg(long)]
    pub unscannable: bool,
    /// Evaluate exceptions at this time (RFC 3339 or a date) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[command(flatten)]
    pub files: PolicyFiles,
    /// The request URL (http:// or https://).
    pub url: String,
}

/// Files that override the embedded defaults (shared with `portcullis policy`).
#[derive(clap::Args, Clone, Default)]
pub struct PolicyFiles {
    /// App catalog directory (*.toml) instead of the embedded rules/apps.
    #[arg(long, value_name = "DIR")]
    pub apps: Option<PathBuf>,
    /// Policy file instead of the embedded rules/policy.toml.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Users file (argon2 hashes, groups, address map).
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
}

/// `--at` or the current time.
pub fn when(at: Option<&str>) -> anyhow::Result<SystemTime> {
    match at {
        None => Ok(SystemTime::now()),
        Some(t) => {
            let (time, _) = parse_expiry_text(t).map_err(|m| anyhow::anyhow!("--at: {m}"))?;
            // A bare date means the end of that day for expiry; for "at" mean its start.
            Ok(if t.len() == 10 { time - std::time::Duration::from_secs(86_400) } else { time })
        }
    }
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let engine = Engine::load(args.files.apps.as_deref(), args.files.policy.as_deref())?;
    let users = match &args.files.users {
        Some(path) => Some(Users::load(path)?),
        None => None,
    };
    let identity = args.user.as_deref().map(|name| {
        let mut id =
            users.as_ref().and_then(|u| u.lookup(name)).unwrap_or_else(|| Identity { user: name.into(), groups: Vec::new().into() });
        if !args.groups.is_empty() {
            let mut groups = id.groups.to_vec();
            groups.extend(args.groups.iter().cloned());
            id.groups = groups.into();
        }
        id
    });
    let now = when(args.at.as_deref())?;
    let body = BodyFacts { findings: &args.findings, unscannable: args.unscannable };
    let method = args.method.to_ascii_uppercase();
    let ex = engine.explain(identity.as_ref(), &method, &args.url, body, now).context("explain")?;
    let out = json!({
        "app": ex.flow.app_id(),
        "category": ex.flow.category(),
        "activity": ex.flow.activity,
        "action": ex.decision.action,
        "rule": ex.decision.rule,
        "exception": ex.decision.exception,
        "stage": ex.decision.stage,
        "host": ex.flow.host,
        "matched": ex.flow.matched,
        "user": identity.as_ref().map(|i| &*i.user),
        "simulated_rule": ex.decision.simulated_rule,
        "would": ex.decision.would,
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
