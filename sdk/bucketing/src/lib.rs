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
//! Nothing here allocates on the per-unit path. [`bucket`] and [`Salted::bucket`] build the
//! padded SHA-256 message blocks of `salt ':' unit` themselves, on the stack, and run only
//! sha2's block compression over them (SHA-NI where the CPU has it): no hasher state
//! machine, no digest serialisation, one contiguous input. [`Salted`] goes one step further
//! for a salt fixed per experiment: the `salt ':'` prefix is laid out (and its whole 64-byte
//! blocks compressed) once, so a call copies only the unit. Every path gives exactly
//! `SHA-256(salt ':' unit)`: the tests compare them with `Sha256::digest` for every length
//! around the block boundaries. [`VariantRanges::variant_of`] scans a precomputed table.
#![deny(missing_docs)]

use sha2::digest::generic_array::GenericArray;

/// Number of buckets of the bucketing-v1 space: buckets are `0..BUCKETS`.
pub const BUCKETS: u32 = 10_000;

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 block size in bytes.
const BLOCK: usize = 64;

/// The bucket of `unit` under `salt`: `(be_u64(SHA-256(salt ':' unit)[0..8]) * 10000) >> 64`.
///
/// Both are raw bytes (UTF-8 of the strings in practice): no normalisation of any kind.
/// For many units under one salt, [`Salted`] is faster (the salt is laid out once).
#[inline]
pub fn bucket(salt: &[u8], unit: &[u8]) -> u32 {
    let len = salt.len() + 1 + unit.len();
    if len + 9 <= BLOCK {
        // One padded block, built on the stack: the common case (short salt and id).
        let mut block = [0u8; BLOCK];
        block[..salt.len()].copy_from_slice(salt);
        block[salt.len()] = b':';
        block[salt.len() + 1..len].copy_from_slice(unit);
        let state = finish(IV, 0, &mut block, len);
        bucket_of_words(state[0], state[1])
    } else {
        Salted::new(salt).bucket(unit)
    }
}

/// `salt ':'` prepared once, to bucket many units under the same salt (one experiment).
///
/// Holds the SHA-256 state after the prefix's whole 64-byte blocks and the remaining prefix
/// bytes laid out in a block; [`Salted::bucket`] copies the unit after them, pads and
/// compresses. Same answers as [`bucket`] for every input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salted {
    /// The state after `blocks` whole blocks of the prefix.
    state: [u32; 8],
    /// How many whole 64-byte blocks of the prefix `state` absorbed.
    blocks: u64,
    /// The rest of the prefix (`tail_len < 64` bytes), then zeros.
    tail: [u8; BLOCK],
    tail_len: usize,
}

impl Salted {
    /// Prepares `salt ':'` (allocation-free: [`bucket`] uses it for long inputs).
    pub fn new(salt: &[u8]) -> Self {
        let total = salt.len() + 1; // the prefix: salt, then ':'
        let whole = total / BLOCK;
        let mut state = IV;
        for k in 0..whole {
            let start = k * BLOCK;
            let end = (start + BLOCK).min(salt.len());
            let mut block = [0u8; BLOCK];
            block[..end - start].copy_from_slice(&salt[start..end]);
            if end - start < BLOCK {
                block[end - start] = b':'; // the prefix ends exactly at this block's end
            }
            sha2::compress256(
                &mut state,
                core::slice::from_ref(GenericArray::from_slice(&block)),
            );
        }
        let rest_start = whole * BLOCK;
        let rest = &salt[rest_start.min(salt.len())..];
        let mut tail = [0u8; BLOCK];
        tail[..rest.len()].copy_from_slice(rest);
        let tail_len = total - rest_start;
        if tail_len > 0 {
            tail[tail_len - 1] = b':';
        }
        Salted {
            state,
            blocks: whole as u64,
            tail,
            tail_len,
        }
    }

    /// The bucket of `unit` under this salt (exactly [`bucket`]`(salt, unit)`).
    #[inline]
    pub fn bucket(&self, unit: &[u8]) -> u32 {
        let len = self.tail_len + unit.len();
        let state = if len + 9 <= BLOCK {
            let mut block = self.tail;
            block[self.tail_len..len].copy_from_slice(unit);
            finish(self.state, self.blocks, &mut block, len)
        } else if len + 9 <= 2 * BLOCK {
            let mut two = [0u8; 2 * BLOCK];
            two[..BLOCK].copy_from_slice(&self.tail);
            two[self.tail_len..len].copy_from_slice(unit);
            finish(self.state, self.blocks, &mut two, len)
        } else {
            return self.bucket_long(unit);
        };
        bucket_of_words(state[0], state[1])
    }

    /// Units too long for two blocks: whole blocks straight from the unit, then the rest.
    #[cold]
    fn bucket_long(&self, unit: &[u8]) -> u32 {
        let mut state = self.state;
        // Complete the prefix's partial block with the first bytes of the unit.
        let mut first = self.tail;
        let fill = BLOCK - self.tail_len;
        first[self.tail_len..].copy_from_slice(&unit[..fill]);
        sha2::compress256(&mut state, &[first.into()]);
        let rest = &unit[fill..];
        let whole = rest.len() / BLOCK;
        // One block at a time, straight from the unit's bytes: nothing allocated.
        for block in rest[..whole * BLOCK].chunks_exact(BLOCK) {
            sha2::compress256(
                &mut state,
                core::slice::from_ref(GenericArray::from_slice(block)),
            );
        }
        let left = &rest[whole * BLOCK..];
        let mut two = [0u8; 2 * BLOCK];
        two[..left.len()].copy_from_slice(left);
        let done = self.blocks + 1 + whole as u64;
        let state = finish(state, done, &mut two, left.len());
        bucket_of_words(state[0], state[1])
    }
}

/// Pads the message bytes `buf[..len]` (after `blocks_done` whole blocks already absorbed in
/// `state`) and compresses the one or two blocks that hold them. `buf` is zero after `len`.
#[inline(always)]
fn finish<const N: usize>(
    mut state: [u32; 8],
    blocks_done: u64,
    buf: &mut [u8; N],
    len: usize,
) -> [u32; 8] {
    let used = if len + 9 <= BLOCK { BLOCK } else { 2 * BLOCK };
    debug_assert!(used <= N);
    buf[len] = 0x80;
    let bits = (blocks_done * BLOCK as u64 + len as u64) * 8;
    buf[used - 8..used].copy_from_slice(&bits.to_be_bytes());
    if used == BLOCK {
        sha2::compress256(&mut state, &[*GenericArray::from_slice(&buf[..BLOCK])]);
    } else {
        sha2::compress256(
            &mut state,
            &[
                *GenericArray::from_slice(&buf[..BLOCK]),
                *GenericArray::from_slice(&buf[BLOCK..2 * BLOCK]),
            ],
        );
    }
    state
}

/// The bucket from the first two big-endian words of a digest.
#[inline(always)]
fn bucket_of_words(w0: u32, w1: u32) -> u32 {
    let x = (u64::from(w0) << 32) | u64::from(w1);
    ((u128::from(x) * u128::from(BUCKETS)) >> 64) as u32
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
    use sha2::{Digest, Sha256};

    /// The reference: the digest of the joined bytes, by sha2's own hasher.
    fn reference(salt: &[u8], unit: &[u8]) -> u32 {
        let mut joined = salt.to_vec();
        joined.push(b':');
        joined.extend_from_slice(unit);
        bucket_of_digest(&Sha256::digest(&joined))
    }

    #[test]
    fn every_length_around_the_block_boundaries_matches_the_plain_digest() {
        // Salts of 0..=140 bytes x units of 0..=200 bytes cover: one block, two blocks, the
        // long path, and prefixes with 0, 1 and 2 whole blocks.
        for salt_len in (0..=140)
            .step_by(3)
            .chain([54, 55, 56, 62, 63, 64, 127, 128])
        {
            let salt: Vec<u8> = (0..salt_len).map(|i| b'a' + (i % 26) as u8).collect();
            let salted = Salted::new(&salt);
            for unit_len in 0..=200 {
                let unit: Vec<u8> = (0..unit_len).map(|i| (i * 7 % 251) as u8).collect();
                let want = reference(&salt, &unit);
                assert_eq!(
                    bucket(&salt, &unit),
                    want,
                    "salt {salt_len} unit {unit_len}"
                );
                assert_eq!(
                    salted.bucket(&unit),
                    want,
                    "salt {salt_len} unit {unit_len}"
                );
            }
        }
    }

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
        fn salted_and_one_shot_equal_the_plain_digest(
            salt in proptest::collection::vec(any::<u8>(), 0..300),
            unit in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let want = reference(&salt, &unit);
            prop_assert_eq!(bucket(&salt, &unit), want);
            prop_assert_eq!(Salted::new(&salt).bucket(&unit), want);
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
