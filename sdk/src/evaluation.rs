//! The evaluation order of one experiment (spec `bucketing-v1`, "Evaluation order"):
//! disabled -> override -> targeting -> layer slice -> strategy.

use crate::assignment::{Assignment, DecidedBy, FallbackReason, Reason, Variant};
use crate::bucketer::{Bucketer, LayerGate};
use crate::config::{Config, ExperimentConfig};
use crate::strategy::{PluginStrategy, StrategyCounters};
use crate::intern::intern;
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
    /// Milliseconds since the Unix epoch.
    pub(crate) fn now_ms(self) -> u64 {
        match self {
            Clock::Fixed(ms) => ms,
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
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

/// One experiment, compiled for evaluation: every lookup table precomputed.
#[derive(Debug)]
pub(crate) struct CompiledExperiment {
    pub(crate) config: ExperimentConfig,
    variant_names: Box<[&'static str]>,
    overrides: FxHashMap<Box<str>, u32>,
    targeting: Box<[(Box<str>, Box<[Box<str>]>)]>,
    layer: Option<LayerGate>,
    bucketer: Bucketer,
    decider: Decider,
}

impl CompiledExperiment {
    /// Compiles a validated experiment. Validation guarantees the ranges exist; the error arm is
    /// kept for a `Config` built by hand.
    pub(crate) fn compile(e: &ExperimentConfig, config: &Config, decider: Decider) -> Result<Self, abkit_bucketing::RangesError> {
        let bucketer = Bucketer::new(&e.salt, &e.weights(), e.coverage_bp)?;
        let layer = e.layer.as_ref().map(|s| {
            let salt = config.layer(&s.layer).map_or(s.layer.as_str(), |l| l.salt.as_str());
            LayerGate::new(salt, s.start, s.end)
        });
        Ok(CompiledExperiment {
            config: e.clone(),
            variant_names: e.variants.iter().map(|v| intern(&v.name)).collect(),
            overrides: e.overrides.iter().map(|(u, i)| (u.as_str().into(), *i)).collect(),
            targeting: e
                .targeting
                .iter()
                .map(|(k, vs)| (k.as_str().into(), vs.iter().map(|v| v.as_str().into()).collect()))
                .collect(),
            layer,
            bucketer,
            decider,
        })
    }

    /// What decides, for status: a description and live counters when a plugin serves.
    pub(crate) fn serving(&self) -> (String, Option<StrategyCounters>) {
        match &self.decider {
            Decider::Builtin => (DecidedBy::Builtin.to_string(), None),
            Decider::Plugin(s) if s.is_demoted() => (DecidedBy::Fallback(FallbackReason::Demoted).to_string(), Some(s.counters())),
            Decider::Plugin(s) => (DecidedBy::Plugin(s.identity).to_string(), Some(s.counters())),
            Decider::Fallback(why) => (DecidedBy::Fallback(*why).to_string(), None),
        }
    }

    /// The variant name at `index` (valid indices come from validation or a checked answer).
    pub(crate) fn variant(&self, index: u32) -> Variant {
        Variant { index, name: self.variant_names[index as usize] }
    }

    /// Evaluates one unit. Allocation-free.
    #[inline]
    pub(crate) fn evaluate(&self, unit: &Unit<'_>, clock: Clock) -> Assignment {
        if !self.config.enabled {
            return Assignment::not_enrolled(Reason::Disabled);
        }
        if !self.overrides.is_empty() {
            if let Some(&index) = self.overrides.get(unit.id()) {
                return Assignment { variant: Some(self.variant(index)), reason: Reason::Override, decided_by: DecidedBy::Nobody };
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
            Decider::Plugin(s) if !s.is_demoted() => match s.decide(unit, clock.now_ms()) {
                Ok(Some(index)) => Assignment {
                    variant: Some(self.variant(index)),
                    reason: Reason::Assigned,
                    decided_by: DecidedBy::Plugin(s.identity),
                },
                Ok(None) => Assignment { variant: None, reason: Reason::OutsideCoverage, decided_by: DecidedBy::Plugin(s.identity) },
                Err(why) => self.builtin(unit, DecidedBy::Fallback(why)),
            },
            Decider::Plugin(_) => self.builtin(unit, DecidedBy::Fallback(FallbackReason::Demoted)),
            Decider::Fallback(why) => self.builtin(unit, DecidedBy::Fallback(*why)),
        }
    }

    #[inline]
    fn builtin(&self, unit: &Unit<'_>, decided_by: DecidedBy) -> Assignment {
        match self.bucketer.decide(unit.id()) {
            Some(index) => Assignment { variant: Some(self.variant(index)), reason: Reason::Assigned, decided_by },
            None => Assignment { variant: None, reason: Reason::OutsideCoverage, decided_by },
        }
    }
}
