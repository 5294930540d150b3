//! Configuration: TOML text -> raw serde structs -> a validated [`Config`].
//!
//! Validation reports **every** mistake at once, each with its field path
//! (`experiments[2].variants[1].weight`), so one `abkit check` run shows all of them.
//! After validation nothing about an experiment can fail at assignment time.

mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use validate::MAX_PREREQUISITE_DEPTH;
pub use validate::STRATEGY_BUILTIN;

/// Name pattern shared by plugins: `[a-z0-9][a-z0-9_-]{0,63}` (see `docs/plugin-signing.md`); the
/// same rule the signer and the signed-metadata parser apply (one home: `abkit_signing::metadata`).
pub use abkit_signing::metadata::is_valid_name as is_valid_plugin_name;

/// A validated configuration: every experiment can be evaluated without error.
///
/// Only [`Config::from_toml_str`] and [`Config::from_file`] make one (they parse and validate),
/// and its fields are read through getters, so every `Config` a user holds is valid:
/// [`crate::Sdk::assign`] cannot fail or panic on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Experiments in file order; keys are unique.
    pub(crate) experiments: Vec<ExperimentConfig>,
    /// Layers (declared in `[[layers]]` or implied by an experiment's `layer.name`).
    pub(crate) layers: Vec<LayerConfig>,
    /// Trusted keys and state for signed plugins.
    pub(crate) trust: TrustConfig,
    /// Declared strategy plugins.
    pub(crate) plugins: Vec<PluginConfig>,
    /// The `[reload]` table.
    pub(crate) reload: ReloadConfig,
    /// The `[preflight]` table: run every new plugin artifact in a child process first.
    pub(crate) preflight: Option<PreflightConfig>,
    /// Holdouts (`[[holdouts]]`): units kept out of the experiments they list.
    pub(crate) holdouts: Vec<HoldoutConfig>,
    /// Directory that relative paths are resolved against (the config file's directory).
    pub(crate) base_dir: PathBuf,
}

/// Which strategy decides an experiment's variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StrategyRef {
    /// The built-in bucketer `builtin:hash-v1`.
    Builtin,
    /// A plugin declared in `[[plugins]]`, by name (`plugin:<name>`).
    Plugin(String),
}

/// Serialised as its text, `builtin:hash-v1` or `plugin:<name>`.
impl serde::Serialize for StrategyRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for StrategyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `pad`: status lines align the configured strategy in a column.
            StrategyRef::Builtin => f.pad(STRATEGY_BUILTIN),
            StrategyRef::Plugin(name) => f.pad(&format!("plugin:{name}")),
        }
    }
}

/// One validated experiment (read-only: it comes from a [`Config`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentConfig {
    /// Unique key, used by `assign`.
    pub(crate) key: String,
    /// Hash salt (defaults to the key).
    pub(crate) salt: String,
    /// Whether the experiment enrols anybody.
    pub(crate) enabled: bool,
    /// Coverage as a fraction in `[0, 1]`.
    pub(crate) coverage: f64,
    /// Coverage in basis points, `floor(coverage * 10000 + 0.5)`.
    pub(crate) coverage_bp: u32,
    /// The strategy that decides.
    pub(crate) strategy: StrategyRef,
    /// The strategy's own configuration as JSON text (`{}` when absent).
    pub(crate) strategy_config_json: String,
    /// Variants in order, each with its weight.
    pub(crate) variants: Vec<VariantConfig>,
    /// Forced assignments: unit id -> variant index.
    pub(crate) overrides: Vec<(String, u32)>,
    /// Targeting: every attribute must equal one of its listed values.
    pub(crate) targeting: Vec<(String, Vec<String>)>,
    /// The experiment's slice of a layer, if any.
    pub(crate) layer: Option<LayerSlice>,
    /// Largest fraction of enrolled units a reload may move (reassignment guard), if set.
    pub(crate) max_reassignment: Option<f64>,
    /// Marks a change as intended: the reassignment guard lets it through.
    pub(crate) intended_change: bool,
    /// What is hashed instead of the unit id (`bucket_by`): the first of these attributes the
    /// unit has (`"unit"` names the unit id). Empty: the unit id.
    pub(crate) bucket_by: Vec<String>,
    /// `requires`: the experiment enrols only units that another one assigns to one of the
    /// listed variants.
    pub(crate) requires: Option<Requirement>,
}

/// `requires = { experiment, variants }`: a prerequisite experiment and the variants of it
/// whose units may enrol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub(crate) experiment: String,
    pub(crate) variants: Vec<u32>,
}

impl Requirement {
    /// The prerequisite experiment's key.
    pub fn experiment(&self) -> &str {
        &self.experiment
    }

    /// Indices (in the prerequisite's variant list) of the variants that admit a unit.
    pub fn variants(&self) -> &[u32] {
        &self.variants
    }
}

/// A holdout: a share of units kept out of every experiment it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutConfig {
    pub(crate) name: String,
    pub(crate) salt: String,
    pub(crate) coverage: f64,
    pub(crate) coverage_bp: u32,
    pub(crate) experiments: Vec<String>,
    pub(crate) layers: Vec<String>,
    pub(crate) bucket_by: Vec<String>,
}

impl HoldoutConfig {
    /// Its name (unique), e.g. `h2026`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Salt of the holdout bucket (defaults to the name).
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// The share held out, as a fraction.
    pub fn coverage(&self) -> f64 {
        self.coverage
    }

    /// The share held out in basis points: a unit is held out iff its holdout bucket is below.
    pub fn coverage_bp(&self) -> u32 {
        self.coverage_bp
    }

    /// Experiments it covers by key; `["*"]` covers every experiment.
    pub fn experiments(&self) -> &[String] {
        &self.experiments
    }

    /// Layers whose experiments it covers.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// What is hashed (as an experiment's `bucket_by`); empty: the unit id.
    pub fn bucket_by(&self) -> &[String] {
        &self.bucket_by
    }

    /// Whether the holdout covers experiment `e`.
    pub fn covers(&self, e: &ExperimentConfig) -> bool {
        self.experiments.iter().any(|k| k == "*" || *k == e.key)
            || e.layer
                .as_ref()
                .is_some_and(|s| self.layers.contains(&s.layer))
    }
}

impl ExperimentConfig {
    /// Unique key, used by `assign`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Hash salt (defaults to the key).
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// Whether the experiment enrols anybody.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Coverage as a fraction in `[0, 1]`.
    pub fn coverage(&self) -> f64 {
        self.coverage
    }

    /// Coverage in basis points, `floor(coverage * 10000 + 0.5)`.
    pub fn coverage_bp(&self) -> u32 {
        self.coverage_bp
    }

    /// The strategy that decides.
    pub fn strategy(&self) -> &StrategyRef {
        &self.strategy
    }

    /// The strategy's own configuration as JSON text (`{}` when absent).
    pub fn strategy_config_json(&self) -> &str {
        &self.strategy_config_json
    }

    /// Variants in order, each with its weight.
    pub fn variants(&self) -> &[VariantConfig] {
        &self.variants
    }

    /// Forced assignments: unit id -> variant index (always a valid index).
    pub fn overrides(&self) -> &[(String, u32)] {
        &self.overrides
    }

    /// Targeting: every attribute must equal one of its listed values.
    pub fn targeting(&self) -> &[(String, Vec<String>)] {
        &self.targeting
    }

    /// The experiment's slice of a layer, if any.
    pub fn layer(&self) -> Option<&LayerSlice> {
        self.layer.as_ref()
    }

    /// Largest fraction of enrolled units a reload may move (reassignment guard), if set.
    pub fn max_reassignment(&self) -> Option<f64> {
        self.max_reassignment
    }

    /// Whether the change is marked as intended (the reassignment guard lets it through).
    pub fn intended_change(&self) -> bool {
        self.intended_change
    }

    /// What is hashed instead of the unit id (`bucket_by`); empty: the unit id.
    pub fn bucket_by(&self) -> &[String] {
        &self.bucket_by
    }

    /// The prerequisite (`requires`), if any.
    pub fn requires(&self) -> Option<&Requirement> {
        self.requires.as_ref()
    }

    /// The weights, in variant order.
    pub fn weights(&self) -> Vec<u32> {
        self.variants.iter().map(|v| v.weight).collect()
    }
}

/// One variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantConfig {
    /// Name shown in results (`control`, `treatment` ...).
    pub name: String,
    /// Non-negative weight.
    pub weight: u32,
}

/// An experiment's `[start, end)` slice of a layer's 10000 buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSlice {
    /// The layer's name.
    pub layer: String,
    /// First bucket of the slice.
    pub start: u32,
    /// One past the last bucket of the slice.
    pub end: u32,
}

/// A layer: a namespace of mutually exclusive experiments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerConfig {
    /// Layer name.
    pub name: String,
    /// Salt of the layer bucket (defaults to the name).
    pub salt: String,
    /// What the layer bucket hashes (as an experiment's `bucket_by`); empty: the unit id.
    pub bucket_by: Vec<String>,
}

/// The `[preflight]` table (or `SdkBuilder::preflight`): before an artifact not yet accepted in
/// this process is mapped here, `COMMAND preflight` maps it in a child process, builds its
/// strategies, runs the probe and the guard populations, and reports; a child that crashes,
/// exits without a result or times out refuses the artifact (`preflight_crashed`,
/// `preflight_timeout`) and the serving process never maps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreflightConfig {
    /// An `abkit` binary: an absolute path, or a name looked up on `PATH`.
    pub command: std::path::PathBuf,
    /// How long the child may take (default 20 s); past it, it is killed.
    pub timeout: std::time::Duration,
}

impl PreflightConfig {
    /// The default child timeout: 20 s.
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

    /// Preflight with `command` and the default timeout.
    pub fn new(command: impl Into<std::path::PathBuf>) -> Self {
        PreflightConfig {
            command: command.into(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// This value with the child timeout set to `timeout`.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The `[reload]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadConfig {
    /// `deadline_ms`: how long each plugin call a reload makes (`new_strategy`, the probe, the
    /// guards) may take before the candidate is refused `deadline_exceeded`. `None`: the
    /// builder's setting (default 10 s).
    pub deadline: Option<std::time::Duration>,
}

/// The `[trust]` table; also what [`crate::TrustStore::from_config`] takes:
/// `TrustConfig::default().with_public_key_files(..)` (`#[non_exhaustive]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustConfig {
    /// Inline minisign public keys (base64 line).
    pub public_keys: Vec<String>,
    /// Minisign `.pub` files, resolved against the config directory.
    pub public_key_files: Vec<PathBuf>,
    /// Optional state directory: the accepted-versions ledger (rollback protection across
    /// restarts). Must be owned by this user (or root), not a symlink, mode 0700.
    pub state_dir: Option<PathBuf>,
    /// Sonames a plugin may name in `DT_NEEDED`; `None` means
    /// [`crate::loader::elf::DEFAULT_ALLOWED_LIBRARIES`]. A set list replaces the default.
    pub allowed_libraries: Option<Vec<String>>,
    /// Development only: load plugins without a signature. Loud in logs and status.
    pub danger_allow_unsigned: bool,
}

impl TrustConfig {
    /// Trusts these inline minisign public keys (base64 lines).
    pub fn with_public_keys(mut self, keys: Vec<String>) -> Self {
        self.public_keys = keys;
        self
    }

    /// Trusts the keys of these minisign `.pub` files.
    pub fn with_public_key_files(mut self, files: Vec<PathBuf>) -> Self {
        self.public_key_files = files;
        self
    }

    /// The sonames a plugin may need: `allowed_libraries`, or the default list.
    pub fn allowed_libraries(&self) -> Vec<String> {
        match &self.allowed_libraries {
            Some(list) => list.clone(),
            None => crate::loader::elf::DEFAULT_ALLOWED_LIBRARIES
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
        }
    }
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// The plugin's name; must equal the signed name.
    pub name: String,
    /// The plugin file, resolved against the config directory.
    pub path: PathBuf,
    /// Its signature file (default: `path` + `.minisig`).
    pub signature: PathBuf,
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where: a field path such as `experiments[1].coverage`, or `line 3, column 7` for syntax.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of one configuration source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<string>`) the configuration came from.
    pub source_name: String,
    /// All problems found, in file order.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{} has {} problem{}:",
            self.source_name,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            // A multi-line message (a TOML syntax error's "expected ..." line) stays under its
            // item: continuation lines are indented past the bullet.
            let text = issue.to_string();
            let mut lines = text.lines();
            write!(f, "\n  - {}", lines.next().unwrap_or_default())?;
            for line in lines {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// Parses and validates TOML text; `base_dir` resolves relative paths.
    pub fn from_toml_str(
        text: &str,
        source_name: &str,
        base_dir: &Path,
    ) -> Result<Config, ConfigError> {
        validate::parse_and_validate(text, source_name, base_dir)
    }

    /// Reads, parses and validates a TOML file (capped at 16 MiB). Only a regular file is
    /// read: a FIFO, a device such as `/dev/zero` or a directory is refused at once with a
    /// problem naming what it is (opened non-blocking, checked with `fstat` on the open file,
    /// read with a hard cap). A symlink to a regular file is followed.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        /// Largest configuration file read.
        const MAX_BYTES: u64 = 16 << 20;
        let source_name = path.display().to_string();
        let fail = |message: String| ConfigError {
            source_name: source_name.clone(),
            issues: vec![ConfigIssue {
                path: "(file)".into(),
                message,
            }],
        };
        let bytes = crate::files::read_regular_capped(path, MAX_BYTES, true).map_err(|e| {
            use crate::files::FileReadError;
            fail(match e {
                FileReadError::TooLarge { size, .. } => format!(
                    "the file is {size} bytes or more; the limit is 16 MiB: check that --config \
                     names the configuration file"
                ),
                FileReadError::NotRegular { what, .. } => format!(
                    "cannot read the config file: it is {what}, not a regular file; \
                     point --config at a TOML file"
                ),
                other => format!(
                    "cannot read the config file: {}; check the path",
                    other.detail()
                ),
            })
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            fail(format!(
                "the file is not UTF-8 text (invalid byte at offset {}); a configuration is TOML text",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::from_toml_str(&text, &source_name, &base)
    }

    /// Experiments in file order; keys are unique.
    pub fn experiments(&self) -> &[ExperimentConfig] {
        &self.experiments
    }

    /// Layers (declared in `[[layers]]` or implied by an experiment's `layer.name`).
    pub fn layers(&self) -> &[LayerConfig] {
        &self.layers
    }

    /// Trusted keys and state for signed plugins.
    pub fn trust(&self) -> &TrustConfig {
        &self.trust
    }

    /// Declared strategy plugins.
    pub fn plugins(&self) -> &[PluginConfig] {
        &self.plugins
    }

    /// The `[reload]` table.
    pub fn reload(&self) -> &ReloadConfig {
        &self.reload
    }

    /// The `[preflight]` table, if set.
    pub fn preflight(&self) -> Option<&PreflightConfig> {
        self.preflight.as_ref()
    }

    /// Holdouts (`[[holdouts]]`), in file order.
    pub fn holdouts(&self) -> &[HoldoutConfig] {
        &self.holdouts
    }

    /// Directory that relative paths are resolved against (the config file's directory).
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// This configuration without its plugins and with the default `[trust]` table: its plugin
    /// experiments are then answered by the builtin fallback, as when a plugin is refused. For
    /// the fuzz targets (no file is ever read or written); experiments are unchanged, so it
    /// stays valid for `assign`.
    pub(crate) fn without_plugins(mut self) -> Config {
        self.plugins.clear();
        self.trust = TrustConfig::default();
        self.preflight = None;
        self
    }

    /// The experiment with this key.
    pub fn experiment(&self, key: &str) -> Option<&ExperimentConfig> {
        self.experiments.iter().find(|e| e.key == key)
    }

    /// The layer with this name.
    pub fn layer(&self, name: &str) -> Option<&LayerConfig> {
        self.layers.iter().find(|l| l.name == name)
    }
}
