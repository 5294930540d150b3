//! The `abkit` tool on hostile inputs (issue 8, doors 6 and 8): FIFOs, devices and endless
//! lines where files are expected fail fast with exit 1 and a message naming them; warnings
//! reach stderr (never stdout) and follow `-q`, `-v` and `RUST_LOG`; `status --strict` fails
//! in `danger_allow_unsigned` mode.
//!
//! Every run has a deadline, so a regression that blocks (a FIFO opened for reading waits for
//! a writer forever) fails the test instead of hanging the suite.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest any run here may take; each is expected to end in milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `abkit args` with `env` (RUST_LOG unset unless given), no stdin, and a deadline:
/// past it the process is killed and the test fails.
fn abkit_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_abkit"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("abkit {args:?} did not end within {DEADLINE:?} (blocked or unbounded read)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn abkit(args: &[&str]) -> Output {
    abkit_env(args, &[])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stdout and stderr together, for messages whichever stream they are on.
fn all(out: &Output) -> String {
    text(&out.stdout) + &text(&out.stderr)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p.display().to_string()
}

fn mkfifo(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
    p.display().to_string()
}

const EXPERIMENT: &str = r#"
[[experiments]]
key = "e"
variants = [ { name = "control", weight = 1 }, { name = "treatment", weight = 1 } ]
"#;

/// `danger_allow_unsigned` with a plugin whose file is not a library: the loader warns
/// (DANGER, then the refusal), and the experiment falls back to the builtin.
const DANGER_WITH_PLUGIN: &str = r#"
[trust]
danger_allow_unsigned = true

[[experiments]]
key = "e"
strategy = "plugin:p"
variants = [ { name = "control", weight = 1 }, { name = "treatment", weight = 1 } ]

[[plugins]]
name = "p"
path = "p.so"
"#;

#[test]
fn a_config_that_is_a_fifo_fails_fast_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(dir.path(), "abkit.toml");
    // Before: read_to_string on the FIFO waited for a writer forever.
    for cmd in ["check", "status"] {
        let out = abkit(&[cmd, "--config", &fifo]);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", all(&out));
        let msg = all(&out);
        assert!(msg.contains(&fifo), "{cmd}: {msg}");
        assert!(msg.contains("FIFO"), "{cmd}: {msg}");
        assert!(msg.contains("not a regular file"), "{cmd}: {msg}");
    }
}

#[test]
fn a_config_that_is_dev_zero_fails_fast_naming_it() {
    // Before: /dev/zero reports size 0, passed the 16 MiB check and was read until memory ran out.
    let out = abkit(&["check", "--config", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let msg = all(&out);
    assert!(msg.contains("/dev/zero"), "{msg}");
    assert!(msg.contains("character device"), "{msg}");
    let out = abkit(&["simulate", "--config", "/dev/zero", "--synthetic", "10"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("character device"), "{}", all(&out));
}

#[test]
fn a_trusted_public_key_file_that_is_a_fifo_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let key = mkfifo(dir.path(), "release.pub");
    write(dir.path(), "p.so", b"not a library");
    let config = "[trust]\npublic_key_files = [\"release.pub\"]\n\n[[experiments]]\nkey = \"e\"\n\
         strategy = \"plugin:p\"\nvariants = [ { name = \"a\", weight = 1 } ]\n\n\
         [[plugins]]\nname = \"p\"\npath = \"p.so\"\n";
    let c = write(dir.path(), "abkit.toml", config.as_bytes());
    // Before: refused as "not a regular public key file", after a path lookup that a swap
    // could race; now the opened descriptor is checked and the message says what it is.
    let out = abkit(&["status", "--config", &c, "--strict"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let msg = all(&out);
    assert!(msg.contains("release.pub") && msg.contains("FIFO"), "{msg}");
    assert!(msg.contains("bad_key_file"), "{msg}");

    let p = dir.path().join("p.so").display().to_string();
    let out = abkit(&["verify", "--pubkey", &key, &p]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("FIFO"), "{}", all(&out));
}

#[test]
fn simulate_on_dev_zero_fails_on_line_1_naming_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "abkit.toml", EXPERIMENT.as_bytes());
    // Before: one endless line was read into memory until the allocation failed (abort).
    let out = abkit(&["simulate", "--config", &c, "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let err = text(&out.stderr);
    assert!(err.contains("/dev/zero line 1"), "{err}");
    assert!(err.contains("65536 bytes"), "{err}");
    assert!(err.contains("--max-line-bytes"), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    let out = abkit(&[
        "diff",
        "--from",
        &c,
        "--to",
        &c,
        "--max-line-bytes",
        "1000",
        "/dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        text(&out.stderr).contains("line 1: the line is longer than 1000 bytes"),
        "{}",
        text(&out.stderr)
    );
    let out = abkit(&[
        "assign",
        "--config",
        &c,
        "--experiment",
        "e",
        "--units",
        "/dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        text(&out.stderr).contains("/dev/zero line 1: the line is longer than 65536 bytes"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_100_kib_line_is_an_error_by_default_and_passes_with_a_larger_cap() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "abkit.toml", EXPERIMENT.as_bytes());
    let mut units = b"u1\n".to_vec();
    units.extend(std::iter::repeat_n(b'x', 100 << 10));
    units.extend(b"\nu3\n");
    let f = write(dir.path(), "units.txt", &units);

    // Before: the line was accepted, whatever its length.
    let out = abkit(&["assign", "--config", &c, "--experiment", "e", "--units", &f]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let err = text(&out.stderr);
    assert!(err.contains("units.txt line 2"), "{err}");
    assert!(err.contains("--max-line-bytes"), "{err}");

    let out = abkit(&[
        "assign",
        "--config",
        &c,
        "--experiment",
        "e",
        "--units",
        &f,
        "--max-line-bytes",
        "200000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert_eq!(text(&out.stdout).lines().count(), 4); // header + 3 units

    let out = abkit(&["simulate", "--config", &c, &f]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        text(&out.stderr).contains("units.txt line 2"),
        "{}",
        all(&out)
    );

    let out = abkit(&[
        "simulate",
        "--config",
        &c,
        "--format",
        "json",
        "--max-line-bytes",
        "200000",
        &f,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["units"], 3);

    // With --skip-bad-lines the long line is one counted bad line; the next row survives.
    let out = abkit(&[
        "simulate",
        "--config",
        &c,
        "--format",
        "json",
        "--skip-bad-lines",
        &f,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["units"], 2, "{report}");
    assert!(
        text(&out.stderr).contains("skipped line 2: the line is longer than 65536 bytes"),
        "{}",
        text(&out.stderr)
    );

    let out = abkit(&[
        "diff",
        "--from",
        &c,
        "--to",
        &c,
        "--format",
        "json",
        "--skip-bad-lines",
        &f,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["units"], 2, "{report}");
    let out = abkit(&["diff", "--from", &c, "--to", &c, &f]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        text(&out.stderr).contains("units.txt line 2"),
        "{}",
        all(&out)
    );

    let out = abkit(&["simulate", "--config", &c, "--max-line-bytes", "0", &f]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
}

#[test]
fn status_strict_fails_while_unsigned_plugins_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "ok.toml", EXPERIMENT.as_bytes());
    let out = abkit(&["status", "--config", &c, "--strict"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));

    // Before: no plugin refused, so --strict exited 0 with signature checks off.
    let danger = format!("[trust]\ndanger_allow_unsigned = true\n{EXPERIMENT}");
    let c = write(dir.path(), "danger.toml", danger.as_bytes());
    let out = abkit(&["status", "--config", &c, "--strict"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let err = text(&out.stderr);
    assert!(err.contains("danger_allow_unsigned is on"), "{err}");
    let out = abkit(&["status", "--config", &c]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
}

#[test]
fn warnings_reach_stderr_only_and_follow_quiet_verbose_and_rust_log() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.so", b"not a library");
    let c = write(dir.path(), "abkit.toml", DANGER_WITH_PLUGIN.as_bytes());

    // Before: no subscriber was installed and the warning was dropped.
    // (Exit 1: the plugin is refused, which `status` reports with its exit code.)
    let out = abkit(&["status", "--config", &c, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let err = text(&out.stderr);
    assert!(err.contains("DANGER: loading an UNSIGNED plugin"), "{err}");
    assert!(err.contains("plugin refused"), "{err}");
    // stdout stays machine-readable.
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["danger_unsigned_plugins"], true);

    let out = abkit(&[
        "simulate",
        "--config",
        &c,
        "--synthetic",
        "100",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(
        text(&out.stderr).contains("DANGER"),
        "{}",
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["units"], 100);

    for quiet in [&["-q", "status"][..], &["status", "--quiet"][..]] {
        let args = [quiet, &["--config", &c, "--json"]].concat();
        let out = abkit(&args);
        assert_eq!(out.status.code(), Some(1), "{}", all(&out));
        assert!(
            !text(&out.stderr).contains("DANGER"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = abkit_env(&["status", "--config", &c], &[("RUST_LOG", "off")]);
    assert!(
        !text(&out.stderr).contains("DANGER"),
        "{}",
        text(&out.stderr)
    );
    let out = abkit_env(&["status", "--config", &c], &[("RUST_LOG", "error")]);
    assert!(
        !text(&out.stderr).contains("DANGER"),
        "{}",
        text(&out.stderr)
    );
    // -v/-q win over RUST_LOG.
    let out = abkit_env(&["-v", "status", "--config", &c], &[("RUST_LOG", "off")]);
    assert!(
        text(&out.stderr).contains("DANGER"),
        "{}",
        text(&out.stderr)
    );

    // Info events: hidden by default, shown by RUST_LOG=info and -v; stdout stays CSV.
    let ok = write(dir.path(), "ok.toml", EXPERIMENT.as_bytes());
    let units = write(dir.path(), "units.txt", b"u1\nu2\n");
    let assign = [
        "assign",
        "--config",
        &ok,
        "--experiment",
        "e",
        "--units",
        &units,
    ];
    let out = abkit(&assign);
    assert!(
        !text(&out.stderr).contains("bulk assignment done"),
        "{}",
        text(&out.stderr)
    );
    let out = abkit_env(&assign, &[("RUST_LOG", "info")]);
    assert!(
        text(&out.stderr).contains("bulk assignment done"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).starts_with("unit_id,variant\n"));
    assert_eq!(text(&out.stdout).lines().count(), 3);
    let out = abkit(&[&["-v"][..], &assign[..]].concat());
    assert!(
        text(&out.stderr).contains("bulk assignment done"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("bulk assignment done"));

    // A bad RUST_LOG is reported, and warnings still show.
    let out = abkit_env(&["status", "--config", &c], &[("RUST_LOG", "abkit=lots")]);
    let err = text(&out.stderr);
    assert!(err.contains("RUST_LOG") && err.contains("DANGER"), "{err}");
}
