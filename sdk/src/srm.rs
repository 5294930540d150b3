//! Sample-ratio statistics shared by the reload guards and the simulator: goodness of fit and
//! independence with an exact test when an expected count is small, Holm's adjustment across
//! many tests, the exact expectation of bucketing-v1 (its floored bucket ranges), and the
//! attribute a strategy randomises by.
//!
//! Which test is used:
//! - every expected count at least [`MIN_EXPECTED`]: Pearson's chi-square (`statrs`);
//! - an expected count below it with two cells: the exact binomial test (two-sided, summing
//!   the outcomes no more likely than the one observed); for a 2x2 independence table, Fisher's
//!   exact test (same two-sided rule);
//! - an expected count below it with more cells: no p-value ("insufficient data"), never a
//!   verdict from an approximation known to be wrong there.

#![cfg_attr(not(feature = "simulate"), allow(dead_code))]

use crate::config::StrategyRef;
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, Discrete};
use statrs::function::factorial::ln_binomial;

/// Below this expected count the chi-square approximation is not trusted.
pub(crate) const MIN_EXPECTED: f64 = 5.0;

/// Exact tests enumerate outcomes; beyond this many trials they are not attempted.
const EXACT_MAX_TRIALS: u64 = 10_000_000;

/// Relative tolerance when comparing outcome probabilities (as R's `binom.test`).
const LN_TOLERANCE: f64 = 1e-7;

/// The test a p-value comes from. Serialised and displayed as its name (`chi-square`,
/// `exact binomial`, `fisher exact`, `nothing to test`, `impossible count`,
/// `insufficient data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    /// Nothing to test (no units, or one cell).
    Nothing,
    /// Pearson's chi-square.
    ChiSquare,
    /// Exact binomial test.
    ExactBinomial,
    /// Fisher's exact test (2x2).
    Fisher,
    /// A count where nothing is expected: p = 0.
    Impossible,
    /// An expected count below the minimum and no exact test: no p-value.
    InsufficientData,
    /// The test does not apply (e.g. units randomised in clusters): no p-value.
    NotApplicable,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl serde::Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Nothing => "nothing to test",
            Method::ChiSquare => "chi-square",
            Method::ExactBinomial => "exact binomial",
            Method::Fisher => "fisher exact",
            Method::Impossible => "impossible count",
            Method::InsufficientData => "insufficient data",
            Method::NotApplicable => "not applicable",
        }
    }
}

/// A test's statistic and p-value (`NaN` with [`Method::InsufficientData`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fit {
    pub(crate) chi2: f64,
    pub(crate) df: u32,
    pub(crate) p_value: f64,
    pub(crate) method: Method,
}

fn chi2_sf(chi2: f64, df: u32) -> f64 {
    if df == 0 || chi2 <= 0.0 {
        return 1.0;
    }
    ChiSquared::new(f64::from(df)).map_or(1.0, |d| d.sf(chi2).clamp(0.0, 1.0))
}

/// Goodness of fit of `observed` against proportions `weights` (any non-negative scale).
pub(crate) fn goodness_of_fit(observed: &[u64], weights: &[f64]) -> Fit {
    let n: u64 = observed.iter().sum();
    let w_of = |i: usize| {
        weights
            .get(i)
            .copied()
            .filter(|x| x.is_finite() && *x > 0.0)
            .unwrap_or(0.0)
    };
    let w: f64 = (0..observed.len()).map(w_of).sum();
    let nothing = Fit {
        chi2: 0.0,
        df: 0,
        p_value: 1.0,
        method: Method::Nothing,
    };
    if n == 0 {
        return nothing;
    }
    let impossible = Fit {
        chi2: f64::INFINITY,
        df: 0,
        p_value: 0.0,
        method: Method::Impossible,
    };
    if w <= 0.0 {
        return impossible;
    }
    let (mut chi2, mut cells, mut min_e) = (0.0, 0u32, f64::INFINITY);
    let mut live = Vec::new();
    for (i, &o) in observed.iter().enumerate() {
        let e = n as f64 * w_of(i) / w;
        if e > 0.0 {
            chi2 += (o as f64 - e).powi(2) / e;
            cells += 1;
            min_e = min_e.min(e);
            live.push((o, w_of(i) / w));
        } else if o > 0 {
            return Fit {
                df: cells,
                ..impossible
            };
        }
    }
    let df = cells.saturating_sub(1);
    if df == 0 {
        return Fit {
            chi2,
            df,
            ..nothing
        };
    }
    if min_e >= MIN_EXPECTED {
        return Fit {
            chi2,
            df,
            p_value: chi2_sf(chi2, df),
            method: Method::ChiSquare,
        };
    }
    match (live.as_slice(), binomial_ok(n)) {
        ([(x, p), _], true) => Fit {
            chi2,
            df,
            p_value: binomial_two_sided(*x, n, *p),
            method: Method::ExactBinomial,
        },
        _ => Fit {
            chi2,
            df,
            p_value: f64::NAN,
            method: Method::InsufficientData,
        },
    }
}

fn binomial_ok(n: u64) -> bool {
    n <= EXACT_MAX_TRIALS
}

/// Two-sided exact binomial test of `x` successes in `n` trials against probability `p`: the
/// total probability of the outcomes no more likely than `x`.
pub(crate) fn binomial_two_sided(x: u64, n: u64, p: f64) -> f64 {
    if p <= 0.0 {
        return if x == 0 { 1.0 } else { 0.0 };
    }
    if p >= 1.0 {
        return if x == n { 1.0 } else { 0.0 };
    }
    let Ok(d) = Binomial::new(p, n) else {
        return 1.0;
    };
    let observed = d.ln_pmf(x) + LN_TOLERANCE;
    let total: f64 = (0..=n)
        .map(|k| d.ln_pmf(k))
        .filter(|&l| l <= observed)
        .map(f64::exp)
        .sum();
    total.clamp(0.0, 1.0)
}

/// Composite test of `x` of `n` against any probability within `[lo, hi]`: 1 inside, else the
/// two-sided test against the nearer end (the largest p-value over the interval).
pub(crate) fn binomial_within(x: u64, n: u64, lo: f64, hi: f64) -> (f64, Method) {
    if n == 0 {
        return (1.0, Method::Nothing);
    }
    let share = x as f64 / n as f64;
    if (lo..=hi).contains(&share) {
        return (1.0, Method::Nothing);
    }
    let p0 = if share < lo { lo } else { hi };
    let (e1, e0) = (n as f64 * p0, n as f64 * (1.0 - p0));
    if e1 >= MIN_EXPECTED && e0 >= MIN_EXPECTED {
        let chi2 = (x as f64 - e1).powi(2) / e1 + ((n - x) as f64 - e0).powi(2) / e0;
        (chi2_sf(chi2, 1), Method::ChiSquare)
    } else if binomial_ok(n) {
        (binomial_two_sided(x, n, p0), Method::ExactBinomial)
    } else {
        (f64::NAN, Method::InsufficientData)
    }
}

/// Fisher's exact test on the 2x2 table `[[a, b], [c, d]]`, two-sided.
pub(crate) fn fisher_2x2(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let (r1, r2, c1) = (a + b, c + d, a + c);
    let n = r1 + r2;
    let ln_p = |k: u64| ln_binomial(r1, k) + ln_binomial(r2, c1 - k) - ln_binomial(n, c1);
    let observed = ln_p(a) + LN_TOLERANCE;
    let lo = c1.saturating_sub(r2);
    let hi = r1.min(c1);
    let total: f64 = (lo..=hi)
        .map(ln_p)
        .filter(|&l| l <= observed)
        .map(f64::exp)
        .sum();
    total.clamp(0.0, 1.0)
}

/// Test of independence on a `rows x cols` table (row-major); empty rows and columns are left
/// out. Small expected counts: Fisher's exact test for 2x2, else insufficient data.
pub(crate) fn independence(table: &[u64], rows: usize, cols: usize) -> Fit {
    let cell = |r: usize, c: usize| table.get(r * cols + c).copied().unwrap_or(0);
    let row_sums: Vec<u64> = (0..rows)
        .map(|r| (0..cols).map(|c| cell(r, c)).sum())
        .collect();
    let col_sums: Vec<u64> = (0..cols)
        .map(|c| (0..rows).map(|r| cell(r, c)).sum())
        .collect();
    let n: u64 = row_sums.iter().sum();
    let live_r: Vec<usize> = (0..rows).filter(|&r| row_sums[r] > 0).collect();
    let live_c: Vec<usize> = (0..cols).filter(|&c| col_sums[c] > 0).collect();
    if n == 0 || live_r.len() < 2 || live_c.len() < 2 {
        return Fit {
            chi2: 0.0,
            df: 0,
            p_value: 1.0,
            method: Method::Nothing,
        };
    }
    let (mut chi2, mut min_e) = (0.0, f64::INFINITY);
    for &r in &live_r {
        for &c in &live_c {
            let e = row_sums[r] as f64 * col_sums[c] as f64 / n as f64;
            chi2 += (cell(r, c) as f64 - e).powi(2) / e;
            min_e = min_e.min(e);
        }
    }
    let df = (live_r.len() as u32 - 1) * (live_c.len() as u32 - 1);
    if min_e >= MIN_EXPECTED {
        return Fit {
            chi2,
            df,
            p_value: chi2_sf(chi2, df),
            method: Method::ChiSquare,
        };
    }
    if let ([r0, r1], [c0, c1]) = (live_r.as_slice(), live_c.as_slice()) {
        let p = fisher_2x2(
            cell(*r0, *c0),
            cell(*r0, *c1),
            cell(*r1, *c0),
            cell(*r1, *c1),
        );
        return Fit {
            chi2,
            df,
            p_value: p,
            method: Method::Fisher,
        };
    }
    Fit {
        chi2,
        df,
        p_value: f64::NAN,
        method: Method::InsufficientData,
    }
}

/// Holm's step-down adjustment (family-wise error rate) of `p`; `NaN` entries (no p-value) are
/// left out of the family and stay `NaN`.
pub(crate) fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Whether `strategy` places units by bucketing-v1's floored ranges (`builtin:hash-v1`, and the
/// `weighted-hash` plugin, which runs the same crate).
pub(crate) fn uses_bucketing_v1(strategy: &StrategyRef) -> bool {
    match strategy {
        StrategyRef::Builtin => true,
        StrategyRef::Plugin(name) => name == "weighted-hash",
    }
}

/// The exact share of the bucket space of each variant's range (bucketing-v1).
pub(crate) fn range_shares(weights: &[u32], coverage_bp: u32) -> Option<Vec<f64>> {
    let r = abkit_bucketing::VariantRanges::new(weights, coverage_bp).ok()?;
    Some(
        r.ranges()
            .iter()
            .map(|&(lo, hi)| f64::from(hi - lo) / f64::from(abkit_bucketing::BUCKETS))
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Reference values computed independently: closed forms, R's `binom.test(3, 10)` =
    // 0.34375, `fisher.test(matrix(c(3, 1, 1, 3), 2))` = 0.4857 (the tea-tasting example) and
    // Wikipedia's Fisher example [[1, 9], [11, 3]] = 0.002759.
    #[test]
    fn exact_tests_match_independent_values() {
        let p = binomial_two_sided(1, 30, 0.001);
        assert!((p - (1.0 - 0.999f64.powi(30))).abs() < 1e-12, "{p}");
        // binomtest(3, 10, 0.5) = 0.34375 (= 352/1024)
        assert!((binomial_two_sided(3, 10, 0.5) - 0.34375).abs() < 1e-12);
        // binomtest(0, 20, 0.1) = 0.2431... : P(0) = 0.9^20 = 0.12158, plus P(k) <= P(0) for k >= 4
        let want: f64 = 0.9f64.powi(20)
            + (4..=20u64)
                .map(|k| {
                    ln_binomial(20, k) + k as f64 * 0.1f64.ln() + (20 - k) as f64 * 0.9f64.ln()
                })
                .map(f64::exp)
                .sum::<f64>();
        assert!((binomial_two_sided(0, 20, 0.1) - want).abs() < 1e-12);
        // fisher_exact([[1, 9], [11, 3]]) = 0.002759...
        assert!((fisher_2x2(1, 9, 11, 3) - 0.002_759_456_185_220_083).abs() < 1e-9);
        // fisher_exact([[3, 1], [1, 3]]) = 0.4857142857
        assert!((fisher_2x2(3, 1, 1, 3) - 0.485_714_285_714_285_7).abs() < 1e-12);
    }

    #[test]
    fn small_expected_counts_use_an_exact_test_or_say_so() {
        let f = goodness_of_fit(&[29, 1], &[999.0, 1.0]);
        assert_eq!(f.method, Method::ExactBinomial);
        assert!(f.p_value > 0.02, "{f:?}");
        let f = goodness_of_fit(&[25, 2, 3], &[10.0, 1.0, 1.0]);
        assert_eq!(f.method, Method::InsufficientData);
        assert!(f.p_value.is_nan());
        assert_eq!(
            goodness_of_fit(&[510, 490], &[1.0, 1.0]).method,
            Method::ChiSquare
        );
    }

    #[test]
    fn holm_matches_a_hand_computation() {
        let adj = holm(&[0.01, 0.04, f64::NAN, 0.03, 0.005]);
        // sorted 0.005, 0.01, 0.03, 0.04 with m = 4: 0.02, 0.03, 0.06, max(0.06, 0.04) = 0.06
        let want = [0.03, 0.06, f64::NAN, 0.06, 0.02];
        for (a, w) in adj.iter().zip(want) {
            assert!(
                (a.is_nan() && w.is_nan()) || (a - w).abs() < 1e-15,
                "{adj:?}"
            );
        }
    }

    #[test]
    fn exact_ranges_of_six_arms_at_one_percent() {
        let s = range_shares(&[1; 6], 100).unwrap();
        assert!(s.iter().all(|&x| (x - 0.0016).abs() < 1e-15), "{s:?}");
    }
}
