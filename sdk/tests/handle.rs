//! `Sdk::handle` / `Sdk::assign_handle`: the same answers as `Sdk::assign` by key, through
//! reloads that move, remove and bring back the experiment, and with several `Sdk`s at once.
#![allow(clippy::unwrap_used)]

use abkit::{Reason, Sdk, Unit};
use proptest::prelude::*;

fn experiment(key: &str, salt: &str) -> String {
    format!(
        "[[experiments]]\nkey = \"{key}\"\nsalt = \"{salt}\"\n\
         variants = [ {{ name = \"a\", weight = 1 }}, {{ name = \"b\", weight = 2 }}, {{ name = \"c\", weight = 3 }} ]\n"
    )
}

fn same_answers(sdk: &Sdk, key: &str, n: usize) {
    let handle = sdk.handle(key);
    for i in 0..n {
        let id = format!("user-{i}");
        let unit = Unit::new(&id);
        assert_eq!(
            sdk.assign_handle(&handle, &unit),
            sdk.assign(key, &unit),
            "{key} {id}"
        );
    }
}

#[test]
fn a_handle_follows_reloads_that_move_remove_and_restore_its_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abkit.toml");
    std::fs::write(
        &path,
        experiment("first", "s1") + &experiment("target", "s2"),
    )
    .unwrap();
    let sdk = Sdk::from_file(&path).unwrap();
    let handle = sdk.handle("target");
    assert_eq!(handle.key(), "target");
    let answers = |sdk: &Sdk| -> Vec<_> {
        (0..300)
            .map(|i| {
                let id = format!("u{i}");
                let by_handle = sdk.assign_handle(&handle, &Unit::new(&id));
                assert_eq!(by_handle, sdk.assign("target", &Unit::new(&id)));
                by_handle
            })
            .collect()
    };
    let before = answers(&sdk);
    assert!(before.iter().all(|a| a.reason == Reason::Assigned));

    // The experiment moves to another index: the handle re-resolves and answers the same.
    std::fs::write(&path, experiment("target", "s2")).unwrap();
    assert!(sdk.reload().accepted);
    assert_eq!(answers(&sdk), before);

    // Removed: unknown experiment, like the lookup by key.
    std::fs::write(&path, experiment("other", "s3")).unwrap();
    assert!(sdk.reload().accepted);
    assert!(answers(&sdk)
        .iter()
        .all(|a| a.reason == Reason::UnknownExperiment && a.variant.is_none()));

    // Back with another salt: the new answers, not remembered old ones.
    std::fs::write(
        &path,
        experiment("other", "s3") + &experiment("target", "s9"),
    )
    .unwrap();
    assert!(sdk.reload().accepted);
    let after = answers(&sdk);
    assert!(after.iter().all(|a| a.reason == Reason::Assigned));
    assert_ne!(after, before, "another salt moves some units");
}

#[test]
fn one_handle_used_with_two_sdks_never_mixes_their_experiments() {
    // Same generation (1) in both, the experiment at index 0 in one and 1 in the other.
    let one = Sdk::from_toml_str(&(experiment("x", "x1") + &experiment("y", "y1"))).unwrap();
    let two = Sdk::from_toml_str(&(experiment("y", "y2") + &experiment("x", "x2"))).unwrap();
    let handle = one.handle("x");
    for i in 0..500 {
        let id = format!("u{i}");
        let unit = Unit::new(&id);
        assert_eq!(one.assign_handle(&handle, &unit), one.assign("x", &unit));
        assert_eq!(two.assign_handle(&handle, &unit), two.assign("x", &unit));
    }
}

#[test]
fn unknown_keys_answer_unknown_experiment() {
    let sdk = Sdk::from_toml_str(&experiment("x", "x")).unwrap();
    let handle = sdk.handle("nope");
    for _ in 0..3 {
        let a = sdk.assign_handle(&handle, &Unit::new("u"));
        assert_eq!(a.reason, Reason::UnknownExperiment);
    }
}

proptest! {
    #[test]
    fn handle_and_key_agree_for_any_experiment_set(keys in proptest::collection::btree_set("[a-z]{1,6}", 1..12)) {
        let config: String = keys.iter().map(|k| experiment(k, k)).collect();
        let sdk = Sdk::from_toml_str(&config).unwrap();
        for k in &keys {
            same_answers(&sdk, k, 20);
        }
    }
}
