//! `switchback`: randomises by (time window, region) instead of by user, the marketplace
//! switchback design: every unit of one region gets the same variant for one window, and
//! the variant is drawn again for every window.
//!
//! The window index is `now_ms / (window_minutes * 60_000)` (windows start at the Unix
//! epoch). The unit hashed by bucketing-v1 is `"<region>@<window>"` (for example
//! `paris@965400`) with the request's salt, and coverage applies to that composite unit: a
//! whole region-window is in the experiment or out of it.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use abkit_strategy_api::abi_stable::std_types::RString;
use abkit_strategy_api::{
    export_strategy_plugin, Decision, Declaration, ExperimentSpec, Request, StrategyImpl,
};
use abkit_strategy_support::{
    attribute_name, field, invalid, optional_field, parse_raw, Bucketing,
};
use serde::Deserialize;
use std::io::Write;

/// The plugin's name, as in `strategy = "plugin:switchback"`.
pub const NAME: &str = "switchback";

/// Composite keys up to this many bytes are built on the stack; longer regions (rare) fall
/// back to one heap allocation.
const KEY_STACK: usize = 256;

/// What to answer for a unit without the region attribute (or with an empty value).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingRegion {
    /// Not enrolled (the default). The region attribute is declared required, so the SDK
    /// answers such a unit itself, with the reason `missing_attribute`.
    #[default]
    NotEnrolled,
    /// An error: the SDK answers that call with `builtin:hash-v1` (per-unit randomisation)
    /// and counts it against the plugin's error rate.
    Error,
}

/// `strategy_config` as written; fields stay JSON until [`Config::from_json`] checks them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    window_minutes: serde_json::Value,
    region_attribute: serde_json::Value,
    #[serde(default)]
    missing_region: Option<serde_json::Value>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Length of one switchback window in minutes, at least 1.
    pub window_minutes: u32,
    /// The attribute that names the unit's region, e.g. `city`.
    pub region_attribute: String,
    /// What a unit without that attribute gets.
    pub missing_region: MissingRegion,
}

impl Config {
    /// Parses and validates `strategy_config` JSON; errors name the field.
    pub fn from_json(config_json: &str) -> Result<Self, String> {
        let raw: RawConfig = parse_raw(NAME, config_json)?;
        let window_minutes: u32 = field(NAME, "window_minutes", raw.window_minutes)?;
        if window_minutes == 0 {
            return Err(invalid(
                NAME,
                "window_minutes",
                "must be at least 1 (minutes per window), got 0",
            ));
        }
        let region_attribute = attribute_name(NAME, "region_attribute", raw.region_attribute)?;
        let missing_region = optional_field(NAME, "missing_region", raw.missing_region)?;
        Ok(Config {
            window_minutes,
            region_attribute,
            missing_region,
        })
    }
}

/// The switchback strategy for one experiment.
pub struct Switchback {
    window_ms: u64,
    config: Config,
    bucketing: Bucketing,
}

impl Switchback {
    /// Builds the strategy for one experiment from a validated configuration.
    pub fn with_config(spec: &ExperimentSpec<'_>, config: Config) -> Result<Self, String> {
        Ok(Switchback {
            window_ms: u64::from(config.window_minutes) * 60_000,
            config,
            bucketing: Bucketing::of(spec)?,
        })
    }

    /// Builds the strategy for one experiment from its `strategy_config` JSON.
    pub fn new(spec: &ExperimentSpec<'_>) -> Result<Self, String> {
        Switchback::with_config(spec, Config::from_json(spec.strategy_config_json())?)
    }

    /// The window index of a time: `now_ms / (window_minutes * 60_000)`.
    pub fn window_of(&self, now_ms: u64) -> u64 {
        now_ms / self.window_ms
    }
}

impl StrategyImpl for Switchback {
    /// By (region, window); the region is required unless `missing_region = "error"`.
    fn declaration(&self) -> Declaration {
        Declaration::by_attribute(
            &self.config.region_attribute,
            Some(self.window_ms),
            self.config.missing_region == MissingRegion::NotEnrolled,
        )
    }

    fn assign(&self, request: &Request<'_>) -> Decision {
        let region = request.attribute(&self.config.region_attribute);
        let Some(region) = region.filter(|r| !r.is_empty()) else {
            return match self.config.missing_region {
                MissingRegion::NotEnrolled => Decision::NotEnrolled,
                MissingRegion::Error => Decision::Error(RString::from(format!(
                    "unit has no `{}` attribute to switch back by",
                    self.config.region_attribute
                ))),
            };
        };
        let window = self.window_of(request.now_ms());
        with_window_key(region, window, |key| self.bucketing.decide(key))
    }
}

/// Calls `f` with `"<region>@<window>"`, built in a stack buffer when it fits.
fn with_window_key<R>(region: &str, window: u64, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; KEY_STACK];
    let mut rest: &mut [u8] = &mut buf;
    if write!(rest, "{region}@{window}").is_ok() {
        let len = KEY_STACK - rest.len();
        return f(&buf[..len]);
    }
    f(format!("{region}@{window}").as_bytes())
}

export_strategy_plugin! {
    name: NAME,
    version: env!("CARGO_PKG_VERSION"),
    new: Switchback::new,
}

#[cfg(test)]
mod tests {
    use super::*;
    use abkit_bucketing::{bucket, VariantRanges};
    use abkit_strategy_api::{Attribute, Randomisation, StrategyBox};

    const HALF_HOUR_MS: u64 = 30 * 60_000;
    const CONFIG: &str = r#"{"window_minutes": 30, "region_attribute": "city"}"#;

    fn built(
        config_json: &str,
        weights: &[u32],
        coverage_bp: u32,
    ) -> Result<abkit_strategy_api::BuiltStrategy, String> {
        let spec = ExperimentSpec::new("surge", "surge", weights, coverage_bp, config_json);
        abkit_root_module().new_strategy()(&spec)
            .into_result()
            .map_err(|e| e.into_string())
    }

    fn exported(config_json: &str) -> Result<StrategyBox, String> {
        built(config_json, &[1, 1], 10_000).map(|b| b.strategy)
    }

    fn request<'a>(unit: &'a str, attributes: &'a [Attribute<'a>], now_ms: u64) -> Request<'a> {
        Request::at(unit, attributes, now_ms)
    }

    fn variant_of(strategy: &StrategyBox, city: &str, unit: &str, now_ms: u64) -> Decision {
        let attrs = [Attribute::new("city", city)];
        strategy.assign(&request(unit, &attrs, now_ms))
    }

    #[test]
    fn it_declares_region_and_window() {
        let d = built(CONFIG, &[1, 1], 10_000).unwrap().declaration;
        assert_eq!(
            d.randomisation,
            Randomisation::Attribute {
                name: "city".into(),
                window_ms: Some(HALF_HOUR_MS).into()
            }
        );
        assert!(d.attributes[0].required);
        let strict =
            r#"{"window_minutes": 30, "region_attribute": "city", "missing_region": "error"}"#;
        let d = built(strict, &[1, 1], 10_000).unwrap().declaration;
        assert!(!d.attributes[0].required);
    }

    #[test]
    fn every_unit_of_a_city_shares_the_variant_within_a_window() {
        let strategy = exported(CONFIG).unwrap();
        for window in [0_u64, 1, 965_400, 965_401] {
            let start = window * HALF_HOUR_MS;
            let first = variant_of(&strategy, "paris", "user-0", start);
            assert!(matches!(first, Decision::Variant(_)));
            for i in 0..1_000_u64 {
                let unit = format!("user-{i}");
                let now = start + (i * 1_799) % HALF_HOUR_MS; // anywhere inside the window
                assert_eq!(variant_of(&strategy, "paris", &unit, now), first);
            }
        }
    }

    #[test]
    fn the_hashed_unit_is_region_at_window_with_the_request_salt() {
        let strategy = exported(CONFIG).unwrap();
        let ranges = VariantRanges::new(&[1, 1], 10_000).unwrap();
        for window in 0..500_u64 {
            let key = format!("rome@{window}");
            let expected = ranges.variant_of(bucket(b"surge", key.as_bytes()));
            let got = variant_of(&strategy, "rome", "anyone", window * HALF_HOUR_MS + 7);
            assert_eq!(got, Decision::from_index(expected), "{key}");
        }
    }

    #[test]
    fn the_variant_switches_between_windows() {
        let strategy = exported(CONFIG).unwrap();
        let by_window: Vec<Decision> = (0..200_u64)
            .map(|w| variant_of(&strategy, "paris", "u", w * HALF_HOUR_MS))
            .collect();
        let switches = by_window.windows(2).filter(|p| p[0] != p[1]).count();
        assert!(
            (50..=150).contains(&switches),
            "{switches} switches in 199 boundaries"
        );
    }

    #[test]
    fn over_many_windows_the_split_follows_the_weights() {
        let strategy = built(CONFIG, &[1, 3], 10_000).unwrap().strategy;
        let attrs = [Attribute::new("city", "lyon")];
        let windows = 40_000_u64;
        let treated = (0..windows)
            .filter(|w| {
                let req = request("u", &attrs, w * HALF_HOUR_MS);
                strategy.assign(&req) == Decision::Variant(1)
            })
            .count();
        let share = treated as f64 / windows as f64;
        assert!((share - 0.75).abs() < 0.01, "share of variant 1: {share}");
    }

    #[test]
    fn coverage_takes_whole_region_windows_in_or_out() {
        let strategy = built(CONFIG, &[1, 1], 3_000).unwrap().strategy;
        let attrs = [Attribute::new("city", "oslo")];
        let mut enrolled_windows = 0;
        for window in 0..200_u64 {
            let now = window * HALF_HOUR_MS;
            let decide = |unit: &str| strategy.assign(&request(unit, &attrs, now));
            let first = decide("a");
            assert!((0..50).all(|i| decide(&format!("u{i}")) == first));
            enrolled_windows += usize::from(first != Decision::NotEnrolled);
        }
        assert!(
            (30..=90).contains(&enrolled_windows),
            "{enrolled_windows} of 200 windows in"
        );
    }

    #[test]
    fn a_unit_without_the_region_is_not_enrolled_by_default_or_an_error_if_asked() {
        let default = exported(CONFIG).unwrap();
        let no_city: [Attribute<'_>; 1] = [Attribute::new("country", "FR")];
        let empty_city = [Attribute::new("city", "")];
        for attrs in [&no_city[..], &[][..], &empty_city[..]] {
            assert_eq!(
                default.assign(&request("u", attrs, 0)),
                Decision::NotEnrolled
            );
        }
        let strict = exported(
            r#"{"window_minutes": 30, "region_attribute": "city", "missing_region": "error"}"#,
        )
        .unwrap();
        assert_eq!(
            strict.assign(&request("u", &no_city, 0)),
            Decision::Error(RString::from(
                "unit has no `city` attribute to switch back by"
            ))
        );
    }

    #[test]
    fn long_regions_fall_back_to_the_heap_with_the_same_answer() {
        let strategy = exported(CONFIG).unwrap();
        let long = "x".repeat(1_000);
        let ranges = VariantRanges::new(&[1, 1], 10_000).unwrap();
        let expected = ranges.variant_of(bucket(b"surge", format!("{long}@3").as_bytes()));
        let got = variant_of(&strategy, &long, "u", 3 * HALF_HOUR_MS);
        assert_eq!(got, Decision::from_index(expected));
    }

    #[test]
    fn invalid_configs_are_refused_with_the_field_named() {
        let err = |json: &str| exported(json).err().unwrap();
        assert_eq!(
            err(r#"{"window_minutes": 0, "region_attribute": "city"}"#),
            "invalid strategy_config for switchback: field `window_minutes`: must be at least 1 (minutes per window), got 0"
        );
        assert!(
            err(r#"{"window_minutes": 30, "region_attribute": "city", "colour": 1}"#)
                .contains("unknown field `colour`")
        );
        assert!(err(r#"{"region_attribute": "city"}"#).contains("missing field `window_minutes`"));
        assert!(
            err(r#"{"window_minutes": "30", "region_attribute": "city"}"#).starts_with(
                "invalid strategy_config for switchback: field `window_minutes`: invalid type"
            )
        );
        assert!(err(r#"{"window_minutes": 30, "region_attribute": ""}"#)
            .contains("field `region_attribute`"));
        assert!(err(
            r#"{"window_minutes": 30, "region_attribute": "city", "missing_region": "unit"}"#
        )
        .contains("field `missing_region`: unknown variant `unit`"));
    }

    #[test]
    fn config_defaults_missing_region_to_not_enrolled() {
        let config = Config::from_json(CONFIG).unwrap();
        assert_eq!(
            config,
            Config {
                window_minutes: 30,
                region_attribute: "city".into(),
                missing_region: MissingRegion::NotEnrolled,
            }
        );
    }
}
