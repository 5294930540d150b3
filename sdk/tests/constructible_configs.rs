//! A `Config` is valid by construction: every public way to make one (`Config::from_toml_str`,
//! `Config::from_file`, `Sdk::from_toml_str`, `Sdk::from_file`, `Sdk::builder().build(..)`,
//! `build_from_file`) parses and validates, so `assign` never panics on what it accepts, and
//! what it accepts is self-consistent (coverage and coverage_bp agree, overrides in range).
#![allow(clippy::unwrap_used)]

use abkit::{Attribute, Config, Reason, Sdk, Unit};
use proptest::prelude::*;
use std::path::Path;

/// One generated experiment: mostly plausible, often wrong (zero weights, coverage out of
/// range, overrides naming unknown variants, slices past the end, reversed slices).
#[derive(Debug, Clone)]
struct Exp {
    weights: Vec<u32>,
    coverage: f64,
    enabled: bool,
    /// (unit, variant number; may be past the last variant)
    overrides: Vec<(u8, u8)>,
    slice: Option<(u32, u32)>,
    targeted: bool,
}

fn exp() -> impl Strategy<Value = Exp> {
    (
        prop::collection::vec(prop_oneof![Just(0u32), 0u32..100, Just(u32::MAX)], 0..5),
        prop_oneof![Just(0.0), Just(1.0), -0.5f64..1.5, 0.0f64..=1.0],
        any::<bool>(),
        prop::collection::vec((0u8..6, 0u8..6), 0..4),
        prop::option::of((0u32..12_000, 0u32..12_000)),
        any::<bool>(),
    )
        .prop_map(
            |(weights, coverage, enabled, overrides, slice, targeted)| Exp {
                weights,
                coverage,
                enabled,
                overrides,
                slice,
                targeted,
            },
        )
}

fn toml(exps: &[Exp]) -> String {
    let mut out = String::new();
    for (i, e) in exps.iter().enumerate() {
        out += &format!("[[experiments]]\nkey = \"e{i}\"\nenabled = {}\n", e.enabled);
        out += &format!("coverage = {:?}\n", e.coverage);
        let variants: Vec<String> = e
            .weights
            .iter()
            .enumerate()
            .map(|(v, w)| format!("{{ name = \"v{v}\", weight = {w} }}"))
            .collect();
        out += &format!("variants = [{}]\n", variants.join(", "));
        if !e.overrides.is_empty() {
            let o: Vec<String> = e
                .overrides
                .iter()
                .map(|(u, v)| format!("\"u{u}\" = \"v{v}\""))
                .collect();
            out += &format!("overrides = {{ {} }}\n", o.join(", "));
        }
        if let Some((start, end)) = e.slice {
            out += &format!("layer = {{ name = \"l\", range = [{start}, {end}] }}\n");
        }
        if e.targeted {
            out += "targeting = { country = [\"US\"] }\n";
        }
    }
    out
}

/// Assigns a spread of units (override ids, targeted and not) in every experiment of `sdk`
/// and checks each answer against `config`.
fn assign_all(sdk: &Sdk, config: &Config) {
    let us = [Attribute::new("country", "US")];
    for e in config.experiments() {
        assert_eq!(
            e.coverage_bp(),
            (e.coverage() * 10_000.0 + 0.5).floor() as u32,
            "{}: coverage and coverage_bp disagree",
            e.key()
        );
        for i in 0..64 {
            let id = if i < 6 {
                format!("u{i}")
            } else {
                format!("user-{i}")
            };
            for attrs in [&us[..], &[]] {
                let a = sdk.assign(e.key(), &Unit::new(&id).with_attributes(attrs));
                if let Some(v) = a.variant {
                    let configured = &e.variants()[v.index as usize];
                    assert_eq!(v.name, configured.name, "{}", e.key());
                }
                if let Some((_, index)) = e.overrides().iter().find(|(u, _)| *u == id) {
                    if e.enabled() {
                        assert_eq!(a.reason, Reason::Override);
                        assert_eq!(a.variant.map(|v| v.index), Some(*index));
                    }
                }
            }
        }
    }
    let unknown = sdk.assign("no-such-experiment", &Unit::new("u0"));
    assert_eq!(unknown.reason, Reason::UnknownExperiment);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever the text, a constructor either refuses it or yields an SDK whose `assign`
    /// answers every unit (no panic), with answers that match the configuration.
    #[test]
    fn every_public_constructor_yields_a_config_assign_cannot_panic_on(
        exps in prop::collection::vec(exp(), 1..4)
    ) {
        let text = toml(&exps);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abkit.toml");
        std::fs::write(&file, &text).unwrap();

        let parsed = Config::from_toml_str(&text, "<generated>", Path::new("."));
        let from_file = Config::from_file(&file);
        prop_assert_eq!(parsed.is_ok(), from_file.is_ok(), "{}", text);
        prop_assert_eq!(Sdk::from_toml_str(&text).is_ok(), parsed.is_ok(), "{}", text);
        prop_assert_eq!(Sdk::from_file(&file).is_ok(), parsed.is_ok(), "{}", text);
        prop_assert_eq!(
            Sdk::builder().build_from_file(&file).is_ok(),
            parsed.is_ok(),
            "{}",
            text
        );
        if let Ok(config) = parsed {
            let sdk = Sdk::builder().build(config.clone()).unwrap();
            assign_all(&sdk, &config);
            let sdk = Sdk::from_config(from_file.unwrap()).unwrap();
            assign_all(&sdk, &config);
            // A config taken back out of a running SDK is the same valid config.
            let again = Sdk::from_config(sdk.snapshot().config().clone()).unwrap();
            assign_all(&again, &config);
        }
    }
}

/// Text that validation must refuse: an override naming a variant the experiment does not
/// have (the hand-built `Config` that used to make `assign` panic cannot be made any more).
#[test]
fn an_override_of_an_unknown_variant_is_refused_not_served() {
    let text = r#"
        [[experiments]]
        key = "e"
        variants = [ { name = "a", weight = 1 } ]
        overrides = { "u" = "b" }
    "#;
    let e = Config::from_toml_str(text, "<string>", Path::new(".")).unwrap_err();
    assert!(e.to_string().contains("overrides"), "{e}");
    assert!(Sdk::from_toml_str(text).is_err());
}

/// The fuzz targets' way to drop plugins keeps a config `assign` cannot panic on: plugin
/// experiments answer with the builtin fallback.
#[test]
fn a_config_without_its_plugins_still_assigns() {
    let text = r#"
        [[plugins]]
        name = "wh"
        path = "/nonexistent/wh.so"

        [[experiments]]
        key = "e"
        strategy = "plugin:wh"
        variants = [ { name = "a", weight = 1 }, { name = "b", weight = 1 } ]
        overrides = { "u" = "b" }
    "#;
    let config = Config::from_toml_str(text, "<string>", Path::new(".")).unwrap();
    let config = abkit::internals::config_without_plugins(config);
    assert!(config.plugins().is_empty());
    let sdk = Sdk::from_config(config.clone()).unwrap();
    assign_all(&sdk, &config);
    let a = sdk.assign("e", &Unit::new("someone"));
    assert_eq!(
        a.decided_by,
        abkit::DecidedBy::Fallback(abkit::FallbackReason::PluginRefused)
    );
}
