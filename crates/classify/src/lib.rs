//! `portcullis-classify`: which service a flow belongs to and what it is doing.
//!
//! Policy speaks in apps ("gmail"), categories ("webmail") and activities ("upload"), not in
//! host names. This crate turns what the proxy sees — a CONNECT authority or SNI, a destination
//! address, an HTTP method and path — into a [`Flow`] using a data-driven catalog
//! (`rules/apps/*.toml`, embedded by default; see [`catalog`] for the format).
//!
//! It is pure: no I/O besides loading files, no clock, no async; the proxy calls
//! [`Catalog::classify`] on its hot path (a hash lookup per label of the host).
//!
//! What it does not do: decide anything (that is `portcullis-policy`), or resolve names.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod catalog;
mod flow;
pub mod host;
mod problem;

pub use catalog::{BUILTIN_FILES, Catalog, CatalogError, PathGlob, Tenant, normalize_path};
pub use flow::{Activity, AppInfo, Flow, FlowHead};
pub use host::{HostError, HostPattern, NormalHost, normalize_host};
pub use problem::{LoadError, Problem, Problems, line_of, toml_problem};
