//! [`ReloadReport`]: what one reload attempt did, for logs, `abkit watch` and status.

use crate::guard::GuardResult;
pub use crate::outcome::Change;
use crate::registry::Snapshot;
use crate::status::{PluginState, Refusal, RefusalReason, Serving, ServingPlugin, Status};
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
    /// `Added`, `Removed`, `Updated` (another version or build), `Unchanged`, `Refused`;
    /// `Revoked` (its signer's key left `[trust]`) or `Expired` (its signature expired): the
    /// version stops serving, for an earlier one that may still serve or the builtin, and the
    /// reload applies.
    pub change: Change,
    /// What served before.
    pub from: Option<ServingPlugin>,
    /// What the candidate serves (for `refused`: the last good version that keeps serving, if
    /// any — not what was tried; see `tried`).
    pub to: Option<ServingPlugin>,
    /// For `refused`: the version the refused artifact is signed as, as its signature file
    /// claims (parsed, not verified, so it can be named even when verification refused it);
    /// `None` when that signature cannot be read or parsed, or in unsigned mode.
    pub tried: Option<u64>,
    /// Why the candidate artifact was refused, if it was.
    pub refusal: Option<Refusal>,
}

/// What happened to one experiment in a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExperimentChange {
    /// Experiment key.
    pub key: String,
    /// `Added`, `Removed`, `Changed`, `Unchanged`.
    pub change: Change,
    /// What decides after the reload (or before, for `removed`).
    pub serving: Serving,
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
                (Some(r), _, _, _) if r.reason == RefusalReason::Revoked => Change::Revoked,
                (Some(r), _, b, a) if r.reason == RefusalReason::Expired && b != a => {
                    Change::Expired
                }
                (Some(_), _, _, _) => Change::Refused,
                (None, PluginState::Active, None, _) => Change::Added,
                (None, _, Some(b), Some(a)) if b == a => Change::Unchanged,
                _ => Change::Updated,
            };
            let tried = if change == Change::Refused {
                tried_version(new, &p.name)
            } else {
                None
            };
            plugins.push(PluginChange {
                name: p.name.clone(),
                change,
                from: before,
                to: p.serving.clone(),
                tried,
                refusal: p.refusal.clone(),
            });
        }
        for o in &old_status.plugins {
            if !new_status.plugins.iter().any(|p| p.name == o.name) {
                plugins.push(PluginChange {
                    name: o.name.clone(),
                    change: Change::Removed,
                    from: o.serving.clone(),
                    to: None,
                    tried: None,
                    refusal: None,
                });
            }
        }
        let mut experiments = Vec::new();
        for e in &new_status.experiments {
            let change = match (old.experiment(&e.key), new.experiment(&e.key)) {
                (None, _) => Change::Added,
                (Some(a), Some(b))
                    if a == b
                        && old_status
                            .experiments
                            .iter()
                            .any(|o| o.key == e.key && o.serving == e.serving) =>
                {
                    Change::Unchanged
                }
                _ => Change::Changed,
            };
            experiments.push(ExperimentChange {
                key: e.key.clone(),
                change,
                serving: e.serving,
            });
        }
        for o in &old_status.experiments {
            if new.experiment(&o.key).is_none() {
                experiments.push(ExperimentChange {
                    key: o.key.clone(),
                    change: Change::Removed,
                    serving: o.serving,
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

/// The version a refused candidate of plugin `name` is signed as, per its signature file
/// (parsed, not verified): the report names what was tried, not what keeps serving.
fn tried_version(candidate: &Snapshot, name: &str) -> Option<u64> {
    let config = candidate.config();
    if config.trust.danger_allow_unsigned {
        return None;
    }
    let plugin = config.plugins.iter().find(|p| p.name == name)?;
    crate::trust::read_claimed_metadata(&plugin.signature)
        .ok()
        .map(|claimed| claimed.version)
}

/// Whether `r` says nothing `printed` did not: the same refusal, or the same one that a
/// reload's headline names its plugin in (`plugin "x": <the plugin's message>`).
fn same_refusal(printed: &Refusal, r: &Refusal) -> bool {
    printed.step == r.step && printed.reason == r.reason && printed.message.ends_with(&r.message)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_skipping(f, &[])
    }
}

impl ReloadReport {
    /// The text of [`Display`](fmt::Display), leaving out the refusals in `shown` (printed
    /// already, e.g. by the status this report is part of): each refusal is printed once.
    /// In a refused report, what the candidate would have changed is listed under
    /// `would have changed (not applied):`, never as if it went live.
    pub(crate) fn write_skipping(
        &self,
        f: &mut fmt::Formatter<'_>,
        shown: &[&Refusal],
    ) -> fmt::Result {
        let verdict = if self.accepted { "ACCEPTED" } else { "REFUSED" };
        writeln!(
            f,
            "reload ({}) {verdict}: serving generation {} [{} µs]",
            self.trigger, self.generation, self.duration_us
        )?;
        let mut printed: Vec<&Refusal> = shown.to_vec();
        let is_printed =
            |printed: &[&Refusal], r: &Refusal| printed.iter().any(|p| same_refusal(p, r));
        if let Some(r) = &self.refusal {
            if !is_printed(&printed, r) {
                writeln!(f, "  refused at {} ({}): {}", r.step, r.reason, r.message)?;
            }
            printed.push(r);
        }
        let refusal = |f: &mut fmt::Formatter<'_>, r: &Refusal, indent: &str| {
            if is_printed(&printed, r) {
                return Ok(());
            }
            writeln!(
                f,
                "{indent}refused at {} ({}): {}",
                r.step, r.reason, r.message
            )
        };
        let version =
            |s: &ServingPlugin| format!("v{} {}", s.version, &s.sha256[..s.sha256.len().min(12)]);
        let v = |s: &Option<ServingPlugin>| s.as_ref().map_or("-".to_string(), version);
        let plugin_line = |f: &mut fmt::Formatter<'_>, p: &PluginChange, indent: &str| {
            if p.change == Change::Refused {
                let tried = p
                    .tried
                    .map_or("a candidate of unknown version".to_string(), |t| {
                        format!("v{t}")
                    });
                let keeps = p.to.as_ref().map_or(
                    "nothing of it serves (its experiments on builtin:hash-v1)".to_string(),
                    |s| format!("{} keeps serving", version(s)),
                );
                writeln!(
                    f,
                    "{indent}plugin {:<16} {:<9} tried {tried}; {keeps}",
                    p.name, p.change
                )
            } else {
                writeln!(
                    f,
                    "{indent}plugin {:<16} {:<9} {} -> {}",
                    p.name,
                    p.change,
                    v(&p.from),
                    v(&p.to)
                )
            }
        };
        // What happened (accepted), or what stands (refused: the refusals, the unchanged).
        let applies = |change: Change| {
            self.accepted || change == Change::Refused || change == Change::Unchanged
        };
        for p in self.plugins.iter().filter(|p| applies(p.change)) {
            plugin_line(f, p, "  ")?;
            if let Some(r) = &p.refusal {
                refusal(f, r, "    ")?;
            }
        }
        let experiment_line = |f: &mut fmt::Formatter<'_>, e: &ExperimentChange, indent: &str| {
            writeln!(
                f,
                "{indent}experiment {:<18} {:<9} serving {}",
                e.key, e.change, e.serving
            )
        };
        if self.accepted {
            for e in self
                .experiments
                .iter()
                .filter(|e| e.change != Change::Unchanged)
            {
                experiment_line(f, e, "  ")?;
            }
        } else {
            let plugins: Vec<&PluginChange> =
                self.plugins.iter().filter(|p| !applies(p.change)).collect();
            let experiments: Vec<&ExperimentChange> = self
                .experiments
                .iter()
                .filter(|e| e.change != Change::Unchanged)
                .collect();
            if !plugins.is_empty() || !experiments.is_empty() {
                writeln!(f, "  would have changed (not applied):")?;
            }
            for p in plugins {
                plugin_line(f, p, "    ")?;
                if let Some(r) = &p.refusal {
                    refusal(f, r, "      ")?;
                }
            }
            for e in experiments {
                experiment_line(f, e, "    ")?;
            }
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
