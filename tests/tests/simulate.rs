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
    SimulateOptions::default().with_now_ms(Some(1_767_225_600_000))
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
    // Nominal 0.2 / 3; expected from the exact range: [6666, 10000) at 20% is 666 buckets.
    assert!((search.variants[2].nominal_share - 0.2 / 3.0).abs() < 1e-12);
    assert!((search.variants[2].expected_share - 0.0666).abs() < 1e-12);
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
        let o = opts()
            .with_threads(Some(threads))
            .with_chunk_units(chunk_units);
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

    let skip = opts().with_skip_bad_lines(true);
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

// ---- issue 12: a correct bucketer or strategy is never reported as a mismatch ----

/// bucketing-v1 written again from `spec/bucketing-v1.md`, independently of `abkit_bucketing`.
fn spec_bucket(salt: &str, id: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{salt}:{id}").as_bytes());
    let x = u64::from_be_bytes(d[..8].try_into().unwrap());
    ((u128::from(x) * 10_000) >> 64) as u32
}

fn experiments_toml(n: usize, weights: &[u32], extra: &str) -> String {
    let variants: Vec<String> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{{ name = \"v{i}\", weight = {w} }}"))
        .collect();
    (0..n)
        .map(|k| {
            format!(
                "[[experiments]]\nkey = \"exp_{k}\"\nvariants = [{}]\n{extra}\n",
                variants.join(", ")
            )
        })
        .collect()
}

/// Builds an SDK serving `plugin` (signed, deployed in `env`) from `body`.
fn plugin_sdk(
    env: &abkit_tests::env::TestEnv,
    library: abkit_tests::fixtures::Plugin,
    body: &str,
) -> Sdk {
    let plugin = library.name;
    let built = env.stripped(&abkit_tests::fixtures::reference(library), plugin);
    let path = env.install(&built, &format!("plugins/{plugin}.so"), plugin, 1);
    let toml = format!(
        "[[plugins]]\nname = \"{plugin}\"\npath = {}\n\n{body}",
        abkit_tests::toml_string(&path.display().to_string())
    );
    let config = env.write_config(&toml, false);
    Sdk::builder().build_from_file(config).unwrap()
}

fn values(name: &str, prefix: &str, n: usize) -> AttributeDistribution {
    AttributeDistribution::new(name, (0..n).map(|i| (format!("{prefix}{i}"), 1)).collect()).unwrap()
}

#[test]
fn a_400_team_cluster_experiment_is_tested_per_team_and_not_flagged() {
    let env = abkit_tests::env::TestEnv::new();
    let sdk = plugin_sdk(
        &env,
        abkit_tests::fixtures::rf::CLUSTER,
        "[[experiments]]\nkey = \"teams\"\nstrategy = \"plugin:cluster\"\nstrategy_config = { cluster_attribute = \"team\" }\ncoverage = 0.5\nvariants = [ { name = \"a\", weight = 1 }, { name = \"b\", weight = 1 } ]\n",
    );
    let spec = SyntheticSpec::new(40_000).with_attribute(values("team", "team-", 400));
    let report = simulate::run(&sdk.snapshot(), UnitSource::synthetic(spec), &opts()).unwrap();
    let e = report.experiment("teams").unwrap();
    assert_ne!(e.srm.verdict, Verdict::Mismatch, "{}", report.to_table());
    assert_ne!(
        e.srm.coverage.verdict,
        Verdict::Mismatch,
        "{}",
        report.to_table()
    );
    assert!(report.all_ok(), "{}", report.to_table());
    // Tested at the level that is randomised: one count per team, all 400 teams.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["experiments"][0]["srm"]["unit"], "team", "{json}");
    let clusters = e.srm.clusters.as_ref().expect("cluster counts");
    assert_eq!(
        clusters.iter().sum::<u64>(),
        400 - e.srm.clusters_outside_coverage
    );
    assert_eq!(e.srm.split.df, 1);
    // The cluster counts, computed here independently: the cluster plugin hashes the team
    // with the salt (bucketing-v1); 50/50 at 50% coverage is [0, 2500) and [5000, 7500).
    let mut want = [0u64; 2];
    let mut outside = 0;
    for t in 0..400 {
        match spec_bucket("teams", &format!("team-{t}")) {
            b if b < 2_500 => want[0] += 1,
            b if (5_000..7_500).contains(&b) => want[1] += 1,
            _ => outside += 1,
        }
    }
    assert_eq!(clusters.as_slice(), &want[..]);
    assert_eq!(e.srm.clusters_outside_coverage, outside);
}

#[test]
fn a_50_city_switchback_is_tested_per_city_window_and_not_flagged() {
    let env = abkit_tests::env::TestEnv::new();
    let sdk = plugin_sdk(
        &env,
        abkit_tests::fixtures::rf::SWITCHBACK,
        "[[experiments]]\nkey = \"sb\"\nstrategy = \"plugin:switchback\"\nstrategy_config = { window_minutes = 30, region_attribute = \"city\" }\nvariants = [ { name = \"a\", weight = 1 }, { name = \"b\", weight = 1 } ]\n",
    );
    let spec = SyntheticSpec::new(50_000).with_attribute(values("city", "city-", 50));
    let report = simulate::run(&sdk.snapshot(), UnitSource::synthetic(spec), &opts()).unwrap();
    let e = report.experiment("sb").unwrap();
    assert_ne!(e.srm.verdict, Verdict::Mismatch, "{}", report.to_table());
    assert!(report.all_ok(), "{}", report.to_table());
    let clusters = e.srm.clusters.as_ref().expect("cluster counts");
    assert_eq!(clusters.iter().sum::<u64>(), 50);
    // Computed here independently: the unit hashed is "<city>@<window>", window = now / 30 min.
    let window = opts().now_ms.unwrap() / (30 * 60_000);
    let a = (0..50)
        .filter(|c| spec_bucket("sb", &format!("city-{c}@{window}")) < 5_000)
        .count() as u64;
    assert_eq!(clusters.as_slice(), &[a, 50 - a][..]);
}

#[test]
fn six_arms_at_one_percent_coverage_over_2m_units_are_not_flagged() {
    let toml = experiments_toml(1, &[1; 6], "coverage = 0.01");
    let report = simulate::run(&snapshot(&toml), synthetic(2_000_000), &opts()).unwrap();
    let e = report.experiment("exp_0").unwrap();
    assert_eq!(e.srm.coverage.verdict, Verdict::Ok, "{}", report.to_table());
    assert!(report.all_ok(), "{}", report.to_table());
    // Expected shares from the exact floored ranges, computed here from the spec: boundaries
    // floor(10000 i / 6), widths floor(len * 100 / 10000) = 16 buckets each = 0.16%.
    for (i, v) in e.variants.iter().enumerate() {
        let (lo, hi) = (10_000 * i as u32 / 6, 10_000 * (i as u32 + 1) / 6);
        let width = (hi - lo) * 100 / 10_000;
        assert_eq!(width, 16);
        assert!(
            (v.expected_share - f64::from(width) / 10_000.0).abs() < 1e-15,
            "{v:?}"
        );
        assert!((v.nominal_share - 0.01 / 6.0).abs() < 1e-15, "{v:?}");
    }
}

#[test]
fn two_hundred_experiments_at_999_to_1_with_30_units_are_not_flagged() {
    let toml = experiments_toml(200, &[999, 1], "");
    let report = simulate::run(&snapshot(&toml), synthetic(30), &opts()).unwrap();
    let flagged: Vec<&str> = report
        .experiments
        .iter()
        .filter(|e| {
            e.srm.verdict == Verdict::Mismatch || e.srm.coverage.verdict == Verdict::Mismatch
        })
        .map(|e| e.key.as_str())
        .collect();
    assert!(flagged.is_empty(), "{flagged:?}");
    assert!(
        report
            .independence
            .iter()
            .all(|p| p.test.verdict != Verdict::Mismatch),
        "an independence test of 30 units was flagged"
    );
    assert!(report.all_ok());
    // An experiment with one unit in the 1-weight arm: the exact binomial p-value, computed
    // here independently: P(X >= 1) for X ~ Bin(30, 0.001) (P(X = 0) is more likely than the observation).
    if let Some(e) = report
        .experiments
        .iter()
        .find(|e| e.variants[1].assigned == 1)
    {
        let want = 1.0 - (1.0f64 - 0.001).powi(30);
        assert!((e.srm.p_value - want).abs() < 1e-9, "{:?} vs {want}", e.srm);
    }
}

#[test]
fn sixty_independent_experiments_give_an_ok_overall_verdict() {
    let toml = experiments_toml(60, &[50, 50], "");
    let n = 20_000;
    let report = simulate::run(&snapshot(&toml), synthetic(n), &opts()).unwrap();
    assert_eq!(report.independence.len(), 60 * 59 / 2);
    assert!(report.all_ok(), "{}", report.to_table());
    // Raw and adjusted p-values are both reported; the adjusted one is never smaller.
    for e in &report.experiments {
        assert!(e.srm.split.p_adjusted >= e.srm.split.p_value);
    }
    // Counts checked by a second implementation of bucketing-v1.
    let spec = SyntheticSpec::new(n);
    let mut id = String::new();
    let mut want = [0u64; 2];
    for i in 0..n {
        spec.write_id(i, &mut id);
        want[usize::from(spec_bucket("exp_7", &id) >= 5_000)] += 1;
    }
    assert_eq!(report.experiment("exp_7").unwrap().assigned_counts(), want);
}
