//! `weighted-hash`: exactly `builtin:hash-v1` (`docs/bucketing-v1.md`), shipped as a plugin.
//!
//! `bucket(salt, unit_id)`, then the variant ranges of the request's `weights` and
//! `coverage_bp`, all computed by `abkit-bucketing`, the same code as the builtin bucketer:
//! falling back from this plugin to the builtin (or back) never moves a unit. It is the
//! reference plugin for the loader, signing and hot-swap paths. It takes no configuration.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use abkit_strategy_api::{export_strategy_plugin, Decision, Request, StrategyImpl};
use abkit_strategy_support::{parse_raw, RangesCache};
use serde::Deserialize;

/// The plugin's name, as in `strategy = "plugin:weighted-hash"`.
pub const NAME: &str = "weighted-hash";

/// `strategy_config` as written: nothing is accepted (`{}`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {}

/// bucketing-v1 by unit id, for one experiment.
pub struct WeightedHash {
    ranges: RangesCache,
}

impl WeightedHash {
    /// Builds the strategy; `strategy_config` must be `{}`.
    pub fn from_config_json(config_json: &str) -> Result<Self, String> {
        let RawConfig {} = parse_raw(NAME, config_json)?;
        Ok(WeightedHash {
            ranges: RangesCache::new(),
        })
    }
}

impl StrategyImpl for WeightedHash {
    fn assign(&self, request: &Request<'_>) -> Decision {
        self.ranges
            .decide_unit(request, request.unit_id.as_str().as_bytes())
    }
}

export_strategy_plugin! {
    name: NAME,
    version: env!("CARGO_PKG_VERSION"),
    new: WeightedHash::from_config_json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use abkit_bucketing::{bucket, coverage_bp, VariantRanges};
    use abkit_strategy_api::abi_stable::std_types::{RSlice, RStr};
    use abkit_strategy_api::StrategyBox;
    use serde::Deserialize;

    fn exported_strategy(config_json: &str) -> Result<StrategyBox, String> {
        abkit_root_module().new_strategy()(RStr::from_str(config_json))
            .into_result()
            .map_err(|e| e.into_string())
    }

    fn request<'a>(salt: &'a str, unit: &'a str, weights: &'a [u32], bp: u32) -> Request<'a> {
        Request {
            unit_id: RStr::from_str(unit),
            experiment: RStr::from_str(salt),
            salt: RStr::from_str(salt),
            weights: RSlice::from_slice(weights),
            coverage_bp: bp,
            attributes: RSlice::from_slice(&[]),
            fixed_now_ms: abkit_strategy_api::abi_stable::std_types::ROption::RSome(0),
        }
    }

    #[test]
    fn answers_exactly_like_abkit_bucketing_for_100k_units() {
        let strategy = exported_strategy("{}").unwrap();
        let cases: [(&[u32], u32); 3] = [
            (&[50, 50], 10_000),
            (&[1, 2, 7], coverage_bp(0.35)),
            (&[5, 0, 3], coverage_bp(1.0)),
        ];
        for (weights, bp) in cases {
            let ranges = VariantRanges::new(weights, bp).unwrap();
            let mut enrolled = 0;
            for i in 0..100_000 {
                let unit = format!("user-{i}");
                let expected = ranges.variant_of(bucket(b"checkout", unit.as_bytes()));
                let got = strategy.assign(&request("checkout", &unit, weights, bp));
                assert_eq!(got, Decision::from_index(expected), "unit {unit}");
                enrolled += usize::from(expected.is_some());
            }
            assert!(enrolled > 0);
        }
    }

    #[test]
    fn passes_the_bucketing_v1_conformance_vectors() {
        #[derive(Deserialize)]
        struct Case {
            salt: String,
            unit: String,
            weights: Vec<u32>,
            coverage: f64,
            variant: Option<usize>,
        }
        #[derive(Deserialize)]
        struct Vectors {
            cases: Vec<Case>,
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/bucketing-v1-vectors.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let vectors: Vectors = serde_json::from_str(&text).unwrap();
        assert!(!vectors.cases.is_empty());
        let strategy = exported_strategy("{}").unwrap();
        for case in &vectors.cases {
            let bp = coverage_bp(case.coverage);
            let got = strategy.assign(&request(&case.salt, &case.unit, &case.weights, bp));
            assert_eq!(
                got,
                Decision::from_index(case.variant),
                "salt {:?} unit {:?}",
                case.salt,
                case.unit
            );
        }
    }

    #[test]
    fn config_must_be_empty() {
        assert!(exported_strategy("{}").is_ok());
        assert!(exported_strategy(" { } ").is_ok());
        let e = exported_strategy(r#"{"salt": "x"}"#).err().unwrap();
        assert!(
            e.starts_with("invalid strategy_config for weighted-hash: unknown field `salt`"),
            "{e}"
        );
        let e = exported_strategy("not json").err().unwrap();
        assert!(
            e.starts_with("invalid strategy_config for weighted-hash: "),
            "{e}"
        );
    }

    #[test]
    fn invalid_weights_are_an_error_for_that_call() {
        let strategy = exported_strategy("{}").unwrap();
        let got = strategy.assign(&request("s", "u", &[], 10_000));
        assert!(matches!(got, Decision::Error(_)), "{got:?}");
    }
}
