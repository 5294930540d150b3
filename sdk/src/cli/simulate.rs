//! `abkit simulate`: how a configuration splits a population (counts, shares, SRM, layer and
//! independence checks), as a table, JSON or CSV, optionally with an SVG chart.

use super::CliError;
use crate::simulate::{
    self, AttributeDistribution, InputFormat, Progress, ProgressTotal, SimulateOptions,
    SyntheticSpec, UnitSource,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the units come from, and how they are read (shared by `simulate` and `diff`).
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("units").required(true).args(["input", "synthetic"])))]
pub(super) struct InputArgs {
    /// Units file: one id per line, or CSV with a header (see --id-column); `-` reads stdin.
    /// Gzip input is detected by its magic bytes.
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
    /// Simulate N synthetic units `unit-0` ... `unit-<N-1>` instead of reading units.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    synthetic: Option<u64>,
    /// A synthetic attribute, e.g. `country=US:60,CA:40` (repeatable; deterministic per unit id).
    #[arg(long = "attr-dist", value_name = "NAME=VALUE:WEIGHT,...", requires = "synthetic", value_parser = parse_dist)]
    attr_dist: Vec<AttributeDistribution>,
    /// The input is CSV with a header; this column holds the unit id, the others become
    /// attributes. One record per line: a quote must close on its line.
    #[arg(long, value_name = "NAME", conflicts_with = "synthetic")]
    id_column: Option<String>,
    /// Skip malformed lines (bad UTF-8, wrong field count, empty id, too long), counting them,
    /// instead of stopping at the first.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Accept an input with no units (empty, a CSV header alone, every line skipped) and
    /// report on it. By default that is an error (exit 1): a report on no data would read
    /// as a healthy split. No chart is drawn for it either way.
    #[arg(long)]
    allow_empty: bool,
    /// Longest input line accepted, in bytes (not counting the line end). A longer line is a
    /// malformed line: an error naming it, or skipped and counted with --skip-bad-lines.
    #[arg(long, value_name = "N", default_value_t = crate::files::DEFAULT_MAX_LINE_BYTES, value_parser = parse_line_bytes)]
    max_line_bytes: usize,
    /// Fix the clock every assignment sees: RFC 3339 or ms since the epoch (default: now).
    #[arg(long, value_name = "T")]
    time: Option<String>,
    /// Worker threads (default: one per core). Results are identical for any value.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

fn parse_count(s: &str) -> Result<u64, String> {
    s.replace('_', "")
        .parse::<u64>()
        .map_err(|_| format!("`{s}` is not a number of units"))
}

/// A `--max-line-bytes` value: a positive number of bytes (`_` separators allowed).
pub(super) fn parse_line_bytes(s: &str) -> Result<usize, String> {
    match s.replace('_', "").parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive number of bytes")),
    }
}

fn parse_dist(s: &str) -> Result<AttributeDistribution, String> {
    AttributeDistribution::parse(s).map_err(|e| e.to_string())
}

impl InputArgs {
    /// The unit source and the options (clock, threads, skipping) these arguments ask for.
    pub(super) fn source_and_options(
        &self,
        experiments: Vec<String>,
    ) -> Result<(UnitSource, SimulateOptions), CliError> {
        let invalid = |e: simulate::SimulateError| CliError::Invalid(e.to_string());
        let source = match (&self.input, self.synthetic) {
            (_, Some(n)) => {
                let mut spec = SyntheticSpec::new(n);
                spec.attributes = self.attr_dist.clone();
                UnitSource::synthetic(spec)
            }
            (Some(path), None) => {
                let format = match &self.id_column {
                    Some(c) => InputFormat::Csv {
                        id_column: c.clone(),
                    },
                    None => InputFormat::Plain,
                };
                UnitSource::open(path, format)
                    .map_err(invalid)?
                    .with_max_line_bytes(self.max_line_bytes)
            }
            (None, None) => {
                return Err(CliError::Invalid(
                    "give a units file (`-` for stdin) or --synthetic N".into(),
                ))
            }
        };
        let now_ms = self
            .time
            .as_deref()
            .map(simulate::parse_time)
            .transpose()
            .map_err(invalid)?;
        let opts = SimulateOptions {
            experiments,
            now_ms,
            threads: self.threads,
            skip_bad_lines: self.skip_bad_lines,
            allow_empty: self.allow_empty,
            ..SimulateOptions::default()
        };
        Ok((source, opts))
    }
}

/// A progress bar on stderr, drawn only once a run has lasted a second (and only on a terminal).
pub(super) struct Bar {
    bar: ProgressBar,
    started: Instant,
}

impl Bar {
    pub(super) fn attach(total: ProgressTotal, opts: &mut SimulateOptions) -> Bar {
        let (len, template) = match total {
            ProgressTotal::Units(n) => (
                Some(n),
                "{spinner} {human_pos}/{human_len} units [{bar:30}] {percent}% eta {eta}",
            ),
            ProgressTotal::Bytes(n) => (
                Some(n),
                "{spinner} {bytes}/{total_bytes} [{bar:30}] {binary_bytes_per_sec} {msg} eta {eta}",
            ),
            ProgressTotal::Unknown => (None, "{spinner} {msg} {elapsed}"),
        };
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let started = Instant::now();
        let shown = Arc::new(AtomicBool::new(false));
        let handle = bar.clone();
        opts.progress = Some(Arc::new(move |p: Progress| {
            if !shown.load(Ordering::Relaxed) && started.elapsed() >= Duration::from_secs(1) {
                shown.store(true, Ordering::Relaxed);
                handle.set_draw_target(ProgressDrawTarget::stderr());
            }
            match total {
                ProgressTotal::Units(_) => handle.set_position(p.units),
                ProgressTotal::Bytes(_) => {
                    handle.set_position(p.bytes);
                    handle.set_message(format!("{} units", p.units));
                }
                ProgressTotal::Unknown => handle.set_message(format!("{} units", p.units)),
            }
        }));
        Bar { bar, started }
    }

    /// Clears the bar and prints the one-line summary.
    pub(super) fn finish(self, what: &str, units: u64, threads: usize) {
        self.bar.finish_and_clear();
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { units as f64 / secs } else { 0.0 };
        let plural = if threads == 1 { "" } else { "s" };
        eprintln!(
            "abkit: {what}: {units} units in {secs:.2} s ({:.2} M units/s, {threads} thread{plural})",
            rate / 1e6
        );
    }
}

/// Prints the malformed lines skipped (the first few) and their total, on stderr.
pub(super) fn warn_skipped(skipped: &simulate::SkippedLines) {
    for b in &skipped.examples {
        eprintln!("warning: skipped line {}: {}", b.line, b.problem);
    }
    if skipped.count > skipped.examples.len() as u64 {
        eprintln!("warning: skipped {} malformed lines in all", skipped.count);
    }
}

/// Output format of `simulate`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Aligned table for a terminal.
    Table,
    /// One JSON object (documented contract).
    Json,
    /// Long-format CSV, one row per variant, reason and test.
    Csv,
}

/// Arguments of `abkit simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: Box<super::source::SourceArgs>,
    #[command(flatten)]
    input: InputArgs,
    /// Simulate only this experiment (repeatable; default: all).
    #[arg(long = "experiment", value_name = "KEY")]
    experiments: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also write a chart to this SVG file: per variant, observed minus expected share in
    /// percentage points with its 95% interval. Not written when no unit was read.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let sdk = args.source.load()?;
    let (source, mut opts) = args.input.source_and_options(args.experiments)?;
    let bar = Bar::attach(source.progress_total(), &mut opts);
    let report = simulate::run(&sdk.snapshot(), source, &opts)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    bar.finish("simulate", report.units, report.threads);
    warn_skipped(&report.skipped_lines);
    let text = match args.format {
        Format::Table => report.to_table(),
        Format::Json => report.to_json() + "\n",
        Format::Csv => report.to_csv(),
    };
    print!("{text}");
    if let Some(path) = &args.plot {
        if report.units == 0 {
            eprintln!(
                "warning: no chart written to {}: no units were read",
                path.display()
            );
        } else {
            simulate::write_svg(&report, path).map_err(|e| CliError::Invalid(e.to_string()))?;
            eprintln!("abkit: chart written to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
