//! Catalogue row 33 (issue 9, item 1): a plugin call that never returns during a reload —
//! `new_strategy`, or `assign` once the probe has passed (stuck in the reload's guards) — is
//! refused at its deadline, the stuck call is abandoned and counted, the reload lock is
//! released so the next reload works, building an SDK never hangs, and `abkit watch` exits on
//! time whatever a reload is doing. Fixture: `tests/fixtures/stuck` (hangs sleep, not spin).
#![allow(clippy::unwrap_used)]

use abkit::PluginState;
use abkit::ProbeConfig;
use abkit::RefusalReason;
use abkit::{DecidedBy, FallbackReason, Sdk, Unit};
use abkit_tests::env::{plugin_experiment_toml, TestEnv};
use abkit_tests::fixtures::{abkit_binary, fixture, fx, reference, rf};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// Generous enough for a debug build on a loaded 2-core machine, short enough for a test.
const DEADLINE: Duration = Duration::from_millis(1500);

fn probe() -> ProbeConfig {
    ProbeConfig::default()
        .with_units(128)
        .with_p99_budget(Duration::from_millis(50))
        .with_deadline(Duration::from_secs(10))
}

/// Runs `f` on a thread and fails the test (instead of hanging it) if it takes over a minute.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hung"))
}

fn build(config: PathBuf) -> Sdk {
    bounded("building the SDK", move || {
        Sdk::builder()
            .probe(probe())
            .deadline(DEADLINE)
            .build_from_file(config)
            .unwrap()
    })
}

fn stuck(env: &TestEnv, version: u64) -> PathBuf {
    let small = env.stripped(&fixture(fx::STUCK), "stuck");
    env.install(&small, "plugins/stuck.so", "stuck", version)
}

#[test]
fn a_new_strategy_that_never_returns_does_not_hang_building_the_sdk() {
    let env = TestEnv::new();
    let lib = stuck(&env, 1);
    let cfg = env.write_config(
        &plugin_experiment_toml("stuck", &lib, Some(r#"{ hang_new = true }"#)),
        false,
    );
    let sdk = build(cfg);
    let status = sdk.status();
    let p = &status.plugins[0];
    assert_eq!(p.state, PluginState::Fallback, "{status}");
    assert_eq!(
        p.refusal.as_ref().unwrap().reason,
        RefusalReason::DeadlineExceeded,
        "{status}"
    );
    assert!(status.abandoned_plugin_calls >= 1, "{status}");
    assert_eq!(
        sdk.assign("exp", &Unit::new("u")).decided_by,
        DecidedBy::Fallback(FallbackReason::PluginRefused)
    );
}

#[test]
fn a_stuck_reload_is_refused_at_its_deadline_and_the_next_reload_works() {
    let env = TestEnv::new();
    let lib = stuck(&env, 1);
    // Served with a config under which it behaves.
    let serving = plugin_experiment_toml("stuck", &lib, None);
    let sdk = std::sync::Arc::new(build(env.write_config(&serving, false)));
    assert_eq!(sdk.status().plugins[0].state, PluginState::Active);
    let serves_stuck = |sdk: &Sdk| {
        matches!(
            sdk.assign("exp", &Unit::new("u")).decided_by,
            DecidedBy::Plugin(p) if p.name == "stuck"
        )
    };
    assert!(serves_stuck(&sdk));

    // 1. new_strategy never returns.
    env.write_config(
        &plugin_experiment_toml("stuck", &lib, Some(r#"{ hang_new = true }"#)),
        false,
    );
    let s = std::sync::Arc::clone(&sdk);
    let report = bounded("a reload with a hanging new_strategy", move || s.reload());
    assert!(!report.accepted, "{report}");
    assert_eq!(
        report.refusal.as_ref().unwrap().reason,
        RefusalReason::DeadlineExceeded,
        "{report}"
    );
    assert!(serves_stuck(&sdk));

    // 2. assign answers through the probe (256 calls), then never again: stuck in the guards.
    env.write_config(
        &plugin_experiment_toml("stuck", &lib, Some(r#"{ hang_after = 2000 }"#)),
        false,
    );
    let s = std::sync::Arc::clone(&sdk);
    let report = bounded("a reload stuck in the guards", move || s.reload());
    assert!(!report.accepted, "{report}");
    let refusal = report.refusal.as_ref().unwrap();
    assert_eq!(refusal.reason, RefusalReason::DeadlineExceeded, "{report}");
    assert!(refusal.message.contains("guards"), "{report}");
    assert_eq!(sdk.status().generation, 1);
    assert!(serves_stuck(&sdk));

    // 3. The lock was released: an ordinary reload goes through; status counts the abandoned calls.
    let wh = env.stripped(&reference(rf::WEIGHTED_HASH), "wh");
    let good = env.install(&wh, "plugins/wh.so", "weighted-hash", 1);
    env.write_config(&plugin_experiment_toml("weighted-hash", &good, None), false);
    let s = std::sync::Arc::clone(&sdk);
    let report = bounded("the next reload", move || s.reload());
    assert!(report.accepted, "{report}");
    let status = sdk.status();
    assert!(status.abandoned_plugin_calls >= 2, "{status}");
    assert!(status.to_string().contains("abandoned"), "{status}");
}

#[test]
fn reload_deadline_ms_in_the_config_sets_the_deadline() {
    let env = TestEnv::new();
    let lib = stuck(&env, 1);
    let body = plugin_experiment_toml("stuck", &lib, Some(r#"{ hang_new = true }"#));
    let cfg = env.path("abkit.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[reload]\ndeadline_ms = 200\n\n{body}",
            env.trust_toml(false)
        ),
    )
    .unwrap();
    // The builder says an hour; the configuration's 200 ms wins (or this would hang).
    let sdk = bounded("building with [reload] deadline_ms", move || {
        Sdk::builder()
            .probe(probe())
            .deadline(Duration::from_secs(3600))
            .build_from_file(cfg)
            .unwrap()
    });
    let refusal = sdk.status().plugins[0].refusal.clone().unwrap();
    assert_eq!(refusal.reason, RefusalReason::DeadlineExceeded);
    assert!(refusal.message.contains("200 ms"), "{}", refusal.message);
}

/// `abkit watch --for 3` with a reload stuck for a minute in the guards still exits on time.
#[test]
fn abkit_watch_exits_on_time_while_a_reload_is_stuck() {
    let env = TestEnv::new();
    let wh = env.stripped(&reference(rf::WEIGHTED_HASH), "wh");
    let good = env.install(&wh, "plugins/wh.so", "weighted-hash", 1);
    let lib = stuck(&env, 1);
    let with_deadline = |body: &str| {
        format!(
            "{}\n[reload]\ndeadline_ms = 60000\n\n{body}",
            env.trust_toml(false)
        )
    };
    let cfg = env.path("abkit.toml");
    std::fs::write(
        &cfg,
        with_deadline(&plugin_experiment_toml("weighted-hash", &good, None)),
    )
    .unwrap();
    let mut child = std::process::Command::new(abkit_binary())
        .args(["watch", "--json", "--for", "3", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // Deploy the plugin that gets stuck in the guards: the watcher's reload hangs for 60 s.
    let tmp = env.path("abkit.toml.new");
    std::fs::write(
        &tmp,
        with_deadline(&plugin_experiment_toml(
            "stuck",
            &lib,
            Some(r#"{ hang_after = 2000 }"#),
        )),
    )
    .unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    let status = wait_with_limit(&mut child, Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "abkit watch did not exit by itself"
    );
}

fn wait_with_limit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while waited < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(step);
        waited += step;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
