//! The evaluation order of one experiment (spec `bucketing-v1`, "Evaluation order"):
//! disabled -> override -> holdout -> targeting -> prerequisite -> layer slice -> strategy.

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

/// What a step hashes for a unit (`bucket_by`): the first listed attribute the unit has with a
/// non-empty value, `"unit"` naming the unit id; with no list, the unit id.
#[derive(Debug, Clone, Default)]
pub(crate) struct BucketKey(Box<[Box<str>]>);

impl BucketKey {
    pub(crate) fn of(list: &[String]) -> Self {
        BucketKey(list.iter().map(|k| k.as_str().into()).collect())
    }

    /// The value to hash, or `None` when the unit has none of the listed attributes.
    #[inline]
    pub(crate) fn value<'u>(&self, unit: &Unit<'u>) -> Option<&'u str> {
        if self.0.is_empty() {
            return Some(unit.id());
        }
        for k in self.0.iter() {
            if &**k == "unit" {
                return Some(unit.id());
            }
            if let Some(v) = unit.attribute(k).filter(|v| !v.is_empty()) {
                return Some(v);
            }
        }
        None
    }
}

/// A holdout, compiled: its salt, share and bucket key.
#[derive(Debug)]
pub(crate) struct CompiledHoldout {
    salt: abkit_bucketing::Salted,
    coverage_bp: u32,
    key: BucketKey,
}

impl CompiledHoldout {
    pub(crate) fn new(h: &crate::config::HoldoutConfig) -> Self {
        CompiledHoldout {
            salt: abkit_bucketing::Salted::new(h.salt.as_bytes()),
            coverage_bp: h.coverage_bp,
            key: BucketKey::of(&h.bucket_by),
        }
    }

    /// `Some(true)` held out, `Some(false)` not, `None` the unit has no bucket key for it.
    #[inline]
    fn holds_out(&self, unit: &Unit<'_>) -> Option<bool> {
        let value = self.key.value(unit)?;
        Some(self.salt.bucket(value.as_bytes()) < self.coverage_bp)
    }
}

/// Deepest prerequisite chain evaluated (validation refuses longer chains and cycles; this is
/// the belt to those braces).
const MAX_DEPTH: u8 = crate::config::MAX_PREREQUISITE_DEPTH as u8;

/// One experiment, compiled for evaluation: every lookup table precomputed.
#[derive(Debug)]
pub(crate) struct CompiledExperiment {
    counters: Counters,
    pub(crate) config: ExperimentConfig,
    variant_names: Box<[&'static str]>,
    overrides: FxHashMap<Box<str>, u32>,
    targeting: Box<[Targeting]>,
    layer: Option<(LayerGate, BucketKey)>,
    bucketer: Bucketer,
    decider: Decider,
    holdouts: Box<[Arc<CompiledHoldout>]>,
    /// The prerequisite: index of the required experiment in the snapshot, admitted variants.
    requires: Option<(usize, Box<[u32]>)>,
    key: BucketKey,
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
        holdouts: &[(crate::config::HoldoutConfig, Arc<CompiledHoldout>)],
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
            let layer = config.layer(&s.layer);
            let salt = layer.map_or(s.layer.as_str(), |l| l.salt.as_str());
            let key = layer.map_or_else(BucketKey::default, |l| BucketKey::of(&l.bucket_by));
            (LayerGate::new(salt, s.start, s.end), key)
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
            holdouts: holdouts
                .iter()
                .filter(|(h, _)| h.covers(e))
                .map(|(_, c)| Arc::clone(c))
                .collect(),
            requires: None,
            key: BucketKey::of(&e.bucket_by),
        })
    }

    /// Points the prerequisite at the required experiment's index in the snapshot (a key that
    /// is not there leaves the experiment unable to enrol anybody: validation prevents it).
    pub(crate) fn resolve_requirement(&mut self, index_of: impl Fn(&str) -> Option<usize>) {
        self.requires = self.config.requires.as_ref().map(|r| {
            (
                index_of(&r.experiment).unwrap_or(usize::MAX),
                r.variants.clone().into_boxed_slice(),
            )
        });
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

    /// Evaluates one unit (`all`: every experiment of the snapshot, for prerequisites); live
    /// answers (the system clock) are counted in the metrics, answers at a fixed time
    /// (simulations, probes, guards) are not. Allocation-free.
    #[inline]
    pub(crate) fn evaluate(
        &self,
        all: &[CompiledExperiment],
        unit: &Unit<'_>,
        clock: Clock,
    ) -> Assignment {
        let a = self.decide(all, unit, clock, 0);
        if let Clock::System = clock {
            self.counters.count(&a);
        }
        a
    }

    #[inline]
    fn decide(
        &self,
        all: &[CompiledExperiment],
        unit: &Unit<'_>,
        clock: Clock,
        depth: u8,
    ) -> Assignment {
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
        for h in self.holdouts.iter() {
            match h.holds_out(unit) {
                Some(false) => {}
                Some(true) => return Assignment::not_enrolled(Reason::Holdout),
                None => return Assignment::not_enrolled(Reason::MissingBucketKey),
            }
        }
        for (key, allowed) in self.targeting.iter() {
            match unit.attribute(key) {
                Some(value) if allowed.iter().any(|a| **a == *value) => {}
                _ => return Assignment::not_enrolled(Reason::NotTargeted),
            }
        }
        if let Some((required, variants)) = &self.requires {
            let met = depth < MAX_DEPTH
                && all.get(*required).is_some_and(|r| {
                    r.decide(all, unit, clock, depth + 1)
                        .variant
                        .is_some_and(|v| variants.contains(&v.index))
                });
            if !met {
                return Assignment::not_enrolled(Reason::Prerequisite);
            }
        }
        if let Some((gate, key)) = &self.layer {
            let Some(value) = key.value(unit) else {
                return Assignment::not_enrolled(Reason::MissingBucketKey);
            };
            if !gate.admits(value) {
                return Assignment::not_enrolled(Reason::OutsideLayer);
            }
        }
        let Some(id) = self.key.value(unit) else {
            return Assignment::not_enrolled(Reason::MissingBucketKey);
        };
        match &self.decider {
            Decider::Builtin => self.builtin(id, DecidedBy::Builtin),
            Decider::Plugin(s) if !s.is_demoted() && s.lacks_required(unit) => Assignment {
                variant: None,
                reason: Reason::MissingAttribute,
                decided_by: DecidedBy::Plugin(s.identity),
            },
            Decider::Plugin(s) if !s.is_demoted() => match s.decide(unit, id, clock.fixed_ms()) {
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
                Err(why) => self.builtin(id, DecidedBy::Fallback(why)),
            },
            Decider::Plugin(_) => self.builtin(id, DecidedBy::Fallback(FallbackReason::Demoted)),
            Decider::Fallback(why) => self.builtin(id, DecidedBy::Fallback(*why)),
        }
    }

    /// `builtin:hash-v1` on the bucket key value `id` (the unit id unless `bucket_by`).
    #[inline]
    fn builtin(&self, id: &str, decided_by: DecidedBy) -> Assignment {
        match self.bucketer.decide(id) {
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
