//! `assign` allocates nothing once warm: a counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit_strategy_api::{Attribute, Decision, ExperimentSpec, Request};
use abkit_strategy_cluster::abkit_root_module;
use abkit_strategy_support::alloc_counter::{allocations_during, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn assign_through_the_exported_box_allocates_nothing_once_warm() {
    let config = r#"{"cluster_attribute": "team_id", "missing": "unit"}"#;
    let weights = [1, 1];
    let spec = ExperimentSpec::new("seats", "seats", &weights, 10_000, config);
    let strategy = abkit_root_module().new_strategy()(&spec).unwrap().strategy;
    let teams: Vec<String> = (0..1_000).map(|i| format!("team-{i}")).collect();

    let (enrolled, allocations) = allocations_during(|| {
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
    });
    assert_eq!(enrolled, 1_001);
    assert_eq!(allocations, 0);
}
