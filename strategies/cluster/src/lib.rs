//! `cluster`: randomises by a group attribute (a team, a household, a store) so that a
//! whole cluster shares one variant.
//!
//! The cluster's value takes the place of the unit id in bucketing-v1: the variant is
//! `bucket(salt, <attribute value>)` against the experiment's weights and coverage. So an
//! analyst can reproduce any cluster's variant with the builtin bucketer by passing the
//! cluster id as the unit, and coverage takes or leaves whole clusters.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use abkit_strategy_api::abi_stable::std_types::RString;
use abkit_strategy_api::{
    export_strategy_plugin, Decision, Declaration, ExperimentSpec, Request, StrategyImpl,
};
use abkit_strategy_support::{attribute_name, optional_field, parse_raw, Bucketing};
use serde::Deserialize;

/// The plugin's name, as in `strategy = "plugin:cluster"`.
pub const NAME: &str = "cluster";

/// What to answer for a unit without the cluster attribute (or with an empty value).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// Randomise that unit on its own, by its unit id (a cluster of one).
    Unit,
    /// Not enrolled (the default): the analysis unit stays the cluster. The attribute is
    /// declared required, so the SDK answers such a unit itself, with the reason
    /// `missing_attribute`.
    #[default]
    NotEnrolled,
    /// An error: the SDK answers that call with `builtin:hash-v1` and counts it against the
    /// plugin's error rate.
    Error,
}

/// `strategy_config` as written; fields stay JSON until [`Config::from_json`] checks them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster_attribute: serde_json::Value,
    #[serde(default)]
    missing: Option<serde_json::Value>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The attribute whose value names the unit's cluster, e.g. `team_id`.
    pub cluster_attribute: String,
    /// What a unit without that attribute gets.
    pub missing: Missing,
}

impl Config {
    /// Parses and validates `strategy_config` JSON; errors name the field.
    pub fn from_json(config_json: &str) -> Result<Self, String> {
        let raw: RawConfig = parse_raw(NAME, config_json)?;
        let cluster_attribute = attribute_name(NAME, "cluster_attribute", raw.cluster_attribute)?;
        let missing = optional_field(NAME, "missing", raw.missing)?;
        Ok(Config {
            cluster_attribute,
            missing,
        })
    }
}

/// The cluster strategy for one experiment.
pub struct Cluster {
    config: Config,
    bucketing: Bucketing,
}

impl Cluster {
    /// Builds the strategy for one experiment from a validated configuration.
    pub fn with_config(spec: &ExperimentSpec<'_>, config: Config) -> Result<Self, String> {
        Ok(Cluster {
            config,
            bucketing: Bucketing::of(spec)?,
        })
    }

    /// Builds the strategy for one experiment from its `strategy_config` JSON.
    pub fn new(spec: &ExperimentSpec<'_>) -> Result<Self, String> {
        Cluster::with_config(spec, Config::from_json(spec.strategy_config_json())?)
    }
}

impl StrategyImpl for Cluster {
    fn declaration(&self) -> Declaration {
        let attribute = &self.config.cluster_attribute;
        match self.config.missing {
            // Without the attribute a unit is not enrolled: the SDK says why, without a call.
            Missing::NotEnrolled => Declaration::by_attribute(attribute, None, true),
            // A unit without it is its own cluster: by attribute, falling back to the unit id.
            Missing::Unit => Declaration::by_attribute(attribute, None, false),
            Missing::Error => Declaration::by_attribute(attribute, None, false),
        }
    }

    fn assign(&self, request: &Request<'_>) -> Decision {
        let cluster = request.attribute(&self.config.cluster_attribute);
        if let Some(cluster) = cluster.filter(|c| !c.is_empty()) {
            return self.bucketing.decide(cluster.as_bytes());
        }
        match self.config.missing {
            Missing::Unit => self.bucketing.decide(request.unit_id.as_str().as_bytes()),
            Missing::NotEnrolled => Decision::NotEnrolled,
            Missing::Error => Decision::Error(RString::from(format!(
                "unit has no `{}` attribute to cluster by",
                self.config.cluster_attribute
            ))),
        }
    }
}

export_strategy_plugin! {
    name: NAME,
    version: env!("CARGO_PKG_VERSION"),
    new: Cluster::new,
}

#[cfg(test)]
mod tests {
    use super::*;
    use abkit_bucketing::{bucket, VariantRanges};
    use abkit_strategy_api::{Attribute, Randomisation, StrategyBox};

    const WEIGHTS: [u32; 3] = [1, 1, 2];

    fn built(config_json: &str) -> Result<abkit_strategy_api::BuiltStrategy, String> {
        let spec = ExperimentSpec::new("seats", "seats", &WEIGHTS, 10_000, config_json);
        abkit_root_module().new_strategy()(&spec)
            .into_result()
            .map_err(|e| e.into_string())
    }

    fn exported(config_json: &str) -> Result<StrategyBox, String> {
        built(config_json).map(|b| b.strategy)
    }

    fn with_missing(missing: &str) -> StrategyBox {
        exported(&format!(
            r#"{{"cluster_attribute": "team_id", "missing": "{missing}"}}"#
        ))
        .unwrap()
    }

    fn request<'a>(unit: &'a str, attributes: &'a [Attribute<'a>]) -> Request<'a> {
        Request::at(unit, attributes, 0)
    }

    #[test]
    fn it_declares_the_cluster_attribute_required_unless_it_handles_a_missing_one() {
        let declared = |missing: &str| {
            built(&format!(
                r#"{{"cluster_attribute": "team_id", "missing": "{missing}"}}"#
            ))
            .unwrap()
            .declaration
        };
        let d = declared("not_enrolled");
        assert_eq!(
            d.randomisation,
            Randomisation::Attribute {
                name: "team_id".into(),
                window_ms: None.into()
            }
        );
        assert!(d.attributes[0].required);
        assert!(!declared("unit").attributes[0].required);
        assert!(!declared("error").attributes[0].required);
    }

    fn builtin(unit: &str) -> Decision {
        let ranges = VariantRanges::new(&WEIGHTS, 10_000).unwrap();
        Decision::from_index(ranges.variant_of(bucket(b"seats", unit.as_bytes())))
    }

    #[test]
    fn every_member_of_a_cluster_gets_the_cluster_variant() {
        let strategy = exported(r#"{"cluster_attribute": "team_id"}"#).unwrap();
        let mut variants = std::collections::BTreeSet::new();
        for team in 0..100 {
            let team = format!("team-{team}");
            let attrs = [
                Attribute::new("country", "DE"),
                Attribute::new("team_id", &team),
            ];
            let expected = builtin(&team);
            for user in 0..50 {
                let unit = format!("user-{user}-{team}");
                assert_eq!(strategy.assign(&request(&unit, &attrs)), expected);
            }
            variants.insert(format!("{expected:?}"));
        }
        assert_eq!(variants.len(), 3, "100 teams cover all 3 variants");
    }

    #[test]
    fn missing_unit_randomises_by_the_unit_id() {
        let strategy = with_missing("unit");
        for i in 0..200 {
            let unit = format!("user-{i}");
            assert_eq!(strategy.assign(&request(&unit, &[])), builtin(&unit));
        }
    }

    #[test]
    fn missing_not_enrolled_is_the_default_and_covers_empty_values() {
        let empty = [Attribute::new("team_id", "")];
        for strategy in [
            exported(r#"{"cluster_attribute": "team_id"}"#).unwrap(),
            with_missing("not_enrolled"),
        ] {
            assert_eq!(strategy.assign(&request("u", &[])), Decision::NotEnrolled);
            assert_eq!(
                strategy.assign(&request("u", &empty)),
                Decision::NotEnrolled
            );
        }
    }

    #[test]
    fn missing_error_reports_the_attribute() {
        assert_eq!(
            with_missing("error").assign(&request("u", &[])),
            Decision::Error(RString::from(
                "unit has no `team_id` attribute to cluster by"
            ))
        );
    }

    #[test]
    fn invalid_configs_are_refused_with_the_field_named() {
        let err = |json: &str| exported(json).err().unwrap();
        assert!(err("{}").contains("missing field `cluster_attribute`"));
        assert!(err(r#"{"cluster_attribute": "t", "fallback": "unit"}"#)
            .contains("unknown field `fallback`"));
        assert!(err(r#"{"cluster_attribute": 7}"#).starts_with(
            "invalid strategy_config for cluster: field `cluster_attribute`: invalid type"
        ));
        assert!(err(r#"{"cluster_attribute": "t", "missing": "drop"}"#)
            .contains("field `missing`: unknown variant `drop`"));
        assert!(err(r#"{"cluster_attribute": ""}"#).contains("field `cluster_attribute`"));
    }
}
