//! `abkit::simulate` end to end: SRM verdicts, diff counts against analytic values, identical
//! results for any thread count, every input kind, malformed lines, layers and independence.
#![allow(clippy::unwrap_used)]

use abkit::simulate::{
    self, diff, AttributeDistribution, InputFormat, SimulateError, SimulateOptions, SyntheticSpec,
    UnitSource, Verdict,
};
use abkit::{Reason, Sdk, Snapshot};
use std::io::Write;
use std::sync::Arc;

const THREE: &str = r#"
[[experiments]]
key = "checkout_button"
variants = [ { name = "control", weight = 50 }, { name = "treatment", weight = 50 } ]

[[experiments]]
key = "search_ranking"
salt = "search_ranking-2026q4"
coverage = 0.2
variants = [ { name = "control", weight = 1 }, { name = "bm25", weight = 1 }, { name = "neural", weight = 1 } ]

[[experiments]]
key = "price_banner"
variants = [ { name = "control", weight = 90 }, { name = "banner", weight = 10 } ]
layer = { name = "checkout", range = [0, 5000] }

[[experiments]]
key = "free_shipping"
variants = [ { name = "control", weight = 50 }, { name = "free", weight = 50 } ]
layer = { name = "checkout", range = [5000, 10000] }
"#;

fn snapshot(toml: &str) -> Arc<Snapshot> {
    Sdk::from_toml_str(toml).unwrap().snapshot()
}

fn one(weights: (u32, u32), coverage: f64) -> Arc<Snapshot> {
    snapshot(&format!(
        "[[experiments]]\nkey = \"e\"\ncoverage = {coverage}\nvariants = [ {{ name = \"control\", weight = {} }}, {{ name = \"treatment\", weight = {} }} ]\n",
        weights.0, weights.1
    ))
}

fn opts() -> SimulateOptions {
    SimulateOptions {
        now_ms: Some(1_767_225_600_000),
        ..SimulateOptions::default()
    }
}

fn synthetic(n: u64) -> UnitSource {
    UnitSource::synthetic(SyntheticSpec::new(n))
}

#[test]
fn a_correct_split_passes_every_srm_test() {
    let report = simulate::run(&snapshot(THREE), synthetic(200_000), &opts()).unwrap();
    assert_eq!(report.units, 200_000);
    for e in &report.experiments {
        assert_eq!(e.srm.verdict, Verdict::Ok, "{}: {:?}", e.key, e.srm);
        assert_eq!(
            e.srm.coverage.verdict,
            Verdict::Ok,
            "{}: {:?}",
            e.key,
            e.srm.coverage
        );
        for v in &e.variants {
            // the sd of a share over 2e5 units is at most 0.0012; allow 5 sd
            assert!(
                (v.observed_share - v.expected_share).abs() < 0.006,
                "{} {}: {v:?}",
                e.key,
                v.name
            );
        }
    }
    assert!(report.all_ok(), "{}", report.to_table());
    let search = report.experiment("search_ranking").unwrap();
    assert!((search.variants[2].expected_share - 0.2 / 3.0).abs() < 1e-12);
    assert_eq!(search.srm.df, 2);
}

#[test]
fn on_a_million_units_a_correct_split_passes_and_a_wrong_expectation_is_a_mismatch() {
    // Simulate configuration A (50/50) ...
    let report = simulate::run(&one((50, 50), 1.0), synthetic(1_000_000), &opts()).unwrap();
    let e = report.experiment("e").unwrap();
    assert_eq!(report.units, 1_000_000);
    assert_eq!(
        (e.srm.verdict, e.srm.coverage.verdict),
        (Verdict::Ok, Verdict::Ok),
        "{:?}",
        e.srm
    );
    // ... but test it against configuration B's weights (60/40).
    let b = one((60, 40), 1.0);
    let b_weights: Vec<f64> = b
        .experiment("e")
        .unwrap()
        .weights()
        .iter()
        .map(|&w| f64::from(w))
        .collect();
    let against_b = e.srm_against(&b_weights);
    assert_eq!(against_b.verdict, Verdict::Mismatch, "{against_b:?}");
    assert!(against_b.p_value < 1e-100);
    // even a 1-point error is visible at this size: 51/49 (chi2 ~ 400)
    assert_eq!(e.srm_against(&[51.0, 49.0]).verdict, Verdict::Mismatch);
}

#[test]
fn identical_configurations_move_nobody() {
    let d = diff(
        &snapshot(THREE),
        &snapshot(THREE),
        synthetic(50_000),
        &opts(),
    )
    .unwrap();
    assert_eq!(d.experiments.len(), 4);
    for e in &d.experiments {
        assert_eq!((e.moved, e.entered, e.left), (0, 0, 0), "{}", e.key);
        let total: u64 = e.transitions.iter().map(|t| t.count).sum();
        assert_eq!(total, 50_000);
    }
}

#[test]
fn raising_coverage_only_enrols_more_units() {
    let d = diff(
        &one((50, 50), 0.3),
        &one((50, 50), 0.6),
        synthetic(100_000),
        &opts(),
    )
    .unwrap();
    let e = d.experiment("e").unwrap();
    assert_eq!((e.moved, e.left), (0, 0));
    // analytic share entering: 0.3; sd of the share over 1e5 units ~ 0.0015; allow 5 sd
    assert!((e.entered_share - 0.3).abs() < 0.0075, "{e:?}");
    assert_eq!(e.transition(Some("control"), Some("treatment")), 0);
}

#[test]
fn moving_weights_from_50_50_to_60_40_moves_ten_percent() {
    let n = 1_000_000u64;
    let d = diff(
        &one((50, 50), 1.0),
        &one((60, 40), 1.0),
        synthetic(n),
        &opts(),
    )
    .unwrap();
    let e = d.experiment("e").unwrap();
    // Buckets [5000, 6000) go from treatment to control: exactly 1000 of 10000 buckets, so the
    // moved count is Binomial(n, 0.10): sd = sqrt(n * 0.1 * 0.9) = 300 units = 0.0003 of n.
    // Five sd: 0.0015.
    assert!(
        (e.moved_share - 0.10).abs() < 0.0015,
        "moved share {}",
        e.moved_share
    );
    assert_eq!(e.moved, e.transition(Some("treatment"), Some("control")));
    assert_eq!(e.transition(Some("control"), Some("treatment")), 0);
    assert_eq!((e.entered, e.left), (0, 0));
}

#[test]
fn experiments_only_in_one_configuration_enter_or_leave() {
    let d = diff(
        &one((1, 1), 1.0),
        &snapshot(THREE),
        synthetic(10_000),
        &opts(),
    )
    .unwrap();
    let gone = d.experiment("e").unwrap();
    assert!(gone.in_from && !gone.in_to);
    assert_eq!(gone.left, 10_000);
    let new = d.experiment("checkout_button").unwrap();
    assert_eq!(new.entered, 10_000);
    assert_eq!(
        new.transition(None, Some("control")) + new.transition(None, Some("treatment")),
        10_000
    );
}

#[test]
fn results_are_identical_for_any_thread_count_and_chunk_size() {
    let spec = SyntheticSpec::new(30_001).with_attribute("country=US:60,CA:40".parse().unwrap());
    let run = |threads: usize, chunk_units: usize| {
        let o = SimulateOptions {
            threads: Some(threads),
            chunk_units,
            ..opts()
        };
        let r = simulate::run(&snapshot(THREE), UnitSource::synthetic(spec.clone()), &o).unwrap();
        assert_eq!(r.threads, threads);
        let d = diff(
            &snapshot(THREE),
            &one((1, 1), 0.5),
            UnitSource::synthetic(spec.clone()),
            &o,
        )
        .unwrap();
        (r.to_json(), d.to_json())
    };
    let single = run(1, 65_536);
    assert_eq!(single, run(4, 65_536));
    assert_eq!(single, run(3, 999));
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn plain_csv_and_gzip_files_give_the_same_counts_as_synthetic_units() {
    const TARGETED: &str = r#"
[[experiments]]
key = "e"
variants = [ { name = "a", weight = 1 }, { name = "b", weight = 1 } ]
targeting = { country = ["US"] }
"#;
    let snap = snapshot(TARGETED);
    let dist = AttributeDistribution::parse("country=US:1,CA:1").unwrap();
    let spec = SyntheticSpec::new(20_000).with_attribute(dist.clone());
    let expected = simulate::run(&snap, UnitSource::synthetic(spec.clone()), &opts()).unwrap();

    let mut csv = String::from("plan,id,country\n");
    let mut id = String::new();
    for i in 0..20_000 {
        spec.write_id(i, &mut id);
        csv += &format!("free,{id},{}\n", dist.pick(&id));
    }
    let dir = tempfile::tempdir().unwrap();
    let format = InputFormat::Csv {
        id_column: "id".into(),
    };
    let csv_path = write(&dir, "units.csv", csv.as_bytes());
    let gz_path = write(&dir, "units.csv.gz", &gzip(csv.as_bytes()));
    let no_ext = write(&dir, "units-compressed", &gzip(csv.as_bytes()));
    for path in [csv_path, gz_path, no_ext] {
        let got = simulate::run(
            &snap,
            UnitSource::open(&path, format.clone()).unwrap(),
            &opts(),
        )
        .unwrap();
        assert_eq!(got.units, 20_000);
        assert_eq!(
            got.experiments[0].variants[0].count,
            expected.experiments[0].variants[0].count,
            "{}",
            path.display()
        );
        assert_eq!(
            got.experiments[0].not_enrolled(Reason::NotTargeted),
            expected.experiments[0].not_enrolled(Reason::NotTargeted)
        );
    }

    // plain ids, from any reader: no attributes, so targeting excludes everybody
    let ids: String = (0..1000).map(|i| format!("unit-{i}\n")).collect();
    let got = simulate::run(
        &snap,
        UnitSource::from_reader(
            "ids",
            std::io::Cursor::new(gzip(ids.as_bytes())),
            InputFormat::Plain,
        ),
        &opts(),
    )
    .unwrap();
    assert_eq!(
        (
            got.units,
            got.experiments[0].not_enrolled(Reason::NotTargeted)
        ),
        (1000, 1000)
    );
}

#[test]
fn malformed_lines_fail_with_their_number_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "units.csv",
        b"id,country\nu1,US\nu2\nu3,\xffUS\nu4,CA\n,US\n",
    );
    let format = InputFormat::Csv {
        id_column: "id".into(),
    };
    let err = simulate::run(
        &one((1, 1), 1.0),
        UnitSource::open(&path, format.clone()).unwrap(),
        &opts(),
    )
    .unwrap_err();
    assert!(
        matches!(err, SimulateError::BadLine { line: 3, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("units.csv line 3: has 1 fields but the header has 2")
            && msg.contains("--skip-bad-lines"),
        "{msg}"
    );

    let skip = SimulateOptions {
        skip_bad_lines: true,
        ..opts()
    };
    let r = simulate::run(
        &one((1, 1), 1.0),
        UnitSource::open(&path, format).unwrap(),
        &skip,
    )
    .unwrap();
    assert_eq!((r.units, r.skipped_lines.count), (2, 3));
    let lines: Vec<u64> = r.skipped_lines.examples.iter().map(|b| b.line).collect();
    assert_eq!(lines, [3, 4, 6]);

    let msg = UnitSource::open(&dir.path().join("missing.txt"), InputFormat::Plain)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("missing.txt") && msg.contains("check the path"),
        "{msg}"
    );
}

#[test]
fn a_valid_layer_has_no_unit_in_two_experiments() {
    let report = simulate::run(&snapshot(THREE), synthetic(100_000), &opts()).unwrap();
    assert_eq!(report.layers.len(), 1);
    let layer = &report.layers[0];
    assert_eq!(layer.experiments, ["price_banner", "free_shipping"]);
    assert_eq!(
        (
            layer.units_in_more_than_one,
            layer.units_in_more_than_one_by_strategy
        ),
        (0, 0)
    );
    assert_eq!(layer.verdict, Verdict::Ok);
    // and together the two slices cover everybody
    let enrolled: u64 = ["price_banner", "free_shipping"]
        .iter()
        .map(|k| report.experiment(k).unwrap().enrolled)
        .sum();
    assert_eq!(enrolled, 100_000);
}

#[test]
fn independent_experiments_pass_the_independence_test() {
    let report = simulate::run(&snapshot(THREE), synthetic(100_000), &opts()).unwrap();
    // 4 experiments, the two of the layer are not paired: 5 pairs
    assert_eq!(report.independence.len(), 5);
    for p in &report.independence {
        assert_eq!(
            p.test.verdict,
            Verdict::Ok,
            "{} x {}: {:?}",
            p.a,
            p.b,
            p.test
        );
        assert!(p.units > 0);
    }
    let pair = report
        .independence
        .iter()
        .find(|p| p.a == "checkout_button" && p.b == "search_ranking")
        .unwrap();
    assert_eq!(pair.test.df, 2);
}

#[test]
fn two_experiments_with_the_same_salt_are_flagged_as_dependent() {
    let same_salt = r#"
[[experiments]]
key = "a"
salt = "shared"
variants = [ { name = "x", weight = 1 }, { name = "y", weight = 1 } ]
[[experiments]]
key = "b"
salt = "shared"
variants = [ { name = "x", weight = 1 }, { name = "y", weight = 1 } ]
"#;
    let report = simulate::run(&snapshot(same_salt), synthetic(10_000), &opts()).unwrap();
    assert_eq!(report.independence[0].test.verdict, Verdict::Mismatch);
    assert!(!report.all_ok());
}

#[test]
fn the_json_contract_names_are_present() {
    let report = simulate::run(&snapshot(THREE), synthetic(1000), &opts()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["units"], 1000);
    let e = &v["experiments"][0];
    for k in ["key", "enrolled", "not_enrolled", "variants", "srm"] {
        assert!(!e[k].is_null(), "{k}");
    }
    for k in ["name", "count", "expected_share", "observed_share"] {
        assert!(!e["variants"][0][k].is_null(), "{k}");
    }
    for k in ["chi2", "p_value", "verdict"] {
        assert!(!e["srm"][k].is_null(), "{k}");
    }
    assert_eq!(e["srm"]["verdict"], "ok");
    assert!(e["not_enrolled"]["outside_coverage"].is_u64());
    assert!(v["layers"].is_array() && v["independence"].is_array());

    let d = diff(
        &one((1, 1), 0.5),
        &one((1, 1), 1.0),
        synthetic(1000),
        &opts(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    let e = &v["experiments"][0];
    for k in [
        "key",
        "moved",
        "moved_share",
        "entered",
        "left",
        "transitions",
    ] {
        assert!(!e[k].is_null(), "{k}");
    }
    let t = e["transitions"].as_array().unwrap();
    assert!(t
        .iter()
        .any(|t| t["from"].is_null() && t["to"] == "control" && t["count"].as_u64().unwrap() > 0));
}
