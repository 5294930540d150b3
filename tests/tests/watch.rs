//! The reload watcher (`abkit::watch`, feature `watch`): config and plugin files changed
//! on disk — by atomic rename or in place — are reloaded, debounced, and every report reaches
//! the subscribers; a bad artifact is refused and serving stays as it was.
#![allow(clippy::unwrap_used)]

use abkit::GuardConfig;
use abkit::ProbeConfig;
use abkit::{watch, ReloadReport, ReloadReports, WatchHandle, WatchOptions};
use abkit::{Change, RefusalReason};
use abkit::{DecidedBy, Reason, Sdk, Unit};
use abkit_tests::env::{plugin_experiment_toml, TestEnv};
use abkit_tests::fixtures::{fixture, fx};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Generous: a reload of a real plugin in a debug build on a loaded machine.
const WAIT: Duration = Duration::from_secs(10);

/// An SDK as the watcher tests need it: a small probe, and no sample-ratio guard since the
/// marker builds answer one variant for everybody.
fn sdk_on(config: &Path) -> Arc<Sdk> {
    let guards = GuardConfig::default().with_srm_min_p_value(0.0);
    let probe = ProbeConfig::default().with_units(64);
    Arc::new(
        Sdk::builder()
            .probe(probe)
            .guards(guards)
            .build_from_file(config)
            .unwrap(),
    )
}

/// Files only: SIGHUP has its own test binary (signals are process-wide).
fn start(sdk: &Arc<Sdk>) -> (WatchHandle, ReloadReports) {
    let handle = watch(Arc::clone(sdk), WatchOptions::default().with_sighup(false)).unwrap();
    let reports = handle.subscribe();
    (handle, reports)
}

/// The next report, or the test fails after [`WAIT`].
async fn next_report(reports: &mut ReloadReports) -> ReloadReport {
    tokio::time::timeout(WAIT, reports.recv())
        .await
        .expect("no reload report in time")
        .unwrap()
}

/// Reports until one satisfies `done`; returns them all (the last one satisfies `done`).
async fn reports_until(
    reports: &mut ReloadReports,
    done: impl Fn(&ReloadReport) -> bool,
) -> Vec<ReloadReport> {
    let mut seen = Vec::new();
    loop {
        let report = next_report(reports).await;
        let stop = done(&report);
        seen.push(report);
        if stop {
            return seen;
        }
    }
}

fn variant_of(sdk: &Sdk, experiment: &str) -> Option<u32> {
    sdk.assign(experiment, &Unit::new("user-1"))
        .variant
        .map(|v| v.index)
}

/// A builtin experiment `key` (50/50).
fn builtin_toml(key: &str) -> String {
    format!("\n[[experiments]]\nkey = \"{key}\"\nvariants = [ {{ name = \"a\", weight = 50 }}, {{ name = \"b\", weight = 50 }} ]\n")
}

/// `env`'s config text (trust table + `body`), as `TestEnv::write_config` writes it.
fn config_text(env: &TestEnv, body: &str) -> String {
    format!("{}\n{body}", env.trust_toml(false))
}

/// A deployment serving the marker-a build (variant 0 for everybody) as plugin `marker`.
fn marker_deployment() -> (TestEnv, PathBuf, PathBuf) {
    let env = TestEnv::new();
    let lib = env.install(&fixture(fx::MARKER_A), "plugins/marker.so", "marker", 1);
    let config = env.write_config(&plugin_experiment_toml("marker", &lib, None), false);
    (env, lib, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_new_config_over_the_old_one_reloads_it() {
    let (env, lib, config) = marker_deployment();
    let sdk = sdk_on(&config);
    let (handle, mut reports) = start(&sdk);
    assert!(handle.watched().contains(&config), "{:?}", handle.watched());
    assert_eq!(variant_of(&sdk, "extra"), None);

    let tmp = env.path("abkit.toml.new");
    std::fs::write(
        &tmp,
        config_text(
            &env,
            &(plugin_experiment_toml("marker", &lib, None) + &builtin_toml("extra")),
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, &config).unwrap();

    let report = next_report(&mut reports).await;
    assert!(report.accepted, "{report}");
    assert_eq!(report.trigger, "file");
    assert!(
        report
            .experiments
            .iter()
            .any(|e| e.key == "extra" && e.change == Change::Added),
        "{report}"
    );
    assert!(variant_of(&sdk, "extra").is_some());
    assert_eq!(variant_of(&sdk, "exp"), Some(0), "the plugin still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_config_in_place_reloads_it() {
    let (env, lib, config) = marker_deployment();
    let sdk = sdk_on(&config);
    let (_handle, mut reports) = start(&sdk);

    // Same inode, new content (what an editor without atomic save does).
    let text = config_text(
        &env,
        &(plugin_experiment_toml("marker", &lib, None) + &builtin_toml("edited")),
    );
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&config)
        .map(|mut f| {
            use std::io::Write;
            f.write_all(text.as_bytes()).unwrap();
        })
        .unwrap();

    let report = reports_until(&mut reports, |r| {
        r.accepted && r.experiments.iter().any(|e| e.key == "edited")
    })
    .await;
    assert!(report.iter().all(|r| r.trigger == "file"));
    assert!(variant_of(&sdk, "edited").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_signed_plugin_build_renamed_into_place_serves_after_the_reload() {
    let (env, lib, config) = marker_deployment();
    let sdk = sdk_on(&config);
    let (handle, mut reports) = start(&sdk);
    let sig = lib.with_extension("so.minisig");
    assert!(
        handle.watched().contains(&lib) && handle.watched().contains(&sig),
        "{:?}",
        handle.watched()
    );
    assert_eq!(variant_of(&sdk, "exp"), Some(0));

    // Renames the new build into place, then writes its signature: a reload that lands
    // between the two sees the old signature and is refused; the next one is accepted.
    env.install(&fixture(fx::MARKER_B), "plugins/marker.so", "marker", 2);
    let seen = reports_until(&mut reports, |r| r.accepted).await;
    for refused in &seen[..seen.len() - 1] {
        assert_eq!(
            refused.refusal.as_ref().map(|r| r.reason),
            Some(RefusalReason::BadSignature),
            "{refused}"
        );
    }
    let report = seen.last().unwrap();
    assert_eq!(report.plugins[0].change, Change::Updated, "{report}");
    let a = sdk.assign("exp", &Unit::new("user-1"));
    assert_eq!(a.variant.unwrap().index, 1, "build B's code serves");
    assert!(matches!(a.decided_by, DecidedBy::Plugin(p) if p.version == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_signature_or_a_corrupted_plugin_is_refused_and_serving_is_unchanged() {
    let (env, lib, config) = marker_deployment();
    let sdk = sdk_on(&config);
    let (_handle, mut reports) = start(&sdk);
    let sig = lib.with_extension("so.minisig");
    let good_sig = std::fs::read(&sig).unwrap();

    // 1. The signature rewritten in place with an edited trusted comment.
    let tampered = String::from_utf8(good_sig.clone())
        .unwrap()
        .replace("version=1 ", "version=9 ");
    std::fs::write(&sig, tampered).unwrap();
    let seen = reports_until(&mut reports, |r| {
        r.refusal
            .as_ref()
            .is_some_and(|r| r.reason == RefusalReason::BadSignature)
    })
    .await;
    assert!(seen.iter().all(|r| !r.accepted), "{seen:?}");
    assert_eq!(seen.last().unwrap().plugins[0].change, Change::Refused);
    assert_serves_build_a(&sdk);

    // 2. The good signature back: accepted again (nothing changed that serves).
    std::fs::write(&sig, &good_sig).unwrap();
    reports_until(&mut reports, |r| r.accepted).await;
    assert_serves_build_a(&sdk);

    // 3. A corrupted artifact renamed over the plugin: refused, build A keeps serving.
    let mut bytes = std::fs::read(&lib).unwrap();
    bytes[5000] ^= 0x01;
    let tmp = env.path("plugins/marker.so.new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &lib).unwrap();
    let seen = reports_until(&mut reports, |r| !r.accepted).await;
    let report = seen.last().unwrap();
    assert_eq!(
        report.refusal.as_ref().unwrap().reason,
        RefusalReason::BadSignature,
        "{report}"
    );
    assert_serves_build_a(&sdk);
}

#[track_caller]
fn assert_serves_build_a(sdk: &Sdk) {
    let a = sdk.assign("exp", &Unit::new("user-1"));
    assert_eq!(a.variant.unwrap().index, 0);
    assert!(
        matches!(a.decided_by, DecidedBy::Plugin(p) if p.version == 1),
        "{:?}",
        a.decided_by
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_edits_gives_few_reloads_and_the_last_content_serves() {
    let env = TestEnv::new();
    let config = env.write_config(&builtin_toml("e0"), false);
    let sdk = sdk_on(&config);
    let (_handle, mut reports) = start(&sdk);

    for i in 1..=10 {
        env.write_config(&builtin_toml(&format!("e{i}")), false);
    }
    let seen = reports_until(&mut reports, |r| {
        r.accepted
            && r.experiments
                .iter()
                .any(|e| e.key == "e10" && e.change == Change::Added)
    })
    .await;
    assert!(
        seen.len() <= 3,
        "{} reloads for one burst of 10 edits",
        seen.len()
    );
    assert!(variant_of(&sdk, "e10").is_some());
    for old in ["e0", "e9"] {
        assert_eq!(
            sdk.assign(old, &Unit::new("user-1")).reason,
            Reason::UnknownExperiment
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_named_by_a_reloaded_config_is_watched_from_then_on() {
    let env = TestEnv::new();
    let config = env.write_config(&builtin_toml("e0"), false);
    let sdk = sdk_on(&config);
    let (handle, mut reports) = start(&sdk);
    assert_eq!(handle.watched(), vec![config.clone()]);

    // The config now names a plugin in a directory that was not watched before.
    let lib = env.install(&fixture(fx::MARKER_A), "plugins/marker.so", "marker", 1);
    env.write_config(&plugin_experiment_toml("marker", &lib, None), false);
    reports_until(&mut reports, |r| {
        r.accepted && r.plugins.iter().any(|p| p.name == "marker")
    })
    .await;
    assert!(handle.watched().contains(&lib), "{:?}", handle.watched());
    assert_eq!(variant_of(&sdk, "exp"), Some(0));

    env.install(&fixture(fx::MARKER_B), "plugins/marker.so", "marker", 2);
    reports_until(&mut reports, |r| r.accepted).await;
    assert_eq!(variant_of(&sdk, "exp"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_watcher_reloads_nothing() {
    let env = TestEnv::new();
    let config = env.write_config(&builtin_toml("e0"), false);
    let sdk = sdk_on(&config);
    let (handle, mut reports) = start(&sdk);
    handle.shutdown().await;
    env.write_config(&builtin_toml("e1"), false);
    // The channel closes with the task: no report can arrive.
    let end = tokio::time::timeout(WAIT, reports.recv())
        .await
        .expect("the channel closes when the watcher stops");
    assert!(end.is_err(), "a report after stop: {end:?}");
    assert_eq!(sdk.status().generation, 1);
}

#[test]
fn watching_needs_a_runtime_and_a_config_file() {
    let env = TestEnv::new();
    let sdk = sdk_on(&env.write_config(&builtin_toml("e0"), false));
    let err = watch(Arc::clone(&sdk), WatchOptions::default()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let in_memory = Arc::new(Sdk::from_toml_str(&builtin_toml("e0")).unwrap());
    let err = watch(in_memory, WatchOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not built from a file"), "{err}");
}
