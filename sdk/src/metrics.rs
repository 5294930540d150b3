//! Counters through the `metrics` facade (install any recorder — Prometheus, StatsD … — to
//! export them; without one they cost nothing):
//!
//! | counter | labels |
//! |---|---|
//! | `abkit_reloads_total` | `outcome` = `accepted` / `refused`, `reason` |
//! | `abkit_fallbacks_total` | `experiment`, `reason` (plugin errors, invalid answers, demotion) |
//! | `abkit_assignments_total` | `experiment`, `variant` (empty when not enrolled) |
//! | `abkit_exposures_dropped_total` | (none): exposure events dropped by a full [`crate::exposure::ExposureChannel`] |
//! | `abkit_etcd_watch_lost_total` | (none): times the etcd watch broke (feature `etcd`; once per outage, reconnects follow) |
//! | `abkit_etcd_watch_compacted_total` | (none): etcd watches cancelled by a compaction (re-read, re-watched) |
//! | `abkit_etcd_revision` (gauge) | (none): the etcd revision of the document serving |
//! | `abkit_exposures_deduplicated_total` | (none): exposure events dropped as repeats by an [`crate::exposure::ExposureDedup`] |
//! | `abkit_exposures_passed_total` | (none): exposure events an [`crate::exposure::ExposureDedup`] let through |
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
