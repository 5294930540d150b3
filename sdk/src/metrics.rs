//! Counters through the `metrics` facade (install any recorder — Prometheus, StatsD … — to
//! export them; without one they cost nothing):
//!
//! | counter | labels |
//! |---|---|
//! | `abkit_reloads_total` | `outcome` = `accepted` / `refused`, `reason` |
//! | `abkit_fallbacks_total` | `experiment`, `reason` (plugin errors, invalid answers, demotion) |
//! | `abkit_assignments_total` | `experiment`, `variant` (empty when not enrolled) |
//! | `abkit_exposures_dropped_total` | (none): exposure events dropped by a full [`crate::exposure::ExposureChannel`] |
//!
//! Per-experiment handles are registered when a snapshot is built: install the recorder
//! before building the [`crate::Sdk`] (a recorder installed later is picked up at the next reload).

use crate::reload::ReloadReport;

/// Counts one reload attempt.
pub(crate) fn reload(report: &ReloadReport) {
    let (outcome, reason) = match &report.refusal {
        None => ("accepted", "none"),
        Some(r) => ("refused", r.reason.as_str()),
    };
    metrics::counter!("abkit_reloads_total", "outcome" => outcome, "reason" => reason).increment(1);
}
