//! `builtin:hash-v1`: the built-in bucketer of `docs/bucketing-v1.md`, compiled per experiment.

use abkit_bucketing::{bucket, RangesError, VariantRanges};

/// The built-in bucketer for one experiment: its `salt` and precomputed variant ranges.
#[derive(Debug, Clone)]
pub(crate) struct Bucketer {
    salt: Box<[u8]>,
    ranges: VariantRanges,
}

impl Bucketer {
    /// Precomputes the ranges for `weights` at `coverage_bp`.
    pub(crate) fn new(salt: &str, weights: &[u32], coverage_bp: u32) -> Result<Self, RangesError> {
        Ok(Bucketer {
            salt: salt.as_bytes().into(),
            ranges: VariantRanges::new(weights, coverage_bp)?,
        })
    }

    /// The variant of `unit_id`, or `None` when its bucket is outside coverage.
    #[inline]
    pub(crate) fn decide(&self, unit_id: &str) -> Option<u32> {
        self.ranges
            .variant_of(bucket(&self.salt, unit_id.as_bytes()))
            .map(|i| i as u32)
    }
}

/// A layer's gate: the layer bucket (with the layer salt) must fall in `[start, end)`.
#[derive(Debug, Clone)]
pub(crate) struct LayerGate {
    salt: Box<[u8]>,
    start: u32,
    end: u32,
}

impl LayerGate {
    pub(crate) fn new(salt: &str, start: u32, end: u32) -> Self {
        LayerGate {
            salt: salt.as_bytes().into(),
            start,
            end,
        }
    }

    /// Whether the unit's layer bucket lies in this experiment's slice.
    #[inline]
    pub(crate) fn admits(&self, unit_id: &str) -> bool {
        let b = bucket(&self.salt, unit_id.as_bytes());
        self.start <= b && b < self.end
    }
}
