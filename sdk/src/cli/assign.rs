//! `abkit assign`: one unit, or a units file (the reader of `simulate`) streamed to CSV.

use super::CliError;
use crate::files::DEFAULT_MAX_LINE_BYTES;
use crate::simulate::{self, AssignUnitsOptions, InputFormat, UnitSource};
use crate::{Attribute, Unit};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `abkit assign`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["unit", "units"])))]
pub struct Args {
    #[command(flatten)]
    source: Box<super::source::SourceArgs>,
    /// The experiment key.
    #[arg(long)]
    experiment: String,
    /// One unit id: prints the variant name, or `-` when not enrolled (reason on stderr).
    #[arg(long)]
    unit: Option<String>,
    /// A units file (`-` for stdin): one id per line, or CSV with a header (see
    /// --id-column); gzip is detected by its magic bytes. Writes `unit_id,variant` CSV to
    /// stdout (variant empty when not enrolled), one row per unit, in input order. The same
    /// reader as `abkit simulate`: a malformed line stops the run with exit 1, after the rows
    /// before it were written, and the error says how many were (use --skip-bad-lines to skip
    /// and count such lines instead).
    #[arg(long)]
    units: Option<PathBuf>,
    /// With --units: the input is CSV with a header; this column holds the unit id, the other
    /// columns become attributes of each unit (one record per line: a quote must close on
    /// its line).
    #[arg(long, value_name = "NAME", requires = "units")]
    id_column: Option<String>,
    /// With --units: skip malformed lines (bad UTF-8, wrong field count, unclosed quote,
    /// empty id, too long), warn about them on stderr and count them, instead of stopping.
    #[arg(long, requires = "units")]
    skip_bad_lines: bool,
    /// A unit attribute `key=value` (repeatable), for targeting and attribute-based strategies.
    /// With --units it applies to every unit; a CSV column of the same name wins.
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attr)]
    attrs: Vec<(String, String)>,
    /// With --units: longest line accepted, in bytes, not counting the line end (default
    /// 65536); a longer line is a malformed line. Input is read in bounded memory.
    #[arg(long, value_name = "N", value_parser = super::simulate::parse_line_bytes, requires = "units")]
    max_line_bytes: Option<usize>,
}

fn parse_attr(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let sdk = args.source.load()?;
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
            args.source.name(),
            if known.is_empty() {
                "(none)".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    if let Some(path) = &args.units {
        let format = match &args.id_column {
            Some(c) => InputFormat::Csv {
                id_column: c.clone(),
            },
            None => InputFormat::Plain,
        };
        let source = UnitSource::open(path, format)
            .map_err(|e| CliError::Invalid(e.to_string()))?
            .with_max_line_bytes(args.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES));
        let opts = AssignUnitsOptions {
            skip_bad_lines: args.skip_bad_lines,
            attributes: args.attrs.clone(),
        };
        let stdout = std::io::stdout().lock();
        let done = simulate::assign_units(&snapshot, &args.experiment, source, &opts, stdout)
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        super::simulate::warn_skipped(&done.skipped);
        tracing::info!(
            rows_read = done.rows_read,
            units = done.written,
            skipped = done.skipped.count,
            enrolled = done.enrolled,
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
