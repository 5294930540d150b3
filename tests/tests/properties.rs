//! Property tests of the spec's stated properties, through the SDK: determinism, monotone
//! ramp-up, weight-0 variants never chosen, layers exclusive.
#![allow(clippy::unwrap_used)]

use abkit::{Sdk, Unit};
use abkit_tests::single_experiment_toml;
use proptest::prelude::*;

fn weights() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(0u32..200, 1..6).prop_filter("sum > 0", |w| w.iter().any(|&x| x > 0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn same_inputs_give_the_same_answer_from_two_clients(
        salt in "[a-z0-9_:-]{1,20}", w in weights(), cov in 0.0f64..=1.0,
        units in proptest::collection::vec(".{0,40}", 1..50),
    ) {
        let toml = single_experiment_toml(&salt, &w, cov);
        let (a, b) = (Sdk::from_toml_str(&toml).unwrap(), Sdk::from_toml_str(&toml).unwrap());
        for u in &units {
            prop_assert_eq!(a.assign("e", &Unit::new(u)), b.assign("e", &Unit::new(u)));
        }
    }

    #[test]
    fn raising_coverage_never_moves_an_enrolled_unit(
        salt in "[a-z0-9]{1,12}", w in weights(), lo in 0.0f64..=1.0, hi in 0.0f64..=1.0,
    ) {
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        let small = Sdk::from_toml_str(&single_experiment_toml(&salt, &w, lo)).unwrap();
        let large = Sdk::from_toml_str(&single_experiment_toml(&salt, &w, hi)).unwrap();
        for i in 0..300 {
            let id = format!("u{i}");
            if let Some(v) = small.assign("e", &Unit::new(&id)).variant {
                prop_assert_eq!(large.assign("e", &Unit::new(&id)).variant, Some(v), "unit {} moved", id);
            }
        }
    }

    #[test]
    fn weight_zero_variants_are_never_chosen(salt in "[a-z0-9]{1,12}", w in weights()) {
        let sdk = Sdk::from_toml_str(&single_experiment_toml(&salt, &w, 1.0)).unwrap();
        for i in 0..500 {
            if let Some(v) = sdk.assign("e", &Unit::new(&format!("user-{i}"))).variant {
                prop_assert!(w[v.index as usize] > 0, "weight-0 variant {} chosen", v.index);
            }
        }
    }

    #[test]
    fn experiments_of_one_layer_never_share_a_unit(split in 1u32..9999, units in proptest::collection::vec("[a-z0-9]{1,16}", 1..200)) {
        let toml = format!(
            "[[experiments]]\nkey=\"a\"\nvariants=[{{name=\"x\",weight=1}}]\nlayer={{name=\"L\",range=[0,{split}]}}\n\
             [[experiments]]\nkey=\"b\"\nvariants=[{{name=\"x\",weight=1}}]\nlayer={{name=\"L\",range=[{split},10000]}}\n"
        );
        let sdk = Sdk::from_toml_str(&toml).unwrap();
        for u in &units {
            let (a, b) = (sdk.assign("a", &Unit::new(u)), sdk.assign("b", &Unit::new(u)));
            prop_assert!(a.is_enrolled() != b.is_enrolled(), "unit {} in both or neither", u);
        }
    }
}
