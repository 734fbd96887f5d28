//! Sensitive-data detection: detectors loaded from TOML compile into one [`Ruleset`];
//! a [`Scanner`] consumes a stream of chunks and reports masked [`Finding`]s.
#![forbid(unsafe_code)]
