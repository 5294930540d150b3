//! `diff`: how many units a configuration change moves, per experiment, and where they go.

use super::engine::{drive, Tally};
use super::error::SimulateError;
use super::input::{SkippedLines, UnitSource};
use super::run::known;
use super::SimulateOptions;
use crate::config::ExperimentConfig;
use crate::registry::Snapshot;
use crate::unit::Unit;
use serde::Serialize;
use std::time::Duration;

/// The result of [`diff`].
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// Units compared.
    pub units: u64,
    /// Data rows read (lines after a CSV header): always `units + skipped_lines.count`.
    pub rows_read: u64,
    /// Where the units came from.
    pub input: String,
    /// The fixed clock both configurations saw, in ms since the Unix epoch.
    pub now_ms: u64,
    /// Malformed input lines skipped.
    pub skipped_lines: SkippedLines,
    /// One entry per experiment in either configuration (`from` order, then new ones).
    pub experiments: Vec<ExperimentDiff>,
    /// Worker threads used (not serialised).
    #[serde(skip)]
    pub threads: usize,
    /// Wall time (not serialised).
    #[serde(skip)]
    pub elapsed: Duration,
}

impl DiffReport {
    /// The diff of experiment `key`, if compared.
    pub fn experiment(&self, key: &str) -> Option<&ExperimentDiff> {
        self.experiments.iter().find(|e| e.key == key)
    }
}

/// What the change does to one experiment. Shares are fractions of all units compared.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentDiff {
    /// Experiment key.
    pub key: String,
    /// Whether the `from` configuration has it.
    pub in_from: bool,
    /// Whether the `to` configuration has it.
    pub in_to: bool,
    /// Units enrolled in both whose variant name changes.
    pub moved: u64,
    /// `moved / units`.
    pub moved_share: f64,
    /// Units not enrolled before and enrolled after.
    pub entered: u64,
    /// `entered / units`.
    pub entered_share: f64,
    /// Units enrolled before and not after.
    pub left: u64,
    /// `left / units`.
    pub left_share: f64,
    /// Units enrolled in both in the same variant.
    pub stayed: u64,
    /// Variant names in `from` (empty if absent there).
    pub from_variants: Vec<String>,
    /// Variant names in `to`.
    pub to_variants: Vec<String>,
    /// Every non-empty cell of the transition matrix; `null` is "not enrolled".
    pub transitions: Vec<Transition>,
}

impl ExperimentDiff {
    /// Units that went from `from` to `to` (`None` = not enrolled).
    pub fn transition(&self, from: Option<&str>, to: Option<&str>) -> u64 {
        self.transitions
            .iter()
            .find(|t| t.from.as_deref() == from && t.to.as_deref() == to)
            .map_or(0, |t| t.count)
    }
}

/// One cell of the transition matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// Variant before, or `None` (JSON `null`) when not enrolled.
    pub from: Option<String>,
    /// Variant after, or `None`.
    pub to: Option<String>,
    /// Units.
    pub count: u64,
}

/// Assigns every unit of `source` under both snapshots (same clock) and compares, for every
/// experiment in either configuration (or those in `opts.experiments`).
///
/// ```
/// use abkit::simulate::{diff, SimulateOptions, SyntheticSpec, UnitSource};
/// let cfg = |w: u32| abkit::Sdk::from_toml_str(&format!(
///     "[[experiments]]\nkey = \"e\"\nvariants = [ {{ name = \"a\", weight = {w} }}, {{ name = \"b\", weight = 50 }} ]\n",
/// )).unwrap().snapshot();
/// let d = diff(&cfg(50), &cfg(50), UnitSource::synthetic(SyntheticSpec::new(1000)), &SimulateOptions::default()).unwrap();
/// assert_eq!(d.experiment("e").unwrap().moved, 0);
/// ```
pub fn diff(
    from: &Snapshot,
    to: &Snapshot,
    source: UnitSource,
    opts: &SimulateOptions,
) -> Result<DiffReport, SimulateError> {
    let now_ms = opts.now_ms.unwrap_or_else(super::time::now_ms);
    let input = source.name();
    let plan = DiffPlan::new(from, to, &opts.experiments, now_ms)?;
    let outcome = drive(&plan, source, opts)?;
    let c = &outcome.counts;
    let units = c[0];
    let share = |n: u64| {
        if units == 0 {
            0.0
        } else {
            n as f64 / units as f64
        }
    };
    let experiments = plan
        .exps
        .iter()
        .map(|e| {
            let names = |cfg: Option<&ExperimentConfig>| -> Vec<String> {
                cfg.map(|c| c.variants.iter().map(|v| v.name.clone()).collect())
                    .unwrap_or_default()
            };
            let (fv, tv) = (names(e.from), names(e.to));
            let (mut moved, mut entered, mut left, mut stayed) = (0, 0, 0, 0);
            let mut transitions = Vec::new();
            // Rows and columns: variants in order, then "not enrolled" (stored at index 0).
            let order = |n: usize| (1..=n).chain(std::iter::once(0));
            for fi in order(e.nf) {
                for ti in order(e.nt) {
                    let count = c[e.off + fi * (e.nt + 1) + ti];
                    if count == 0 {
                        continue;
                    }
                    let from_name = fi.checked_sub(1).and_then(|i| fv.get(i)).cloned();
                    let to_name = ti.checked_sub(1).and_then(|i| tv.get(i)).cloned();
                    match (&from_name, &to_name) {
                        (Some(f), Some(t)) if f == t => stayed += count,
                        (Some(_), Some(_)) => moved += count,
                        (None, Some(_)) => entered += count,
                        (Some(_), None) => left += count,
                        (None, None) => {}
                    }
                    transitions.push(Transition {
                        from: from_name,
                        to: to_name,
                        count,
                    });
                }
            }
            ExperimentDiff {
                key: e.key.clone(),
                in_from: e.from.is_some(),
                in_to: e.to.is_some(),
                moved,
                moved_share: share(moved),
                entered,
                entered_share: share(entered),
                left,
                left_share: share(left),
                stayed,
                from_variants: fv,
                to_variants: tv,
                transitions,
            }
        })
        .collect();
    Ok(DiffReport {
        units,
        rows_read: outcome.rows_read,
        input,
        now_ms,
        skipped_lines: outcome.skipped,
        experiments,
        threads: outcome.threads,
        elapsed: outcome.elapsed,
    })
}

struct DiffExp<'s> {
    key: String,
    /// Resolved once in each snapshot: no per-unit lookup by key.
    from_id: Option<crate::registry::ExperimentId>,
    to_id: Option<crate::registry::ExperimentId>,
    from: Option<&'s ExperimentConfig>,
    to: Option<&'s ExperimentConfig>,
    nf: usize,
    nt: usize,
    /// `(nf + 1) * (nt + 1)` counters; index 0 of each axis is "not enrolled".
    off: usize,
}

struct DiffPlan<'s> {
    from: &'s Snapshot,
    to: &'s Snapshot,
    now_ms: u64,
    exps: Vec<DiffExp<'s>>,
    width: usize,
}

impl<'s> DiffPlan<'s> {
    fn new(
        from: &'s Snapshot,
        to: &'s Snapshot,
        keys: &[String],
        now_ms: u64,
    ) -> Result<Self, SimulateError> {
        let mut all: Vec<String> = from
            .config()
            .experiments
            .iter()
            .map(|e| e.key.clone())
            .collect();
        for e in &to.config().experiments {
            if !all.contains(&e.key) {
                all.push(e.key.clone());
            }
        }
        let chosen: Vec<String> = if keys.is_empty() {
            all
        } else {
            for k in keys {
                if !all.contains(k) {
                    let mut both = from.config().experiments.clone();
                    both.extend(
                        to.config()
                            .experiments
                            .iter()
                            .filter(|e| from.experiment(&e.key).is_none())
                            .cloned(),
                    );
                    return Err(SimulateError::UnknownExperiment {
                        key: k.clone(),
                        known: known(&both),
                    });
                }
            }
            let mut out: Vec<String> = Vec::new();
            for k in keys {
                if !out.contains(k) {
                    out.push(k.clone());
                }
            }
            out
        };
        let mut width = 1;
        let exps = chosen
            .into_iter()
            .map(|key| {
                let (f, t) = (from.experiment(&key), to.experiment(&key));
                let nf = f.map_or(0, |c| c.variants.len());
                let nt = t.map_or(0, |c| c.variants.len());
                let off = width;
                width += (nf + 1) * (nt + 1);
                DiffExp {
                    from_id: from.experiment_id(&key),
                    to_id: to.experiment_id(&key),
                    key,
                    from: f,
                    to: t,
                    nf,
                    nt,
                    off,
                }
            })
            .collect();
        Ok(DiffPlan {
            from,
            to,
            now_ms,
            exps,
            width,
        })
    }
}

impl Tally for DiffPlan<'_> {
    fn width(&self) -> usize {
        self.width
    }

    #[inline]
    fn add(&self, counts: &mut [u64], _scratch: &mut Vec<u32>, unit: &Unit<'_>) {
        counts[0] += 1;
        for e in &self.exps {
            // 0 = not enrolled, i + 1 = variant i (clamped: indices come from validated configs)
            let f = e
                .from_id
                .and_then(|id| self.from.assign_id_at(id, unit, self.now_ms).variant)
                .map_or(0, |v| (v.index as usize).min(e.nf.saturating_sub(1)) + 1);
            let t = e
                .to_id
                .and_then(|id| self.to.assign_id_at(id, unit, self.now_ms).variant)
                .map_or(0, |v| (v.index as usize).min(e.nt.saturating_sub(1)) + 1);
            counts[e.off + f * (e.nt + 1) + t] += 1;
        }
    }
}
