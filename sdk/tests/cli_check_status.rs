//! `abkit check` checks every file a config names (short of loading code) and agrees with
//! `status`; `status` exits 1 on any refusal; report and error wording; the demo's headers and
//! build progress (issue 13, items 5, 7 and 8).
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{abkit, system_library, text};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

fn all(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// An experiment on plugin `p` and the `[[plugins]]` entry for it at `path`.
fn plugin_toml(trust: &str, path: &str) -> String {
    format!(
        "{trust}\n[[experiments]]\nkey = \"e\"\nstrategy = \"plugin:p\"\n\
         variants = [ {{ name = \"control\", weight = 1 }}, {{ name = \"treatment\", weight = 1 }} ]\n\n\
         [[plugins]]\nname = \"p\"\npath = {path:?}\n"
    )
}

/// A key pair `release` in `dir/keys`, and the stand-in library signed as `name` v3.
fn signed_library(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let keys = dir.join("keys");
    let out = abkit(
        &[
            "keygen",
            "--out",
            s(&keys),
            "--name",
            "release",
            "--unencrypted",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let lib = write(dir, "libp.so", &system_library());
    let key = keys.join("release.key");
    let out = abkit(
        &[
            "sign",
            "--key",
            s(&key),
            "--name",
            name,
            "--plugin-version",
            "3",
            s(&lib),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    (keys.join("release.pub"), lib)
}

#[test]
fn check_lists_every_missing_file_and_unsafe_path_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[trust]\npublic_key_files = [\"missing.pub\"]\n{}\n[[plugins]]\nname = \"q\"\npath = \"sub/../q.so\"\n",
        plugin_toml("", "nothere.so")
    );
    let c = write(dir.path(), "abkit.toml", body.as_bytes());
    // Before: "ok: ... is valid", exit 0, while `status` refused both plugins.
    let out = abkit(&["check", "--config", s(&c)], None);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let o = text(&out.stdout);
    assert!(o.contains("has 5 problems"), "{o}");
    for want in [
        "trust.public_key_files[0]: public key file",
        "missing.pub: cannot read it (it does not exist)",
        "plugins[0].path: ",
        "nothere.so: no such plugin file",
        "plugins[0].signature: signature file",
        "nothere.so.minisig does not exist",
        "plugins[1].path: ",
        "plugins[1].signature: ",
        "contains `..`",
    ] {
        assert!(o.contains(want), "missing `{want}` in:\n{o}");
    }
    // status refuses the same config: both tools say "no".
    let out = abkit(&["status", "--config", s(&c)], None);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
}

#[test]
fn check_verifies_signatures_names_and_libraries_short_of_loading() {
    let dir = tempfile::tempdir().unwrap();
    let (pubkey, lib) = signed_library(dir.path(), "p");
    let trust = format!("[trust]\npublic_key_files = [{:?}]\n", s(&pubkey));
    let c = write(
        dir.path(),
        "good.toml",
        plugin_toml(&trust, s(&lib)).as_bytes(),
    );
    let out = abkit(&["check", "--config", s(&c)], None);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    // Counts read as English.
    assert!(
        text(&out.stdout).contains("(1 experiment, 0 layers, 1 plugin)"),
        "{}",
        all(&out)
    );

    // Signed as another name: the signature names "other", the config "p".
    let other = tempfile::tempdir().unwrap();
    let (pubkey2, lib2) = signed_library(other.path(), "other");
    let trust2 = format!("[trust]\npublic_key_files = [{:?}]\n", s(&pubkey2));
    let c = write(
        dir.path(),
        "name.toml",
        plugin_toml(&trust2, s(&lib2)).as_bytes(),
    );
    let out = abkit(&["check", "--config", s(&c)], None);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let o = text(&out.stdout);
    assert!(o.contains("plugins[0].signature: "), "{o}");
    assert!(o.contains("signed as `other` but configured as `p`"), "{o}");

    // Trusting another key: the signature parses but its key is not trusted.
    let c = write(
        dir.path(),
        "key.toml",
        plugin_toml(&trust2, s(&lib)).as_bytes(),
    );
    let out = abkit(&["check", "--config", s(&c)], None);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(text(&out.stdout).contains("not trusted"), "{}", all(&out));

    // A signature that does not parse, a plugin others can write, a key that does not parse:
    // all three at once.
    let sig = PathBuf::from(format!("{}.minisig", s(&lib)));
    std::fs::write(&sig, "junk\n").unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o666)).unwrap();
    let bad_key = write(dir.path(), "bad.pub", b"not a key\n");
    let trust3 = format!("[trust]\npublic_key_files = [{:?}]\n", s(&bad_key));
    let c = write(
        dir.path(),
        "bad.toml",
        plugin_toml(&trust3, s(&lib)).as_bytes(),
    );
    let out = abkit(&["check", "--config", s(&c)], None);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let o = text(&out.stdout);
    assert!(o.contains("has 3 problems"), "{o}");
    assert!(o.contains("trust.public_key_files[0]: "), "{o}");
    assert!(
        o.contains("plugins[0].path: ") && o.contains("writable by group or others"),
        "{o}"
    );
    assert!(
        o.contains("plugins[0].signature: ") && o.contains("malformed signature"),
        "{o}"
    );
}

#[test]
fn check_refuses_a_file_that_is_not_a_loadable_library() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.so", b"not a library");
    let c = write(
        dir.path(),
        "abkit.toml",
        plugin_toml("[trust]\ndanger_allow_unsigned = true\n", "p.so").as_bytes(),
    );
    // Before: valid; status refused it at step elf.
    let out = abkit(&["check", "--config", s(&c)], None);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        text(&out.stdout).contains("plugins[0].path: ")
            && text(&out.stdout).contains("not an ELF shared library"),
        "{}",
        all(&out)
    );
}

#[test]
fn status_exits_1_when_any_plugin_is_refused_and_says_so_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.so", b"not a library");
    let c = write(
        dir.path(),
        "abkit.toml",
        plugin_toml("[trust]\ndanger_allow_unsigned = true\n", "p.so").as_bytes(),
    );
    // Before: exit 0 unless --strict; a script could not see the refusal.
    for json in [false, true] {
        let mut args = vec!["status", "--config", s(&c)];
        if json {
            args.push("--json");
        }
        let out = abkit(&args, None);
        assert_eq!(out.status.code(), Some(1), "{}", all(&out));
        let err = text(&out.stderr);
        assert!(err.contains("abkit: status: plugin p was refused"), "{err}");
        if json {
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(status["plugins"][0]["state"], "fallback");
        } else {
            assert!(
                text(&out.stdout).contains("refused at elf"),
                "{}",
                all(&out)
            );
        }
    }
    // --strict: the refusal and the unsigned mode.
    let out = abkit(&["status", "--config", s(&c), "--strict"], None);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let err = text(&out.stderr);
    assert!(err.contains("plugin p was refused"), "{err}");
    assert!(err.contains("danger_allow_unsigned is on"), "{err}");

    // Everything serves as configured: 0.
    let builtin = "[[experiments]]\nkey = \"e\"\nvariants = [ { name = \"a\", weight = 1 } ]\n";
    let c = write(dir.path(), "ok.toml", builtin.as_bytes());
    let out = abkit(&["status", "--config", s(&c)], None);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
}

#[test]
fn status_prints_each_refusal_once_even_with_the_last_reload() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(
        dir.path(),
        "abkit.toml",
        plugin_toml("[trust]\ndanger_allow_unsigned = true\n", "gone.so").as_bytes(),
    );
    let sdk = abkit::Sdk::from_file(&c).unwrap();
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    // Before: the plugin's refusal under the plugin, and again in the last reload's report.
    let shown = sdk.status().to_string();
    assert_eq!(shown.matches("refused at path").count(), 1, "{shown}");
    assert!(shown.contains("last reload (api) ACCEPTED"), "{shown}");
    assert!(
        shown.contains("refused, experiments on builtin:hash-v1"),
        "{shown}"
    );
    // The report's own line for the plugin says it was tried and nothing of it serves.
    assert!(
        shown.contains("tried a candidate of unknown version; nothing of it serves"),
        "{shown}"
    );
}

#[test]
fn a_toml_syntax_error_stays_inside_its_list_item() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(
        dir.path(),
        "bad.toml",
        b"[[experiments]]\nkey = \"a\"\ncoverage = \nvariants = []\n",
    );
    let out = abkit(&["check", "--config", s(&c)], None);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let o = text(&out.stdout);
    let lines: Vec<&str> = o.lines().collect();
    assert!(lines.len() >= 3, "{o}");
    assert!(lines[1].starts_with("  - line 3"), "{o}");
    // Before: "expected `\"`, `'`" started at column 0, outside the list.
    for line in &lines[1..] {
        assert!(
            line.starts_with("  - ") || line.starts_with("    "),
            "line {line:?} breaks out of the list:\n{o}"
        );
    }
    assert!(o.contains("    expected"), "{o}");
}

#[test]
fn the_demo_prints_one_header_per_part_and_lets_cargo_progress_through() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in for cargo: says what it was asked on stderr, like cargo's progress, and fails
    // so that the demo stops after its part 2 header.
    let fake = dir.path().join("fake-cargo");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"fake cargo progress: $*\" >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_abkit"))
        .args(["demo", "--units", "1000"])
        .env("CARGO", &fake)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let o = text(&out.stdout);
    let headers: Vec<&str> = o.lines().filter(|l| l.starts_with("== ")).collect();
    // Before: "== part 1 ==" and "== abkit demo: 5 experiments ... ==" for part 1.
    assert_eq!(headers.len(), 2, "{o}");
    assert!(headers[0].starts_with("== part 1:"), "{o}");
    assert!(headers[1].starts_with("== part 2:"), "{o}");
    let err = text(&out.stderr);
    // Before: cargo ran with --quiet, and the terminal stayed silent for minutes.
    assert!(
        err.contains("fake cargo progress: build --release -p abkit-strategy-weighted-hash"),
        "{err}"
    );
    assert!(!err.contains("--quiet"), "{err}");
    assert!(err.contains("[demo] step 1/2: building"), "{err}");
}
