//! `abkit check`: validate a configuration, print every problem.

use super::CliError;
use crate::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `abkit check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    match Config::from_file(&args.config) {
        Ok(c) => {
            println!(
                "ok: {} is valid ({} experiments, {} layers, {} plugins)",
                args.config.display(),
                c.experiments.len(),
                c.layers.len(),
                c.plugins.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}
