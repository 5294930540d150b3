//! The evaluation order of one experiment (spec `bucketing-v1`, "Evaluation order"):
//! disabled -> override -> targeting -> layer slice -> strategy.

use crate::assignment::{Assignment, DecidedBy, FallbackReason, Reason, Variant};
use crate::bucketer::{Bucketer, LayerGate};
use crate::config::{Config, ExperimentConfig};
use crate::intern::intern;
use crate::outcome::Serving;
use crate::strategy::{PluginStrategy, StrategyCounters};
use crate::unit::Unit;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Where a strategy's notion of "now" comes from: read only when a strategy needs it, so the
/// builtin path never pays for a clock read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// The system clock (serving).
    System,
    /// A fixed time in ms since the Unix epoch (simulations, tests).
    Fixed(u64),
}

impl Clock {
    /// The fixed time, if any (a live clock is read by the strategy only if it needs time).
    #[inline]
    pub(crate) fn fixed_ms(self) -> Option<u64> {
        match self {
            Clock::Fixed(ms) => Some(ms),
            Clock::System => None,
        }
    }
}

/// Who decides the variant once a unit passed the gates.
#[derive(Debug)]
pub(crate) enum Decider {
    /// The built-in bucketer is the configured strategy.
    Builtin,
    /// A probed plugin strategy.
    Plugin(Arc<PluginStrategy>),
    /// The configured plugin is unavailable: the builtin answers, reported as a fallback.
    Fallback(FallbackReason),
}

/// Counter handles of one experiment, registered with the `metrics` recorder installed when
/// the snapshot is built (no-ops without one): nothing is looked up or allocated per call.
struct Counters {
    variants: Box<[metrics::Counter]>,
    not_enrolled: metrics::Counter,
    fallbacks: [metrics::Counter; 4],
}

impl Counters {
    fn register(e: &ExperimentConfig) -> Self {
        let key = e.key.clone();
        let fallback = |reason: FallbackReason| metrics::counter!("abkit_fallbacks_total", "experiment" => key.clone(), "reason" => reason.as_str());
        Counters {
            variants: e
                .variants
                .iter()
                .map(|v| metrics::counter!("abkit_assignments_total", "experiment" => key.clone(), "variant" => v.name.clone()))
                .collect(),
            not_enrolled: metrics::counter!("abkit_assignments_total", "experiment" => key.clone(), "variant" => ""),
            fallbacks: [
                fallback(FallbackReason::PluginRefused),
                fallback(FallbackReason::StrategyError),
                fallback(FallbackReason::InvalidAnswer),
                fallback(FallbackReason::Demoted),
            ],
        }
    }

    #[inline]
    fn count(&self, a: &Assignment) {
        match a.variant {
            Some(v) => self.variants[v.index as usize].increment(1),
            None => self.not_enrolled.increment(1),
        }
        if let DecidedBy::Fallback(reason) = a.decided_by {
            let i = match reason {
                FallbackReason::PluginRefused => 0,
                FallbackReason::StrategyError => 1,
                FallbackReason::InvalidAnswer => 2,
                FallbackReason::Demoted => 3,
            };
            self.fallbacks[i].increment(1);
        }
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

/// One targeting condition: an attribute and the values it may take.
type Targeting = (Box<str>, Box<[Box<str>]>);

/// One experiment, compiled for evaluation: every lookup table precomputed.
#[derive(Debug)]
pub(crate) struct CompiledExperiment {
    counters: Counters,
    pub(crate) config: ExperimentConfig,
    variant_names: Box<[&'static str]>,
    overrides: FxHashMap<Box<str>, u32>,
    targeting: Box<[Targeting]>,
    layer: Option<LayerGate>,
    bucketer: Bucketer,
    decider: Decider,
}

impl CompiledExperiment {
    /// The plugin strategy deciding this experiment, if one does.
    pub(crate) fn plugin_strategy(&self) -> Option<&Arc<PluginStrategy>> {
        match &self.decider {
            Decider::Plugin(s) => Some(s),
            _ => None,
        }
    }

    /// Compiles a validated experiment. Validation guarantees the ranges exist; the error arm is
    /// kept for a `Config` built by hand.
    pub(crate) fn compile(
        e: &ExperimentConfig,
        config: &Config,
        decider: Decider,
    ) -> Result<Self, String> {
        let bucketer =
            Bucketer::new(&e.salt, &e.weights(), e.coverage_bp).map_err(|err| err.to_string())?;
        // `variant()` indexes the names with override indices: every one must be in range.
        if let Some((unit, index)) = e
            .overrides
            .iter()
            .find(|(_, i)| *i as usize >= e.variants.len())
        {
            return Err(format!(
                "override of unit \"{unit}\" names variant {index}, but there are {} variants",
                e.variants.len()
            ));
        }
        let layer = e.layer.as_ref().map(|s| {
            let salt = config
                .layer(&s.layer)
                .map_or(s.layer.as_str(), |l| l.salt.as_str());
            LayerGate::new(salt, s.start, s.end)
        });
        Ok(CompiledExperiment {
            counters: Counters::register(e),
            config: e.clone(),
            variant_names: e.variants.iter().map(|v| intern(&v.name)).collect(),
            overrides: e
                .overrides
                .iter()
                .map(|(u, i)| (u.as_str().into(), *i))
                .collect(),
            targeting: e
                .targeting
                .iter()
                .map(|(k, vs)| {
                    (
                        k.as_str().into(),
                        vs.iter().map(|v| v.as_str().into()).collect(),
                    )
                })
                .collect(),
            layer,
            bucketer,
            decider,
        })
    }

    /// What decides, for status: a description and live counters when a plugin serves.
    pub(crate) fn serving(&self) -> (Serving, Option<StrategyCounters>) {
        match &self.decider {
            Decider::Builtin => (Serving::Builtin, None),
            Decider::Plugin(s) if s.is_demoted() => (
                Serving::Fallback(FallbackReason::Demoted),
                Some(s.counters()),
            ),
            Decider::Plugin(s) => (Serving::Plugin(s.identity), Some(s.counters())),
            Decider::Fallback(why) => (Serving::Fallback(*why), None),
        }
    }

    /// The variant name at `index` (valid indices come from validation or a checked answer).
    pub(crate) fn variant(&self, index: u32) -> Variant {
        Variant {
            index,
            name: self.variant_names[index as usize],
        }
    }

    /// Evaluates one unit; live answers (the system clock) are counted in the metrics,
    /// answers at a fixed time (simulations, probes, guards) are not. Allocation-free.
    #[inline]
    pub(crate) fn evaluate(&self, unit: &Unit<'_>, clock: Clock) -> Assignment {
        let a = self.decide(unit, clock);
        if let Clock::System = clock {
            self.counters.count(&a);
        }
        a
    }

    #[inline]
    fn decide(&self, unit: &Unit<'_>, clock: Clock) -> Assignment {
        if !self.config.enabled {
            return Assignment::not_enrolled(Reason::Disabled);
        }
        if !self.overrides.is_empty() {
            if let Some(&index) = self.overrides.get(unit.id()) {
                return Assignment {
                    variant: Some(self.variant(index)),
                    reason: Reason::Override,
                    decided_by: DecidedBy::Nobody,
                };
            }
        }
        for (key, allowed) in self.targeting.iter() {
            match unit.attribute(key) {
                Some(value) if allowed.iter().any(|a| **a == *value) => {}
                _ => return Assignment::not_enrolled(Reason::NotTargeted),
            }
        }
        if let Some(gate) = &self.layer {
            if !gate.admits(unit.id()) {
                return Assignment::not_enrolled(Reason::OutsideLayer);
            }
        }
        match &self.decider {
            Decider::Builtin => self.builtin(unit, DecidedBy::Builtin),
            Decider::Plugin(s) if !s.is_demoted() && s.lacks_required(unit) => Assignment {
                variant: None,
                reason: Reason::MissingAttribute,
                decided_by: DecidedBy::Plugin(s.identity),
            },
            Decider::Plugin(s) if !s.is_demoted() => match s.decide(unit, clock.fixed_ms()) {
                Ok(Some(index)) => Assignment {
                    variant: Some(self.variant(index)),
                    reason: Reason::Assigned,
                    decided_by: DecidedBy::Plugin(s.identity),
                },
                Ok(None) => Assignment {
                    variant: None,
                    reason: Reason::OutsideCoverage,
                    decided_by: DecidedBy::Plugin(s.identity),
                },
                Err(why) => self.builtin(unit, DecidedBy::Fallback(why)),
            },
            Decider::Plugin(_) => self.builtin(unit, DecidedBy::Fallback(FallbackReason::Demoted)),
            Decider::Fallback(why) => self.builtin(unit, DecidedBy::Fallback(*why)),
        }
    }

    #[inline]
    fn builtin(&self, unit: &Unit<'_>, decided_by: DecidedBy) -> Assignment {
        match self.bucketer.decide(unit.id()) {
            Some(index) => Assignment {
                variant: Some(self.variant(index)),
                reason: Reason::Assigned,
                decided_by,
            },
            None => Assignment {
                variant: None,
                reason: Reason::OutsideCoverage,
                decided_by,
            },
        }
    }
}
