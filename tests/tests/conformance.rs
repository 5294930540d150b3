//! Every case of `spec/bucketing-v1-vectors.json`, through the bucketing crate and the SDK.
#![allow(clippy::unwrap_used)]

use abkit::{Reason, Sdk, Unit};
use abkit_tests::*;

fn vectors() -> Vec<VectorCase> {
    // The normative file when `../shared` is beside the clone, else the committed copy.
    read_vectors(&shared_vectors_path().unwrap_or_else(committed_vectors_path))
}

#[test]
fn committed_copy_equals_the_normative_file_when_present() {
    if let Some(shared) = shared_vectors_path() {
        let a = std::fs::read(shared).unwrap();
        let b = std::fs::read(committed_vectors_path()).unwrap();
        assert!(
            a == b,
            "tests/data/bucketing-v1-vectors.json differs from ../shared/spec: copy it again"
        );
    }
}

#[test]
fn every_vector_bucket_and_variant_matches_the_bucketing_crate() {
    let cases = vectors();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    for c in &cases {
        assert_eq!(
            abkit_bucketing::bucket(c.salt.as_bytes(), c.unit.as_bytes()),
            c.bucket,
            "bucket of {c:?}"
        );
        let got = abkit_bucketing::assign(&c.salt, &c.unit, &c.weights, c.coverage).unwrap();
        assert_eq!(got, c.variant, "variant of {c:?}");
    }
}

#[test]
fn every_vector_variant_matches_through_the_sdk() {
    for c in &vectors() {
        let sdk =
            Sdk::from_toml_str(&single_experiment_toml(&c.salt, &c.weights, c.coverage)).unwrap();
        let a = sdk.assign("e", &Unit::new(&c.unit));
        assert_eq!(
            a.variant.map(|v| v.index as usize),
            c.variant,
            "SDK answer for {c:?}"
        );
        let expected = if c.variant.is_some() {
            Reason::Assigned
        } else {
            Reason::OutsideCoverage
        };
        assert_eq!(a.reason, expected, "reason for {c:?}");
        if let Some(i) = c.variant {
            assert_eq!(a.variant_name(), Some(format!("v{i}").as_str()));
        }
    }
}
