//! What `Sdk::status()` reports: per plugin what serves and why, per experiment which strategy
//! really decides, and the process-wide facts (generation, libraries mapped).

use crate::config::{ConfigError, PluginConfig, StrategyRef};
use crate::loader::{LoadError, PluginIdentity};
pub use crate::outcome::{RefusalCause, RefusalReason, Serving, Step};
use crate::probe::ProbeError;
use crate::strategy::StrategyCounters;
use crate::trust::TrustError;
use serde::Serialize;
use std::sync::Arc;

/// Most bytes of text a plugin may put into status, reports and logs (names, versions, error
/// and rejection messages); longer text is cut at a character boundary and marked.
pub const PLUGIN_TEXT_MAX_BYTES: usize = 1024;

/// `text` from a plugin, cut to [`PLUGIN_TEXT_MAX_BYTES`] (with a note of the original length):
/// a plugin must not turn status or a log line into megabytes.
pub(crate) fn clip_plugin_text(text: &str) -> String {
    ClippedText(text).to_string()
}

/// Displays plugin text cut to [`PLUGIN_TEXT_MAX_BYTES`] without allocating (for log lines on
/// the assign path).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClippedText<'a>(pub(crate) &'a str);

impl std::fmt::Display for ClippedText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0;
        if text.len() <= PLUGIN_TEXT_MAX_BYTES {
            return f.write_str(text);
        }
        let mut end = PLUGIN_TEXT_MAX_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}... [cut: {} bytes in all]", &text[..end], text.len())
    }
}

/// A refusal: the pipeline step that refused, a stable reason code, the full message, and the
/// typed error behind it when there is one.
///
/// Serialises as `{"step": ..., "reason": ..., "message": ...}` (the cause is not serialised:
/// the message is its text). Two refusals are equal when step, reason and message are.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Refusal {
    /// The step that refused.
    pub step: Step,
    /// The stable reason code, e.g. `bad_signature`, `unknown_key_id`, `probe_nondeterministic`.
    pub reason: RefusalReason,
    /// What was wrong, where, and what to do.
    pub message: String,
    #[serde(skip)]
    cause: Option<RefusalCause>,
}

impl PartialEq for Refusal {
    fn eq(&self, other: &Self) -> bool {
        self.step == other.step && self.reason == other.reason && self.message == other.message
    }
}

impl Eq for Refusal {}

impl Refusal {
    /// A refusal the SDK decides itself (no typed error behind it).
    pub(crate) fn new(step: Step, reason: RefusalReason, message: String) -> Self {
        Refusal {
            step,
            reason,
            message,
            cause: None,
        }
    }

    /// A refusal of the `[trust]` table, the trust store or the ledger (step `trust`).
    pub(crate) fn trust(e: TrustError) -> Self {
        Refusal {
            step: Step::Trust,
            reason: e.reason(),
            message: e.to_string(),
            cause: Some(RefusalCause::Trust(Arc::new(e))),
        }
    }

    /// A refusal of the loader, at the step that refused.
    pub(crate) fn load(e: LoadError) -> Self {
        Refusal {
            step: e.step(),
            reason: e.reason(),
            message: e.to_string(),
            cause: Some(RefusalCause::Load(Arc::new(e))),
        }
    }

    /// A refusal of the probe, with the message `message` (it names the experiment).
    pub(crate) fn probe(e: ProbeError, message: String) -> Self {
        Refusal {
            step: Step::Probe,
            reason: e.reason(),
            message,
            cause: Some(RefusalCause::Probe(e)),
        }
    }

    /// A refusal of an invalid configuration (step `config`).
    pub(crate) fn config(e: ConfigError) -> Self {
        Refusal {
            step: Step::Config,
            reason: RefusalReason::InvalidConfig,
            message: e.to_string(),
            cause: Some(RefusalCause::Config(Arc::new(e))),
        }
    }

    /// The same refusal (cause included) with another message.
    pub(crate) fn with_message(&self, message: String) -> Self {
        Refusal {
            message,
            ..self.clone()
        }
    }

    /// The typed error behind this refusal, if there is one.
    pub fn cause(&self) -> Option<&RefusalCause> {
        self.cause.as_ref()
    }
}

/// The state of a configured plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// The configured artifact passed every check and serves.
    Active,
    /// The configured artifact was refused; the last good version keeps serving.
    LastGood,
    /// Refused and no good version was ever loaded: its experiments use `builtin:hash-v1`.
    Fallback,
}

/// The plugin version that serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServingPlugin {
    /// Signed name.
    pub name: String,
    /// Signed version.
    pub version: u64,
    /// SHA-256 of the library (hex).
    pub sha256: String,
    /// Signer key id.
    pub key_id: String,
    /// When its signature expires (unix seconds; it stops serving at the next reload after
    /// that second, which the watcher schedules), if it does.
    pub expires: Option<u64>,
}

impl From<&PluginIdentity> for ServingPlugin {
    fn from(i: &PluginIdentity) -> Self {
        ServingPlugin {
            name: i.name.clone(),
            version: i.version,
            sha256: i.sha256.clone(),
            key_id: i.key_id.clone(),
            expires: i.expires,
        }
    }
}

/// One configured plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginStatus {
    /// Configured name.
    pub name: String,
    /// Configured path.
    pub path: String,
    /// Active, last good, or fallback.
    pub state: PluginState,
    /// What serves (absent in `fallback`).
    pub serving: Option<ServingPlugin>,
    /// Why the configured artifact was refused, if it was.
    pub refusal: Option<Refusal>,
}

impl PluginStatus {
    pub(crate) fn new(
        p: &PluginConfig,
        state: PluginState,
        serving: Option<ServingPlugin>,
        refusal: Option<Refusal>,
    ) -> Self {
        PluginStatus {
            name: p.name.clone(),
            path: p.path.display().to_string(),
            state,
            serving,
            refusal,
        }
    }
}

/// One experiment: which strategy really decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExperimentStatus {
    /// Experiment key.
    pub key: String,
    /// The configured strategy (`builtin:hash-v1` or `plugin:<name>`).
    pub configured: StrategyRef,
    /// What decides now; serialised and displayed as e.g.
    /// `plugin:switchback v3 (1a2b3c4d5e6f, key 8F1E...)` or
    /// `builtin:hash-v1 (fallback: plugin_refused)`.
    pub serving: Serving,
    /// Live counters when a plugin serves.
    pub counters: Option<StrategyCounters>,
    /// What the serving plugin strategy declared it randomises by (absent for the builtin,
    /// which randomises by unit id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub randomisation: Option<crate::strategy::Randomisation>,
    /// Since when and why its plugin is demoted to the builtin (it stays demoted across
    /// reloads until a new artifact or spec is accepted, or `Sdk::reset_demotion`).
    pub demotion: Option<crate::strategy::Demotion>,
    /// Why this experiment does not use its plugin, if it was refused on its own.
    pub refusal: Option<Refusal>,
}

/// The whole status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Snapshot generation (1 = the first, +1 per accepted reload).
    pub generation: u64,
    /// Distinct plugin libraries mapped by this process (never unloaded).
    pub loaded_libraries: usize,
    /// `trust.danger_allow_unsigned` is on: plugins are loaded WITHOUT signature checks.
    pub danger_unsigned_plugins: bool,
    /// Plugin calls (strategy construction, probes, guards) abandoned past their deadline in
    /// this process; each still holds a thread.
    pub abandoned_plugin_calls: u64,
    /// Why the accepted plugin versions could not be written to the state directory's ledger
    /// (rollback protection across restarts is then not guaranteed); `None` when all is well.
    pub ledger_problem: Option<String>,
    /// Configured plugins.
    pub plugins: Vec<PluginStatus>,
    /// Experiments.
    pub experiments: Vec<ExperimentStatus>,
    /// The last reload attempt (accepted or refused), if any.
    pub last_reload: Option<crate::reload::ReloadReport>,
    /// Where the configuration comes from (file or etcd), the revision serving, when it was
    /// last confirmed current and the watch's health; `None` for a configuration from memory.
    pub source: Option<crate::source::SourceStatus>,
}

/// `1 plugin library`, `2 plugin libraries`: the count with the right form of the noun.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "generation {} | {} mapped",
            self.generation,
            plural(
                self.loaded_libraries as u64,
                "plugin library",
                "plugin libraries"
            )
        )?;
        if self.danger_unsigned_plugins {
            writeln!(
                f,
                "!! DANGER: unsigned plugins allowed (trust.danger_allow_unsigned) !!"
            )?;
        }
        if self.abandoned_plugin_calls > 0 {
            writeln!(
                f,
                "!! {} abandoned past their deadline (their threads still run) !!",
                plural(self.abandoned_plugin_calls, "plugin call", "plugin calls")
            )?;
        }
        if let Some(source) = &self.source {
            write!(f, "{source}")?;
        }
        if let Some(problem) = &self.ledger_problem {
            writeln!(
                f,
                "!! the accepted-versions ledger could not be persisted: {problem} !!"
            )?;
        }
        for p in &self.plugins {
            let serving = p.serving.as_ref().map_or("-".to_string(), |s| {
                format!(
                    "v{} sha256 {} key {}",
                    s.version,
                    &s.sha256[..s.sha256.len().min(12)],
                    s.key_id
                )
            });
            let state = match p.state {
                PluginState::Active => "active",
                PluginState::LastGood => "refused, serving last good",
                PluginState::Fallback => "refused, experiments on builtin:hash-v1",
            };
            writeln!(f, "plugin {:<14} {:<40} {serving}", p.name, state)?;
            if let Some(r) = &p.refusal {
                writeln!(f, "  refused at {} ({}): {}", r.step, r.reason, r.message)?;
            }
        }
        for e in &self.experiments {
            write!(
                f,
                "experiment {:<18} configured {:<22} serving {}",
                e.key, e.configured, e.serving
            )?;
            if let Some(c) = &e.counters {
                write!(
                    f,
                    " [calls {} errors {} invalid {}{}]",
                    c.calls,
                    c.errors,
                    c.invalid_answers,
                    if c.demoted { " DEMOTED" } else { "" }
                )?;
            }
            writeln!(f)?;
            if let Some(r @ crate::strategy::Randomisation::Attribute { .. }) = &e.randomisation {
                writeln!(f, "  randomised by {r}")?;
            }
            if let Some(d) = &e.demotion {
                writeln!(
                    f,
                    "  demoted since {}: {}",
                    crate::trust::format_utc(d.since_ms / 1000),
                    d.why
                )?;
            }
            if let Some(r) = &e.refusal {
                writeln!(f, "  refused at {} ({}): {}", r.step, r.reason, r.message)?;
            }
        }
        if let Some(r) = &self.last_reload {
            // Refusals printed above are not printed again in the report.
            let shown: Vec<&Refusal> = self
                .plugins
                .iter()
                .filter_map(|p| p.refusal.as_ref())
                .chain(self.experiments.iter().filter_map(|e| e.refusal.as_ref()))
                .collect();
            write!(f, "last ")?;
            r.write_skipping(f, &shown)?;
        }
        Ok(())
    }
}
