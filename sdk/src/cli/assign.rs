//! `abkit assign`: one unit, or a file of unit ids streamed to CSV.

use super::CliError;
use crate::bulk::BulkError;
use crate::files::{InputLimit, LineCap, DEFAULT_MAX_LINE_BYTES};
use crate::{Attribute, Sdk, Unit};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `abkit assign`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["unit", "units"])))]
pub struct Args {
    /// The configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// The experiment key.
    #[arg(long)]
    experiment: String,
    /// One unit id: prints the variant name, or `-` when not enrolled (reason on stderr).
    #[arg(long)]
    unit: Option<String>,
    /// A file with one unit id per line (`-` for stdin): writes `unit_id,variant` CSV to stdout.
    #[arg(long)]
    units: Option<PathBuf>,
    /// A unit attribute `key=value` (repeatable), for targeting and attribute-based strategies.
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attr)]
    attrs: Vec<(String, String)>,
    /// With --units (ignored otherwise): longest line accepted, in bytes, not counting the
    /// line end (default 65536); a longer line is an error naming it. Input is read in
    /// bounded memory.
    #[arg(long, value_name = "N", value_parser = super::simulate::parse_line_bytes)]
    max_line_bytes: Option<usize>,
}

fn parse_attr(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let sdk = Sdk::from_file(&args.config)?;
    let snapshot = sdk.snapshot();
    if snapshot.experiment(&args.experiment).is_none() {
        let known: Vec<&str> = snapshot
            .config()
            .experiments
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        return Err(CliError::Invalid(format!(
            "experiment \"{}\" is not in {}; known experiments: {}",
            args.experiment,
            args.config.display(),
            if known.is_empty() {
                "(none)".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    if let Some(path) = &args.units {
        let stdout = std::io::stdout().lock();
        // Pipes are fine here (stdin, a FIFO), but every line is capped, so an input without
        // line ends (`/dev/zero`) fails at once instead of filling the memory.
        let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(path).map_err(|e| {
                CliError::Invalid(format!("cannot open units file {}: {e}", path.display()))
            })?;
            Box::new(BufReader::with_capacity(1 << 16, file))
        };
        let max = args.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES);
        let mut capped = LineCap::new(input, max, false);
        let result = crate::bulk::assign_csv(&snapshot, &args.experiment, &mut capped, stdout);
        let stats = result.map_err(|e| match e {
            BulkError::Io(ref io) => match InputLimit::of(io) {
                Some(InputLimit::Line { line, max }) => CliError::Invalid(format!(
                    "{} line {line}: the line is longer than {max} bytes, the limit for one line; \
                     unit ids are short, so check that this is a file of unit ids, or raise the \
                     limit with --max-line-bytes",
                    path.display()
                )),
                _ => CliError::Invalid(format!("{}: {e}", path.display())),
            },
            _ => CliError::Invalid(format!("{}: {e}", path.display())),
        })?;
        tracing::info!(
            units = stats.units,
            enrolled = stats.enrolled,
            "bulk assignment done"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let id = args.unit.unwrap_or_default();
    let attrs: Vec<Attribute<'_>> = args
        .attrs
        .iter()
        .map(|(k, v)| Attribute::new(k, v))
        .collect();
    let a = snapshot.assign(&args.experiment, &Unit::new(&id).with_attributes(&attrs));
    println!("{}", a.variant_name().unwrap_or("-"));
    eprintln!("reason: {} (decided by {})", a.reason, a.decided_by);
    Ok(ExitCode::SUCCESS)
}
