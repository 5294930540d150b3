//! Catalogue rows 23 and 34 (issue 9, item 2): with `[preflight]`, every artifact not yet
//! accepted in this process is first run by `abkit preflight` in a child process. A plugin that
//! aborts or calls `exit(0)` while the reload's guards exercise it (after passing the probe),
//! or that hangs past the child's timeout, is refused (`preflight_crashed`,
//! `preflight_timeout`), the serving process never maps it, keeps serving what it served, and
//! lives. Without preflight, the same abort would kill this test process: that is why these
//! fixtures are only ever loaded with preflight on.
#![allow(clippy::unwrap_used)]

use abkit::PluginState;
use abkit::PreflightConfig;
use abkit::ProbeConfig;
use abkit::{DecidedBy, Sdk, Unit};
use abkit::{GuardKind, RefusalReason};
use abkit_tests::env::{plugin_experiment_toml, TestEnv};
use abkit_tests::fixtures::{abkit_binary, fixture, fx, reference, rf};
use abkit_tests::marker::images_named;
use std::path::PathBuf;
use std::time::Duration;

fn probe() -> ProbeConfig {
    ProbeConfig::default()
        .with_units(128)
        .with_p99_budget(Duration::from_millis(50))
        .with_deadline(Duration::from_secs(10))
}

fn preflight() -> PreflightConfig {
    PreflightConfig::new(abkit_binary()).with_timeout(Duration::from_secs(60))
}

fn build(config: PathBuf) -> Sdk {
    Sdk::builder()
        .probe(probe())
        .preflight(preflight())
        .build_from_file(config)
        .unwrap()
}

fn serves(sdk: &Sdk, plugin: &str) -> bool {
    matches!(
        sdk.assign("exp", &Unit::new("user-1")).decided_by,
        DecidedBy::Plugin(p) if p.name == plugin
    )
}

#[test]
fn a_good_plugin_passes_preflight_and_serves() {
    let env = TestEnv::new();
    let wh = env.stripped(&reference(rf::WEIGHTED_HASH), "wh");
    let lib = env.install(&wh, "plugins/wh.so", "weighted-hash", 1);
    let sdk = build(env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), false));
    assert_eq!(
        sdk.status().plugins[0].state,
        PluginState::Active,
        "{}",
        sdk.status()
    );
    assert!(serves(&sdk, "weighted-hash"));
    // A reload with guards: the sample-ratio answers come from the child, and pass.
    let v2 = env.install(&wh, "plugins/wh.so", "weighted-hash", 2);
    let _ = v2;
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    assert!(
        report
            .guards
            .iter()
            .any(|g| g.guard == GuardKind::SampleRatio && g.passed),
        "{report}"
    );
}

#[test]
fn plugins_that_abort_or_exit_during_the_checks_are_refused_and_never_mapped_here() {
    let env = TestEnv::new();
    let crash = env.stripped(&fixture(fx::CRASH), "crash");
    let lib = env.install(&crash, "plugins/crash.so", "crash", 1);
    // Served first with a config under which it never crashes (its preflight passes).
    let sdk = build(env.write_config(&plugin_experiment_toml("crash", &lib, None), false));
    assert!(serves(&sdk, "crash"), "{}", sdk.status());
    let mapped_before = images_named("crash");
    // New builds (new bytes, so not yet accepted here) that crash after the probe's 256 calls,
    // inside the guard population.
    for (i, (config, signal)) in [
        (r#"{ abort_after = 1000 }"#, "SIGABRT"),
        (r#"{ exit_after = 1000 }"#, "status 0"),
    ]
    .into_iter()
    .enumerate()
    {
        let version = 2 + i as u64;
        // Different bytes per version: append junk after the ELF (still a valid library).
        let bytes = [std::fs::read(&crash).unwrap(), vec![i as u8; 16 + i]].concat();
        let build = env.path(&format!("builds/crash-{version}.so"));
        std::fs::write(&build, bytes).unwrap();
        env.install(&build, "plugins/crash.so", "crash", version);
        env.write_config(&plugin_experiment_toml("crash", &lib, Some(config)), false);
        let report = sdk.reload();
        assert!(!report.accepted, "{report}");
        let refusal = report.refusal.as_ref().unwrap();
        assert_eq!(refusal.reason, RefusalReason::PreflightCrashed, "{report}");
        assert!(refusal.message.contains(signal), "{report}");
        // What served keeps serving; this process is alive and never mapped the new bytes.
        assert!(serves(&sdk, "crash"));
        assert_eq!(
            images_named("crash"),
            mapped_before,
            "the crashing build was mapped here"
        );
    }
}

#[test]
fn a_child_past_its_timeout_is_killed_and_the_artifact_refused() {
    let env = TestEnv::new();
    let stuck = env.stripped(&fixture(fx::STUCK), "stuck");
    let lib = env.install(&stuck, "plugins/stuck.so", "stuck", 1);
    let body = plugin_experiment_toml("stuck", &lib, Some(r#"{ hang_after = 1000 }"#));
    let cfg = env.path("abkit.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[preflight]\ncommand = {}\ntimeout_ms = 1500\n\n[reload]\ndeadline_ms = 600000\n\n{body}",
            env.trust_toml(false),
            abkit_tests::toml_string(&abkit_binary().display().to_string())
        ),
    )
    .unwrap();
    // The [preflight] table alone turns preflight on (no builder option here).
    let sdk = Sdk::builder().probe(probe()).build_from_file(&cfg).unwrap();
    let status = sdk.status();
    let refusal = status.plugins[0].refusal.clone().unwrap();
    assert_eq!(refusal.reason, RefusalReason::PreflightTimeout, "{status}");
    assert_eq!(images_named("stuck"), 0, "the stuck build was mapped here");
}
