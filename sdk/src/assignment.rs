//! What `assign` answers: the variant (or none), why, and which strategy decided.

use crate::loader::PluginIdentity;
use std::fmt;

/// The answer for one unit in one experiment. `Copy`, no heap: names are `&'static`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// The variant, or `None` when the unit is not enrolled.
    pub variant: Option<Variant>,
    /// Why the unit got this answer.
    pub reason: Reason,
    /// Which strategy decided (provenance), if one ran.
    pub decided_by: DecidedBy,
}

impl Assignment {
    pub(crate) const fn not_enrolled(reason: Reason) -> Self {
        Assignment {
            variant: None,
            reason,
            decided_by: DecidedBy::Nobody,
        }
    }

    /// Whether the unit is in a variant.
    pub fn is_enrolled(&self) -> bool {
        self.variant.is_some()
    }

    /// The variant's name, if enrolled.
    pub fn variant_name(&self) -> Option<&'static str> {
        self.variant.map(|v| v.name)
    }
}

/// A variant of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Position in the experiment's `variants` list.
    pub index: u32,
    /// Its configured name.
    pub name: &'static str,
}

/// Why a unit got its answer, in the evaluation order of `docs/bucketing-v1.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// No experiment with that key in the current configuration.
    UnknownExperiment,
    /// The experiment is disabled.
    Disabled,
    /// A forced override for this unit id.
    Override,
    /// The unit's attributes do not meet the targeting conditions.
    NotTargeted,
    /// The unit's layer bucket is outside the experiment's slice.
    OutsideLayer,
    /// The unit lacks an attribute (or has it empty) that the experiment's strategy declared
    /// it cannot decide without, e.g. the cluster a cluster strategy randomises by. The
    /// strategy was not called.
    MissingAttribute,
    /// The strategy left the unit out (outside coverage).
    OutsideCoverage,
    /// The strategy put the unit in a variant.
    Assigned,
}

impl Reason {
    /// Every reason, in evaluation order.
    pub const ALL: [Reason; 8] = [
        Reason::UnknownExperiment,
        Reason::Disabled,
        Reason::Override,
        Reason::NotTargeted,
        Reason::OutsideLayer,
        Reason::MissingAttribute,
        Reason::OutsideCoverage,
        Reason::Assigned,
    ];

    /// A stable snake_case name (used in CLI output, JSON and metrics labels).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownExperiment => "unknown_experiment",
            Reason::Disabled => "disabled",
            Reason::Override => "override",
            Reason::NotTargeted => "not_targeted",
            Reason::OutsideLayer => "outside_layer",
            Reason::MissingAttribute => "missing_attribute",
            Reason::OutsideCoverage => "outside_coverage",
            Reason::Assigned => "assigned",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which strategy decided an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecidedBy {
    /// No strategy ran (unknown experiment, disabled, override, targeting, layer).
    Nobody,
    /// The built-in bucketer `builtin:hash-v1`, configured as the experiment's strategy.
    Builtin,
    /// A loaded plugin: its name, signed version, sha256 and signer.
    Plugin(&'static PluginIdentity),
    /// The experiment's plugin could not answer; `builtin:hash-v1` did, for this reason.
    Fallback(FallbackReason),
}

/// Why the builtin answered for an experiment configured with a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FallbackReason {
    /// The plugin (or its strategy for this experiment) was refused and no good version exists.
    PluginRefused,
    /// The plugin returned an error (or panicked) on this call.
    StrategyError,
    /// The plugin answered a variant index that does not exist.
    InvalidAnswer,
    /// The plugin's error rate crossed the threshold: it was demoted.
    Demoted,
}

impl FallbackReason {
    /// A stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            FallbackReason::PluginRefused => "plugin_refused",
            FallbackReason::StrategyError => "strategy_error",
            FallbackReason::InvalidAnswer => "invalid_answer",
            FallbackReason::Demoted => "demoted",
        }
    }
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecidedBy::Nobody => f.write_str("-"),
            DecidedBy::Builtin => f.write_str(crate::config::STRATEGY_BUILTIN),
            DecidedBy::Plugin(p) => write!(
                f,
                "plugin:{} v{} ({}, key {})",
                p.name,
                p.version,
                p.sha256_prefix(),
                p.key_id
            ),
            DecidedBy::Fallback(r) => write!(
                f,
                "{} (fallback: {})",
                crate::config::STRATEGY_BUILTIN,
                r.as_str()
            ),
        }
    }
}
