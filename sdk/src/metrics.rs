//! Counters through the `metrics` facade (install any recorder — Prometheus, StatsD … — to
//! export them; without one they cost nothing):
//!
//! | counter | labels |
//! |---|---|
//! | `abkit_reloads_total` | `outcome` = `accepted` / `refused`, `reason` |
//! | `abkit_fallbacks_total` | `experiment`, `reason` (plugin errors, invalid answers, demotion) |
//! | `abkit_assignments_total` | `experiment`, `variant` (see [`crate::Sdk::count_assignments`]) |

use crate::reload::ReloadReport;

/// Counts one reload attempt.
pub(crate) fn reload(report: &ReloadReport) {
    let (outcome, reason) = match &report.refusal {
        None => ("accepted", "none"),
        Some(r) => ("refused", r.reason),
    };
    metrics::counter!("abkit_reloads_total", "outcome" => outcome, "reason" => reason).increment(1);
}
