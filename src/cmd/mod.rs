//! One module per subcommand. Each exposes its clap arguments and `run(..) -> Result<ExitCode>`.
pub mod ca;
pub mod explain;
pub mod logs;
pub mod policy;
pub mod rules;
pub mod run;
pub mod scan;
