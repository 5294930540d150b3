//! [`ReloadReport`]: what one reload attempt did, for logs, `abkit watch` and status.

use crate::guard::GuardResult;
use crate::registry::Snapshot;
use crate::status::{PluginState, Refusal, ServingPlugin, Status};
use serde::Serialize;
use std::fmt;

/// One reload attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadReport {
    /// What started it: `file`, `sighup`, `api`, `initial` ...
    pub trigger: String,
    /// When it finished (ms since the Unix epoch).
    pub at_unix_ms: u64,
    /// Whether the candidate went live.
    pub accepted: bool,
    /// The serving generation after this attempt.
    pub generation: u64,
    /// Why the whole candidate was refused (config invalid, a plugin refused, a guard).
    pub refusal: Option<Refusal>,
    /// Per plugin: what changed.
    pub plugins: Vec<PluginChange>,
    /// Per experiment: what changed.
    pub experiments: Vec<ExperimentChange>,
    /// Guard outcomes.
    pub guards: Vec<GuardResult>,
    /// How long the attempt took, in microseconds.
    pub duration_us: u64,
}

/// What happened to one plugin in a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginChange {
    /// Plugin name.
    pub name: String,
    /// `added`, `removed`, `updated` (another version or build), `unchanged`, `refused`;
    /// `revoked` (its signer's key left `[trust]`) or `expired` (its signature expired): the
    /// version stops serving, for an earlier one that may still serve or the builtin, and the
    /// reload applies.
    pub change: &'static str,
    /// What served before.
    pub from: Option<ServingPlugin>,
    /// What the candidate serves.
    pub to: Option<ServingPlugin>,
    /// Why the candidate artifact was refused, if it was.
    pub refusal: Option<Refusal>,
}

/// What happened to one experiment in a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExperimentChange {
    /// Experiment key.
    pub key: String,
    /// `added`, `removed`, `changed`, `unchanged`.
    pub change: &'static str,
    /// What decides after the reload (or before, for `removed`).
    pub serving: String,
}

impl ReloadReport {
    /// A report of a candidate compared with what serves.
    pub(crate) fn compare(
        trigger: &str,
        old: &Snapshot,
        old_status: &Status,
        new: &Snapshot,
        new_status: &Status,
    ) -> ReloadReport {
        let mut plugins = Vec::new();
        for p in &new_status.plugins {
            let before = old_status
                .plugins
                .iter()
                .find(|o| o.name == p.name)
                .and_then(|o| o.serving.clone());
            let change = match (&p.refusal, p.state, &before, &p.serving) {
                (Some(r), _, _, _) if r.reason == "revoked" => "revoked",
                (Some(r), _, b, a) if r.reason == "expired" && b != a => "expired",
                (Some(_), _, _, _) => "refused",
                (None, PluginState::Active, None, _) => "added",
                (None, _, Some(b), Some(a)) if b == a => "unchanged",
                _ => "updated",
            };
            plugins.push(PluginChange {
                name: p.name.clone(),
                change,
                from: before,
                to: p.serving.clone(),
                refusal: p.refusal.clone(),
            });
        }
        for o in &old_status.plugins {
            if !new_status.plugins.iter().any(|p| p.name == o.name) {
                plugins.push(PluginChange {
                    name: o.name.clone(),
                    change: "removed",
                    from: o.serving.clone(),
                    to: None,
                    refusal: None,
                });
            }
        }
        let mut experiments = Vec::new();
        for e in &new_status.experiments {
            let change = match (old.experiment(&e.key), new.experiment(&e.key)) {
                (None, _) => "added",
                (Some(a), Some(b))
                    if a == b
                        && old_status
                            .experiments
                            .iter()
                            .any(|o| o.key == e.key && o.serving == e.serving) =>
                {
                    "unchanged"
                }
                _ => "changed",
            };
            experiments.push(ExperimentChange {
                key: e.key.clone(),
                change,
                serving: e.serving.clone(),
            });
        }
        for o in &old_status.experiments {
            if new.experiment(&o.key).is_none() {
                experiments.push(ExperimentChange {
                    key: o.key.clone(),
                    change: "removed",
                    serving: o.serving.clone(),
                });
            }
        }
        ReloadReport {
            trigger: trigger.to_string(),
            at_unix_ms: now_ms(),
            accepted: false,
            generation: old.generation(),
            refusal: None,
            plugins,
            experiments,
            guards: Vec::new(),
            duration_us: 0,
        }
    }

    /// A report of a candidate refused before a snapshot could be built (e.g. invalid config).
    pub(crate) fn refused_early(trigger: &str, generation: u64, refusal: Refusal) -> ReloadReport {
        ReloadReport {
            trigger: trigger.to_string(),
            at_unix_ms: now_ms(),
            accepted: false,
            generation,
            refusal: Some(refusal),
            plugins: Vec::new(),
            experiments: Vec::new(),
            guards: Vec::new(),
            duration_us: 0,
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.accepted { "ACCEPTED" } else { "REFUSED" };
        writeln!(
            f,
            "reload ({}) {verdict}: serving generation {} [{} µs]",
            self.trigger, self.generation, self.duration_us
        )?;
        if let Some(r) = &self.refusal {
            writeln!(f, "  refused at {} ({}): {}", r.step, r.reason, r.message)?;
        }
        for p in &self.plugins {
            let v = |s: &Option<ServingPlugin>| {
                s.as_ref().map_or("-".to_string(), |s| {
                    format!("v{} {}", s.version, &s.sha256[..s.sha256.len().min(12)])
                })
            };
            writeln!(
                f,
                "  plugin {:<16} {:<9} {} -> {}",
                p.name,
                p.change,
                v(&p.from),
                v(&p.to)
            )?;
            if let Some(r) = &p.refusal {
                writeln!(f, "    refused at {} ({}): {}", r.step, r.reason, r.message)?;
            }
        }
        for e in self.experiments.iter().filter(|e| e.change != "unchanged") {
            writeln!(
                f,
                "  experiment {:<18} {:<9} serving {}",
                e.key, e.change, e.serving
            )?;
        }
        for g in self.guards.iter().filter(|g| !g.passed) {
            writeln!(
                f,
                "  guard {} on {} FAILED: {}",
                g.guard, g.experiment, g.detail
            )?;
        }
        Ok(())
    }
}
