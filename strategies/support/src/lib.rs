//! What abkit's reference strategy plugins share: the bucketing-v1 decision prepared once per
//! experiment, and `strategy_config` parsing with errors that name the field.
//!
//! This is an ordinary library linked into each plugin, not a plugin and not part of the
//! ABI (that is `abkit-strategy-api`). Each plugin decides *what* it randomises by (a user,
//! a region-window, a cluster); this crate turns that unit into a [`Decision`] with the
//! normative math of `abkit-bucketing`, so every strategy splits exactly like the builtin.
//!
//! ```
//! use abkit_strategy_api::{Decision, ExperimentSpec};
//! use abkit_strategy_support::Bucketing;
//!
//! let spec = ExperimentSpec::new("checkout", "checkout", &[1, 1], 10_000, "{}");
//! let bucketing = Bucketing::of(&spec).unwrap(); // once, in the strategy's constructor
//! let decision = bucketing.decide(b"user-42");    // per call: one hash, no allocation
//! assert!(matches!(decision, Decision::Variant(0 | 1)));
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used))]

use abkit_bucketing::{Salted, VariantRanges};
use abkit_strategy_api::{Decision, ExperimentSpec};
use serde::de::DeserializeOwned;
use std::fmt::Display;

/// bucketing-v1 for one experiment: its salt prepared for hashing and its variant ranges,
/// both computed once from the [`ExperimentSpec`] the strategy is built from.
#[derive(Debug, Clone)]
pub struct Bucketing {
    salted: Salted,
    ranges: VariantRanges,
}

impl Bucketing {
    /// Prepares the experiment's salt and ranges; an invalid weight list or coverage (the SDK
    /// never sends one) is an error naming the experiment.
    pub fn of(spec: &ExperimentSpec<'_>) -> Result<Self, String> {
        let ranges = VariantRanges::new(spec.weights(), spec.coverage_bp)
            .map_err(|e| format!("invalid experiment \"{}\": {e}", spec.key()))?;
        Ok(Bucketing {
            salted: Salted::new(spec.salt().as_bytes()),
            ranges,
        })
    }

    /// `bucket(salt, unit)`, then the variant whose range holds it
    /// ([`Decision::NotEnrolled`] outside coverage).
    #[inline]
    pub fn decide(&self, unit: &[u8]) -> Decision {
        self.decide_bucket(self.salted.bucket(unit))
    }

    /// The variant whose range holds `bucket`, or [`Decision::NotEnrolled`].
    #[inline]
    pub fn decide_bucket(&self, bucket: u32) -> Decision {
        match self.ranges.variant_of(bucket) {
            // A weight list has far fewer than 2^32 entries.
            Some(i) => Decision::Variant(i as u32),
            None => Decision::NotEnrolled,
        }
    }
}

/// Parses `strategy_config` JSON into the plugin's raw (serde) config struct.
///
/// Errors read `invalid strategy_config for <plugin>: <serde's message>`; with
/// `deny_unknown_fields` and raw fields kept as [`serde_json::Value`], serde's message
/// names the unknown or missing field. Type errors of a field come from [`field`].
pub fn parse_raw<R: DeserializeOwned>(plugin: &str, config_json: &str) -> Result<R, String> {
    serde_json::from_str(config_json)
        .map_err(|e| format!("invalid strategy_config for {plugin}: {e}"))
}

/// Converts the raw JSON value of field `name` to its type, naming the field on error.
pub fn field<T: DeserializeOwned>(
    plugin: &str,
    name: &str,
    value: serde_json::Value,
) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| invalid(plugin, name, e))
}

/// A required field naming a unit attribute (e.g. `region_attribute`): a non-empty string.
pub fn attribute_name(
    plugin: &str,
    name: &str,
    value: serde_json::Value,
) -> Result<String, String> {
    let attribute: String = field(plugin, name, value)?;
    if attribute.is_empty() {
        return Err(invalid(plugin, name, "must name an attribute, got \"\""));
    }
    Ok(attribute)
}

/// An optional field: its value, or the type's default when absent.
pub fn optional_field<T: DeserializeOwned + Default>(
    plugin: &str,
    name: &str,
    value: Option<serde_json::Value>,
) -> Result<T, String> {
    value.map_or_else(|| Ok(T::default()), |v| field(plugin, name, v))
}

/// The error message ``invalid strategy_config for <plugin>: field `<name>`: <why>``.
pub fn invalid(plugin: &str, name: &str, why: impl Display) -> String {
    format!("invalid strategy_config for {plugin}: field `{name}`: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use abkit_bucketing::{bucket, coverage_bp};
    use serde::Deserialize;

    fn direct(unit: &str, weights: &[u32], coverage_bp: u32) -> Decision {
        let ranges = VariantRanges::new(weights, coverage_bp).unwrap();
        Decision::from_index(ranges.variant_of(bucket(b"salt-1", unit.as_bytes())))
    }

    #[test]
    fn answers_equal_the_plain_bucketing_math() {
        let cases: [(&[u32], u32); 3] = [
            (&[1, 1], 10_000),
            (&[1, 2, 7], coverage_bp(0.3)),
            (&[5, 0, 5], 10_000),
        ];
        for (weights, coverage) in cases {
            let spec = ExperimentSpec::new("exp", "salt-1", weights, coverage, "{}");
            let bucketing = Bucketing::of(&spec).unwrap();
            for i in 0..2_000 {
                let unit = format!("u{i}");
                assert_eq!(
                    bucketing.decide(unit.as_bytes()),
                    direct(&unit, weights, coverage)
                );
            }
        }
    }

    #[test]
    fn invalid_weights_are_refused_when_built() {
        let spec = ExperimentSpec::new("exp", "salt-1", &[0, 0], 10_000, "{}");
        assert_eq!(
            Bucketing::of(&spec).err().unwrap(),
            "invalid experiment \"exp\": the weights sum to 0; at least one must be positive"
        );
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        size: serde_json::Value,
    }

    #[test]
    fn config_errors_name_the_plugin_and_the_field() {
        let e = parse_raw::<Raw>("demo", r#"{"size": 1, "colour": 2}"#)
            .err()
            .unwrap();
        assert!(e.starts_with("invalid strategy_config for demo: unknown field `colour`"));
        let e = parse_raw::<Raw>("demo", "{}").err().unwrap();
        assert!(e.contains("missing field `size`"), "{e}");
        let raw: Raw = parse_raw("demo", r#"{"size": "big"}"#).unwrap();
        let e = field::<u32>("demo", "size", raw.size).err().unwrap();
        assert_eq!(
            e,
            "invalid strategy_config for demo: field `size`: invalid type: string \"big\", expected u32"
        );
    }
}
