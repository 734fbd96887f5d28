//! `portcullis-policy`: what to do with a flow, and who is behind it.
//!
//! Organisations that ban personal webmail, public cloud storage and messaging still need
//! exceptions approved by a department head, rules tried out before they go live, and a record
//! of why each decision was made. This crate holds:
//! - [`Policy`]: ordered rules (first match wins) over user/group, app, category, activity,
//!   stage, DLP findings and unscannable content; actions allow, block, log, inspect; per-rule
//!   `simulate`; approved [`Exception`]s with approver and expiry (see [`mod@file`] for the format
//!   and [`decide`] for the semantics, including how stages that cannot know everything yet
//!   answer `inspect`).
//! - [`Users`]: proxy Basic authentication (argon2 hashes) and client-address mapping.
//! - [`Engine`]: catalog + policy, the exact calls the proxy makes and `explain` replays.
//!
//! Pure: no clock (every decision takes `now`), no network, no async. Loading returns a new
//! value or an error naming file and line; reload = load, then swap on success.
//!
//! # Wiring into the proxy's `Gate` (crates/proxy/src/hooks.rs)
//!
//! Hold `RwLock<Arc<Engine>>` + `RwLock<Arc<Users>>`; reload with [`Engine::load`] /
//! [`Users::load`] and swap only on `Ok` (on `Err`, log `err.problems()` and keep the old ones).
//!
//! ```text
//! authenticate(client, hdr) => users.identify(hdr, client.ip())
//!     User(id) => Auth::Allow(id) | Anonymous => Auth::Allow(default) | Challenge(_) => Auth::Challenge
//! on_connect(host, port, ..) =>
//!     flow = engine.classify(&FlowHead { host, port: Some(port), ip: host.parse().ok(),
//!                                        method: Some("CONNECT"), path: None })
//!     d = engine.decide(who, &flow, Stage::Connect, BodyFacts::default(), SystemTime::now())
//!     Block            => ConnectDecision::Block(rule = d.rule, reason = policy.reason(&d), labels = d.labels(&flow))
//!     _ if app known && !inspectable => Tunnel { reason: "<app> cannot be inspected; allowed by <rule/exception>" }
//!     _                => Intercept            (bypass list first, as today)
//! on_opaque(host, ..)  => classify with method: None (activity opaque), Stage::Connect;
//!                         Block => OpaqueDecision::Block, else Tunnel
//! on_request(head)     => flow = classify(method, host, port, path_and_query); d at Stage::Request
//!     Block            => RequestDecision::Block
//!     Inspect          => Forward { inspector: extract::Inspection wrapped so that finish/early
//!                         verdict calls engine.decide(.., Stage::Body, BodyFacts { findings:
//!                         detector ids, unscannable }, now): Block => block, else allow }
//!     Allow | Log      => Forward (Log and d.should_record(): record it)
//!     add_headers      = engine.tenant_headers(&flow)
//! ```
//! `portcullis explain` runs this same sequence through [`Engine::explain`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decide;
mod engine;
pub mod file;
mod identity;

pub use decide::{Action, Decision, ExceptionInfo, Facts, Stage};
pub use engine::{BodyFacts, Engine, Explanation, UrlError};
pub use file::{BUILTIN_POLICY, Exception, LoadError, Policy, Rule, parse_expiry, parse_expiry_text};
pub use identity::{AuthError, Identified, Identity, Users, hash_password};
