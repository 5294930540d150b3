//! `assign` allocates nothing: `stats_alloc`'s counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit_strategy_api::{Attribute, Decision, ExperimentSpec, Request};
use abkit_strategy_cluster::abkit_root_module;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

// Process-wide counts (this binary has one test; see the passes below for the harness).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn assign_through_the_exported_box_allocates_nothing_once_warm() {
    let config = r#"{"cluster_attribute": "team_id", "missing": "unit"}"#;
    let weights = [1, 1];
    let spec = ExperimentSpec::new("seats", "seats", &weights, 10_000, config);
    let strategy = abkit_root_module().new_strategy()(&spec).unwrap().strategy;
    let teams: Vec<String> = (0..1_000).map(|i| format!("team-{i}")).collect();

    let run = || {
        let mut enrolled = 0;
        for team in &teams {
            let attrs = [Attribute::new("team_id", team)];
            let request = Request::at("user-1", &attrs, 0);
            enrolled += usize::from(matches!(strategy.assign(&request), Decision::Variant(_)));
        }
        // `missing = "unit"`: falls back to the unit id, still without allocating.
        enrolled
            + usize::from(matches!(
                strategy.assign(&Request::at("user-2", &[], 0)),
                Decision::Variant(_)
            ))
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
    assert_eq!(enrolled, 1_001);
    assert_eq!(allocations, 0);
}
