//! `portcullis-policy`: what to do with a flow, and who is behind it.
//!
//! Organisations that ban personal webmail, public cloud storage and messaging still need
//! exceptions approved by a department head, rules tried out before they go live, and a record
//! of why each decision was made. This crate holds:
//! - [`Policy`]: ordered rules (first match wins) over user/group, app, category, activity,
//!   stage, DLP findings and unscannable content; actions allow, block, log, inspect; per-rule
//!   `simulate`; approved [`Exception`]s with approver and expiry (see [`file`] for the format
//!   and [`decide`] for the semantics, including how stages that cannot know everything yet
//!   answer `inspect`).
//! - [`Users`]: proxy Basic authentication (argon2 hashes) and client-address mapping.
//! - [`Engine`]: catalog + policy, the exact calls the proxy makes and `explain` replays.
//!
//! Pure: no clock (every decision takes `now`), no network, no async. Loading returns a new
//! value or an error naming file and line; reload = load, then swap on success.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decide;
mod engine;
pub mod file;
mod identity;

pub use decide::{Action, Decision, ExceptionInfo, Facts, Stage};
pub use engine::{BodyFacts, Engine, Explanation, UrlError};
pub use file::{BUILTIN_POLICY, Exception, LoadError, Policy, Rule, parse_expiry, parse_expiry_text};
pub use identity::{AuthError, Identity, Users, hash_password};
