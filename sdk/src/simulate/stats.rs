//! Tests on integer counts: goodness of fit (sample-ratio mismatch) and independence of two
//! experiments. Pearson's chi-square (p-values from the chi-squared survival function,
//! `statrs`) when every expected count is at least 5; below that, the exact binomial test (two
//! cells) or Fisher's exact test (2x2), else no p-value: verdict `insufficient_data`.
//! A report adjusts all its p-values together with Holm's method (`p_adjusted`); verdicts
//! follow the adjusted p-value.
//!
//! Everything here is a pure function of merged integer counts, so results do not depend on
//! how many threads produced them.

use crate::srm::{self, Fit, Method};
use serde::Serialize;

/// Below this (Holm-adjusted) p-value a test's verdict is [`Verdict::Mismatch`]: the
/// family-wise error rate of a whole report.
pub const ALPHA: f64 = 0.001;

/// The outcome of a test against its expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Consistent with the expectation (adjusted `p >= 0.001`).
    Ok,
    /// Inconsistent with the expectation (adjusted `p < 0.001`).
    Mismatch,
    /// An expected count below 5 and no exact test for this shape: no p-value, no verdict.
    InsufficientData,
    /// The test does not apply (see the report's note), e.g. units randomised in clusters.
    NotApplicable,
}

impl Verdict {
    /// `ok` or `mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Mismatch => "mismatch",
            Verdict::InsufficientData => "insufficient_data",
            Verdict::NotApplicable => "not_applicable",
        }
    }
}

/// A test's statistic, degrees of freedom, raw and adjusted p-values, method and verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChiSquare {
    /// Pearson's statistic (`f64::INFINITY` when a count falls where nothing is expected; JSON
    /// `null`). Reported whatever the method.
    pub chi2: f64,
    /// Degrees of freedom (0: nothing to test; then `p_value` is 1, or 0 for an impossible count).
    pub df: u32,
    /// Raw p-value of the test `method` names (`NaN`, JSON `null`: insufficient data).
    pub p_value: f64,
    /// The p-value after Holm's adjustment across every test of the report (equal to
    /// `p_value` for a test on its own). Verdicts follow it.
    pub p_adjusted: f64,
    /// `chi-square`, `exact binomial`, `fisher exact`, `insufficient data`, `nothing to test`,
    /// `impossible count`, or `not applicable`.
    pub method: Method,
    /// `ok` if `p_adjusted >= 0.001`, `mismatch` below, `insufficient_data` without a p-value,
    /// `not_applicable` when the test does not apply.
    pub verdict: Verdict,
}

impl ChiSquare {
    #[cfg(test)]
    fn new(chi2: f64, df: u32) -> ChiSquare {
        use statrs::distribution::{ChiSquared, ContinuousCDF};
        let p = if df == 0 || chi2 <= 0.0 {
            1.0
        } else {
            ChiSquared::new(f64::from(df)).map_or(1.0, |d| d.sf(chi2))
        };
        ChiSquare {
            chi2,
            df,
            method: if df == 0 {
                srm::Method::Nothing
            } else {
                srm::Method::ChiSquare
            },
            ..ChiSquare::of(Fit {
                chi2,
                df,
                p_value: p,
                method: srm::Method::ChiSquare,
            })
        }
    }

    pub(crate) fn of(f: Fit) -> ChiSquare {
        let mut t = ChiSquare {
            chi2: f.chi2,
            df: f.df,
            p_value: f.p_value,
            p_adjusted: f.p_value,
            method: f.method,
            verdict: Verdict::Ok,
        };
        t.set_adjusted(f.p_value);
        t
    }

    /// A test that does not apply (the reason is in the report).
    pub(crate) fn not_applicable() -> ChiSquare {
        ChiSquare {
            chi2: 0.0,
            df: 0,
            p_value: f64::NAN,
            p_adjusted: f64::NAN,
            method: Method::NotApplicable,
            verdict: Verdict::NotApplicable,
        }
    }

    /// Sets the adjusted p-value and the verdict that follows from it.
    pub(crate) fn set_adjusted(&mut self, p: f64) {
        if self.verdict == Verdict::NotApplicable {
            return;
        }
        self.p_adjusted = p;
        self.verdict = if p.is_nan() {
            Verdict::InsufficientData
        } else if p >= ALPHA {
            Verdict::Ok
        } else {
            Verdict::Mismatch
        };
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
    ChiSquare::of(srm::goodness_of_fit(observed, expected_weights))
}

/// Test of independence on a `rows x cols` contingency table (row-major): Pearson's
/// chi-square, or Fisher's exact test for a 2x2 table with an expected count below 5 (larger
/// tables with one: insufficient data). Empty rows and columns are left out;
/// `df = (r - 1)(c - 1)` over the rest.
///
/// ```
/// use abkit::simulate::stats::{independence, Verdict};
/// assert_eq!(independence(&[250, 250, 250, 250], 2, 2).verdict, Verdict::Ok);
/// assert_eq!(independence(&[500, 0, 0, 500], 2, 2).verdict, Verdict::Mismatch);
/// ```
pub fn independence(table: &[u64], rows: usize, cols: usize) -> ChiSquare {
    ChiSquare::of(srm::independence(table, rows, cols))
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
