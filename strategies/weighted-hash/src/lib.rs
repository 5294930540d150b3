//! `weighted-hash`: exactly `builtin:hash-v1` (`docs/bucketing-v1.md`), shipped as a plugin.
//!
//! `bucket(salt, unit_id)`, then the variant ranges of the experiment's `weights` and
//! `coverage_bp` (both prepared once, when the strategy is built for the experiment), all
//! computed by `abkit-bucketing`, the same code as the builtin bucketer:
//! falling back from this plugin to the builtin (or back) never moves a unit. It is the
//! reference plugin for the loader, signing and hot-swap paths. It takes no configuration.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use abkit_strategy_api::{export_strategy_plugin, Decision, ExperimentSpec, Request, StrategyImpl};
use abkit_strategy_support::{parse_raw, Bucketing};
use serde::Deserialize;

/// The plugin's name, as in `strategy = "plugin:weighted-hash"`.
pub const NAME: &str = "weighted-hash";

/// `strategy_config` as written: nothing is accepted (`{}`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {}

/// bucketing-v1 by unit id, for one experiment.
pub struct WeightedHash {
    bucketing: Bucketing,
}

impl WeightedHash {
    /// Builds the strategy for one experiment; `strategy_config` must be `{}`.
    pub fn new(spec: &ExperimentSpec<'_>) -> Result<Self, String> {
        let RawConfig {} = parse_raw(NAME, spec.strategy_config_json())?;
        Ok(WeightedHash {
            bucketing: Bucketing::of(spec)?,
        })
    }
}

impl StrategyImpl for WeightedHash {
    // The default declaration: by unit id, no attributes.
    #[inline]
    fn assign(&self, request: &Request<'_>) -> Decision {
        self.bucketing.decide(request.unit_id.as_str().as_bytes())
    }
}

export_strategy_plugin! {
    name: NAME,
    version: env!("CARGO_PKG_VERSION"),
    new: WeightedHash::new,
}

#[cfg(test)]
mod tests {
    use super::*;
    use abkit_bucketing::{bucket, coverage_bp, VariantRanges};
    use abkit_strategy_api::{Declaration, StrategyBox};
    use serde::Deserialize;

    fn exported_strategy(
        weights: &[u32],
        bp: u32,
        config_json: &str,
    ) -> Result<StrategyBox, String> {
        let spec = ExperimentSpec::new("checkout", "checkout", weights, bp, config_json);
        abkit_root_module().new_strategy()(&spec)
            .into_result()
            .map(|built| {
                assert_eq!(built.declaration, Declaration::unit_id());
                built.strategy
            })
            .map_err(|e| e.into_string())
    }

    fn request(unit: &str) -> Request<'_> {
        Request::at(unit, &[], 0)
    }

    #[test]
    fn answers_exactly_like_abkit_bucketing_for_100k_units() {
        let cases: [(&[u32], u32); 3] = [
            (&[50, 50], 10_000),
            (&[1, 2, 7], coverage_bp(0.35)),
            (&[5, 0, 3], coverage_bp(1.0)),
        ];
        for (weights, bp) in cases {
            let strategy = exported_strategy(weights, bp, "{}").unwrap();
            let ranges = VariantRanges::new(weights, bp).unwrap();
            let mut enrolled = 0;
            for i in 0..100_000 {
                let unit = format!("user-{i}");
                let expected = ranges.variant_of(bucket(b"checkout", unit.as_bytes()));
                let got = strategy.assign(&request(&unit));
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
        for case in &vectors.cases {
            let bp = coverage_bp(case.coverage);
            let spec = ExperimentSpec::new("v", &case.salt, &case.weights, bp, "{}");
            let strategy = abkit_root_module().new_strategy()(&spec).unwrap().strategy;
            let got = strategy.assign(&request(&case.unit));
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
        let build = |json| exported_strategy(&[1, 1], 10_000, json);
        assert!(build("{}").is_ok());
        assert!(build(" { } ").is_ok());
        let e = build(r#"{"salt": "x"}"#).err().unwrap();
        assert!(
            e.starts_with("invalid strategy_config for weighted-hash: unknown field `salt`"),
            "{e}"
        );
        let e = build("not json").err().unwrap();
        assert!(
            e.starts_with("invalid strategy_config for weighted-hash: "),
            "{e}"
        );
    }

    #[test]
    fn invalid_weights_refuse_the_build() {
        let e = exported_strategy(&[], 10_000, "{}").err().unwrap();
        assert!(e.contains("at least one variant"), "{e}");
    }
}
