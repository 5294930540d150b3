//! `assign` allocates nothing: `stats_alloc`'s counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit_strategy_api::{Decision, ExperimentSpec, Request};
use abkit_strategy_weighted_hash::abkit_root_module;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

// Process-wide counts: this binary has one test, so nothing else allocates meanwhile.
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

    let region = Region::new(GLOBAL);
    let enrolled = {
        let mut enrolled = 0;
        for id in &ids {
            let request = Request::at(id, &[], 0);
            enrolled += usize::from(matches!(strategy.assign(&request), Decision::Variant(_)));
        }
        enrolled
    };
    let change = region.change();
    let allocations = change.allocations + change.reallocations;
    assert!(enrolled > 1_000, "sanity: some units enrolled ({enrolled})");
    assert_eq!(allocations, 0);
}
