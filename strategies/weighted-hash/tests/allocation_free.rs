//! `assign` allocates nothing once warm: a counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit_strategy_api::abi_stable::std_types::{RSlice, RStr};
use abkit_strategy_api::{Decision, Request};
use abkit_strategy_support::alloc_counter::{allocations_during, CountingAllocator};
use abkit_strategy_weighted_hash::abkit_root_module;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn assign_through_the_exported_box_allocates_nothing_once_warm() {
    let strategy = abkit_root_module().new_strategy()(RStr::from_str("{}")).unwrap();
    let ids: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let weights = [1, 2, 7];
    let request = |unit: &'static str| Request {
        unit_id: RStr::from_str(unit),
        experiment: RStr::from_str("exp"),
        salt: RStr::from_str("exp"),
        weights: RSlice::from_slice(&weights),
        coverage_bp: 5_000,
        attributes: RSlice::from_slice(&[]),
        fixed_now_ms: abkit_strategy_api::abi_stable::std_types::ROption::RSome(0),
    };
    // Warm up: the first call caches the variant ranges; arc-swap's first use on a thread
    // may allocate once.
    strategy.assign(&request("warm-up"));

    let (enrolled, allocations) = allocations_during(|| {
        let mut enrolled = 0;
        for id in &ids {
            let request = Request {
                unit_id: RStr::from_str(id),
                ..request("")
            };
            enrolled += usize::from(matches!(strategy.assign(&request), Decision::Variant(_)));
        }
        enrolled
    });
    assert!(enrolled > 1_000, "sanity: some units enrolled ({enrolled})");
    assert_eq!(allocations, 0);
}
