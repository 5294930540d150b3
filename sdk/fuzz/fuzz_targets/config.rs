//! `config`: arbitrary bytes as a TOML configuration -> parse and validate
//! (`Config::from_toml_str`); a configuration that validates is then served (`Sdk::from_config`)
//! and assigned, which must neither fail nor panic ("after validation nothing about an
//! experiment can fail at assignment time").
//!
//! Plugins are never loaded here: `[[plugins]]` and `[trust]` are dropped before the SDK is
//! built, so the fuzzer never touches the filesystem (no ledger, no state directory). Their
//! experiments are then served by the builtin fallback, exactly as when a plugin is refused.
#![no_main]

use abkit::internals::config_without_plugins;
use abkit::{Attribute, Config, Reason, Sdk, Unit};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// At most this many experiments are assigned per input (keeps executions fast).
const MAX_EXPERIMENTS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::from_toml_str(text, "fuzz.toml", Path::new("/nonexistent")) {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.issues.is_empty(), "a ConfigError without any issue");
            let _ = e.to_string();
            return;
        }
    };
    let config = config_without_plugins(config);
    let experiments: Vec<_> = config
        .experiments()
        .iter()
        .take(MAX_EXPERIMENTS)
        .cloned()
        .collect();
    let sdk = match Sdk::from_config(config) {
        Ok(sdk) => sdk,
        Err(e) => panic!("a validated configuration failed to build: {e}"),
    };

    for e in &experiments {
        // Attributes that meet the targeting (first listed value of every key), if any.
        let attrs: Vec<Attribute<'_>> = e
            .targeting()
            .iter()
            .filter_map(|(k, vs)| vs.first().map(|v| Attribute::new(k.as_str(), v.as_str())))
            .collect();
        let mut ids: Vec<&str> = vec!["user-1", "user-2", "", "\u{0}"];
        if let Some((forced, _)) = e.overrides().first() {
            ids.push(forced.as_str());
        }
        for id in ids {
            for unit in [Unit::new(id), Unit::new(id).with_attributes(&attrs)] {
                let a = sdk.assign(e.key(), &unit);
                if let Some(v) = a.variant {
                    let variant = e
                        .variants()
                        .get(v.index as usize)
                        .unwrap_or_else(|| panic!("variant index {} out of range", v.index));
                    assert_eq!(v.name, variant.name, "variant name of index {}", v.index);
                }
                if !e.enabled() {
                    assert_eq!(a.reason, Reason::Disabled);
                    continue;
                }
                if let Some((_, index)) = e.overrides().iter().find(|(u, _)| u == id) {
                    assert_eq!(a.reason, Reason::Override);
                    assert_eq!(a.variant.map(|v| v.index), Some(*index));
                    continue;
                }
                if !e.targeting().is_empty() && unit.attributes().is_empty() {
                    assert_eq!(
                        a.reason,
                        Reason::NotTargeted,
                        "no attributes passed targeting"
                    );
                    continue;
                }
                if a.reason == Reason::Assigned {
                    let v = a.variant.expect("assigned without a variant");
                    assert!(
                        e.variants()[v.index as usize].weight > 0,
                        "a weight-0 variant was chosen"
                    );
                    assert!(e.coverage_bp() > 0, "assigned at coverage 0");
                }
            }
        }
    }
    let _ = sdk.assign("no such experiment", &Unit::new("user-1"));
    let _ = sdk.status();
});
