//! The `abkit` command-line tool, run as a process.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used)]

mod common;
use common::{abkit, text};

use abkit::{Sdk, Unit};

const CONFIG: &str = r#"
[[experiments]]
key = "checkout_button"
variants = [ { name = "control", weight = 50 }, { name = "treatment", weight = 50 } ]
overrides = { "qa-user-1" = "treatment" }
targeting = { country = ["US", "CA"] }
"#;

const FIVE_MISTAKES: &str = r#"
[[experiments]]
key = "a"
coverage = 1.5
colour = "red"
variants = [ { name = "control", weight = 0 } ]
overrides = { "u1" = "treatment" }
[[experiments]]
key = "a"
variants = [ { name = "control", weight = 1 } ]
"#;

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("abkit.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn assign_one_unit_prints_the_variant_and_the_reason_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let c = write_config(&dir, CONFIG);
    let out = abkit(
        &[
            "assign",
            "--config",
            &c,
            "--experiment",
            "checkout_button",
            "--unit",
            "qa-user-1",
        ],
        None,
    );
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(0), "treatment\n")
    );
    assert!(
        text(&out.stderr).contains("override"),
        "{}",
        text(&out.stderr)
    );

    let out = abkit(
        &[
            "assign",
            "--config",
            &c,
            "--experiment",
            "checkout_button",
            "--unit",
            "u",
            "--attr",
            "country=FR",
        ],
        None,
    );
    assert_eq!(text(&out.stdout), "-\n");
    assert!(text(&out.stderr).contains("not_targeted"));
}

#[test]
fn assign_units_streams_csv_in_input_order_matching_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "[[experiments]]\nkey=\"e\"\ncoverage=0.5\nvariants=[{name=\"a\",weight=1},{name=\"b\",weight=2}]\n").unwrap();
    let ids: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
    let units = dir.path().join("units.txt");
    std::fs::write(&units, ids.join("\n") + "\n").unwrap();
    let out = abkit(
        &[
            "assign",
            "--config",
            plain.to_str().unwrap(),
            "--experiment",
            "e",
            "--units",
            units.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let sdk = Sdk::from_file(&plain).unwrap();
    let mut expected = String::from("unit_id,variant\n");
    for id in &ids {
        expected += &format!(
            "{id},{}\n",
            sdk.assign("e", &Unit::new(id)).variant_name().unwrap_or("")
        );
    }
    assert_eq!(text(&out.stdout), expected);

    // stdin works too
    let out = abkit(
        &[
            "assign",
            "--config",
            plain.to_str().unwrap(),
            "--experiment",
            "e",
            "--units",
            "-",
        ],
        Some(b"user-0\nuser-1\n"),
    );
    assert_eq!(text(&out.stdout).lines().count(), 3);
}

#[test]
fn check_prints_all_five_mistakes_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let c = write_config(&dir, FIVE_MISTAKES);
    let out = abkit(&["check", "--config", &c], None);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    for want in [
        "experiments[0].colour: unknown field",
        "experiments[0].coverage: 1.5 is outside 0..=1",
        "experiments[0].variants: the weights sum to 0",
        "experiments[0].overrides.\"u1\": names variant \"treatment\"",
        "experiments[1].key: duplicate experiment key \"a\"",
    ] {
        assert!(s.contains(want), "missing `{want}` in:\n{s}");
    }
    assert!(s.contains("5 problems"), "{s}");
}

#[test]
fn check_accepts_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = abkit(&["check", "--config", &write_config(&dir, CONFIG)], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn exit_codes_are_1_for_bad_input_and_2_for_usage() {
    let dir = tempfile::tempdir().unwrap();
    let c = write_config(&dir, CONFIG);
    let unknown = abkit(
        &[
            "assign",
            "--config",
            &c,
            "--experiment",
            "nope",
            "--unit",
            "u",
        ],
        None,
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("known experiments: checkout_button"));
    let missing = abkit(
        &[
            "assign",
            "--config",
            "/nonexistent/abkit.toml",
            "--experiment",
            "e",
            "--unit",
            "u",
        ],
        None,
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("/nonexistent/abkit.toml"));
    let usage = abkit(&["assign", "--config", &c], None);
    assert_eq!(usage.status.code(), Some(2));
    let bad_utf8 = abkit(
        &[
            "assign",
            "--config",
            &c,
            "--experiment",
            "checkout_button",
            "--units",
            "-",
        ],
        Some(b"ok\n\xff\n"),
    );
    assert_eq!(bad_utf8.status.code(), Some(1));
    assert!(text(&bad_utf8.stderr).contains("line 2"));
}

#[test]
fn demo_runs_to_the_end() {
    let out = abkit(&["demo", "--units", "2000"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("demo done."));
}
