//! Offline simulation (feature `simulate`): how a configuration splits a real population, and
//! how many units a change would move, before anything goes live.
//!
//! Every assignment goes through [`Snapshot::assign_at`](crate::Snapshot::assign_at) with one
//! fixed clock, so what is simulated is exactly what serves (plugin strategies included).
//! Units come from a
//! [`UnitSource`]: a file of ids or a CSV with a header (gzip recognised by its magic bytes),
//! stdin, or a deterministic synthetic population. Input is read in chunks (64k units by
//! default) and each chunk is counted in parallel on a rayon pool; memory stays flat whatever
//! the input size, and results are identical for any thread count (integer counters merged by
//! addition; statistics computed from the merged counts).
//!
//! ```
//! use abkit::simulate::{self, SimulateOptions, SyntheticSpec, UnitSource, Verdict};
//!
//! let sdk = abkit::Sdk::from_toml_str(r#"
//!     [[experiments]]
//!     key = "checkout_button"
//!     variants = [ { name = "control", weight = 50 }, { name = "treatment", weight = 50 } ]
//! "#).unwrap();
//! let units = UnitSource::synthetic(SyntheticSpec::new(100_000));
//! let report = simulate::run(&sdk.snapshot(), units, &SimulateOptions::default()).unwrap();
//! let e = report.experiment("checkout_button").unwrap();
//! assert_eq!(e.srm.verdict, Verdict::Ok);
//! println!("{}", report.to_table());
//! ```
//!
//! # Every row is accounted for
//!
//! Inputs are read one record per line (a CSV quote must close on its line, see
//! [`InputFormat::Csv`]), and every data line is a unit or a malformed line: failing the run
//! (naming the line) or, with [`SimulateOptions::skip_bad_lines`], counted and skipped.
//! Reports carry `rows_read = units + skipped_lines.count`, checked before a report is made
//! ([`SimulateError::RowAccounting`]). An input with no units is an error
//! ([`SimulateError::NoUnits`]) unless [`SimulateOptions::allow_empty`].
//!
//! # What is computed
//!
//! Per experiment: units per variant (split into placed *by the strategy* and *overridden*),
//! not-enrolled units by [`Reason::as_str`](crate::Reason::as_str), and
//!
//! - **expected share** of variant *i* = `enabled * slice * range_i / 10000` for
//!   `builtin:hash-v1` and the `weighted-hash` plugin, where `range_i` is the exact width of the
//!   variant's bucket range (bucketing-v1 floors its boundaries, so 6 variants at 1% coverage
//!   enrol 6 x 16 buckets = 0.96%, not 1%), and `slice = (end - start) / 10000` for an
//!   experiment in a layer (1 otherwise); for other strategies, the nominal share. The nominal
//!   share `enabled * slice * coverage_bp / 10000 * w_i / W` is reported beside it
//!   (`nominal_share`). Targeting and overrides are not random, so the expectation is
//!   **conditional**: it is the share of the *eligible* units (those that pass the disabled,
//!   override and targeting gates), and the comparable **observed share** is
//!   `assigned_i / eligible`. The share of the whole population (`count / units`, overrides
//!   included) is reported as `population_share`.
//! - **SRM split test**: the strategy-assigned counts against the expected shares. Against
//!   the nominal shares instead, the rounding bias alone grows like `N * sum(d_i^2 / p_i)` and
//!   flags a correct builtin from well under a million units (about 670k eligible units for 6
//!   variants at 1% coverage, about 1.2M for 150 variants at full coverage); hence the exact
//!   ranges.
//! - **SRM coverage test**: eligible units split into outside-layer / outside-coverage / assigned
//!   against `1 - s`, `s (1 - c)`, `s c` (`c` the exact enrolled share for bucketing-v1).
//! - **Which test**: Pearson's chi-square when every expected count is at least 5; below that,
//!   the exact binomial test (two cells) or Fisher's exact test (2x2 independence tables), else
//!   verdict `insufficient_data` (no p-value). See [`stats`].
//! - **The randomised unit**: an experiment whose `strategy_config` names an attribute (a key
//!   ending in `attribute`: cluster, switchback) is tested with one count per distinct value
//!   of it (`srm.unit`, `srm.clusters`), or `not_applicable` with the reason in `srm.note`;
//!   units of one cluster are not independent draws. Until strategies declare their
//!   randomisation unit (ABI 0.2), that key is the guess.
//! - **One verdict for many tests**: every p-value of a report (split, coverage, independence)
//!   is adjusted with Holm's method (family-wise error rate 0.001 for the whole report);
//!   `p_value` is raw, `p_adjusted` adjusted, and verdicts follow `p_adjusted`.
//!
//! Per layer (over the simulated experiments in it): units enrolled in more than one of its
//! experiments (0 by strategy for a valid layer; overrides bypass layers). Per pair of simulated
//! experiments not in the same layer: a chi-square test of independence on the contingency
//! table of their variants over the units both strategies placed.
//!
//! # JSON contract
//!
//! [`SimulationReport::to_json`] prints `{"units", "rows_read", "skipped_lines": {"count",
//! "examples"}, "experiments": [{"key", "enrolled",
//! "not_enrolled": {reason: count}, "variants": [{"name", "count", "expected_share",
//! "observed_share"}], "srm": {"chi2", "p_value", "verdict"}}], "layers": [...],
//! "independence": [...]}`; [`DiffReport::to_json`] prints `{"units", "rows_read",
//! "skipped_lines", "experiments": [{"key",
//! "moved", "moved_share", "entered", "left", "transitions": [{"from", "to", "count"}]}]}` with
//! `from`/`to` a variant name or `null`. More fields are present; these names stay. An infinite
//! chi-square (a count where nothing is expected) is `null`.

mod assign;
mod diff;
mod engine;
mod error;
mod input;
mod plot;
mod render;
mod report;
mod run;
pub mod stats;
mod synthetic;
mod time;

use std::sync::Arc;

pub use crate::srm::Method as TestMethod;
pub use assign::{assign_units, AssignUnitsError, AssignUnitsOptions, UnitsAssigned};
pub use diff::{diff, DiffReport, ExperimentDiff, Transition};
pub use error::{LineProblem, SimulateError};
pub use input::{BadLine, InputFormat, ProgressTotal, SkippedLines, UnitSource, BAD_LINE_EXAMPLES};
pub use plot::write_svg;
pub use report::{
    ExperimentReport, IndependenceReport, LayerReport, LayerSliceReport, PAdjustment, ReasonCounts,
    SimulationReport, SrmReport, VariantReport,
};
pub use run::run;
pub use stats::{ChiSquare, Verdict};
pub use synthetic::{AttributeDistribution, SyntheticIds, SyntheticSpec};
pub use time::{now_ms, parse_time};

/// Progress so far, reported after each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Units counted so far.
    pub units: u64,
    /// Input bytes read so far (compressed bytes for gzip; 0 for synthetic input).
    pub bytes: u64,
}

/// A progress callback (called from the thread that called `run` or `diff`).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Options of [`run`] and [`diff`]: `SimulateOptions::default().with_now_ms(t)` ...
/// (`#[non_exhaustive]`: options may be added in any release).
#[derive(Clone)]
#[non_exhaustive]
pub struct SimulateOptions {
    /// Experiments to simulate (empty: all, in configuration order).
    pub experiments: Vec<String>,
    /// The fixed clock in ms since the Unix epoch (`None`: the system time when the run starts).
    pub now_ms: Option<u64>,
    /// Worker threads (`None` or `Some(0)`: one per core). Results do not depend on it.
    pub threads: Option<usize>,
    /// Skip malformed input lines and count them, instead of failing on the first.
    pub skip_bad_lines: bool,
    /// Accept an input with no units (empty, a CSV header alone, or every line skipped) and
    /// report on it; by default that is [`SimulateError::NoUnits`], since a report on no
    /// data reads as a healthy split.
    pub allow_empty: bool,
    /// Units read and counted per chunk (memory is proportional to it). Default 65536.
    pub chunk_units: usize,
    /// Called after each chunk.
    pub progress: Option<ProgressFn>,
}

impl SimulateOptions {
    /// Only these experiments (empty: all, in configuration order).
    pub fn with_experiments(mut self, experiments: Vec<String>) -> Self {
        self.experiments = experiments;
        self
    }

    /// The fixed clock in ms since the Unix epoch (`None`: the time the run starts).
    pub fn with_now_ms(mut self, now_ms: Option<u64>) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Worker threads (`None` or `Some(0)`: one per core).
    pub fn with_threads(mut self, threads: Option<usize>) -> Self {
        self.threads = threads;
        self
    }

    /// Skip and count malformed input lines instead of failing on the first.
    pub fn with_skip_bad_lines(mut self, skip: bool) -> Self {
        self.skip_bad_lines = skip;
        self
    }

    /// Report on an input with no units instead of failing with [`SimulateError::NoUnits`].
    pub fn with_allow_empty(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }

    /// Units read and counted per chunk (memory is proportional to it).
    pub fn with_chunk_units(mut self, units: usize) -> Self {
        self.chunk_units = units;
        self
    }

    /// Called after each chunk.
    pub fn with_progress(mut self, progress: Option<ProgressFn>) -> Self {
        self.progress = progress;
        self
    }
}

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions {
            experiments: Vec::new(),
            now_ms: None,
            threads: None,
            skip_bad_lines: false,
            allow_empty: false,
            chunk_units: 1 << 16,
            progress: None,
        }
    }
}

impl std::fmt::Debug for SimulateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulateOptions")
            .field("experiments", &self.experiments)
            .field("now_ms", &self.now_ms)
            .field("threads", &self.threads)
            .field("skip_bad_lines", &self.skip_bad_lines)
            .field("allow_empty", &self.allow_empty)
            .field("chunk_units", &self.chunk_units)
            .field("progress", &self.progress.as_ref().map(|_| "Fn(Progress)"))
            .finish()
    }
}
