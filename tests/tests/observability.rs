//! Provenance, exposure events and counters.
#![allow(clippy::unwrap_used)]

use abkit::ProbeConfig;
use abkit::{DecidedBy, Reason, Sdk, Unit};
use abkit::{Exposure, ExposureChannel};
use abkit_tests::env::{plugin_experiment_toml, TestEnv};
use abkit_tests::fixtures::{reference, rf};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const CONFIG: &str = r#"
[[experiments]]
key = "e"
variants = [ { name = "a", weight = 1 }, { name = "b", weight = 1 } ]
overrides = { "vip" = "b" }
"#;

#[test]
fn the_exposure_hook_sees_every_assignment_with_its_provenance() {
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let sdk = Sdk::builder()
        .on_exposure(Arc::new(move |e: &Exposure<'_>| {
            assert_eq!(e.experiment, "e");
            assert!(e.timestamp_ms > 1_700_000_000_000);
            if e.unit.id() == "vip" {
                assert_eq!(
                    (e.assignment.reason, e.assignment.decided_by),
                    (Reason::Override, DecidedBy::Nobody)
                );
            } else {
                assert_eq!(e.assignment.decided_by, DecidedBy::Builtin);
            }
            s.fetch_add(1, Ordering::Relaxed);
        }))
        .build(abkit::Config::from_toml_str(CONFIG, "t", std::path::Path::new(".")).unwrap())
        .unwrap();
    for i in 0..100 {
        sdk.assign("e", &Unit::new(&format!("u{i}")));
    }
    sdk.assign("e", &Unit::new("vip"));
    assert_eq!(seen.load(Ordering::Relaxed), 101);
}

#[test]
fn a_full_exposure_channel_drops_and_counts_instead_of_blocking() {
    let (channel, receiver) = ExposureChannel::bounded(10);
    let sdk = Sdk::builder()
        .on_exposure(channel.hook())
        .build(abkit::Config::from_toml_str(CONFIG, "t", std::path::Path::new(".")).unwrap())
        .unwrap();
    for i in 0..100 {
        sdk.assign("e", &Unit::new(&format!("u{i}")));
    }
    assert_eq!(channel.dropped(), 90);
    let events: Vec<_> = receiver.try_iter().collect();
    assert_eq!(events.len(), 10);
    assert_eq!(events[0].unit, "u0");
    assert_eq!(
        events[0].variant,
        sdk.assign("e", &Unit::new("u0")).variant_name()
    );
}

#[test]
fn a_dedup_channel_delivers_each_unit_once_per_window() {
    let (channel, receiver) = ExposureChannel::bounded(1_000);
    let channel = channel.with_dedup(abkit::ExposureDedup::new(
        std::time::Duration::from_secs(3600),
        1 << 12,
    ));
    let sdk = Sdk::builder()
        .on_exposure(channel.hook())
        .build(abkit::Config::from_toml_str(CONFIG, "t", std::path::Path::new(".")).unwrap())
        .unwrap();
    for _ in 0..20 {
        for i in 0..50 {
            sdk.assign("e", &Unit::new(&format!("u{i}")));
        }
    }
    let events: Vec<_> = receiver.try_iter().collect();
    assert_eq!(events.len(), 50, "one exposure per unit");
    let dedup = channel.dedup().unwrap();
    assert_eq!((dedup.passed(), dedup.deduplicated()), (50, 950));
    assert_eq!(channel.dropped(), 0);
}

#[test]
fn exposures_carry_the_plugin_provenance() {
    let env = TestEnv::new();
    let lib = env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        7,
    );
    let (channel, receiver) = ExposureChannel::bounded(100);
    let sdk = Sdk::builder()
        .probe(ProbeConfig::default().with_units(64))
        .on_exposure(channel.hook())
        .build_from_file(
            env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), false),
        )
        .unwrap();
    sdk.assign("exp", &Unit::new("u1"));
    let event = receiver.try_recv().unwrap();
    let DecidedBy::Plugin(p) = event.decided_by else {
        panic!("not decided by the plugin: {event:?}")
    };
    assert_eq!((p.name.as_str(), p.version), ("weighted-hash", 7));
    assert_eq!(p.sha256, abkit_tests::env::sha256_hex(&lib));
    assert_eq!(p.key_id.len(), 16);
}

#[test]
fn assignment_counters_count_every_answer_by_experiment_and_variant() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let sdk = metrics::with_local_recorder(&recorder, || Sdk::from_toml_str(CONFIG).unwrap());
    let mut expected = [0u64; 2];
    for i in 0..1000 {
        let a = sdk.assign("e", &Unit::new(&format!("u{i}")));
        expected[a.variant.unwrap().index as usize] += 1;
    }
    let mut got = [0u64; 2];
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != "abkit_assignments_total" {
            continue;
        }
        let variant = key
            .labels()
            .find(|l| l.key() == "variant")
            .map(|l| l.value().to_string())
            .unwrap_or_default();
        if let DebugValue::Counter(n) = value {
            match variant.as_str() {
                "a" => got[0] = n,
                "b" => got[1] = n,
                _ => assert_eq!(n, 0),
            }
        }
    }
    assert_eq!(got, expected);
}
