//! Chi-square tests on integer counts: goodness of fit (sample-ratio mismatch) and
//! independence of two experiments. p-values from the chi-squared survival function (`statrs`).
//!
//! Everything here is a pure function of merged integer counts, so results do not depend on
//! how many threads produced them.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Below this p-value a test's verdict is [`Verdict::Mismatch`].
pub const ALPHA: f64 = 0.001;

/// The outcome of a test against its expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Consistent with the expectation (`p >= 0.001`).
    Ok,
    /// Inconsistent with the expectation (`p < 0.001`).
    Mismatch,
}

impl Verdict {
    /// `ok` or `mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Mismatch => "mismatch",
        }
    }
}

/// A chi-square statistic, its degrees of freedom, p-value and verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChiSquare {
    /// The statistic (`f64::INFINITY` when a count falls where nothing is expected; JSON `null`).
    pub chi2: f64,
    /// Degrees of freedom (0: nothing to test; then `p_value` is 1, or 0 for an impossible count).
    pub df: u32,
    /// Probability of a statistic at least this large under the expectation.
    pub p_value: f64,
    /// `ok` if `p_value >= 0.001`, else `mismatch`.
    pub verdict: Verdict,
}

impl ChiSquare {
    fn new(chi2: f64, df: u32) -> ChiSquare {
        let p_value = if chi2.is_infinite() {
            0.0
        } else if df == 0 || chi2 <= 0.0 {
            1.0
        } else {
            match ChiSquared::new(f64::from(df)) {
                Ok(dist) => dist.sf(chi2).clamp(0.0, 1.0),
                Err(_) => 1.0, // df > 0 always builds; kept total for a hand-made caller
            }
        };
        let verdict = if p_value >= ALPHA {
            Verdict::Ok
        } else {
            Verdict::Mismatch
        };
        ChiSquare {
            chi2,
            df,
            p_value,
            verdict,
        }
    }
}

/// Pearson's goodness-of-fit test of `observed` counts against proportions `expected_weights`
/// (any non-negative scale). Cells expected to be empty are left out when empty, and make the
/// statistic infinite when not.
///
/// ```
/// use abkit::simulate::stats::{goodness_of_fit, Verdict};
/// assert_eq!(goodness_of_fit(&[5010, 4990], &[1.0, 1.0]).verdict, Verdict::Ok);
/// assert_eq!(goodness_of_fit(&[6000, 4000], &[1.0, 1.0]).verdict, Verdict::Mismatch);
/// ```
pub fn goodness_of_fit(observed: &[u64], expected_weights: &[f64]) -> ChiSquare {
    let n: u64 = observed.iter().sum();
    let w: f64 = expected_weights
        .iter()
        .filter(|x| x.is_finite() && **x > 0.0)
        .sum();
    if n == 0 {
        return ChiSquare::new(0.0, 0);
    }
    if w <= 0.0 {
        return ChiSquare::new(f64::INFINITY, 0);
    }
    let mut chi2 = 0.0;
    let mut cells = 0u32;
    for (i, &o) in observed.iter().enumerate() {
        let wi = expected_weights
            .get(i)
            .copied()
            .filter(|x| x.is_finite() && *x > 0.0)
            .unwrap_or(0.0);
        let e = n as f64 * wi / w;
        if e > 0.0 {
            let d = o as f64 - e;
            chi2 += d * d / e;
            cells += 1;
        } else if o > 0 {
            chi2 = f64::INFINITY;
        }
    }
    ChiSquare::new(chi2, cells.saturating_sub(1))
}

/// Pearson's test of independence on a `rows x cols` contingency table (row-major).
/// Empty rows and columns are left out; `df = (r - 1)(c - 1)` over the rest.
///
/// ```
/// use abkit::simulate::stats::{independence, Verdict};
/// assert_eq!(independence(&[250, 250, 250, 250], 2, 2).verdict, Verdict::Ok);
/// assert_eq!(independence(&[500, 0, 0, 500], 2, 2).verdict, Verdict::Mismatch);
/// ```
pub fn independence(table: &[u64], rows: usize, cols: usize) -> ChiSquare {
    let cell = |r: usize, c: usize| table.get(r * cols + c).copied().unwrap_or(0);
    let row_sums: Vec<u64> = (0..rows)
        .map(|r| (0..cols).map(|c| cell(r, c)).sum())
        .collect();
    let col_sums: Vec<u64> = (0..cols)
        .map(|c| (0..rows).map(|r| cell(r, c)).sum())
        .collect();
    let n: u64 = row_sums.iter().sum();
    let live_rows = row_sums.iter().filter(|&&s| s > 0).count() as u32;
    let live_cols = col_sums.iter().filter(|&&s| s > 0).count() as u32;
    if n == 0 || live_rows < 2 || live_cols < 2 {
        return ChiSquare::new(0.0, 0);
    }
    let mut chi2 = 0.0;
    for (r, &rs) in row_sums.iter().enumerate() {
        for (c, &cs) in col_sums.iter().enumerate() {
            if rs == 0 || cs == 0 {
                continue;
            }
            let e = rs as f64 * cs as f64 / n as f64;
            let d = cell(r, c) as f64 - e;
            chi2 += d * d / e;
        }
    }
    ChiSquare::new(chi2, (live_rows - 1) * (live_cols - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_match_known_quantiles() {
        // 3.841 is the 95% quantile of chi2(1); 13.816 the 99.9% quantile of chi2(2).
        let t = ChiSquare::new(3.841_458_820_694_124, 1);
        assert!((t.p_value - 0.05).abs() < 1e-9, "{t:?}");
        let t = ChiSquare::new(13.815_510_557_964_274, 2);
        assert!((t.p_value - 0.001).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn goodness_of_fit_handles_empty_and_impossible_cells() {
        let t = goodness_of_fit(&[100, 0, 100], &[1.0, 0.0, 1.0]);
        assert_eq!((t.chi2, t.df, t.verdict), (0.0, 1, Verdict::Ok));
        let t = goodness_of_fit(&[100, 1, 100], &[1.0, 0.0, 1.0]);
        assert_eq!((t.p_value, t.verdict), (0.0, Verdict::Mismatch));
        assert_eq!(
            goodness_of_fit(&[0, 0], &[1.0, 1.0]),
            ChiSquare::new(0.0, 0)
        );
        let t = goodness_of_fit(&[30, 20], &[1.0, 1.0]);
        assert!((t.chi2 - 2.0).abs() < 1e-12);
    }

    #[test]
    fn independence_ignores_empty_rows_and_columns() {
        // textbook 2x2: chi2 = n(ad - bc)^2 / (r1 r2 c1 c2)
        let t = independence(&[10, 20, 0, 30, 40, 0], 2, 3);
        let want = 100.0 * (10.0f64 * 40.0 - 20.0 * 30.0).powi(2) / (30.0 * 70.0 * 40.0 * 60.0);
        assert!((t.chi2 - want).abs() < 1e-12, "{t:?} vs {want}");
        assert_eq!(t.df, 1);
        assert_eq!(independence(&[5, 5], 1, 2).df, 0);
    }
}
