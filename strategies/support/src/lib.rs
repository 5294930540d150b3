//! What abkit's reference strategy plugins share: the bucketing-v1 decision with variant
//! ranges cached per strategy instance, and `strategy_config` parsing with errors that name
//! the field.
//!
//! This is an ordinary library linked into each plugin, not a plugin and not part of the
//! ABI (that is `abkit-strategy-api`). Each plugin decides *what* it randomises by (a user,
//! a region-window, a cluster); this crate turns that unit into a [`Decision`] with the
//! normative math of `abkit-bucketing`, so every strategy splits exactly like the builtin.
//!
//! ```
//! use abkit_strategy_api::{abi_stable::std_types::{RSlice, RStr}, Decision, Request};
//! use abkit_strategy_support::RangesCache;
//!
//! let request = Request {
//!     unit_id: RStr::from("user-42"),
//!     experiment: RStr::from("checkout"),
//!     salt: RStr::from("checkout"),
//!     weights: RSlice::from_slice(&[1, 1]),
//!     coverage_bp: 10_000,
//!     attributes: RSlice::from_slice(&[]),
//!     fixed_now_ms: abkit_strategy_api::abi_stable::std_types::ROption::RSome(0),
//! };
//! let cache = RangesCache::new();
//! let decision = cache.decide_unit(&request, b"user-42");
//! assert!(matches!(decision, Decision::Variant(0 | 1)));
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(feature = "alloc-counter")]
pub mod alloc_counter;

use abkit_bucketing::{bucket, VariantRanges};
use abkit_strategy_api::{abi_stable::std_types::RString, Decision, Request};
use arc_swap::ArcSwapOption;
use serde::de::DeserializeOwned;
use std::fmt::Display;
use std::sync::Arc;

/// The variant ranges of the last `(weights, coverage)` seen by one strategy instance.
///
/// Weights and coverage arrive with every request, and `VariantRanges::new` allocates, so
/// the ranges are cached and reused while the request carries the same weights and
/// coverage (always, for one experiment). The cache is compared against every request, so
/// it can never answer for other weights than the request's; on a change the new ranges
/// replace the old ones. Reading it takes no lock and allocates nothing.
#[derive(Default)]
pub struct RangesCache {
    latest: ArcSwapOption<CachedRanges>,
}

struct CachedRanges {
    weights: Box<[u32]>,
    coverage_bp: u32,
    ranges: VariantRanges,
}

impl RangesCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// bucketing-v1 for `unit` under the request's salt, weights and coverage:
    /// `bucket(salt, unit)`, then the variant whose range holds it.
    pub fn decide_unit(&self, request: &Request<'_>, unit: &[u8]) -> Decision {
        self.decide_bucket(request, bucket(request.salt.as_str().as_bytes(), unit))
    }

    /// The variant whose range (from the request's weights and coverage) holds `bucket`,
    /// [`Decision::NotEnrolled`] outside coverage, or an error for invalid weights.
    pub fn decide_bucket(&self, request: &Request<'_>, bucket: u32) -> Decision {
        let weights = request.weights.as_slice();
        if let Some(cached) = self.latest.load().as_deref() {
            if cached.coverage_bp == request.coverage_bp && *cached.weights == *weights {
                return Decision::from_index(cached.ranges.variant_of(bucket));
            }
        }
        match VariantRanges::new(weights, request.coverage_bp) {
            Ok(ranges) => {
                let decision = Decision::from_index(ranges.variant_of(bucket));
                self.latest.store(Some(Arc::new(CachedRanges {
                    weights: weights.into(),
                    coverage_bp: request.coverage_bp,
                    ranges,
                })));
                decision
            }
            Err(e) => Decision::Error(RString::from(format!("invalid experiment: {e}"))),
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
    use abkit_bucketing::coverage_bp;
    use abkit_strategy_api::abi_stable::std_types::{RSlice, RStr};
    use serde::Deserialize;

    fn request<'a>(unit: &'a str, weights: &'a [u32], coverage_bp: u32) -> Request<'a> {
        Request {
            unit_id: RStr::from_str(unit),
            experiment: RStr::from_str("exp"),
            salt: RStr::from_str("salt-1"),
            weights: RSlice::from_slice(weights),
            coverage_bp,
            attributes: RSlice::from_slice(&[]),
            fixed_now_ms: abkit_strategy_api::abi_stable::std_types::ROption::RSome(0),
        }
    }

    fn direct(unit: &str, weights: &[u32], coverage_bp: u32) -> Decision {
        let ranges = VariantRanges::new(weights, coverage_bp).unwrap();
        Decision::from_index(ranges.variant_of(bucket(b"salt-1", unit.as_bytes())))
    }

    #[test]
    fn cached_answers_follow_the_request_when_weights_or_coverage_change() {
        let cache = RangesCache::new();
        let cases: [(&[u32], u32); 4] = [
            (&[1, 1], 10_000),
            (&[1, 1], 10_000),
            (&[1, 2, 7], coverage_bp(0.3)),
            (&[5, 0, 5], 10_000),
        ];
        for (weights, coverage) in cases {
            for i in 0..500 {
                let unit = format!("u{i}");
                assert_eq!(
                    cache.decide_unit(&request(&unit, weights, coverage), unit.as_bytes()),
                    direct(&unit, weights, coverage)
                );
            }
        }
    }

    #[test]
    fn invalid_weights_give_an_error_not_a_variant() {
        let cache = RangesCache::new();
        let decision = cache.decide_unit(&request("u", &[0, 0], 10_000), b"u");
        assert_eq!(
            decision,
            Decision::Error(RString::from(
                "invalid experiment: the weights sum to 0; at least one must be positive"
            ))
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
