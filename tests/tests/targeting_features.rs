//! Holdouts, `bucket_by` and prerequisites (`docs/bucketing-v1.md` sections 6.1-6.3), each rule
//! checked against an independent computation: the bucket is recomputed here with `sha2`
//! directly (`be_u64(SHA-256(salt ':' value)[0..8]) * 10000 >> 64`), not with abkit's code.
#![allow(clippy::unwrap_used)]

use abkit::{Attribute, Config, DecidedBy, Reason, Sdk, Unit};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// bucketing-v1's bucket, computed independently of `abkit_bucketing`.
fn bucket(salt: &str, value: &str) -> u32 {
    let digest = Sha256::digest(format!("{salt}:{value}").as_bytes());
    let x = u64::from_be_bytes(digest[..8].try_into().unwrap());
    ((u128::from(x) * 10_000) >> 64) as u32
}

/// The variant of a 2-variant 50/50 experiment at full coverage, from its bucket.
fn half(b: u32) -> &'static str {
    if b < 5_000 {
        "a"
    } else {
        "b"
    }
}

fn sdk(toml: &str) -> Sdk {
    Sdk::from_toml_str(toml).unwrap()
}

const TWO: &str = r#"variants = [ { name = "a", weight = 1 }, { name = "b", weight = 1 } ]"#;

#[test]
fn a_unit_is_held_out_iff_its_holdout_bucket_is_below_the_holdout_coverage() {
    let s = sdk(&format!(
        "[[holdouts]]\nname = \"h2026\"\ncoverage = 0.05\nexperiments = [\"*\"]\n\
         [[experiments]]\nkey = \"e\"\n{TWO}\n[[experiments]]\nkey = \"f\"\n{TWO}\n"
    ));
    let mut held = 0;
    for i in 0..20_000 {
        let id = format!("user-{i}");
        let out = bucket("h2026", &id) < 500;
        held += usize::from(out);
        for key in ["e", "f"] {
            let a = s.assign(key, &Unit::new(&id));
            if out {
                assert_eq!((a.reason, a.variant), (Reason::Holdout, None), "{id}");
                assert_eq!(a.decided_by, DecidedBy::Nobody);
            } else {
                assert_eq!(a.reason, Reason::Assigned, "{id}");
                assert_eq!(a.variant_name(), Some(half(bucket(key, &id))), "{id}");
            }
        }
    }
    assert!((800..1_200).contains(&held), "about 5% held out: {held}");
    assert_eq!(Reason::Holdout.as_str(), "holdout");
}

#[test]
fn a_holdout_covers_only_the_experiments_and_layers_it_lists() {
    let s = sdk(&format!(
        "[[holdouts]]\nname = \"h\"\ncoverage = 1.0\nexperiments = [\"listed\"]\nlayers = [\"L\"]\n\
         [[experiments]]\nkey = \"listed\"\n{TWO}\n\
         [[experiments]]\nkey = \"in_layer\"\nlayer = {{ name = \"L\", range = [0, 10000] }}\n{TWO}\n\
         [[experiments]]\nkey = \"free\"\n{TWO}\n"
    ));
    let u = Unit::new("u-1");
    assert_eq!(s.assign("listed", &u).reason, Reason::Holdout);
    assert_eq!(s.assign("in_layer", &u).reason, Reason::Holdout);
    assert_eq!(s.assign("free", &u).reason, Reason::Assigned);
}

#[test]
fn overrides_beat_holdouts_and_holdouts_beat_targeting() {
    let s = sdk(&format!(
        "[[holdouts]]\nname = \"h\"\ncoverage = 1.0\nexperiments = [\"*\"]\n\
         [[experiments]]\nkey = \"e\"\ntargeting = {{ country = [\"US\"] }}\noverrides = {{ \"vip\" = \"b\" }}\n{TWO}\n"
    ));
    assert_eq!(s.assign("e", &Unit::new("vip")).reason, Reason::Override);
    // Not targeted too, but the holdout comes first.
    assert_eq!(s.assign("e", &Unit::new("x")).reason, Reason::Holdout);
}

#[test]
fn bucket_by_hashes_the_first_listed_attribute_present() {
    let s = sdk(&format!(
        "[[experiments]]\nkey = \"e\"\nbucket_by = [\"account_id\", \"device_id\"]\noverrides = {{ \"forced\" = \"a\" }}\n{TWO}\n"
    ));
    for i in 0..2_000 {
        let (account, device) = (format!("acct-{i}"), format!("dev-{i}"));
        let both = [
            Attribute::new("device_id", &device),
            Attribute::new("account_id", &account),
        ];
        let device_only = [Attribute::new("device_id", &device)];
        let empty_account = [
            Attribute::new("account_id", ""),
            Attribute::new("device_id", &device),
        ];
        // Anonymous then logged in: the same device keeps its variant while only the device
        // is known; the account decides once it is known, whatever the unit id is.
        let by_account = s.assign("e", &Unit::new("anything").with_attributes(&both));
        assert_eq!(by_account.variant_name(), Some(half(bucket("e", &account))));
        let other_id = s.assign("e", &Unit::new("other").with_attributes(&both));
        assert_eq!(other_id.variant, by_account.variant);
        let by_device = s.assign("e", &Unit::new("x").with_attributes(&device_only));
        assert_eq!(by_device.variant_name(), Some(half(bucket("e", &device))));
        let skipped_empty = s.assign("e", &Unit::new("x").with_attributes(&empty_account));
        assert_eq!(
            skipped_empty.variant, by_device.variant,
            "an empty value counts as absent"
        );
    }
    let none = s.assign("e", &Unit::new("u"));
    assert_eq!(
        (none.reason, none.variant),
        (Reason::MissingBucketKey, None)
    );
    assert_eq!(Reason::MissingBucketKey.as_str(), "missing_bucket_key");
    // Overrides still match the unit id.
    assert_eq!(s.assign("e", &Unit::new("forced")).reason, Reason::Override);
}

#[test]
fn bucket_by_unit_names_the_unit_id() {
    let s = sdk(&format!(
        "[[experiments]]\nkey = \"e\"\nbucket_by = [\"account_id\", \"unit\"]\n{TWO}\n"
    ));
    let a = s.assign("e", &Unit::new("user-7"));
    assert_eq!(a.variant_name(), Some(half(bucket("e", "user-7"))));
}

#[test]
fn prerequisites_enrol_only_units_the_required_experiment_put_in_the_listed_variants() {
    let s = sdk(&format!(
        "[[experiments]]\nkey = \"base\"\n{TWO}\n\
         [[experiments]]\nkey = \"follow\"\nrequires = {{ experiment = \"base\", variants = [\"b\"] }}\n{TWO}\n"
    ));
    for i in 0..2_000 {
        let id = format!("user-{i}");
        let a = s.assign("follow", &Unit::new(&id));
        if half(bucket("base", &id)) == "b" {
            assert_eq!(a.variant_name(), Some(half(bucket("follow", &id))), "{id}");
        } else {
            assert_eq!((a.reason, a.variant), (Reason::Prerequisite, None), "{id}");
        }
    }
    assert_eq!(Reason::Prerequisite.as_str(), "prerequisite");
}

#[test]
fn prerequisite_cycles_unknown_targets_and_long_chains_are_refused_with_the_path_spelled_out() {
    let exp = |key: &str, requires: &str| {
        format!("[[experiments]]\nkey = \"{key}\"\nrequires = {{ experiment = \"{requires}\", variants = [\"a\"] }}\n{TWO}\n")
    };
    let err = |toml: String| {
        Config::from_toml_str(&toml, "t", std::path::Path::new("."))
            .unwrap_err()
            .to_string()
    };
    let cycle = err(exp("a", "b") + &exp("b", "c") + &exp("c", "a"));
    assert!(cycle.contains("prerequisites form a cycle: "), "{cycle}");
    assert!(
        cycle.contains("a -> b -> c -> a")
            || cycle.contains("b -> c -> a -> b")
            || cycle.contains("c -> a -> b -> c"),
        "{cycle}"
    );
    let own = err(exp("a", "a"));
    assert!(own.contains("a -> a"), "{own}");
    let unknown = err(exp("a", "nope"));
    assert!(
        unknown.contains("experiments[0].requires.experiment"),
        "{unknown}"
    );
    let bad_variant = err(format!(
        "[[experiments]]\nkey = \"base\"\n{TWO}\n[[experiments]]\nkey = \"f\"\nrequires = {{ experiment = \"base\", variants = [\"zz\"] }}\n{TWO}\n"
    ));
    assert!(
        bad_variant.contains("names variant \"zz\""),
        "{bad_variant}"
    );
    let mut chain = format!("[[experiments]]\nkey = \"e0\"\n{TWO}\n");
    for i in 1..=6 {
        chain += &exp(&format!("e{i}"), &format!("e{}", i - 1));
    }
    let long = err(chain);
    assert!(long.contains("longer than 4"), "{long}");
}

#[test]
fn holdout_and_bucket_by_mistakes_are_reported_with_their_field() {
    let err = |toml: &str| {
        Config::from_toml_str(toml, "t", std::path::Path::new("."))
            .unwrap_err()
            .to_string()
    };
    let e = err(&format!(
        "[[holdouts]]\nname = \"h\"\ncoverage = 1.5\nexperiments = [\"missing\"]\nlayers = [\"nope\"]\nbucket_by = []\n[[experiments]]\nkey = \"e\"\n{TWO}\n"
    ));
    for needle in [
        "holdouts[0].coverage",
        "holdouts[0].experiments[0]",
        "holdouts[0].layers[0]",
        "holdouts[0].bucket_by",
    ] {
        assert!(e.contains(needle), "{needle} in {e}");
    }
    let e = err(&format!(
        "[[experiments]]\nkey = \"e\"\nbucket_by = [\"a\", \"a\"]\n{TWO}\n"
    ));
    assert!(e.contains("experiments[0].bucket_by[1]"), "{e}");
}

#[test]
fn simulate_reports_the_holdout_share_and_tests_it() {
    use abkit::simulate::{self, SimulateOptions, SyntheticSpec, UnitSource};
    let s = sdk(&format!(
        "[[holdouts]]\nname = \"h\"\ncoverage = 0.1\nexperiments = [\"*\"]\n[[experiments]]\nkey = \"e\"\n{TWO}\n"
    ));
    let report = simulate::run(
        &s.snapshot(),
        UnitSource::synthetic(SyntheticSpec::new(50_000)),
        &SimulateOptions::default(),
    )
    .unwrap();
    let e = report.experiment("e").unwrap();
    let held = e.not_enrolled.get(Reason::Holdout);
    assert!((4_500..5_500).contains(&held), "about 10% held out: {held}");
    let h = e.srm.holdout.as_ref().expect("a holdout test");
    assert!(h.p_value > 1e-4, "a correct holdout passes: {h:?}");
    assert!(report.all_ok());
}

proptest! {
    /// Layers and holdouts that bucket by an attribute stay exclusive per that attribute:
    /// every unit of one account sees the same layer slice and the same holdout answer,
    /// whatever its unit id, and two experiments of one layer never both enrol it.
    #[test]
    fn layers_and_holdouts_stay_exclusive_per_bucket_key(
        accounts in proptest::collection::vec("[a-z0-9]{1,12}", 1..20),
        split in 1u32..9_999,
        ids in proptest::collection::vec("[a-z0-9-]{1,10}", 1..5),
    ) {
        let s = sdk(&format!(
            "[[layers]]\nname = \"L\"\nbucket_by = [\"account_id\"]\n\
             [[holdouts]]\nname = \"h\"\ncoverage = 0.3\nlayers = [\"L\"]\nbucket_by = [\"account_id\"]\n\
             [[experiments]]\nkey = \"x\"\nbucket_by = [\"account_id\"]\nlayer = {{ name = \"L\", range = [0, {split}] }}\n{TWO}\n\
             [[experiments]]\nkey = \"y\"\nbucket_by = [\"account_id\"]\nlayer = {{ name = \"L\", range = [{split}, 10000] }}\n{TWO}\n"
        ));
        for account in &accounts {
            let attrs = [Attribute::new("account_id", account)];
            let answers: Vec<_> = ids
                .iter()
                .map(|id| {
                    let u = Unit::new(id).with_attributes(&attrs);
                    (s.assign("x", &u), s.assign("y", &u))
                })
                .collect();
            for (x, y) in &answers {
                prop_assert!(!(x.is_enrolled() && y.is_enrolled()), "both layers enrol {account}");
                prop_assert_eq!((x.reason, x.variant), (answers[0].0.reason, answers[0].0.variant));
                prop_assert_eq!((y.reason, y.variant), (answers[0].1.reason, answers[0].1.variant));
            }
            let held = bucket("h", account) < 3_000;
            prop_assert_eq!(answers[0].0.reason == Reason::Holdout, held);
        }
    }
}

#[test]
fn diff_counts_the_units_a_new_holdout_takes_out_exactly() {
    use abkit::simulate::{diff, SimulateOptions, SyntheticIds, SyntheticSpec, UnitSource};
    let before = sdk(&format!("[[experiments]]\nkey = \"e\"\n{TWO}\n"));
    let after = sdk(&format!(
        "[[holdouts]]\nname = \"h\"\ncoverage = 0.2\nexperiments = [\"e\"]\n[[experiments]]\nkey = \"e\"\n{TWO}\n"
    ));
    let spec = SyntheticSpec::new(20_000);
    let report = diff(
        &before.snapshot(),
        &after.snapshot(),
        UnitSource::synthetic(spec.clone()),
        &SimulateOptions::default(),
    )
    .unwrap();
    let e = report.experiment("e").unwrap();
    // Independently: the units whose holdout bucket is below 2000 leave; nobody moves.
    let mut ids = SyntheticIds::new(&spec);
    let expected = (0..20_000)
        .filter(|&i| bucket("h", ids.id(i)) < 2_000)
        .count() as u64;
    assert_eq!(e.left, expected);
    assert_eq!((e.moved, e.entered), (0, 0));
    assert_eq!(e.stayed, 20_000 - expected);
}

#[test]
fn a_plugin_of_an_experiment_with_bucket_by_receives_the_bucket_key_as_its_unit_id() {
    use abkit_tests::env::TestEnv;
    use abkit_tests::fixtures::{reference, rf};
    let env = TestEnv::new();
    let lib = env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        1,
    );
    let path = env.write_config(
        &format!(
            "[[plugins]]\nname = \"weighted-hash\"\npath = {:?}\n\
             [[experiments]]\nkey = \"e\"\nstrategy = \"plugin:weighted-hash\"\nbucket_by = [\"account_id\"]\n{TWO}\n",
            lib.display().to_string()
        ),
        false,
    );
    let s = Sdk::from_file(path).unwrap();
    for i in 0..500 {
        let account = format!("acct-{i}");
        let attrs = [Attribute::new("account_id", &account)];
        let a = s.assign(
            "e",
            &Unit::new(&format!("device-{i}")).with_attributes(&attrs),
        );
        assert!(matches!(a.decided_by, DecidedBy::Plugin(_)), "{a:?}");
        // weighted-hash is bucketing-v1 of its unit id: here, the account.
        assert_eq!(a.variant_name(), Some(half(bucket("e", &account))));
    }
}

/// `tests/data/targeting-v1-vectors.json`: cases computed with Python's hashlib by
/// `tests/data/gen_targeting_vectors.py`, independently of abkit's code, each checked here
/// through a one-experiment SDK configured for its rule.
#[test]
fn the_targeting_vectors_pass_through_the_sdk() {
    #[derive(serde::Deserialize)]
    struct Case {
        rule: String,
        #[serde(default)]
        holdout_salt: String,
        #[serde(default)]
        holdout_coverage_bp: u32,
        #[serde(default)]
        bucket_by: Vec<String>,
        #[serde(default)]
        required_salt: String,
        #[serde(default)]
        required_variants: Vec<String>,
        experiment_salt: String,
        unit: String,
        attributes: std::collections::BTreeMap<String, String>,
        reason: String,
        variant: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Vectors {
        cases: Vec<Case>,
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/targeting-v1-vectors.json"
    );
    let vectors: Vectors = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(vectors.cases.len() >= 200);
    let mut rules = std::collections::BTreeSet::new();
    for case in &vectors.cases {
        let exp = format!(
            "[[experiments]]\nkey = \"e\"\nsalt = \"{}\"\n{TWO}\n",
            case.experiment_salt
        );
        let toml = match case.rule.as_str() {
            "holdout" => format!(
                "[[holdouts]]\nname = \"h\"\nsalt = \"{}\"\ncoverage = {}\nexperiments = [\"e\"]\n{exp}",
                case.holdout_salt,
                f64::from(case.holdout_coverage_bp) / 10_000.0
            ),
            "bucket_by" => format!("{exp}bucket_by = {:?}\n", case.bucket_by),
            "prerequisite" => format!(
                "[[experiments]]\nkey = \"req\"\nsalt = \"{}\"\n{TWO}\n{exp}requires = {{ experiment = \"req\", variants = {:?} }}\n",
                case.required_salt, case.required_variants
            ),
            other => panic!("unknown rule {other}"),
        };
        rules.insert(case.rule.clone());
        let s = sdk(&toml);
        let attrs: Vec<Attribute<'_>> = case
            .attributes
            .iter()
            .map(|(k, v)| Attribute::new(k, v))
            .collect();
        let a = s.assign("e", &Unit::new(&case.unit).with_attributes(&attrs));
        assert_eq!(
            a.reason.as_str(),
            case.reason,
            "{} {}",
            case.rule,
            case.unit
        );
        assert_eq!(
            a.variant_name(),
            case.variant.as_deref(),
            "{} {}",
            case.rule,
            case.unit
        );
    }
    assert_eq!(rules.len(), 3, "every rule has cases");
}
