//! Issue 13, defects 1-4 and 10, as a new user meets them: `abkit simulate`, `diff` and
//! `assign --units` run as processes on the files a user has.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used)]

mod common;
use common::{abkit, text};

use std::io::Write;
use std::path::Path;
use std::process::Output;

const CONFIG: &str = r#"
[[experiments]]
key = "checkout_button"
variants = [ { name = "control", weight = 50 }, { name = "treatment", weight = 50 } ]
targeting = { country = ["US"] }
"#;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

fn all(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", all(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A CSV of `rows` data rows with `u2,US,"ios 17` (an unclosed quote) on line 3.
fn stray_quote_csv(rows: u64) -> Vec<u8> {
    let mut csv = String::from("user_id,country,os\nu1,US,ios 16\nu2,US,\"ios 17\n");
    for i in 3..=rows {
        csv += &format!("u{i},US,android\n");
    }
    csv.into_bytes()
}

#[test]
fn a_stray_quote_is_an_error_at_its_line_or_one_counted_skip() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.toml", CONFIG.as_bytes());
    // Before: a small file reported "2 units" and exit 0 (the quote swallowed the rest), a
    // large one failed on a record "running on" with --skip-bad-lines too.
    let small = write(dir.path(), "small.csv", &stray_quote_csv(5_000));
    let big = write(dir.path(), "big.csv", &stray_quote_csv(100_000));
    for f in [&small, &big] {
        let out = abkit(
            &["simulate", "--config", &c, "--id-column", "user_id", f],
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{}", all(&out));
        let err = text(&out.stderr);
        assert!(
            err.contains("line 3: field 3 (\"os\") opens a quote"),
            "{err}"
        );
        assert!(err.contains("--skip-bad-lines"), "{err}");
        let out = abkit(
            &[
                "diff",
                "--from",
                &c,
                "--to",
                &c,
                "--id-column",
                "user_id",
                f,
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{}", all(&out));
        assert!(
            text(&out.stderr).contains("line 3: field 3"),
            "{}",
            all(&out)
        );
    }

    let flags = [
        "--id-column",
        "user_id",
        "--skip-bad-lines",
        "--format",
        "json",
    ];
    let v = json(&abkit(
        &[&["simulate", "--config", &c][..], &flags[..], &[&big]].concat(),
        None,
    ));
    assert_eq!(v["rows_read"], 100_000);
    assert_eq!(v["units"], 99_999);
    assert_eq!(v["skipped_lines"]["count"], 1);
    assert_eq!(v["skipped_lines"]["examples"][0]["line"], 3);
    let v = json(&abkit(
        &[&["diff", "--from", &c, "--to", &c][..], &flags[..], &[&big]].concat(),
        None,
    ));
    assert_eq!(
        (v["rows_read"].as_u64(), v["units"].as_u64()),
        (Some(100_000), Some(99_999))
    );
    // The table accounts for every row too.
    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--id-column",
            "user_id",
            "--skip-bad-lines",
            &big,
        ],
        None,
    );
    assert!(
        text(&out.stdout).contains("rows read 100,000 = units 99,999 + skipped 1 (malformed)"),
        "{}",
        all(&out)
    );
}

#[test]
fn empty_input_is_an_error_and_draws_no_chart() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.toml", CONFIG.as_bytes());
    let empty = write(dir.path(), "empty.txt", b"");
    let header = write(dir.path(), "header.csv", b"user_id,country\n");
    let svg = dir.path().join("split.svg");
    let svg_arg = svg.display().to_string();
    // Before: "SRM ok, p = 1", exit 0, and a chart of 0% bars.
    for args in [
        vec!["simulate", "--config", &c, "--plot", &svg_arg, &empty],
        vec![
            "simulate",
            "--config",
            &c,
            "--id-column",
            "user_id",
            &header,
        ],
        vec!["diff", "--from", &c, "--to", &c, &empty],
    ] {
        let out = abkit(&args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", all(&out));
        assert!(
            text(&out.stderr).contains("no units read from"),
            "{}",
            all(&out)
        );
        assert!(text(&out.stderr).contains("--allow-empty"), "{}", all(&out));
        assert!(out.stdout.is_empty(), "{}", all(&out));
    }
    let out = abkit(&["simulate", "--config", &c, "-"], Some(b""));
    assert!(
        text(&out.stderr).contains("no units read from <stdin>"),
        "{}",
        all(&out)
    );
    assert!(!svg.exists());

    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--allow-empty",
            "--plot",
            &svg_arg,
            &empty,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(
        text(&out.stderr).contains("no chart written"),
        "{}",
        all(&out)
    );
    assert!(!svg.exists());
}

#[test]
fn a_truncated_gzip_csv_names_the_last_line_read() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.toml", CONFIG.as_bytes());
    let mut csv = String::from("user_id,country\n");
    for i in 0..300_000 {
        csv += &format!("u{i},US\n");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(csv.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let f = write(dir.path(), "units.csv.gz", &gz[..gz.len() / 2]);
    // Before: "after line 0".
    let out = abkit(
        &["simulate", "--config", &c, "--id-column", "user_id", &f],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let err = text(&out.stderr);
    let n: u64 = err
        .split("after line ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!((1000..300_001).contains(&n), "{err}");
    assert!(err.contains("truncated or corrupt gzip"), "{err}");
}

#[test]
fn assign_units_reads_like_simulate() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.toml", CONFIG.as_bytes());
    let csv = b"user_id,country\nu1,US\nu2,FR\nu3,US\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(csv).unwrap();
    let gz = write(dir.path(), "units.csv.gz", &gz.finish().unwrap());
    let base = ["assign", "--config", &c, "--experiment", "checkout_button"];
    // Before: each CSV line was one unit id ("u1,US"), and gzip was read as text.
    let out = abkit(
        &[&base[..], &["--units", &gz, "--id-column", "user_id"]].concat(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let rows: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(rows[0], "unit_id,variant");
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows[1].starts_with("u1,") && rows[1].len() > 3, "{rows:?}"); // US: enrolled
    assert_eq!(rows[2], "u2,"); // FR: not targeted
                                // stdin, and the same answer as from the file.
    let from_stdin = abkit(
        &[&base[..], &["--units", "-", "--id-column", "user_id"]].concat(),
        Some(csv),
    );
    assert_eq!(from_stdin.stdout, out.stdout, "{}", all(&from_stdin));

    // Plain ids keep their output: --attr applies to every unit.
    let ids = write(dir.path(), "ids.txt", b"u1\nu2\n");
    let out = abkit(
        &[&base[..], &["--units", &ids, "--attr", "country=US"]].concat(),
        None,
    );
    let plain = text(&out.stdout);
    assert!(
        plain.starts_with("unit_id,variant\nu1,") && plain.lines().count() == 3,
        "{plain}"
    );
    assert!(plain.lines().all(|l| !l.ends_with(',')), "{plain}");

    // A bad line: the rows before it are written, and the error says how many.
    let bad = write(dir.path(), "bad.csv", &stray_quote_csv(10));
    let out = abkit(
        &[&base[..], &["--units", &bad, "--id-column", "user_id"]].concat(),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert_eq!(text(&out.stdout).lines().count(), 2, "{}", all(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.csv line 3: field 3 (\"os\") opens a quote"),
        "{err}"
    );
    assert!(err.contains("The 1 row(s) before it were written"), "{err}");
    let out = abkit(
        &[
            &base[..],
            &[
                "--units",
                &bad,
                "--id-column",
                "user_id",
                "--skip-bad-lines",
            ],
        ]
        .concat(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert_eq!(text(&out.stdout).lines().count(), 10, "{}", all(&out));
    assert!(
        text(&out.stderr).contains("skipped line 3"),
        "{}",
        all(&out)
    );
}

#[test]
fn the_plot_shows_differences_with_intervals_for_each_variant() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.toml", CONFIG.as_bytes());
    let svg = dir.path().join("split.svg");
    let out = abkit(
        &[
            "simulate",
            "--config",
            &c,
            "--synthetic",
            "20000",
            "--attr-dist",
            "country=US:1",
            "--plot",
            svg.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let chart = std::fs::read_to_string(&svg).unwrap();
    for name in ["control", "treatment"] {
        assert_eq!(
            chart.matches(&format!(">\n{name}\n<")).count(),
            1,
            "{chart}"
        );
    }
    assert!(chart.contains("95% interval"), "{chart}");
    assert_eq!(chart.matches(" pp  [").count(), 2, "{chart}");
}
