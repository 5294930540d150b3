//! `assign` makes no heap allocation: a counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit::{Attribute, Sdk, Unit};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CONFIG: &str = r#"
[[experiments]]
key = "full"
variants = [ { name = "a", weight = 1 }, { name = "b", weight = 1 }, { name = "c", weight = 2 } ]
overrides = { "forced" = "c" }
targeting = { country = ["US", "CA"] }
[[experiments]]
key = "layered"
coverage = 0.5
variants = [ { name = "a", weight = 1 } ]
layer = { name = "L", range = [0, 5000] }
[[experiments]]
key = "off"
enabled = false
variants = [ { name = "a", weight = 1 } ]
[[holdouts]]
name = "h"
coverage = 0.1
experiments = ["by_account", "follows"]
bucket_by = ["account_id", "unit"]
[[experiments]]
key = "by_account"
bucket_by = ["account_id", "device_id"]
variants = [ { name = "a", weight = 1 }, { name = "b", weight = 1 } ]
[[experiments]]
key = "follows"
requires = { experiment = "full", variants = ["a", "c"] }
variants = [ { name = "a", weight = 1 }, { name = "b", weight = 1 } ]
"#;

/// The allocation counter is process-wide, and the test harness allocates on its own thread
/// whenever a test ends: this binary has one test, which measures each scenario in turn.
#[test]
fn assign_allocates_nothing_builtin_or_through_a_plugin() {
    assign_allocates_nothing_on_any_path();
    assign_through_a_loaded_plugin_allocates_nothing();
    exposure_dedup_memory_stays_fixed_under_10_million_distinct_units();
}

/// The dedup table is allocated once: 10 million distinct units (far more than its slots)
/// allocate nothing more, and repeats of recent units are still dropped.
fn exposure_dedup_memory_stays_fixed_under_10_million_distinct_units() {
    use abkit::{Exposure, ExposureDedup};
    use std::fmt::Write;
    let sdk = Sdk::from_toml_str(CONFIG).unwrap();
    let dedup = ExposureDedup::new(std::time::Duration::from_secs(3600), 1 << 16);
    let memory = dedup.memory_bytes();
    assert_eq!(memory, (1 << 16) * 16);
    let us = [Attribute::new("country", "US")];
    let mut id = String::with_capacity(64);
    // One real answer for every unit: the key varies by unit id, which is what fills the table.
    let assignment = sdk.assign("full", &Unit::new("u").with_attributes(&us));
    let region = Region::new(GLOBAL);
    for i in 0..10_000_000u64 {
        id.clear();
        write!(id, "user-{i}").unwrap();
        let unit = Unit::new(&id).with_attributes(&us);
        let e = Exposure {
            experiment: "full",
            unit: &unit,
            assignment: &assignment,
            timestamp_ms: i / 1000,
        };
        assert!(dedup.admit(&e), "a first exposure is never dropped");
        if i % 1_000_000 == 0 {
            assert!(!dedup.admit(&e), "an immediate repeat is dropped");
        }
    }
    let change = region.change();
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "the dedup allocated while offered 10 million units: {change:?}"
    );
    assert_eq!(dedup.memory_bytes(), memory);
    assert_eq!(dedup.deduplicated(), 10);
    assert_eq!(dedup.passed(), 10_000_000);
}

fn assign_allocates_nothing_on_any_path() {
    let sdk = Sdk::from_toml_str(CONFIG).unwrap();
    let ids: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let long_id = "x".repeat(1000); // longer than the stack buffer: the streaming hash path
    let us = [Attribute::new("country", "US")];
    let fr = [Attribute::new("country", "FR")];
    let account = [Attribute::new("account_id", "acct-1")];
    // Warm up: first use of thread-locals (arc-swap debts) may allocate once per thread.
    sdk.assign("full", &Unit::new("warm").with_attributes(&us));
    let full = sdk.handle("full"); // resolved ahead: the handle path is measured too

    let region = Region::new(GLOBAL);
    let mut enrolled = 0u64;
    for id in &ids {
        for (exp, attrs) in [
            ("full", &us[..]),
            ("full", &fr[..]),
            ("layered", &[][..]),
            ("off", &[][..]),
            ("missing", &[][..]),
            ("by_account", &account[..]),
            ("by_account", &[][..]),
            ("follows", &us[..]),
        ] {
            enrolled += u64::from(
                sdk.assign(exp, &Unit::new(id).with_attributes(attrs))
                    .is_enrolled(),
            );
        }
    }
    for id in &ids[..1000] {
        let unit = Unit::new(id).with_attributes(&us);
        enrolled += u64::from(sdk.assign_handle(&full, &unit).is_enrolled());
    }
    enrolled += u64::from(sdk.assign("full", &Unit::new("forced")).is_enrolled());
    enrolled += u64::from(
        sdk.assign("full", &Unit::new(&long_id).with_attributes(&us))
            .is_enrolled(),
    );
    let change = region.change();

    assert!(
        enrolled > 10_000,
        "sanity: some units enrolled ({enrolled})"
    );
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "assign allocated: {change:?}"
    );
}

fn assign_through_a_loaded_plugin_allocates_nothing() {
    use abkit_tests::env::{plugin_experiment_toml, TestEnv};
    let env = TestEnv::new();
    let lib = env.install(
        &abkit_tests::fixtures::reference(abkit_tests::fixtures::rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        1,
    );
    let config = env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), false);
    let sdk = Sdk::builder()
        .probe(abkit::ProbeConfig::default().with_units(64))
        .build_from_file(config)
        .unwrap();
    let ids: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let warm = sdk.assign("exp", &Unit::new("warm")); // first call fills the plugin's ranges cache
    assert!(
        matches!(warm.decided_by, abkit::DecidedBy::Plugin(_)),
        "{}",
        sdk.status()
    );

    let handle = sdk.handle("exp");
    let region = Region::new(GLOBAL);
    let mut enrolled = 0u64;
    for id in &ids {
        enrolled += u64::from(sdk.assign("exp", &Unit::new(id)).is_enrolled());
        enrolled += u64::from(sdk.assign_handle(&handle, &Unit::new(id)).is_enrolled());
    }
    let change = region.change();
    assert_eq!(enrolled, 20_000);
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "assign through the plugin allocated: {change:?}"
    );
}
