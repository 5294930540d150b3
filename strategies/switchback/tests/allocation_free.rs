//! `assign` allocates nothing once warm: a counting global allocator proves it.
#![allow(clippy::unwrap_used)]

use abkit_strategy_api::abi_stable::std_types::{RSlice, RStr};
use abkit_strategy_api::{Attribute, Decision, Request};
use abkit_strategy_support::alloc_counter::{allocations_during, CountingAllocator};
use abkit_strategy_switchback::abkit_root_module;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn assign_through_the_exported_box_allocates_nothing_once_warm() {
    let config = r#"{"window_minutes": 15, "region_attribute": "city"}"#;
    let strategy = abkit_root_module().new_strategy()(RStr::from_str(config)).unwrap();
    let cities: Vec<String> = (0..100).map(|i| format!("city-{i}")).collect();
    let weights = [1, 1];
    let request = |attributes: &'static [Attribute<'static>], now_ms: u64| Request {
        unit_id: RStr::from_str("user-1"),
        experiment: RStr::from_str("surge"),
        salt: RStr::from_str("surge"),
        weights: RSlice::from_slice(&weights),
        coverage_bp: 10_000,
        attributes: RSlice::from_slice(attributes),
        fixed_now_ms: abkit_strategy_api::abi_stable::std_types::ROption::RSome(now_ms),
    };
    // Warm up: the first enrolled call caches the variant ranges.
    const WARM: [Attribute<'static>; 1] = [Attribute::new("city", "warm-up")];
    assert!(matches!(
        strategy.assign(&request(&WARM, 0)),
        Decision::Variant(_)
    ));

    let (enrolled, allocations) = allocations_during(|| {
        let mut enrolled = 0;
        for (i, city) in cities.iter().enumerate() {
            let attrs = [Attribute::new("city", city)];
            for window in 0..100_u64 {
                let request = Request {
                    attributes: RSlice::from_slice(&attrs),
                    ..request(&[], window * 15 * 60_000 + i as u64)
                };
                enrolled += usize::from(matches!(strategy.assign(&request), Decision::Variant(_)));
            }
        }
        // A unit without the region (not enrolled by default) allocates nothing either.
        enrolled + usize::from(strategy.assign(&request(&[], 0)) == Decision::NotEnrolled)
    });
    assert_eq!(enrolled, 100 * 100 + 1);
    assert_eq!(allocations, 0);
}
