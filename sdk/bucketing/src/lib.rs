//! The bucketing-v1 math of abkit, exactly as `spec/bucketing-v1.md` defines it.
//!
//! One small crate so that the SDK's built-in bucketer (`builtin:hash-v1`), the
//! `weighted-hash` strategy plugin and the offline simulator all run the very same code:
//! falling back from that plugin to the builtin can never move a user.
//!
//! ```
//! use abkit_bucketing::{bucket, coverage_bp, VariantRanges};
//!
//! let ranges = VariantRanges::new(&[50, 50], coverage_bp(1.0)).unwrap();
//! let b = bucket(b"checkout_button", b"user-42");
//! assert!(b < 10_000);
//! let variant = ranges.variant_of(b); // Some(0) or Some(1): coverage is full
//! assert!(variant.is_some());
//! ```
//!
//! Nothing here allocates on the per-unit path: [`bucket`] hashes `salt ':' unit` from a
//! stack buffer (one contiguous SHA-256 input, measured ~30 ns cheaper than feeding the
//! hasher three pieces) and [`VariantRanges::variant_of`] scans a precomputed table.
#![deny(missing_docs)]

use sha2::{Digest, Sha256};

/// Number of buckets of the bucketing-v1 space: buckets are `0..BUCKETS`.
pub const BUCKETS: u32 = 10_000;

/// Inputs up to this many bytes (`salt`, `:`, `unit`) are hashed from one stack buffer;
/// longer ones are streamed into the hasher in pieces (same digest, slightly slower).
const STACK_INPUT: usize = 256;

/// The bucket of `unit` under `salt`: `(be_u64(SHA-256(salt ':' unit)[0..8]) * 10000) >> 64`.
///
/// Both are raw bytes (UTF-8 of the strings in practice): no normalisation of any kind.
#[inline]
pub fn bucket(salt: &[u8], unit: &[u8]) -> u32 {
    let len = salt.len() + 1 + unit.len();
    let digest = if len <= STACK_INPUT {
        let mut buf = [0u8; STACK_INPUT];
        buf[..salt.len()].copy_from_slice(salt);
        buf[salt.len()] = b':';
        buf[salt.len() + 1..len].copy_from_slice(unit);
        Sha256::digest(&buf[..len])
    } else {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(b":");
        h.update(unit);
        h.finalize()
    };
    bucket_of_digest(&digest)
}

/// The bucket of an already computed SHA-256 digest (the last step of [`bucket`]).
#[inline]
pub fn bucket_of_digest(digest: &[u8]) -> u32 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let x = u64::from_be_bytes(first);
    ((u128::from(x) * u128::from(BUCKETS)) >> 64) as u32
}

/// Coverage as basis points: `floor(coverage * 10000 + 0.5)` in IEEE-754 double precision.
///
/// Values outside `[0, 1]` (and NaN) are clamped into `0..=10000`; callers that accept user
/// input validate the range first and report it (see the SDK's `config`).
#[inline]
pub fn coverage_bp(coverage: f64) -> u32 {
    let c = (coverage * 10_000.0 + 0.5).floor();
    if c.is_nan() || c <= 0.0 {
        0
    } else if c >= 10_000.0 {
        BUCKETS
    } else {
        c as u32
    }
}

/// Why a weight list cannot be turned into ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangesError {
    /// There is no variant at all.
    NoVariants,
    /// All weights are zero (the spec needs a sum of at least 1).
    ZeroTotalWeight,
    /// Coverage basis points above 10000.
    CoverageOutOfRange,
}

impl core::fmt::Display for RangesError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RangesError::NoVariants => "at least one variant is needed",
            RangesError::ZeroTotalWeight => "the weights sum to 0; at least one must be positive",
            RangesError::CoverageOutOfRange => "coverage must be within 0..=10000 basis points",
        })
    }
}

impl std::error::Error for RangesError {}

/// The half-open bucket range `[start, end)` of every variant, for given weights and coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantRanges {
    ranges: Vec<(u32, u32)>,
}

impl VariantRanges {
    /// Computes `range_i = [B_i, B_i + floor((B_{i+1} - B_i) * C / 10000))` with
    /// `B_i = floor(10000 * (w_0 + ... + w_{i-1}) / W)`.
    pub fn new(weights: &[u32], coverage_bp: u32) -> Result<Self, RangesError> {
        if weights.is_empty() {
            return Err(RangesError::NoVariants);
        }
        if coverage_bp > BUCKETS {
            return Err(RangesError::CoverageOutOfRange);
        }
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return Err(RangesError::ZeroTotalWeight);
        }
        let boundary = |cum: u64| -> u32 {
            ((u128::from(cum) * u128::from(BUCKETS)) / u128::from(total)) as u32
        };
        let mut ranges = Vec::with_capacity(weights.len());
        let mut cum = 0u64;
        for &w in weights {
            let lo = boundary(cum);
            cum += u64::from(w);
            let hi = boundary(cum);
            let len = (u64::from(hi - lo) * u64::from(coverage_bp) / u64::from(BUCKETS)) as u32;
            ranges.push((lo, lo + len));
        }
        Ok(VariantRanges { ranges })
    }

    /// The variant whose range holds `bucket`, or `None` (not enrolled: outside coverage).
    #[inline]
    pub fn variant_of(&self, bucket: u32) -> Option<usize> {
        self.ranges
            .iter()
            .position(|&(lo, hi)| lo <= bucket && bucket < hi)
    }

    /// The ranges, one `[start, end)` pair per variant.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }
}

/// One-shot helper: the variant of `unit` for `weights` and `coverage` (a fraction), or `None`.
///
/// Recomputes the ranges on every call; hot paths build a [`VariantRanges`] once.
pub fn assign(
    salt: &str,
    unit: &str,
    weights: &[u32],
    coverage: f64,
) -> Result<Option<usize>, RangesError> {
    let ranges = VariantRanges::new(weights, coverage_bp(coverage))?;
    Ok(ranges.variant_of(bucket(salt.as_bytes(), unit.as_bytes())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn long_inputs_hash_the_same_as_short_path_would() {
        let salt = "s".repeat(200);
        let unit = "u".repeat(200);
        let mut joined = salt.clone().into_bytes();
        joined.push(b':');
        joined.extend_from_slice(unit.as_bytes());
        let direct = bucket_of_digest(&Sha256::digest(&joined));
        assert_eq!(bucket(salt.as_bytes(), unit.as_bytes()), direct);
    }

    #[test]
    fn boundaries_end_at_10000_and_weight_zero_is_empty() {
        let r = VariantRanges::new(&[1, 0, 2], BUCKETS).unwrap();
        assert_eq!(r.ranges(), &[(0, 3333), (3333, 3333), (3333, 10000)]);
    }

    #[test]
    fn zero_total_weight_is_refused() {
        assert_eq!(
            VariantRanges::new(&[0, 0], 10),
            Err(RangesError::ZeroTotalWeight)
        );
        assert_eq!(VariantRanges::new(&[], 10), Err(RangesError::NoVariants));
    }

    #[test]
    fn coverage_rounds_half_up() {
        assert_eq!(coverage_bp(0.33335), 3334);
        assert_eq!(coverage_bp(0.0), 0);
        assert_eq!(coverage_bp(1.0), 10000);
    }

    proptest! {
        #[test]
        fn bucket_is_in_range_and_deterministic(salt in ".{0,40}", unit in ".{0,300}") {
            let a = bucket(salt.as_bytes(), unit.as_bytes());
            prop_assert!(a < BUCKETS);
            prop_assert_eq!(a, bucket(salt.as_bytes(), unit.as_bytes()));
        }

        #[test]
        fn ranges_are_ordered_disjoint_and_sized_by_coverage(
            weights in proptest::collection::vec(0u32..1000, 1..8),
            cov in 0u32..=10000,
        ) {
            prop_assume!(weights.iter().any(|&w| w > 0));
            let r = VariantRanges::new(&weights, cov).unwrap();
            let mut prev_end = 0;
            for (i, &(lo, hi)) in r.ranges().iter().enumerate() {
                prop_assert!(lo >= prev_end && lo <= hi && hi <= BUCKETS);
                if weights[i] == 0 { prop_assert_eq!(lo, hi); }
                prev_end = hi;
            }
        }
    }
}
