//! `builtin:hash-v1`: the built-in bucketer of `docs/bucketing-v1.md`, compiled per experiment.

use abkit_bucketing::{RangesError, Salted, VariantRanges};

/// The built-in bucketer for one experiment: its `salt` prepared for hashing (laid out once,
/// so a call copies only the unit id) and its precomputed variant ranges.
#[derive(Debug, Clone)]
pub(crate) struct Bucketer {
    salt: Salted,
    ranges: VariantRanges,
}

impl Bucketer {
    /// Precomputes the ranges for `weights` at `coverage_bp`.
    pub(crate) fn new(salt: &str, weights: &[u32], coverage_bp: u32) -> Result<Self, RangesError> {
        Ok(Bucketer {
            salt: Salted::new(salt.as_bytes()),
            ranges: VariantRanges::new(weights, coverage_bp)?,
        })
    }

    /// The variant of `unit_id`, or `None` when its bucket is outside coverage.
    #[inline]
    pub(crate) fn decide(&self, unit_id: &str) -> Option<u32> {
        self.ranges
            .variant_of(self.salt.bucket(unit_id.as_bytes()))
            .map(|i| i as u32)
    }
}

/// A layer's gate: the layer bucket (with the layer salt) must fall in `[start, end)`.
#[derive(Debug, Clone)]
pub(crate) struct LayerGate {
    salt: Salted,
    start: u32,
    end: u32,
}

impl LayerGate {
    pub(crate) fn new(salt: &str, start: u32, end: u32) -> Self {
        LayerGate {
            salt: Salted::new(salt.as_bytes()),
            start,
            end,
        }
    }

    /// Whether the unit's layer bucket lies in this experiment's slice.
    #[inline]
    pub(crate) fn admits(&self, unit_id: &str) -> bool {
        let b = self.salt.bucket(unit_id.as_bytes());
        self.start <= b && b < self.end
    }
}
