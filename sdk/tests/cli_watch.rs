//! `abkit watch`: prints the status, what it watches, and a report for every reload.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const ABKIT: &str = env!("CARGO_BIN_EXE_abkit");

fn config(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("[[experiments]]\nkey = \"{k}\"\nvariants = [ {{ name = \"a\", weight = 50 }}, {{ name = \"b\", weight = 50 }} ]\n\n"))
        .collect()
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's stdout lines, read on a thread so the test can wait with a timeout.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// JSON lines until one satisfies `done`.
fn json_until(
    lines: &mpsc::Receiver<String>,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(15))
            .expect("abkit watch printed nothing in time");
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if done(&value) {
            return value;
        }
    }
}

fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn watch_json_prints_an_accepted_report_when_the_config_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abkit.toml");
    std::fs::write(&path, config(&["first"])).unwrap();
    let mut child = Command::new(ABKIT)
        .args([
            "watch",
            "--json",
            "--for",
            "20",
            "--debounce-ms",
            "100",
            "--config",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let _running = Running(child);

    let status = json_until(&lines, |_| true);
    assert_eq!(status["generation"], 1, "{status}");
    let watching = json_until(&lines, |v| v.get("watching").is_some());
    let files = watching["watching"]["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f.as_str().is_some_and(|f| f.ends_with("abkit.toml"))),
        "{watching}"
    );

    replace_atomically(&path, &config(&["first", "second"]));
    let report = json_until(&lines, |v| v.get("trigger").is_some());
    assert_eq!(report["trigger"], "file", "{report}");
    assert_eq!(report["accepted"], true, "{report}");
    assert_eq!(report["generation"], 2, "{report}");
    let added: Vec<_> = report["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"] == "added")
        .collect();
    assert_eq!(added.len(), 1, "{report}");
    assert_eq!(added[0]["key"], "second");
}

#[test]
fn watch_for_one_second_prints_what_it_watches_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abkit.toml");
    std::fs::write(&path, config(&["only"])).unwrap();
    let out = Command::new(ABKIT)
        .args(["watch", "--for", "1", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("experiment only"), "{text}");
    assert!(
        text.contains(&format!("watching {}", path.display())),
        "{text}"
    );
}

#[test]
fn watch_exits_1_on_an_invalid_config_and_2_on_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abkit.toml");
    std::fs::write(&path, "[[experiments]]\nkey = 3\n").unwrap();
    let out = Command::new(ABKIT)
        .args(["watch", "--for", "1", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("abkit.toml"));

    let out = Command::new(ABKIT)
        .args(["watch", "--for", "soon", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn watch_commands_on_stdin_reset_a_demotion_and_print_the_status() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abkit.toml");
    std::fs::write(&path, config(&["exp"])).unwrap();
    let mut child = Running(
        Command::new(ABKIT)
            .args(["watch", "--json", "--commands", "--for", "20", "--config"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(&mut child.0);
    json_until(&lines, |v| v.get("watching").is_some());
    let mut stdin = child.0.stdin.take().unwrap();
    writeln!(stdin, "reset-demotion exp").unwrap();
    let reset = json_until(&lines, |v| v.get("demotion_reset").is_some());
    assert_eq!(reset["demotion_reset"]["experiment"], "exp");
    // The builtin serves `exp`: there is nothing to lift (a demoted plugin is lifted by the
    // same call, `Sdk::reset_demotion`, tested with a real demotion in abkit-tests).
    assert_eq!(reset["demotion_reset"]["was_demoted"], false);
    writeln!(stdin, "status").unwrap();
    let status = json_until(&lines, |v| v.get("generation").is_some());
    assert_eq!(status["experiments"][0]["key"], "exp");
}
