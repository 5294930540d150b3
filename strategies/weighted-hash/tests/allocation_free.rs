//! `assign` allocates nothing: `stats_alloc`'s counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit_strategy_api::{Decision, ExperimentSpec, Request};
use abkit_strategy_weighted_hash::abkit_root_module;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

// Process-wide counts (this binary has one test; see the passes below for the harness).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn assign_through_the_exported_box_allocates_nothing_once_warm() {
    let weights = [1, 2, 7];
    let spec = ExperimentSpec::new("exp", "exp", &weights, 5_000, "{}");
    let strategy = abkit_root_module().new_strategy()(&spec).unwrap().strategy;
    // Long ids too: two-block and longer hash inputs take other paths.
    let ids: Vec<String> = (0..10_000)
        .map(|i| format!("user-{i}-{}", "x".repeat(i % 150)))
        .collect();

    let run = || {
        let mut enrolled = 0;
        for id in &ids {
            let request = Request::at(id, &[], 0);
            enrolled += usize::from(matches!(strategy.assign(&request), Decision::Variant(_)));
        }
        enrolled
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
    assert!(enrolled > 1_000, "sanity: some units enrolled ({enrolled})");
    assert_eq!(allocations, 0);
}
