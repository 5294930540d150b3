//! Guards a candidate snapshot must pass before it replaces the serving one (on reload).
//!
//! Both run on a fixed synthetic population of unit ids (no attributes), through the same
//! evaluation path as serving:
//! - **sample ratio**: for every experiment decided by a plugin that randomises by unit id
//!   (enough of the population enrolled without attributes), a chi-square test of the
//!   candidate's variant counts against the declared weights; `p < 0.001` refuses. A biased
//!   strategy is caught before any user sees it. Strategies that randomise by an attribute
//!   (switchback, cluster) enrol nobody here and are skipped, said so in the report.
//! - **reassignment**: for experiments with `max_reassignment`, the share of units enrolled
//!   under the serving snapshot whose variant changes (or who leave) under the candidate;
//!   above the limit the swap is refused unless the experiment sets `intended_change = true`.

use crate::assignment::DecidedBy;
use crate::config::ExperimentConfig;
use crate::registry::Snapshot;
use crate::unit::{Attribute, Unit};
use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Guard settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// Synthetic units evaluated per experiment.
    pub population: usize,
    /// Sample-ratio test: refuse below this p-value.
    pub srm_min_p_value: f64,
    /// Sample-ratio test: skip experiments with fewer enrolled units than this.
    pub srm_min_enrolled: u64,
}

impl Default for GuardConfig {
    /// 20,000 units, refuse at p < 0.001, at least 1,000 enrolled.
    fn default() -> Self {
        GuardConfig {
            population: 20_000,
            srm_min_p_value: 0.001,
            srm_min_enrolled: 1_000,
        }
    }
}

/// The outcome of one guard on one experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardResult {
    /// `sample_ratio` or `reassignment`.
    pub guard: &'static str,
    /// The experiment.
    pub experiment: String,
    /// Whether the candidate may go live as far as this guard is concerned.
    pub passed: bool,
    /// What was measured, in words.
    pub detail: String,
}

/// The attributes of guard unit `i`: every targeting key gets one of its allowed values (so
/// targeted experiments are assessed), and with `strategy_keys` the attributes a strategy
/// randomises by get one of 64 values (so attribute-based strategies are assessed too).
fn attributes(e: &ExperimentConfig, strategy_keys: &[String], i: usize) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = e
        .targeting
        .iter()
        .filter_map(|(k, values)| {
            values
                .get(i % values.len().max(1))
                .map(|v| (k.clone(), v.clone()))
        })
        .collect();
    for k in strategy_keys {
        if !out.iter().any(|(have, _)| have == k) {
            out.push((k.clone(), format!("{k}-{}", i % 64)));
        }
    }
    out
}

fn with_unit<R>(i: usize, attrs: &[(String, String)], f: impl FnOnce(&Unit<'_>) -> R) -> R {
    let id = format!("abkit-guard-{i}");
    let attrs: Vec<Attribute<'_>> = attrs.iter().map(|(k, v)| Attribute::new(k, v)).collect();
    f(&Unit::new(&id).with_attributes(&attrs))
}

/// The candidate's answers to the guard populations for one experiment: what the guards need
/// from the plugin. Computed in this process, or by the preflight child (which runs the plugin
/// there, so the serving process never calls it 20,000 times itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct GuardAnswers {
    /// Whether a plugin decides the experiment in the candidate.
    pub(crate) plugin_decides: bool,
    /// Sample-ratio population (targeting attributes only): the variant index when the plugin
    /// decided and enrolled the unit, else `None`.
    pub(crate) sample: Vec<Option<u32>>,
    /// Reassignment population (targeting and strategy attributes): the candidate's variant
    /// index, `None` when not enrolled. Empty when the experiment has no `max_reassignment`.
    pub(crate) reassign: Vec<Option<u32>>,
}

fn strategy_keys_of(e: &ExperimentConfig) -> Vec<String> {
    crate::probe::probe_attribute_keys(e)
        .into_iter()
        .filter(|k| !e.targeting.iter().any(|(t, _)| t == k))
        .collect()
}

/// Evaluates `candidate` on the guard populations of experiment `e`.
pub(crate) fn candidate_answers(
    candidate: &Snapshot,
    e: &ExperimentConfig,
    cfg: &GuardConfig,
    now_ms: u64,
) -> GuardAnswers {
    let plugin_decides = matches!(
        candidate
            .assign_at(&e.key, &Unit::new("abkit-guard-probe"), now_ms)
            .decided_by,
        DecidedBy::Plugin(_)
    );
    let mut sample = Vec::new();
    if plugin_decides {
        sample = (0..cfg.population)
            .map(|i| {
                // Targeting attributes only: a strategy randomising by another attribute
                // enrols nobody here and is skipped (its split is not by unit).
                let attrs = attributes(e, &[], i);
                let a = with_unit(i, &attrs, |u| candidate.assign_at(&e.key, u, now_ms));
                match (a.variant, a.decided_by) {
                    (Some(v), DecidedBy::Plugin(_)) => Some(v.index),
                    _ => None,
                }
            })
            .collect();
    }
    let mut reassign = Vec::new();
    if e.max_reassignment.is_some() {
        let keys = strategy_keys_of(e);
        reassign = (0..cfg.population)
            .map(|i| {
                let attrs = attributes(e, &keys, i);
                with_unit(i, &attrs, |u| candidate.assign_at(&e.key, u, now_ms))
                    .variant
                    .map(|v| v.index)
            })
            .collect();
    }
    GuardAnswers {
        plugin_decides,
        sample,
        reassign,
    }
}

/// Runs both guards for every experiment of `candidate`.
pub fn check(
    current: &Snapshot,
    candidate: &Snapshot,
    cfg: &GuardConfig,
    now_ms: u64,
) -> Vec<GuardResult> {
    check_with(current, candidate, cfg, now_ms, &Default::default())
}

/// [`check`], taking the candidate's answers for some experiments from `precomputed` (the
/// preflight child's) instead of calling their plugin here.
pub(crate) fn check_with(
    current: &Snapshot,
    candidate: &Snapshot,
    cfg: &GuardConfig,
    now_ms: u64,
    precomputed: &rustc_hash::FxHashMap<String, GuardAnswers>,
) -> Vec<GuardResult> {
    let mut out = Vec::new();
    for e in &candidate.config().experiments {
        let answers = match precomputed.get(&e.key) {
            Some(a) if a.sample.len() == cfg.population || !a.plugin_decides => a.clone(),
            _ => candidate_answers(candidate, e, cfg, now_ms),
        };
        if answers.plugin_decides {
            let mut counts = vec![0u64; e.variants.len()];
            for v in answers.sample.iter().flatten() {
                if let Some(c) = counts.get_mut(*v as usize) {
                    *c += 1;
                }
            }
            out.push(sample_ratio(&e.key, &counts, &e.weights(), cfg));
        }
        if let (Some(limit), Some(_)) = (e.max_reassignment, current.experiment(&e.key)) {
            let keys = strategy_keys_of(e);
            let (mut enrolled, mut moved) = (0u64, 0u64);
            for i in 0..cfg.population {
                let attrs = attributes(e, &keys, i);
                let before = with_unit(i, &attrs, |u| current.assign_at(&e.key, u, now_ms).variant);
                let after = answers
                    .reassign
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|idx| e.variants.get(idx as usize))
                    .map(|v| v.name.as_str());
                if let Some(before) = before {
                    enrolled += 1;
                    if after != Some(before.name) {
                        moved += 1;
                    }
                }
            }
            if enrolled == 0 {
                out.push(GuardResult {
                    guard: "reassignment",
                    experiment: e.key.clone(),
                    passed: true,
                    detail:
                        "not assessed: no probe unit is enrolled under the serving configuration"
                            .into(),
                });
                continue;
            }
            let share = moved as f64 / enrolled as f64;
            let passed = share <= limit || e.intended_change;
            out.push(GuardResult {
                guard: "reassignment",
                experiment: e.key.clone(),
                passed,
                detail: format!(
                    "{:.2}% of {enrolled} enrolled probe units would change variant or leave (max_reassignment {:.2}%){}",
                    100.0 * share,
                    100.0 * limit,
                    if share > limit && e.intended_change { "; allowed: intended_change = true" } else { "" }
                ),
            });
        }
    }
    out
}

/// Chi-square goodness of fit of `counts` against `weights`.
fn sample_ratio(key: &str, counts: &[u64], weights: &[u32], cfg: &GuardConfig) -> GuardResult {
    let n: u64 = counts.iter().sum();
    let w: u64 = weights.iter().map(|&x| u64::from(x)).sum();
    let result = |passed, detail| GuardResult {
        guard: "sample_ratio",
        experiment: key.to_string(),
        passed,
        detail,
    };
    if n < cfg.srm_min_enrolled || w == 0 {
        return result(true, format!("skipped: {n} probe units enrolled by unit id (needs {}); the strategy randomises by something else", cfg.srm_min_enrolled));
    }
    let mut chi2 = 0.0;
    let mut df = 0u32;
    for (&c, &wi) in counts.iter().zip(weights) {
        let expected = n as f64 * f64::from(wi) / w as f64;
        if expected > 0.0 {
            chi2 += (c as f64 - expected).powi(2) / expected;
            df += 1;
        } else if c > 0 {
            return result(
                false,
                format!(
                    "{c} unit{} got a variant of weight 0",
                    if c == 1 { "" } else { "s" }
                ),
            );
        }
    }
    let p = match df.checked_sub(1).filter(|&d| d > 0) {
        Some(d) => ChiSquared::new(f64::from(d)).map_or(1.0, |dist| dist.sf(chi2)),
        None => 1.0,
    };
    let passed = p >= cfg.srm_min_p_value;
    result(
        passed,
        format!("chi2 {chi2:.1}, p {p:.2e} over {n} enrolled probe units; counts {counts:?} vs weights {weights:?}{}", if passed { "" } else { ": sample ratio mismatch" }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fair_split_passes_and_a_skewed_one_fails() {
        let cfg = GuardConfig::default();
        assert!(sample_ratio("e", &[5020, 4980], &[1, 1], &cfg).passed);
        assert!(!sample_ratio("e", &[5500, 4500], &[1, 1], &cfg).passed);
        assert!(
            sample_ratio("e", &[10, 5], &[1, 1], &cfg).passed,
            "too few units: skipped"
        );
        assert!(
            !sample_ratio("e", &[3000, 7, 3000], &[1, 0, 1], &cfg).passed,
            "weight-0 variant chosen"
        );
    }
}
