//! `abkit simulate` and `abkit diff`, run as processes.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used)]

mod common;
use common::{abkit, text};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

const CONFIG: &str = r#"
[[experiments]]
key = "checkout_button"
variants = [ { name = "control", weight = 50 }, { name = "treatment", weight = 50 } ]
overrides = { "unit-1" = "treatment" }
targeting = { country = ["US", "CA"] }

[[experiments]]
key = "price_banner"
variants = [ { name = "control", weight = 90 }, { name = "banner", weight = 10 } ]
layer = { name = "checkout", range = [0, 5000] }

[[experiments]]
key = "free_shipping"
coverage = 0.5
variants = [ { name = "control", weight = 50 }, { name = "free", weight = 50 } ]
layer = { name = "checkout", range = [5000, 10000] }
"#;

fn file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn simulate_json_follows_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let c = file(dir.path(), "c.toml", CONFIG.as_bytes());
    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--synthetic",
            "20_000",
            "--attr-dist",
            "country=US:50,FR:50",
            "--format",
            "json",
            "--time",
            "2026-01-01T00:00:00Z",
        ],
        None,
    );
    let v = json(&out);
    assert_eq!(v["units"], 20_000);
    assert_eq!(v["now_ms"], 1_767_225_600_000u64);
    let exps = v["experiments"].as_array().unwrap();
    assert_eq!(exps.len(), 3);
    let e = &exps[0];
    assert_eq!(e["key"], "checkout_button");
    assert!(e["enrolled"].as_u64().unwrap() > 9000);
    assert!(e["not_enrolled"]["not_targeted"].as_u64().unwrap() > 9000);
    let v0 = &e["variants"][0];
    assert_eq!(v0["name"], "control");
    assert!(v0["count"].is_u64() && v0["expected_share"].is_f64() && v0["observed_share"].is_f64());
    assert!(e["srm"]["chi2"].is_f64() && e["srm"]["p_value"].is_f64());
    assert_eq!(e["srm"]["verdict"], "ok");
    assert_eq!(v["layers"][0]["name"], "checkout");
    assert_eq!(v["layers"][0]["units_in_more_than_one_by_strategy"], 0);
    assert_eq!(v["independence"].as_array().unwrap().len(), 2);
    assert!(
        text(&out.stderr).contains("abkit: simulate: 20000 units in"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn simulate_table_csv_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let c = file(dir.path(), "c.toml", CONFIG.as_bytes());
    let svg = dir.path().join("split.svg");
    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--synthetic",
            "5000",
            "--experiment",
            "free_shipping",
            "--plot",
            svg.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains(
            "free_shipping  builtin:hash-v1  coverage 50.00%  layer checkout [5000, 10000)"
        ),
        "{table}"
    );
    assert!(
        table.contains("SRM split:") && !table.contains("price_banner"),
        "{table}"
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.contains("<svg") && chart.contains("free_shipping"),
        "{chart}"
    );

    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--synthetic",
            "5000",
            "--format",
            "csv",
        ],
        None,
    );
    let csv = text(&out.stdout);
    assert!(csv.starts_with("section,experiment,name,count,observed_share,expected_share,chi2,df,p_value,verdict,p_adjusted\nunits,,,5000,"), "{csv}");
    assert!(csv.contains("\nvariant,price_banner,banner,"), "{csv}");
    assert!(
        csv.contains("\nlayer,checkout,price_banner;free_shipping,0,,,,,,ok,\n"),
        "{csv}"
    );
}

#[test]
fn stdin_csv_and_gzip_inputs_agree() {
    let dir = tempfile::tempdir().unwrap();
    let c = file(dir.path(), "c.toml", CONFIG.as_bytes());
    let ids: String = (0..3000).map(|i| format!("unit-{i}\n")).collect();
    let csv: String = String::from("id,country\n")
        + &(0..3000)
            .map(|i| format!("unit-{i},US\n"))
            .collect::<String>();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(ids.as_bytes()).unwrap();
    let gz_path = file(dir.path(), "ids.txt.gz", &gz.finish().unwrap());
    let csv_path = file(dir.path(), "units.csv", csv.as_bytes());
    let base = [
        "simulate",
        "--config",
        c.as_str(),
        "--format",
        "json",
        "--time",
        "0",
        "--experiment",
        "price_banner",
    ];
    let from_stdin = json(&abkit(&[&base[..], &["-"]].concat(), Some(ids.as_bytes())));
    let from_gz = json(&abkit(&[&base[..], &[gz_path.as_str()]].concat(), None));
    let from_csv = json(&abkit(
        &[&base[..], &["--id-column", "id", csv_path.as_str()]].concat(),
        None,
    ));
    assert_eq!(from_stdin["experiments"], from_gz["experiments"]);
    assert_eq!(from_stdin["experiments"], from_csv["experiments"]);
    assert_eq!(from_stdin["units"], 3000);
    assert_eq!(from_stdin["input"], "<stdin>");

    // the csv attributes reach targeting: everybody is US
    let targeted = json(&abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--format",
            "json",
            "--experiment",
            "checkout_button",
            "--id-column",
            "id",
            &csv_path,
        ],
        None,
    ));
    assert_eq!(
        targeted["experiments"][0]["not_enrolled"]["not_targeted"],
        0
    );
    assert_eq!(targeted["experiments"][0]["variants"][1]["overridden"], 1);
}

#[test]
fn malformed_lines_fail_with_the_line_number_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let c = file(dir.path(), "c.toml", CONFIG.as_bytes());
    let units = file(dir.path(), "units.txt", b"u1\nu2\n\xff\xfe\nu4\n\nu6\n");
    let out = abkit(&["simulate", "--config", &c, &units], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("units.txt line 3: not valid UTF-8") && err.contains("--skip-bad-lines"),
        "{err}"
    );

    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--format",
            "json",
            "--skip-bad-lines",
            &units,
        ],
        None,
    );
    let v = json(&out);
    assert_eq!(
        (v["units"].as_u64(), v["skipped_lines"]["count"].as_u64()),
        (Some(4), Some(2))
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("skipped line 3") && err.contains("skipped line 5: the unit id is empty"),
        "{err}"
    );

    let out = abkit(
        &["simulate", "--config", &c, "--id-column", "user", &units],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no column \"user\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn thread_count_does_not_change_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let c = file(dir.path(), "c.toml", CONFIG.as_bytes());
    let run = |threads: &str| {
        let out = abkit(
            &[
                "simulate",
                "--config",
                &c,
                "--synthetic",
                "70000",
                "--time",
                "1",
                "--threads",
                threads,
                "--format",
                "json",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0));
        out.stdout
    };
    assert_eq!(run("1"), run("3"));
}

#[test]
fn diff_reports_moves_and_transitions_by_variant_name() {
    let dir = tempfile::tempdir().unwrap();
    let from = file(dir.path(), "from.toml", CONFIG.as_bytes());
    let to = file(
        dir.path(),
        "to.toml",
        CONFIG
            .replace("coverage = 0.5", "coverage = 1.0")
            .replace(
                "weight = 90 }, { name = \"banner\", weight = 10",
                "weight = 80 }, { name = \"banner\", weight = 20",
            )
            .as_bytes(),
    );
    let out = abkit(
        &[
            "diff",
            "--from",
            &from,
            "--to",
            &to,
            "--synthetic",
            "40000",
            "--format",
            "json",
        ],
        None,
    );
    let v = json(&out);
    assert_eq!(v["units"], 40_000);
    let by_key = |k: &str| {
        v["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == k)
            .unwrap()
            .clone()
    };
    let fs = by_key("free_shipping");
    assert_eq!(
        (fs["moved"].as_u64(), fs["left"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(fs["entered"].as_u64().unwrap() > 8000);
    let pb = by_key("price_banner");
    // 10% of the slice (half the units) move from control to banner: ~2000
    let moved = pb["moved"].as_u64().unwrap();
    assert!((1700..2300).contains(&moved), "{moved}");
    let t = pb["transitions"].as_array().unwrap();
    assert!(t
        .iter()
        .any(|t| t["from"] == "control" && t["to"] == "banner" && t["count"] == moved));
    assert!(t.iter().any(|t| t["from"].is_null() && t["to"].is_null()));
    assert_eq!(by_key("checkout_button")["moved"], 0);

    let out = abkit(
        &["diff", "--from", &from, "--to", &to, "--synthetic", "40000"],
        None,
    );
    let table = text(&out.stdout);
    assert!(
        table.contains("price_banner transitions") && table.contains("from \\ to"),
        "{table}"
    );
}

#[test]
fn bad_arguments_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let c = file(dir.path(), "c.toml", CONFIG.as_bytes());
    let out = abkit(&["simulate", "--config", &c], None);
    assert_eq!(out.status.code(), Some(2), "no input is a usage error");
    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--synthetic",
            "10",
            "--time",
            "tomorrow",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("time \"tomorrow\""),
        "{}",
        text(&out.stderr)
    );
    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--synthetic",
            "10",
            "--experiment",
            "nope",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr)
        .contains("known experiments: checkout_button, price_banner, free_shipping"));
    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--synthetic",
            "10",
            "--attr-dist",
            "country",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            &dir.path().join("nope.txt").display().to_string(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot open units file"));
}
