//! The configuration exactly as written (serde), before validation.
//!
//! Every field is optional here so that validation, not the parser, reports what is
//! missing, and can report every mistake at once with its field path.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    pub experiments: Vec<RawExperiment>,
    pub layers: Vec<RawLayer>,
    pub trust: Option<RawTrust>,
    pub plugins: Vec<RawPlugin>,
    pub reload: Option<RawReload>,
    pub preflight: Option<RawPreflight>,
    pub holdouts: Vec<RawHoldout>,
}

/// One `[[holdouts]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHoldout {
    pub name: Option<String>,
    pub salt: Option<String>,
    pub coverage: Option<f64>,
    pub experiments: Option<Vec<String>>,
    pub layers: Option<Vec<String>>,
    pub bucket_by: Option<Vec<String>>,
}

/// `requires = { experiment, variants }` of an experiment.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRequires {
    pub experiment: Option<String>,
    pub variants: Option<Vec<String>>,
}

/// The `[preflight]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawPreflight {
    pub command: Option<String>,
    pub timeout_ms: Option<u64>,
}

/// The `[reload]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawReload {
    pub deadline_ms: Option<u64>,
}

/// One `[[experiments]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawExperiment {
    pub key: Option<String>,
    pub salt: Option<String>,
    pub enabled: Option<bool>,
    pub coverage: Option<f64>,
    pub strategy: Option<String>,
    pub strategy_config: Option<toml::Value>,
    pub variants: Option<Vec<RawVariant>>,
    pub overrides: Option<BTreeMap<String, String>>,
    pub targeting: Option<BTreeMap<String, Vec<String>>>,
    pub layer: Option<RawLayerSlice>,
    pub max_reassignment: Option<f64>,
    pub intended_change: Option<bool>,
    pub bucket_by: Option<Vec<String>>,
    pub requires: Option<RawRequires>,
}

/// One entry of `variants`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawVariant {
    pub name: Option<String>,
    pub weight: Option<i64>,
}

/// `layer = { name, range }` of an experiment.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawLayerSlice {
    pub name: Option<String>,
    pub range: Option<Vec<i64>>,
}

/// One `[[layers]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawLayer {
    pub name: Option<String>,
    pub salt: Option<String>,
    pub bucket_by: Option<Vec<String>>,
}

/// The `[trust]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTrust {
    pub public_keys: Vec<String>,
    pub public_key_files: Vec<String>,
    pub state_dir: Option<String>,
    pub allowed_libraries: Option<Vec<String>>,
    pub danger_allow_unsigned: Option<bool>,
}

/// One `[[plugins]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawPlugin {
    pub name: Option<String>,
    pub path: Option<String>,
    pub signature: Option<String>,
}
