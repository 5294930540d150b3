//! `assign` allocates nothing once warm: a counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit_strategy_api::abi_stable::std_types::{RSlice, RStr};
use abkit_strategy_api::{Attribute, Decision, Request};
use abkit_strategy_cluster::abkit_root_module;
use abkit_strategy_support::alloc_counter::{allocations_during, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn assign_through_the_exported_box_allocates_nothing_once_warm() {
    let config = r#"{"cluster_attribute": "team_id", "missing": "unit"}"#;
    let strategy = abkit_root_module().new_strategy()(RStr::from_str(config)).unwrap();
    let teams: Vec<String> = (0..1_000).map(|i| format!("team-{i}")).collect();
    let weights = [1, 1];
    let request = |unit: &'static str| Request {
        unit_id: RStr::from_str(unit),
        experiment: RStr::from_str("seats"),
        salt: RStr::from_str("seats"),
        weights: RSlice::from_slice(&weights),
        coverage_bp: 10_000,
        attributes: RSlice::from_slice(&[]),
        fixed_now_ms: abkit_strategy_api::abi_stable::std_types::ROption::RSome(0),
    };
    strategy.assign(&request("warm-up")); // warm up: caches the ranges

    let (enrolled, allocations) = allocations_during(|| {
        let mut enrolled = 0;
        for team in &teams {
            let attrs = [Attribute::new("team_id", team)];
            let request = Request {
                attributes: RSlice::from_slice(&attrs),
                ..request("user-1")
            };
            enrolled += usize::from(matches!(strategy.assign(&request), Decision::Variant(_)));
        }
        // `missing = "unit"`: falls back to the unit id, still without allocating.
        enrolled
            + usize::from(matches!(
                strategy.assign(&request("user-2")),
                Decision::Variant(_)
            ))
    });
    assert_eq!(enrolled, 1_001);
    assert_eq!(allocations, 0);
}
