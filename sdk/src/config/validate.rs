//! Raw -> validated: every rule of the configuration, each failure collected with its path.

use super::raw::{RawConfig, RawExperiment, RawLayerSlice};
use super::{
    is_valid_plugin_name, Config, ConfigError, ConfigIssue, ExperimentConfig, LayerConfig,
    LayerSlice, PluginConfig, ReloadConfig, StrategyRef, TrustConfig, VariantConfig,
};
use abkit_bucketing::{coverage_bp, BUCKETS};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The name of the built-in bucketer.
pub const STRATEGY_BUILTIN: &str = "builtin:hash-v1";

/// Upper bound on variants per experiment (answers are `u32` indices; this keeps tables small).
const MAX_VARIANTS: usize = 1000;

#[derive(Default)]
struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub(super) fn parse_and_validate(
    text: &str,
    source_name: &str,
    base_dir: &Path,
) -> Result<Config, ConfigError> {
    let mut issues = Issues::default();
    let mut unknown = Vec::new();
    let de = toml::Deserializer::new(text);
    let raw: RawConfig = match serde_ignored::deserialize(de, |p| unknown.push(path_string(&p))) {
        Ok(raw) => raw,
        Err(e) => {
            let at = e
                .span()
                .map(|s| line_col(text, s.start))
                .unwrap_or_else(|| "(syntax)".to_string());
            issues.add(at, e.message().trim().to_string());
            return Err(ConfigError {
                source_name: source_name.to_string(),
                issues: issues.0,
            });
        }
    };
    for path in unknown {
        issues.add(
            path,
            "unknown field; remove it or check its spelling (see the README's config reference)",
        );
    }
    let config = validate(raw, base_dir, &mut issues);
    if issues.0.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError {
            source_name: source_name.to_string(),
            issues: issues.0,
        })
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

fn path_string(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", path_string(parent)),
        P::Map { parent, key } => {
            let p = path_string(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            path_string(parent)
        }
    }
}

fn validate(raw: RawConfig, base_dir: &Path, issues: &mut Issues) -> Config {
    let plugins = validate_plugins(&raw, base_dir, issues);
    let plugin_names: HashSet<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
    let mut layers = validate_layers(&raw, issues);
    let trust = validate_trust(&raw, base_dir, issues);

    let mut experiments = Vec::with_capacity(raw.experiments.len());
    let mut requires = Vec::with_capacity(raw.experiments.len());
    let mut seen_keys: HashMap<String, usize> = HashMap::new();
    let raw_holdouts = raw.holdouts;
    for (i, e) in raw.experiments.into_iter().enumerate() {
        let at = format!("experiments[{i}]");
        if let Some(key) = &e.key {
            if let Some(first) = seen_keys.get(key) {
                issues.add(format!("{at}.key"), format!("duplicate experiment key \"{key}\" (first used by experiments[{first}]); keys must be unique"));
            } else {
                seen_keys.insert(key.clone(), i);
            }
        }
        if let Some((exp, req)) = validate_experiment(e, &at, &plugin_names, issues) {
            experiments.push((at, exp));
            requires.push(req);
        }
    }
    resolve_requirements(&mut experiments, requires, issues);

    // Layers: implied ones get salt = name; slices of one layer must not overlap.
    for (_, e) in &experiments {
        if let Some(slice) = &e.layer {
            if !layers.iter().any(|l| l.name == slice.layer) {
                layers.push(LayerConfig {
                    name: slice.layer.clone(),
                    salt: slice.layer.clone(),
                    bucket_by: Vec::new(),
                });
            }
        }
    }
    for layer in &layers {
        let mut slices: Vec<(&str, &LayerSlice)> = experiments
            .iter()
            .filter_map(|(at, e)| {
                e.layer
                    .as_ref()
                    .filter(|s| s.layer == layer.name)
                    .map(|s| (at.as_str(), s))
            })
            .collect();
        slices.sort_by_key(|(_, s)| s.start);
        for pair in slices.windows(2) {
            let ((a_at, a), (b_at, b)) = (pair[0], pair[1]);
            if b.start < a.end {
                issues.add(
                    format!("{b_at}.layer.range"),
                    format!(
                        "slice [{}, {}) of layer \"{}\" overlaps [{}, {}) of {a_at}; slices of one layer must not overlap",
                        b.start, b.end, layer.name, a.start, a.end
                    ),
                );
            }
        }
    }

    let holdouts = validate_holdouts(raw_holdouts, &experiments, &layers, issues);
    Config {
        experiments: experiments.into_iter().map(|(_, e)| e).collect(),
        holdouts,
        layers,
        trust,
        plugins,
        reload: validate_reload(raw.reload.as_ref(), issues),
        preflight: validate_preflight(raw.preflight.as_ref(), issues),
        base_dir: base_dir.to_path_buf(),
    }
}

/// A validated experiment, and its `requires` as written (experiment key, variant names).
type ValidatedExperiment = (ExperimentConfig, Option<(String, Vec<String>)>);

fn validate_experiment(
    e: RawExperiment,
    at: &str,
    plugin_names: &HashSet<&str>,
    issues: &mut Issues,
) -> Option<ValidatedExperiment> {
    let start = issues.0.len();
    let key = match e.key {
        Some(k) if !k.is_empty() => k,
        Some(_) => {
            issues.add(format!("{at}.key"), "must not be empty");
            String::new()
        }
        None => {
            issues.add(
                format!("{at}.key"),
                "missing; every experiment needs a unique key",
            );
            String::new()
        }
    };
    let salt = e.salt.unwrap_or_else(|| key.clone());
    if salt.is_empty() && !key.is_empty() {
        issues.add(
            format!("{at}.salt"),
            "must not be empty; omit it to use the key",
        );
    }
    let coverage = e.coverage.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&coverage) {
        issues.add(
            format!("{at}.coverage"),
            format!("{coverage} is outside 0..=1 (a fraction: 0.25 means 25%)"),
        );
    }
    let strategy = match e.strategy.as_deref() {
        None | Some(STRATEGY_BUILTIN) => StrategyRef::Builtin,
        Some(s) => {
            match s.strip_prefix("plugin:") {
                Some(name) if plugin_names.contains(name) => StrategyRef::Plugin(name.to_string()),
                Some(name) => {
                    issues.add(format!("{at}.strategy"), format!("plugin \"{name}\" is not declared; add a [[plugins]] entry with name = \"{name}\""));
                    StrategyRef::Builtin
                }
                None => {
                    issues.add(format!("{at}.strategy"), format!("unknown strategy \"{s}\"; use \"{STRATEGY_BUILTIN}\" or \"plugin:<name>\""));
                    StrategyRef::Builtin
                }
            }
        }
    };
    let strategy_config_json = match &e.strategy_config {
        None => "{}".to_string(),
        Some(v) => match serde_json::to_string(v) {
            Ok(s) => s,
            Err(err) => {
                issues.add(
                    format!("{at}.strategy_config"),
                    format!("cannot be expressed as JSON: {err}"),
                );
                String::new()
            }
        },
    };
    if e.strategy_config.is_some() && strategy == StrategyRef::Builtin && e.strategy.is_some() {
        issues.add(
            format!("{at}.strategy_config"),
            format!("{STRATEGY_BUILTIN} takes no strategy_config; remove it"),
        );
    }

    let variants = validate_variants(e.variants, at, issues);
    let mut overrides = Vec::new();
    for (unit, variant) in e.overrides.unwrap_or_default() {
        match variants.iter().position(|v| v.name == variant) {
            Some(idx) => overrides.push((unit, idx as u32)),
            None => issues.add(
                format!("{at}.overrides.\"{unit}\""),
                format!("names variant \"{variant}\", which this experiment does not have (variants: {})", names(&variants)),
            ),
        }
    }
    let mut targeting = Vec::new();
    for (attr, values) in e.targeting.unwrap_or_default() {
        if values.is_empty() {
            issues.add(
                format!("{at}.targeting.{attr}"),
                "lists no value, so nobody could match; list at least one or remove the key",
            );
        }
        targeting.push((attr, values));
    }
    let layer = e.layer.and_then(|l| validate_slice(l, at, issues));
    let bucket_by = validate_bucket_by(e.bucket_by, &format!("{at}.bucket_by"), issues);
    // `requires` names its variants; they are resolved to indices once every experiment is known.
    let requires = e.requires.and_then(|r| match (r.experiment, r.variants) {
        (Some(experiment), Some(variants)) if !experiment.is_empty() && !variants.is_empty() => {
            Some((experiment, variants))
        }
        _ => {
            issues.add(
                format!("{at}.requires"),
                "needs `experiment` (a key) and `variants` (at least one name), e.g. requires = { experiment = \"a\", variants = [\"treatment\"] }",
            );
            None
        }
    });
    if let Some(m) = e.max_reassignment {
        if !(0.0..=1.0).contains(&m) {
            issues.add(
                format!("{at}.max_reassignment"),
                format!("{m} is outside 0..=1 (a fraction of enrolled units)"),
            );
        }
    }

    (issues.0.len() == start)
        .then(|| ExperimentConfig {
            key,
            salt,
            enabled: e.enabled.unwrap_or(true),
            coverage,
            coverage_bp: coverage_bp(coverage),
            strategy,
            strategy_config_json,
            variants,
            overrides,
            targeting,
            layer,
            max_reassignment: e.max_reassignment,
            intended_change: e.intended_change.unwrap_or(false),
            bucket_by,
            // Resolved by `resolve_requirements` once every experiment is known.
            requires: None,
        })
        .map(|exp| (exp, requires))
}

/// A `bucket_by` list: attribute names (or `"unit"`), non-empty, without repeats.
fn validate_bucket_by(raw: Option<Vec<String>>, at: &str, issues: &mut Issues) -> Vec<String> {
    let Some(list) = raw else {
        return Vec::new();
    };
    if list.is_empty() {
        issues.add(
            at,
            "lists nothing; name attributes (e.g. [\"account_id\", \"device_id\"]) or remove it",
        );
    }
    for (i, name) in list.iter().enumerate() {
        if name.is_empty() {
            issues.add(format!("{at}[{i}]"), "must name an attribute (or \"unit\")");
        } else if list[..i].contains(name) {
            issues.add(format!("{at}[{i}]"), format!("\"{name}\" is listed twice"));
        }
    }
    list
}

/// Most experiments one `requires` chain may pass through (a -> b -> c ...).
pub(crate) const MAX_PREREQUISITE_DEPTH: usize = 4;

/// Resolves every `requires` (experiment key and variant names -> indices), and refuses
/// unknown experiments or variants, cycles (spelled out) and chains deeper than
/// [`MAX_PREREQUISITE_DEPTH`].
fn resolve_requirements(
    experiments: &mut [(String, ExperimentConfig)],
    raw: Vec<Option<(String, Vec<String>)>>,
    issues: &mut Issues,
) {
    let index: HashMap<String, usize> = experiments
        .iter()
        .enumerate()
        .map(|(i, (_, e))| (e.key.clone(), i))
        .collect();
    let mut edges: Vec<Option<usize>> = vec![None; experiments.len()];
    for (i, req) in raw.into_iter().enumerate() {
        let Some((target, names)) = req else { continue };
        let at = format!("{}.requires", experiments[i].0);
        let Some(&t) = index.get(&target) else {
            issues.add(
                format!("{at}.experiment"),
                format!("names experiment \"{target}\", which this configuration does not have"),
            );
            continue;
        };
        let mut variants = Vec::new();
        for name in &names {
            match experiments[t].1.variants.iter().position(|v| v.name == *name) {
                Some(v) => variants.push(v as u32),
                None => issues.add(
                    format!("{at}.variants"),
                    format!(
                        "names variant \"{name}\", which experiment \"{target}\" does not have (variants: {})",
                        names_of(&experiments[t].1.variants)
                    ),
                ),
            }
        }
        edges[i] = Some(t);
        experiments[i].1.requires = Some(super::Requirement {
            experiment: target,
            variants,
        });
    }
    // Cycles and depth: follow each chain.
    let mut reported: HashSet<usize> = HashSet::new();
    for start in 0..experiments.len() {
        let mut path = vec![start];
        let mut at = start;
        while let Some(next) = edges[at] {
            if let Some(pos) = path.iter().position(|&p| p == next) {
                let cycle: Vec<&str> = path[pos..]
                    .iter()
                    .chain(std::iter::once(&next))
                    .map(|&i| experiments[i].1.key.as_str())
                    .collect();
                if path[pos..].iter().all(|i| reported.insert(*i)) {
                    issues.add(
                        format!("{}.requires", experiments[next].0),
                        format!(
                            "prerequisites form a cycle: {}; remove one of these requires",
                            cycle.join(" -> ")
                        ),
                    );
                }
                break;
            }
            path.push(next);
            at = next;
            if path.len() > MAX_PREREQUISITE_DEPTH + 1 {
                let chain: Vec<&str> = path
                    .iter()
                    .map(|&i| experiments[i].1.key.as_str())
                    .collect();
                issues.add(
                    format!("{}.requires", experiments[start].0),
                    format!(
                        "the chain of prerequisites {} ... is longer than {MAX_PREREQUISITE_DEPTH}; shorten it",
                        chain.join(" -> ")
                    ),
                );
                break;
            }
        }
    }
}

/// Validates `[[holdouts]]` against the experiments and layers.
fn validate_holdouts(
    raw: Vec<super::raw::RawHoldout>,
    experiments: &[(String, ExperimentConfig)],
    layers: &[LayerConfig],
    issues: &mut Issues,
) -> Vec<super::HoldoutConfig> {
    let mut out: Vec<super::HoldoutConfig> = Vec::new();
    for (i, h) in raw.into_iter().enumerate() {
        let at = format!("holdouts[{i}]");
        let start = issues.0.len();
        let name = match h.name {
            Some(n) if !n.is_empty() => n,
            _ => {
                issues.add(format!("{at}.name"), "missing or empty; name the holdout");
                String::new()
            }
        };
        if !name.is_empty() && out.iter().any(|o| o.name == name) {
            issues.add(
                format!("{at}.name"),
                format!("duplicate holdout \"{name}\""),
            );
        }
        let salt = h.salt.unwrap_or_else(|| name.clone());
        if salt.is_empty() && !name.is_empty() {
            issues.add(
                format!("{at}.salt"),
                "must not be empty; omit it to use the name",
            );
        }
        let coverage = match h.coverage {
            Some(c) if (0.0..=1.0).contains(&c) => c,
            Some(c) => {
                issues.add(
                    format!("{at}.coverage"),
                    format!("{c} is outside 0..=1 (the share held out: 0.05 means 5%)"),
                );
                0.0
            }
            None => {
                issues.add(
                    format!("{at}.coverage"),
                    "missing; the share of units held out, e.g. 0.05",
                );
                0.0
            }
        };
        let experiments_listed = h.experiments.unwrap_or_default();
        let layers_listed = h.layers.unwrap_or_default();
        if experiments_listed.is_empty() && layers_listed.is_empty() {
            issues.add(
                at.clone(),
                "covers nothing; list experiments = [\"*\"] (all), experiment keys, or layers = [...]",
            );
        }
        for (j, k) in experiments_listed.iter().enumerate() {
            if k != "*" && !experiments.iter().any(|(_, e)| e.key == *k) {
                issues.add(
                    format!("{at}.experiments[{j}]"),
                    format!("names experiment \"{k}\", which this configuration does not have"),
                );
            }
        }
        for (j, l) in layers_listed.iter().enumerate() {
            if !layers.iter().any(|x| x.name == *l) {
                issues.add(
                    format!("{at}.layers[{j}]"),
                    format!("names layer \"{l}\", which this configuration does not have"),
                );
            }
        }
        let bucket_by = validate_bucket_by(h.bucket_by, &format!("{at}.bucket_by"), issues);
        if issues.0.len() == start {
            out.push(super::HoldoutConfig {
                name,
                salt,
                coverage,
                coverage_bp: coverage_bp(coverage),
                experiments: experiments_listed,
                layers: layers_listed,
                bucket_by,
            });
        }
    }
    out
}

fn names_of(variants: &[VariantConfig]) -> String {
    names(variants)
}

fn names(variants: &[VariantConfig]) -> String {
    variants
        .iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate_variants(
    raw: Option<Vec<super::raw::RawVariant>>,
    at: &str,
    issues: &mut Issues,
) -> Vec<VariantConfig> {
    let Some(raw) = raw.filter(|v| !v.is_empty()) else {
        issues.add(
            format!("{at}.variants"),
            "missing or empty; list at least one { name, weight }",
        );
        return Vec::new();
    };
    if raw.len() > MAX_VARIANTS {
        issues.add(
            format!("{at}.variants"),
            format!("{} variants; at most {MAX_VARIANTS} are allowed", raw.len()),
        );
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut seen = HashSet::new();
    let mut total: u64 = 0;
    for (j, v) in raw.into_iter().enumerate() {
        let vat = format!("{at}.variants[{j}]");
        let name = match v.name {
            Some(n) if !n.is_empty() => n,
            _ => {
                issues.add(format!("{vat}.name"), "missing or empty");
                String::new()
            }
        };
        if !name.is_empty() && !seen.insert(name.clone()) {
            issues.add(
                format!("{vat}.name"),
                format!("duplicate variant name \"{name}\""),
            );
        }
        let weight = match v.weight {
            Some(w) if (0..=i64::from(u32::MAX)).contains(&w) => w as u32,
            Some(w) => {
                issues.add(
                    format!("{vat}.weight"),
                    format!("{w} is not a weight; use an integer in 0..={}", u32::MAX),
                );
                0
            }
            None => {
                issues.add(
                    format!("{vat}.weight"),
                    "missing; give a non-negative integer",
                );
                0
            }
        };
        total += u64::from(weight);
        out.push(VariantConfig { name, weight });
    }
    if total == 0 && out.iter().all(|v| !v.name.is_empty()) {
        issues.add(
            format!("{at}.variants"),
            "the weights sum to 0; at least one weight must be positive",
        );
    }
    out
}

fn validate_slice(l: RawLayerSlice, at: &str, issues: &mut Issues) -> Option<LayerSlice> {
    let name = match l.name {
        Some(n) if !n.is_empty() => n,
        _ => {
            issues.add(
                format!("{at}.layer.name"),
                "missing or empty; name the layer this experiment belongs to",
            );
            return None;
        }
    };
    match l.range.as_deref() {
        Some(&[start, end]) if 0 <= start && start < end && end <= i64::from(BUCKETS) => {
            Some(LayerSlice {
                layer: name,
                start: start as u32,
                end: end as u32,
            })
        }
        Some(r) => {
            issues.add(format!("{at}.layer.range"), format!("{r:?} is not a slice; use [start, end] with 0 <= start < end <= {BUCKETS} (basis points)"));
            None
        }
        None => {
            issues.add(
                format!("{at}.layer.range"),
                "missing; give [start, end] in basis points",
            );
            None
        }
    }
}

fn validate_layers(raw: &RawConfig, issues: &mut Issues) -> Vec<LayerConfig> {
    let mut out: Vec<LayerConfig> = Vec::new();
    for (i, l) in raw.layers.iter().enumerate() {
        let Some(name) = l.name.clone().filter(|n| !n.is_empty()) else {
            issues.add(format!("layers[{i}].name"), "missing or empty");
            continue;
        };
        if out.iter().any(|o| o.name == name) {
            issues.add(
                format!("layers[{i}].name"),
                format!("duplicate layer \"{name}\""),
            );
            continue;
        }
        let salt = l.salt.clone().unwrap_or_else(|| name.clone());
        if salt.is_empty() {
            issues.add(
                format!("layers[{i}].salt"),
                "must not be empty; omit it to use the name",
            );
        }
        let bucket_by = validate_bucket_by(
            l.bucket_by.clone(),
            &format!("layers[{i}].bucket_by"),
            issues,
        );
        out.push(LayerConfig {
            name,
            salt,
            bucket_by,
        });
    }
    out
}

fn validate_plugins(raw: &RawConfig, base_dir: &Path, issues: &mut Issues) -> Vec<PluginConfig> {
    let mut out: Vec<PluginConfig> = Vec::new();
    for (i, p) in raw.plugins.iter().enumerate() {
        let at = format!("plugins[{i}]");
        let name = p.name.clone().unwrap_or_default();
        if !is_valid_plugin_name(&name) {
            issues.add(
                format!("{at}.name"),
                format!("\"{name}\" is not a plugin name; use [a-z0-9][a-z0-9_-]{{0,63}}"),
            );
        } else if out.iter().any(|o| o.name == name) {
            issues.add(format!("{at}.name"), format!("duplicate plugin \"{name}\""));
        }
        let Some(path) = p.path.clone().filter(|s| !s.is_empty()) else {
            issues.add(
                format!("{at}.path"),
                "missing; give the plugin library file",
            );
            continue;
        };
        let path = resolve(base_dir, &path);
        let signature = match &p.signature {
            Some(s) => resolve(base_dir, s),
            None => {
                let mut s = path.clone().into_os_string();
                s.push(".minisig");
                PathBuf::from(s)
            }
        };
        out.push(PluginConfig {
            name,
            path,
            signature,
        });
    }
    out
}

fn validate_reload(raw: Option<&super::raw::RawReload>, issues: &mut Issues) -> ReloadConfig {
    let Some(r) = raw else {
        return ReloadConfig::default();
    };
    let deadline = match r.deadline_ms {
        Some(0) => {
            issues.add(
                "reload.deadline_ms",
                "must be at least 1 (milliseconds); a plugin call needs time to answer",
            );
            None
        }
        Some(ms) if ms > 3_600_000 => {
            issues.add(
                "reload.deadline_ms",
                format!(
                    "{ms} is over an hour; a reload stuck that long is a hang, use at most 3600000"
                ),
            );
            None
        }
        ms => ms.map(std::time::Duration::from_millis),
    };
    ReloadConfig { deadline }
}

fn validate_preflight(
    raw: Option<&super::raw::RawPreflight>,
    issues: &mut Issues,
) -> Option<super::PreflightConfig> {
    let p = raw?;
    let command = match p.command.as_deref().map(str::trim) {
        None | Some("") => {
            issues.add(
                "preflight.command",
                "missing: name an abkit binary, as an absolute path or a name on PATH (e.g. \"abkit\")",
            );
            return None;
        }
        Some(c) if c.contains('/') && !c.starts_with('/') => {
            issues.add(
                "preflight.command",
                format!("{c:?} is a relative path; give an absolute path or a bare name looked up on PATH"),
            );
            return None;
        }
        Some(c) => std::path::PathBuf::from(c),
    };
    let timeout = match p.timeout_ms {
        None => super::PreflightConfig::DEFAULT_TIMEOUT,
        Some(ms) if ms == 0 || ms > 3_600_000 => {
            issues.add(
                "preflight.timeout_ms",
                format!("{ms} is outside 1..=3600000 milliseconds"),
            );
            return None;
        }
        Some(ms) => std::time::Duration::from_millis(ms),
    };
    Some(super::PreflightConfig { command, timeout })
}

fn validate_trust(raw: &RawConfig, base_dir: &Path, issues: &mut Issues) -> TrustConfig {
    let Some(t) = &raw.trust else {
        return TrustConfig::default();
    };
    for (i, k) in t.public_keys.iter().enumerate() {
        if k.trim().is_empty() {
            issues.add(
                format!("trust.public_keys[{i}]"),
                "empty key; paste the base64 line of a minisign public key",
            );
        }
    }
    if let Some(libs) = &t.allowed_libraries {
        for (i, l) in libs.iter().enumerate() {
            if l.is_empty() || l.contains('/') || l.chars().any(char::is_whitespace) {
                issues.add(
                    format!("trust.allowed_libraries[{i}]"),
                    format!(
                        "{l:?} is not a library name; give sonames such as \"libc.so.6\" (a path is never allowed: the dynamic loader would load whatever is there)"
                    ),
                );
            }
        }
    }
    TrustConfig {
        allowed_libraries: t.allowed_libraries.clone(),
        public_keys: t.public_keys.iter().map(|k| k.trim().to_string()).collect(),
        public_key_files: t
            .public_key_files
            .iter()
            .map(|f| resolve(base_dir, f))
            .collect(),
        state_dir: t.state_dir.as_deref().map(|d| resolve(base_dir, d)),
        danger_allow_unsigned: t.danger_allow_unsigned.unwrap_or(false),
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl Config {
    /// Problems that do not make the configuration invalid but that a reviewer should see
    /// (`abkit check` prints them): two experiments not in one layer that share a salt place
    /// every unit by the same hash, so their assignments are perfectly correlated (with equal
    /// weights, the same units are in the first variant of both) and neither result can be
    /// read independently of the other.
    pub fn warnings(&self) -> Vec<ConfigIssue> {
        let mut out = Vec::new();
        for (j, b) in self.experiments.iter().enumerate() {
            for (i, a) in self.experiments.iter().enumerate().take(j) {
                let same_layer =
                    matches!((&a.layer, &b.layer), (Some(x), Some(y)) if x.layer == y.layer);
                if a.salt == b.salt && !same_layer {
                    out.push(ConfigIssue {
                        path: format!("experiments[{j}].salt"),
                        message: format!(
                            "experiment \"{}\" shares salt \"{}\" with experiments[{i}] (\"{}\") outside one layer: their assignments are perfectly correlated; give each experiment its own salt, or put them in one layer",
                            b.key, b.salt, a.key
                        ),
                    });
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_and_validate(text, "test.toml", Path::new("/cfg"))
    }

    #[test]
    fn shared_salts_outside_one_layer_are_warned() {
        let c = parse(
            "[[experiments]]\nkey = \"a\"\nsalt = \"s\"\nvariants = [{ name = \"c\", weight = 1 }]\n\
             [[experiments]]\nkey = \"b\"\nsalt = \"s\"\nvariants = [{ name = \"c\", weight = 1 }]\n\
             [[experiments]]\nkey = \"c\"\nvariants = [{ name = \"c\", weight = 1 }]\n",
        )
        .unwrap();
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "experiments[1].salt");
        assert!(w[0].message.contains("perfectly correlated") && w[0].message.contains("\"a\""));
        let layered = parse(
            "[[experiments]]\nkey = \"a\"\nsalt = \"s\"\nvariants = [{ name = \"c\", weight = 1 }]\nlayer = { name = \"L\", range = [0, 5000] }\n\
             [[experiments]]\nkey = \"b\"\nsalt = \"s\"\nvariants = [{ name = \"c\", weight = 1 }]\nlayer = { name = \"L\", range = [5000, 10000] }\n",
        )
        .unwrap();
        assert!(layered.warnings().is_empty());
    }

    #[test]
    fn minimal_experiment_gets_defaults() {
        let c = parse("[[experiments]]\nkey = \"a\"\nvariants = [{ name = \"c\", weight = 1 }]\n")
            .unwrap();
        let e = &c.experiments[0];
        assert_eq!(
            (e.salt.as_str(), e.enabled, e.coverage_bp),
            ("a", true, 10000)
        );
        assert_eq!(e.strategy, StrategyRef::Builtin);
    }

    #[test]
    fn five_mistakes_are_all_reported_with_paths() {
        let text = r#"
[[experiments]]
key = "a"
coverage = 1.5
colour = "red"
variants = [{ name = "c", weight = 0 }, { name = "t", weight = 0 }]
overrides = { "u1" = "nope" }
layer = { name = "L", range = [0, 6000] }
[[experiments]]
key = "a"
variants = [{ name = "c", weight = 1 }]
layer = { name = "L", range = [5000, 10000] }
"#;
        let err = parse(text).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        for want in [
            "experiments[0].colour",
            "experiments[0].coverage",
            "experiments[0].variants",
            "experiments[0].overrides.\"u1\"",
            "experiments[1].key",
        ] {
            assert!(paths.contains(&want), "missing {want} in {paths:?}");
        }
        // The first experiment is invalid, so the overlap is not reported against it; make both valid:
        let overlap = parse(
            "[[experiments]]\nkey=\"a\"\nvariants=[{name=\"c\",weight=1}]\nlayer={name=\"L\",range=[0,6000]}\n\
             [[experiments]]\nkey=\"b\"\nvariants=[{name=\"c\",weight=1}]\nlayer={name=\"L\",range=[5000,10000]}\n",
        )
        .unwrap_err();
        assert_eq!(overlap.issues[0].path, "experiments[1].layer.range");
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = parse("[[experiments]]\nkey = \n").unwrap_err();
        assert!(err.issues[0].path.starts_with("line 2"), "{:?}", err.issues);
    }

    #[test]
    fn undeclared_plugin_is_refused() {
        let err = parse(
            "[[experiments]]\nkey=\"a\"\nstrategy=\"plugin:x\"\nvariants=[{name=\"c\",weight=1}]\n",
        )
        .unwrap_err();
        assert_eq!(err.issues[0].path, "experiments[0].strategy");
    }

    #[test]
    fn implied_layer_uses_its_name_as_salt() {
        let c = parse("[[experiments]]\nkey=\"a\"\nvariants=[{name=\"c\",weight=1}]\nlayer={name=\"L\",range=[0,10]}\n").unwrap();
        assert_eq!(
            c.layers,
            vec![LayerConfig {
                name: "L".into(),
                salt: "L".into(),
                bucket_by: Vec::new(),
            }]
        );
    }
}
