//! The evaluation order of one experiment (spec `bucketing-v1`, "Evaluation order"):
//! disabled -> override -> targeting -> layer slice -> strategy.

use crate::assignment::{Assignment, DecidedBy, Reason, Variant};
use crate::bucketer::{Bucketer, LayerGate};
use crate::config::{Config, ExperimentConfig, StrategyRef};
use crate::intern::intern;
use crate::unit::Unit;
use rustc_hash::FxHashMap;

/// Who decides the variant once a unit passed the gates.
#[derive(Debug)]
pub(crate) enum Decider {
    /// The built-in bucketer is the configured strategy.
    Builtin,
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
    pub(crate) fn compile(e: &ExperimentConfig, config: &Config) -> Result<Self, abkit_bucketing::RangesError> {
        let bucketer = Bucketer::new(&e.salt, &e.weights(), e.coverage_bp)?;
        let layer = e.layer.as_ref().map(|s| {
            let salt = config.layer(&s.layer).map_or(s.layer.as_str(), |l| l.salt.as_str());
            LayerGate::new(salt, s.start, s.end)
        });
        let decider = match &e.strategy {
            StrategyRef::Builtin => Decider::Builtin,
            // Plugins are resolved by the loader; until one serves, the builtin answers.
            StrategyRef::Plugin(_) => Decider::Builtin,
        };
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

    /// The variant name at `index` (valid indices come from validation or a checked answer).
    pub(crate) fn variant(&self, index: u32) -> Variant {
        Variant { index, name: self.variant_names[index as usize] }
    }

    /// Evaluates one unit. Allocation-free.
    #[inline]
    pub(crate) fn evaluate(&self, unit: &Unit<'_>) -> Assignment {
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
        match self.decider {
            Decider::Builtin => self.builtin(unit, DecidedBy::Builtin),
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
