//! `assign` allocates nothing once warm: a counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit_strategy_api::{Decision, ExperimentSpec, Request};
use abkit_strategy_support::alloc_counter::{allocations_during, CountingAllocator};
use abkit_strategy_weighted_hash::abkit_root_module;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn assign_through_the_exported_box_allocates_nothing_once_warm() {
    let weights = [1, 2, 7];
    let spec = ExperimentSpec::new("exp", "exp", &weights, 5_000, "{}");
    let strategy = abkit_root_module().new_strategy()(&spec).unwrap().strategy;
    // Long ids too: two-block and longer hash inputs take other paths.
    let ids: Vec<String> = (0..10_000)
        .map(|i| format!("user-{i}-{}", "x".repeat(i % 150)))
        .collect();

    let (enrolled, allocations) = allocations_during(|| {
        let mut enrolled = 0;
        for id in &ids {
            let request = Request::at(id, &[], 0);
            enrolled += usize::from(matches!(strategy.assign(&request), Decision::Variant(_)));
        }
        enrolled
    });
    assert!(enrolled > 1_000, "sanity: some units enrolled ({enrolled})");
    assert_eq!(allocations, 0);
}
