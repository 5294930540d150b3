//! What a simulation reports: per experiment split, shares and SRM tests; per layer the
//! exclusivity check; per pair of experiments the independence test. `Serialize` structs: the
//! JSON field names are a contract (see the module docs).

use super::input::SkippedLines;
use super::stats::{goodness_of_fit, ChiSquare, Verdict};
use crate::assignment::Reason;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::time::Duration;

/// The result of [`super::run`].
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    /// Units simulated (malformed lines skipped are not units).
    pub units: u64,
    /// Data rows read (lines after a CSV header): always `units + skipped_lines.count`.
    pub rows_read: u64,
    /// Where the units came from (a path, `<stdin>`, `synthetic(N)`).
    pub input: String,
    /// The fixed clock every assignment saw, in ms since the Unix epoch.
    pub now_ms: u64,
    /// Malformed input lines skipped (with `skip_bad_lines`).
    pub skipped_lines: SkippedLines,
    /// One entry per simulated experiment, in configuration order.
    pub experiments: Vec<ExperimentReport>,
    /// One entry per layer holding at least one simulated experiment.
    pub layers: Vec<LayerReport>,
    /// One entry per pair of enabled simulated experiments not in the same layer.
    pub independence: Vec<IndependenceReport>,
    /// How p-values are adjusted across the report: `holm` (family-wise error rate 0.001 over
    /// every SRM and independence test of the report).
    pub p_adjustment: PAdjustment,
    /// Number of tests with a p-value in that family.
    pub tests: usize,
    /// Worker threads used (not serialised: the JSON is identical for any thread count).
    #[serde(skip)]
    pub threads: usize,
    /// Wall time of the run (not serialised).
    #[serde(skip)]
    pub elapsed: Duration,
}

impl SimulationReport {
    /// The report of experiment `key`, if it was simulated.
    pub fn experiment(&self, key: &str) -> Option<&ExperimentReport> {
        self.experiments.iter().find(|e| e.key == key)
    }

    /// Whether no test is a mismatch (SRM split and coverage, layer exclusivity,
    /// independence), on Holm-adjusted p-values; `insufficient_data` and `not_applicable` are
    /// not failures.
    pub fn all_ok(&self) -> bool {
        self.experiments.iter().all(|e| {
            e.srm.verdict != Verdict::Mismatch
                && e.srm.coverage.verdict != Verdict::Mismatch
                && e.srm
                    .holdout
                    .as_ref()
                    .is_none_or(|h| h.verdict != Verdict::Mismatch)
        }) && self.layers.iter().all(|l| l.verdict != Verdict::Mismatch)
            && self
                .independence
                .iter()
                .all(|p| p.test.verdict != Verdict::Mismatch)
    }

    /// Holm's adjustment across every test with a p-value; sets `p_adjusted` and verdicts.
    pub(crate) fn adjust(&mut self) {
        let mut tests: Vec<&mut ChiSquare> = Vec::new();
        for e in &mut self.experiments {
            tests.push(&mut e.srm.split);
            tests.push(&mut e.srm.coverage);
            if let Some(h) = &mut e.srm.holdout {
                tests.push(h);
            }
        }
        for p in &mut self.independence {
            tests.push(&mut p.test);
        }
        // Not in the family: tests that do not apply, and those with nothing to test (df 0,
        // p = 1 by construction), which would only dilute the adjustment.
        let in_family = |t: &ChiSquare| {
            t.verdict != Verdict::NotApplicable && t.method != crate::srm::Method::Nothing
        };
        let raw: Vec<f64> = tests
            .iter()
            .map(|t| if in_family(t) { t.p_value } else { f64::NAN })
            .collect();
        self.tests = raw.iter().filter(|p| !p.is_nan()).count();
        for (t, p) in tests.into_iter().zip(crate::srm::holm(&raw)) {
            let p = if in_family(t) { p } else { t.p_value };
            t.set_adjusted(p);
        }
    }
}

/// The split of one experiment.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentReport {
    /// Experiment key.
    pub key: String,
    /// The configured strategy (`builtin:hash-v1`, `plugin:<name>`).
    pub strategy: String,
    /// Whether the experiment is enabled.
    pub enabled: bool,
    /// Configured coverage in basis points.
    pub coverage_bp: u32,
    /// Its layer slice, if any.
    pub layer: Option<LayerSliceReport>,
    /// Units that passed the disabled, override and targeting gates: the population the
    /// expected shares refer to.
    pub eligible: u64,
    /// Units in a variant, for any reason (strategy or override).
    pub enrolled: u64,
    /// Units not in a variant, by reason (`Reason::as_str`), in evaluation order.
    pub not_enrolled: ReasonCounts,
    /// Per variant, in configuration order.
    pub variants: Vec<VariantReport>,
    /// Sample-ratio-mismatch tests.
    pub srm: SrmReport,
}

impl ExperimentReport {
    /// Units placed in each variant by the strategy (overrides excluded), in variant order.
    pub fn assigned_counts(&self) -> Vec<u64> {
        self.variants.iter().map(|v| v.assigned).collect()
    }

    /// The SRM split test of this experiment's strategy-assigned counts against other
    /// expected weights (e.g. another configuration's), one per variant.
    pub fn srm_against(&self, expected_weights: &[f64]) -> ChiSquare {
        goodness_of_fit(&self.assigned_counts(), expected_weights)
    }

    /// Not-enrolled units with reason `reason`.
    pub fn not_enrolled(&self, reason: Reason) -> u64 {
        self.not_enrolled.get(reason)
    }
}

/// An experiment's slice of its layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSliceReport {
    /// Layer name.
    pub name: String,
    /// First bucket of the slice.
    pub start: u32,
    /// One past the last bucket.
    pub end: u32,
}

/// How p-values are adjusted across a report's tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PAdjustment {
    /// Holm's step-down method (family-wise error rate).
    Holm,
}

impl std::fmt::Display for PAdjustment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PAdjustment::Holm => f.pad("holm"),
        }
    }
}

/// Not-enrolled counts by reason; serialised as a JSON object (reason name -> count) in
/// evaluation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasonCounts(pub Vec<(Reason, u64)>);

impl ReasonCounts {
    /// The count for `reason` (0 if absent).
    pub fn get(&self, reason: Reason) -> u64 {
        self.0
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, c)| *c)
    }
}

impl Serialize for ReasonCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

/// One variant's counts and shares.
#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    /// Variant name.
    pub name: String,
    /// Configured weight.
    pub weight: u32,
    /// Units in this variant, for any reason.
    pub count: u64,
    /// Of which placed by the strategy.
    pub assigned: u64,
    /// Of which forced by an override.
    pub overridden: u64,
    /// The share of *eligible* units (passed targeting, not overridden) the configuration puts
    /// here: `enabled * slice * range_i / 10000` from the exact bucket range of variant *i* for
    /// `builtin:hash-v1` and `weighted-hash` (bucketing-v1 floors its range boundaries), else
    /// `nominal_share`.
    pub expected_share: f64,
    /// `enabled * slice * coverage * w_i / W`: the nominal share.
    pub nominal_share: f64,
    /// `assigned / eligible`: comparable with `expected_share`.
    pub observed_share: f64,
    /// `count / units`: the share of the whole population, overrides included.
    pub population_share: f64,
}

/// Sample-ratio-mismatch tests of one experiment. `chi2`, `df`, `p_value`, `verdict` are the
/// split test: strategy-assigned counts vs the expected shares.
#[derive(Debug, Clone, Serialize)]
pub struct SrmReport {
    /// The split test.
    #[serde(flatten)]
    pub split: ChiSquare,
    /// The coverage test: eligible units outside the layer slice / outside coverage / assigned,
    /// vs `1 - s`, `s (1 - c)`, `s c` (s = slice fraction, c = coverage: the exact share of the
    /// bucket ranges for bucketing-v1 strategies). For a cluster-randomised experiment: the
    /// clusters enrolled among those the strategy decided, against coverage.
    pub coverage: ChiSquare,
    /// The holdout test, when holdouts cover the experiment: units held out among those that
    /// reached the holdout step (not unknown, disabled or overridden), against the share the
    /// holdouts hold out together, `1 - (1 - h1)(1 - h2)...` (independent salts). Exact
    /// binomial test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout: Option<ChiSquare>,
    /// What one count is: `unit` (unit id), or the attribute the strategy declares it
    /// randomises by: then each distinct value is one count.
    pub unit: String,
    /// Cluster-level tests: clusters per variant (each distinct attribute value once).
    pub clusters: Option<Vec<u64>>,
    /// Cluster-level tests: clusters the strategy left outside coverage.
    pub clusters_outside_coverage: u64,
    /// Why a test does not apply, or how it was done, when that needs saying.
    pub note: Option<String>,
}

impl std::ops::Deref for SrmReport {
    type Target = ChiSquare;
    fn deref(&self) -> &ChiSquare {
        &self.split
    }
}

/// Mutual exclusion inside one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Layer name.
    pub name: String,
    /// The simulated experiments of this layer.
    pub experiments: Vec<String>,
    /// Units enrolled (for any reason) in more than one of them. Overrides bypass layers, so
    /// this can be non-zero for a valid layer with overrides.
    pub units_in_more_than_one: u64,
    /// Units placed by the strategy in more than one of them: 0 for a valid layer.
    pub units_in_more_than_one_by_strategy: u64,
    /// `ok` when `units_in_more_than_one_by_strategy` is 0, else `mismatch`.
    pub verdict: Verdict,
}

/// Chi-square test of independence of two experiments' variants, over the units both
/// strategies placed in a variant.
#[derive(Debug, Clone, Serialize)]
pub struct IndependenceReport {
    /// First experiment.
    pub a: String,
    /// Second experiment.
    pub b: String,
    /// Units placed by the strategy in both.
    pub units: u64,
    /// The test (`mismatch`: the splits are not independent).
    #[serde(flatten)]
    pub test: ChiSquare,
}
