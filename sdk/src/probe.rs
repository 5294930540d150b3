//! The probe: before a plugin strategy serves, it answers a fixed set of synthetic units and
//! must answer validly, deterministically, without errors and within a latency budget.

use crate::config::ExperimentConfig;
use crate::outcome::RefusalReason;
use crate::strategy::{PluginStrategy, StrategyDeclaration};
use crate::unit::{Attribute, Unit};
use abkit_strategy_api::Decision;
use std::time::{Duration, Instant};

/// Probe settings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ProbeConfig {
    /// Synthetic units per experiment.
    pub units: usize,
    /// Largest tolerated 99th-percentile latency of one call.
    pub p99_budget: Duration,
    /// The whole probe of one experiment gives up past this (a plugin that sleeps).
    pub deadline: Duration,
}

impl Default for ProbeConfig {
    /// 512 units, p99 under 1 ms (generous: debug builds and a loaded machine stay well under
    /// it, a sleeping or looping plugin does not), 3 s deadline.
    fn default() -> Self {
        ProbeConfig {
            units: 512,
            p99_budget: Duration::from_millis(1),
            deadline: Duration::from_secs(3),
        }
    }
}

impl ProbeConfig {
    /// This value with `units` set to `units`.
    pub const fn with_units(mut self, units: usize) -> Self {
        self.units = units;
        self
    }

    /// This value with `p99_budget` set to `p99_budget`.
    pub const fn with_p99_budget(mut self, p99_budget: Duration) -> Self {
        self.p99_budget = p99_budget;
        self
    }

    /// This value with `deadline` set to `deadline`.
    pub const fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }
}

/// Why the probe refused a strategy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// An answer indexed a variant that does not exist.
    #[error(
        "probe unit {unit}: answered variant {index}, but the experiment has {variants} variants"
    )]
    InvalidAnswer {
        /// The unit id.
        unit: String,
        /// The index answered.
        index: u32,
        /// How many variants there are.
        variants: usize,
    },
    /// The strategy returned an error (or panicked) on a probe unit.
    #[error("probe unit {unit}: the strategy failed: {message}")]
    StrategyError {
        /// The unit id.
        unit: String,
        /// The plugin's message.
        message: String,
    },
    /// Two calls with the same input gave different answers.
    #[error("probe unit {unit}: not deterministic ({first} then {second} for the same input)")]
    Nondeterministic {
        /// The unit id.
        unit: String,
        /// First answer.
        first: String,
        /// Second answer.
        second: String,
    },
    /// Calls are too slow.
    #[error("too slow: p99 {p99_us} µs per call exceeds the budget of {budget_us} µs")]
    TooSlow {
        /// Measured p99 (or the time of the first call over the deadline).
        p99_us: u64,
        /// The budget.
        budget_us: u64,
    },
}

impl ProbeError {
    /// A stable snake_case code.
    pub fn reason(&self) -> RefusalReason {
        match self {
            ProbeError::InvalidAnswer { .. } => RefusalReason::ProbeInvalidAnswer,
            ProbeError::StrategyError { .. } => RefusalReason::ProbeStrategyError,
            ProbeError::Nondeterministic { .. } => RefusalReason::ProbeNondeterministic,
            ProbeError::TooSlow { .. } => RefusalReason::ProbeTooSlow,
        }
    }
}

/// Attribute keys the probe (and the guards) give their units: the experiment's targeting
/// keys, plus every attribute the strategy declared it reads, so those paths are exercised.
pub(crate) fn probe_attribute_keys(
    e: &ExperimentConfig,
    declared: Option<&StrategyDeclaration>,
) -> Vec<String> {
    let mut keys: Vec<String> = e.targeting.iter().map(|(k, _)| k.clone()).collect();
    keys.extend(declared.iter().flat_map(|d| d.attributes.iter().cloned()));
    keys.sort();
    keys.dedup();
    keys
}

fn show(d: &Decision) -> String {
    match d {
        Decision::Variant(i) => format!("variant {i}"),
        Decision::NotEnrolled => "not enrolled".into(),
        Decision::Error(m) => format!("error: {}", crate::status::ClippedText(m.as_str())),
    }
}

/// Probes `strategy` as configured for `experiment` at the fixed time `now_ms`.
pub(crate) fn probe(
    strategy: &PluginStrategy,
    experiment: &ExperimentConfig,
    cfg: &ProbeConfig,
    now_ms: u64,
) -> Result<(), ProbeError> {
    let keys = probe_attribute_keys(experiment, Some(strategy.declaration()));
    let variants = experiment.variants.len();
    let mut latencies = Vec::with_capacity(cfg.units);
    let started = Instant::now();
    for i in 0..cfg.units {
        let id = format!("abkit-probe-{i}");
        // Every 4th unit lacks the attributes, to exercise the "missing attribute" path.
        let values: Vec<String> = keys.iter().map(|k| format!("{k}-{}", i % 7)).collect();
        let attrs: Vec<Attribute<'_>> = if i % 4 == 3 {
            Vec::new()
        } else {
            keys.iter()
                .zip(&values)
                .map(|(k, v)| Attribute::new(k, v))
                .collect()
        };
        let unit = Unit::new(&id).with_attributes(&attrs);
        if strategy.lacks_required(&unit) {
            continue; // answered `missing_attribute` by the SDK: the plugin is never asked
        }
        let mut answers = [Decision::NotEnrolled, Decision::NotEnrolled];
        let mut fastest = Duration::MAX;
        for answer in &mut answers {
            let t = Instant::now();
            *answer = strategy.call(&unit, &id, Some(now_ms));
            fastest = fastest.min(t.elapsed());
            if started.elapsed() > cfg.deadline {
                return Err(ProbeError::TooSlow {
                    p99_us: t.elapsed().as_micros() as u64,
                    budget_us: cfg.p99_budget.as_micros() as u64,
                });
            }
        }
        // The faster of the two calls: a preemption rarely hits both, a slow plugin is slow twice.
        latencies.push(fastest);
        match &answers[0] {
            Decision::Variant(index) if *index as usize >= variants => {
                return Err(ProbeError::InvalidAnswer {
                    unit: id,
                    index: *index,
                    variants,
                });
            }
            Decision::Error(m) => {
                return Err(ProbeError::StrategyError {
                    unit: id,
                    message: crate::status::clip_plugin_text(m.as_str()),
                })
            }
            _ => {}
        }
        if answers[0] != answers[1] {
            return Err(ProbeError::Nondeterministic {
                unit: id,
                first: show(&answers[0]),
                second: show(&answers[1]),
            });
        }
    }
    latencies.sort_unstable();
    let Some(&p99) =
        latencies.get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
    else {
        return Ok(()); // zero probe units configured
    };
    if p99 > cfg.p99_budget {
        return Err(ProbeError::TooSlow {
            p99_us: p99.as_micros() as u64,
            budget_us: cfg.p99_budget.as_micros() as u64,
        });
    }
    Ok(())
}
