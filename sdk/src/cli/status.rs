//! `abkit status`: load a configuration the way a service would (verify, load, probe every
//! plugin) and show what would serve, and why anything was refused.

use super::CliError;
use crate::status::PluginState;
use crate::Sdk;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `abkit status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Exit 1 when any plugin is refused (for deploy scripts).
    #[arg(long)]
    strict: bool,
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let sdk = Sdk::from_file(&args.config)?;
    let status = sdk.status();
    if args.json {
        let text = serde_json::to_string_pretty(&status)
            .map_err(|e| CliError::Invalid(format!("cannot encode status: {e}")))?;
        println!("{text}");
    } else {
        print!("{status}");
    }
    let refused = status
        .plugins
        .iter()
        .any(|p| p.state != PluginState::Active)
        || status.experiments.iter().any(|e| e.refusal.is_some());
    Ok(if args.strict && refused {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
