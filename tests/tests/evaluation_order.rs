//! The evaluation order of `spec/bucketing-v1.md`, one rule at a time.
#![allow(clippy::unwrap_used)]

use abkit::{Attribute, DecidedBy, Reason, Sdk, Unit};

const CONFIG: &str = r#"
[[experiments]]
key = "e"
variants = [ { name = "control", weight = 1 }, { name = "treatment", weight = 1 } ]
overrides = { "forced" = "treatment" }
targeting = { country = ["US", "CA"], platform = ["ios"] }

[[experiments]]
key = "off"
enabled = false
variants = [ { name = "control", weight = 1 } ]
overrides = { "forced" = "control" }
"#;

fn sdk() -> Sdk {
    Sdk::from_toml_str(CONFIG).unwrap()
}

#[test]
fn disabled_wins_over_override() {
    assert_eq!(
        sdk().assign("off", &Unit::new("forced")).reason,
        Reason::Disabled
    );
}

#[test]
fn override_wins_over_targeting() {
    let a = sdk().assign("e", &Unit::new("forced"));
    assert_eq!(
        (a.variant_name(), a.reason, a.decided_by),
        (Some("treatment"), Reason::Override, DecidedBy::Nobody)
    );
}

#[test]
fn every_targeting_key_must_match_one_listed_value() {
    let sdk = sdk();
    let both = [
        Attribute::new("country", "CA"),
        Attribute::new("platform", "ios"),
    ];
    let one = [Attribute::new("country", "CA")];
    let wrong = [
        Attribute::new("country", "ca"),
        Attribute::new("platform", "ios"),
    ];
    assert_eq!(
        sdk.assign("e", &Unit::new("u").with_attributes(&both))
            .reason,
        Reason::Assigned
    );
    assert_eq!(
        sdk.assign("e", &Unit::new("u").with_attributes(&one))
            .reason,
        Reason::NotTargeted
    );
    assert_eq!(
        sdk.assign("e", &Unit::new("u").with_attributes(&wrong))
            .reason,
        Reason::NotTargeted
    );
}

#[test]
fn unknown_experiment_is_a_not_enrolled_answer() {
    let a = sdk().assign("nope", &Unit::new("u"));
    assert_eq!((a.variant, a.reason), (None, Reason::UnknownExperiment));
}

#[test]
fn layer_bucket_uses_the_layer_salt_and_the_variant_the_experiment_salt() {
    let sdk = Sdk::from_toml_str(
        "[[layers]]\nname=\"L\"\nsalt=\"Lsalt\"\n[[experiments]]\nkey=\"e\"\nsalt=\"esalt\"\n\
         variants=[{name=\"a\",weight=1},{name=\"b\",weight=1}]\nlayer={name=\"L\",range=[0,5000]}\n",
    )
    .unwrap();
    for i in 0..2000 {
        let id = format!("user-{i}");
        let a = sdk.assign("e", &Unit::new(&id));
        let layer_bucket = abkit_bucketing::bucket(b"Lsalt", id.as_bytes());
        if layer_bucket < 5000 {
            let expected = abkit_bucketing::assign("esalt", &id, &[1, 1], 1.0)
                .unwrap()
                .unwrap() as u32;
            assert_eq!(a.variant.map(|v| v.index), Some(expected));
        } else {
            assert_eq!(a.reason, Reason::OutsideLayer);
        }
    }
}

/// Step 5a: a plugin that declared an attribute required never sees a unit without it; the SDK
/// answers `missing_attribute` itself (not `outside_coverage`, which would blame coverage).
#[test]
fn a_unit_without_a_required_attribute_is_missing_attribute_and_the_plugin_is_not_called() {
    use abkit_tests::env::{plugin_experiment_toml, TestEnv};
    use abkit_tests::fixtures::{reference, rf};
    for (library, config, attribute) in [
        (rf::CLUSTER, r#"{ cluster_attribute = "team" }"#, "team"),
        (
            rf::SWITCHBACK,
            r#"{ window_minutes = 30, region_attribute = "city" }"#,
            "city",
        ),
    ] {
        let plugin = library.name;
        let env = TestEnv::new();
        let lib = env.install(&reference(library), "plugins/p.so", plugin, 1);
        let path = env.write_config(&plugin_experiment_toml(plugin, &lib, Some(config)), false);
        let sdk = Sdk::from_file(path).unwrap();
        let calls = |sdk: &Sdk| sdk.status().experiments[0].counters.unwrap().calls;
        let before = calls(&sdk);
        let present = [Attribute::new(attribute, "x-1")];
        let empty = [Attribute::new(attribute, "")];
        let other = [Attribute::new("country", "US")];
        for attrs in [&[][..], &empty[..], &other[..]] {
            let a = sdk.assign("exp", &Unit::new("u").with_attributes(attrs));
            assert_eq!(a.reason, Reason::MissingAttribute, "{plugin} {attrs:?}");
            assert_eq!(a.variant, None);
            assert!(matches!(a.decided_by, DecidedBy::Plugin(p) if p.name == plugin));
        }
        assert_eq!(calls(&sdk), before, "{plugin}: the plugin was not called");
        let a = sdk.assign("exp", &Unit::new("u").with_attributes(&present));
        assert_ne!(a.reason, Reason::MissingAttribute);
        assert_eq!(calls(&sdk), before + 1);
        assert_eq!(Reason::MissingAttribute.as_str(), "missing_attribute");
    }
}
