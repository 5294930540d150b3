//! `assign` allocates nothing: `stats_alloc`'s counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit_strategy_api::{Attribute, Decision, ExperimentSpec, Request};
use abkit_strategy_switchback::abkit_root_module;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

// Process-wide counts (this binary has one test; see the passes below for the harness).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn assign_through_the_exported_box_allocates_nothing_once_warm() {
    let config = r#"{"window_minutes": 15, "region_attribute": "city"}"#;
    let weights = [1, 1];
    let spec = ExperimentSpec::new("surge", "surge", &weights, 10_000, config);
    let strategy = abkit_root_module().new_strategy()(&spec).unwrap().strategy;
    let cities: Vec<String> = (0..100).map(|i| format!("city-{i}")).collect();

    let run = || {
        let mut enrolled = 0;
        for (i, city) in cities.iter().enumerate() {
            let attrs = [Attribute::new("city", city)];
            for window in 0..100_u64 {
                let request = Request::at("user-1", &attrs, window * 15 * 60_000 + i as u64);
                enrolled += usize::from(matches!(strategy.assign(&request), Decision::Variant(_)));
            }
        }
        // A unit without the region (not enrolled by default) allocates nothing either.
        enrolled
            + usize::from(strategy.assign(&Request::at("user-1", &[], 0)) == Decision::NotEnrolled)
    };
    // Warm-up, and the answers checked below.
    let enrolled = run();
    // stats_alloc counts the whole process, and the test harness's own thread may allocate
    // while this test starts: three measured passes, the fewest allocations must be 0 (an
    // allocation on the assign path would show in every pass).
    let allocations = (0..3)
        .map(|_| {
            let region = Region::new(GLOBAL);
            assert_eq!(run(), enrolled);
            let change = region.change();
            change.allocations + change.reallocations
        })
        .min()
        .unwrap_or(usize::MAX);
    assert_eq!(enrolled, 100 * 100 + 1);
    assert_eq!(allocations, 0);
}
