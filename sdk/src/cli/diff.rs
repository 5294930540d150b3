//! `abkit diff`: how many units a configuration change moves, per experiment.

use super::simulate::{Bar, InputArgs};
use super::CliError;
use crate::simulate;
use crate::Sdk;
use std::path::PathBuf;
use std::process::ExitCode;

/// Output format of `diff`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Summary table and transition matrices.
    Table,
    /// One JSON object (documented contract).
    Json,
}

/// Arguments of `abkit diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The current configuration (TOML); or the document in etcd now (--etcd-endpoints,
    /// --etcd-key), to see what publishing --to would change.
    #[cfg_attr(
        feature = "etcd",
        arg(
            long,
            required_unless_present = "etcd_key",
            conflicts_with = "etcd_key"
        )
    )]
    #[cfg_attr(not(feature = "etcd"), arg(long, required = true))]
    from: Option<PathBuf>,
    #[command(flatten)]
    etcd: Box<super::source::EtcdArgs>,
    /// The proposed configuration (TOML).
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    input: InputArgs,
    /// Compare only this experiment (repeatable; default: every experiment in either file).
    #[arg(long = "experiment", value_name = "KEY")]
    experiments: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let from = args.etcd.load(args.from.as_deref())?;
    let to = Sdk::from_file(&args.to)?;
    let (source, mut opts) = args.input.source_and_options(args.experiments)?;
    let bar = Bar::attach(source.progress_total(), &mut opts);
    let report = simulate::diff(&from.snapshot(), &to.snapshot(), source, &opts)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    bar.finish("diff", report.units, report.threads);
    super::simulate::warn_skipped(&report.skipped_lines);
    match args.format {
        Format::Table => print!("{}", report.to_table()),
        Format::Json => println!("{}", report.to_json()),
    }
    Ok(ExitCode::SUCCESS)
}
