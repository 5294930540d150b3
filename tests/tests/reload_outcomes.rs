//! Reload outcomes an operator must be able to rely on (issue 9, items 3, 5 and 6):
//! - a plugin rejecting the new `strategy_config` of an experiment refuses the whole reload
//!   (what serves keeps serving; the report names the experiment and the plugin's message);
//! - removing the signer's key from `[trust]` applies: the plugin version it signed stops
//!   serving (`revoked`), for a last good signed by a still-trusted key, else the builtin;
//! - a signature that expires while its plugin serves retires it (`expired`) at the next
//!   reload, or right after the expiry with the watcher, and unrelated edits apply.
#![allow(clippy::unwrap_used)]

use abkit::GuardConfig;
use abkit::PluginState;
use abkit::ProbeConfig;
use abkit::{watch, ReloadReport, WatchOptions};
use abkit::{Attribute, DecidedBy, FallbackReason, PluginIdentity, Sdk, Unit};
use abkit::{Change, RefusalReason};
use abkit_tests::env::{plugin_experiment_toml, TestEnv};
use abkit_tests::fixtures::{reference, rf};
use abkit_tests::toml_string;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn sdk_on(config: &Path) -> Arc<Sdk> {
    let probe = ProbeConfig::default().with_units(64);
    let guards = GuardConfig::default().with_population(2_000);
    Arc::new(
        Sdk::builder()
            .probe(probe)
            .guards(guards)
            .build_from_file(config)
            .unwrap(),
    )
}

/// Writes `abkit.toml` trusting exactly `keys` (public key files), then `body`.
fn config_trusting(env: &TestEnv, keys: &[&Path], body: &str) -> PathBuf {
    let files: Vec<String> = keys
        .iter()
        .map(|k| toml_string(&k.display().to_string()))
        .collect();
    let path = env.path("abkit.toml");
    std::fs::write(
        &path,
        format!(
            "[trust]\npublic_key_files = [{}]\n\n{body}",
            files.join(", ")
        ),
    )
    .unwrap();
    path
}

/// A builtin experiment `key`: an edit unrelated to any plugin.
fn builtin_toml(key: &str) -> String {
    format!("\n[[experiments]]\nkey = \"{key}\"\nvariants = [ {{ name = \"a\", weight = 50 }}, {{ name = \"b\", weight = 50 }} ]\n")
}

/// The plugin version deciding `exp` for a unit, or what decided instead.
fn decider(sdk: &Sdk, exp: &str, unit: &Unit<'_>) -> Result<&'static PluginIdentity, DecidedBy> {
    match sdk.assign(exp, unit).decided_by {
        DecidedBy::Plugin(p) => Ok(p),
        other => Err(other),
    }
}

/// A stripped weighted-hash build (fast to verify on every reload).
fn weighted_hash(env: &TestEnv) -> PathBuf {
    env.stripped(&reference(rf::WEIGHTED_HASH), "weighted-hash")
}

/// Copies `build` to `rel` and signs it with `secret` as weighted-hash `version`.
fn deploy_signed(
    env: &TestEnv,
    build: &Path,
    rel: &str,
    secret: &Path,
    version: u64,
    expires_unix: Option<u64>,
) -> PathBuf {
    let lib = env.copy(build, rel);
    let expires = expires_unix.map(|s| abkit_signing::UtcTime::from_unix_seconds(s).unwrap());
    abkit_signing::sign(secret, None, &lib, "weighted-hash", version, expires).unwrap();
    lib
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signature is valid through its `expires` second: sleeps until the one after it.
fn sleep_past(expires: u64) {
    let at = UNIX_EPOCH + Duration::from_secs(expires + 1) + Duration::from_millis(50);
    std::thread::sleep(at.duration_since(SystemTime::now()).unwrap_or_default());
}

#[track_caller]
fn plugin_change<'r>(report: &'r ReloadReport, name: &str) -> &'r abkit::PluginChange {
    report
        .plugins
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no change for plugin {name}: {report}"))
}

// ---- item 3: a refusal is a refusal ----

#[test]
fn a_rejected_strategy_config_refuses_the_reload_and_the_plugin_keeps_serving() {
    let env = TestEnv::new();
    let build = env.stripped(&reference(rf::CLUSTER), "cluster");
    let lib = env.install(&build, "plugins/cluster.so", "cluster", 1);
    let toml = |config: &str| plugin_experiment_toml("cluster", &lib, Some(config));
    let good = toml(r#"{ cluster_attribute = "team" }"#);
    let sdk = sdk_on(&env.write_config(&good, false));
    let attrs = [Attribute::new("team", "t-7")];
    let units: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let answers = |sdk: &Sdk| -> Vec<_> {
        units
            .iter()
            .map(|u| sdk.assign("exp", &Unit::new(u).with_attributes(&attrs)))
            .collect()
    };
    let before = answers(&sdk);
    let serving = decider(&sdk, "exp", &Unit::new("u").with_attributes(&attrs)).unwrap();
    assert_eq!(serving.name, "cluster");

    // Before: "accepted", and `exp` silently moved to the builtin (units reassigned).
    let bad = [
        (r#"{ cluster_attribute = 5 }"#, "cluster_attribute"),
        (r#"{ cluster_attribute = "" }"#, "must name an attribute"),
    ];
    for (config, plugin_says) in bad {
        env.write_config(&toml(config), false);
        let report = sdk.reload();
        assert!(!report.accepted, "{report}");
        let refusal = report.refusal.as_ref().unwrap();
        assert_eq!(
            refusal.reason,
            RefusalReason::StrategyConfigRejected,
            "{report}"
        );
        assert!(
            refusal.message.contains("experiment \"exp\"") && refusal.message.contains(plugin_says),
            "the report names the experiment and the plugin's message: {report}"
        );
        let status = sdk.status();
        assert_eq!(status.generation, 1, "{status}");
        assert_eq!(status.plugins[0].state, PluginState::Active, "{status}");
        assert!(status.experiments[0].refusal.is_none(), "{status}");
        let still = decider(&sdk, "exp", &Unit::new("u").with_attributes(&attrs)).unwrap();
        assert!(
            std::ptr::eq(still, serving),
            "the same plugin keeps serving"
        );
        assert_eq!(answers(&sdk), before, "no unit was reassigned");
    }

    // A new experiment whose config the plugin rejects refuses the reload too.
    env.write_config(
        &(good.clone()
            + "\n[[experiments]]\nkey = \"exp2\"\nstrategy = \"plugin:cluster\"\nstrategy_config = { cluster_attribute = 5 }\nvariants = [ { name = \"a\", weight = 1 }, { name = \"b\", weight = 1 } ]\n"),
        false,
    );
    let report = sdk.reload();
    assert!(!report.accepted, "{report}");
    let refusal = report.refusal.as_ref().unwrap();
    assert_eq!(
        refusal.reason,
        RefusalReason::StrategyConfigRejected,
        "{report}"
    );
    assert!(refusal.message.contains("\"exp2\""), "{report}");
    assert_eq!(sdk.status().generation, 1);

    // At the first build nothing serves yet: that experiment uses the builtin, status says why.
    let first = sdk_on(&env.write_config(&toml(r#"{ cluster_attribute = 5 }"#), false));
    let status = first.status();
    let exp = status.experiments.iter().find(|e| e.key == "exp").unwrap();
    assert_eq!(
        exp.refusal.as_ref().map(|r| r.reason),
        Some(RefusalReason::StrategyConfigRejected),
        "{status}"
    );
    assert_eq!(
        decider(&first, "exp", &Unit::new("u").with_attributes(&attrs)).unwrap_err(),
        DecidedBy::Fallback(FallbackReason::PluginRefused)
    );
}

// ---- item 5: revocation ----

#[test]
fn removing_the_signers_key_retires_its_plugin_for_the_builtin() {
    let env = TestEnv::new(); // key A
    let (pub_b, _) = abkit_signing::keygen(&env.path("keys-b"), "b", None).unwrap();
    let lib = deploy_signed(
        &env,
        &weighted_hash(&env),
        "plugins/wh.so",
        &env.seckey,
        1,
        None,
    );
    let body = plugin_experiment_toml("weighted-hash", &lib, None);
    let config = config_trusting(&env, &[&env.pubkey, &pub_b], &body);
    let sdk = sdk_on(&config);
    let key_a = decider(&sdk, "exp", &Unit::new("u1"))
        .unwrap()
        .key_id
        .clone();

    // Before: refused `unknown_key_id`, and the plugin signed by the revoked key kept serving.
    config_trusting(&env, &[&pub_b], &body);
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    let change = plugin_change(&report, "weighted-hash");
    assert_eq!(change.change, Change::Revoked, "{report}");
    let refusal = change.refusal.as_ref().unwrap();
    assert_eq!(refusal.reason, RefusalReason::Revoked, "{report}");
    assert!(refusal.message.contains(&key_a), "{report}");
    assert!(change.to.is_none(), "{report}");
    let status = sdk.status();
    assert_eq!(status.plugins[0].state, PluginState::Fallback, "{status}");
    assert_eq!(
        status.plugins[0].refusal.as_ref().map(|r| r.reason),
        Some(RefusalReason::Revoked),
        "{status}"
    );
    assert_eq!(
        decider(&sdk, "exp", &Unit::new("u1")).unwrap_err(),
        DecidedBy::Fallback(FallbackReason::PluginRefused)
    );

    // A later, unrelated edit applies and still says why the plugin does not serve.
    config_trusting(&env, &[&pub_b], &(body + &builtin_toml("other")));
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    assert_eq!(
        plugin_change(&report, "weighted-hash").change,
        Change::Revoked
    );
    assert!(decider(&sdk, "exp", &Unit::new("u1")).is_err());
}

#[test]
fn removing_the_signers_key_falls_back_to_a_last_good_signed_by_a_trusted_key() {
    let env = TestEnv::new(); // key A
    let (pub_b, sec_b) = abkit_signing::keygen(&env.path("keys-b"), "b", None).unwrap();
    let build = weighted_hash(&env);
    let v1 = deploy_signed(&env, &build, "plugins/wh-v1.so", &sec_b, 1, None);
    let v2 = deploy_signed(&env, &build, "plugins/wh-v2.so", &env.seckey, 2, None);
    let both = [env.pubkey.as_path(), pub_b.as_path()];
    let config = config_trusting(
        &env,
        &both,
        &plugin_experiment_toml("weighted-hash", &v1, None),
    );
    let sdk = sdk_on(&config);
    let key_b = decider(&sdk, "exp", &Unit::new("u1"))
        .unwrap()
        .key_id
        .clone();
    let body = plugin_experiment_toml("weighted-hash", &v2, None);
    config_trusting(&env, &both, &body);
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    let serving = decider(&sdk, "exp", &Unit::new("u1")).unwrap();
    assert_eq!(serving.version, 2);
    assert_ne!(serving.key_id, key_b);

    // Key A (v2's signer) is removed: v1, signed by B, serves again.
    config_trusting(&env, &[&pub_b], &body);
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    let change = plugin_change(&report, "weighted-hash");
    assert_eq!(change.change, Change::Revoked, "{report}");
    assert_eq!(change.to.as_ref().map(|s| s.version), Some(1), "{report}");
    let status = sdk.status();
    assert_eq!(status.plugins[0].state, PluginState::LastGood, "{status}");
    let serving = decider(&sdk, "exp", &Unit::new("u1")).unwrap();
    assert_eq!(
        (serving.version, serving.key_id.as_str()),
        (1, key_b.as_str())
    );

    // What serves (v1, B) is still valid: a refused artifact still blocks the reload.
    let broken = env.path("plugins/missing.so");
    config_trusting(
        &env,
        &[&pub_b],
        &plugin_experiment_toml("weighted-hash", &broken, None),
    );
    let report = sdk.reload();
    assert!(
        !report.accepted,
        "a refused artifact still blocks: {report}"
    );
    assert_eq!(
        report.refusal.as_ref().map(|r| r.reason),
        Some(RefusalReason::PluginMissing)
    );
    assert_eq!(decider(&sdk, "exp", &Unit::new("u1")).unwrap().version, 1);
}

// ---- item 6: expiry while serving ----

/// Expiry is signed in whole seconds (valid through that second): +3 s expires 3-4 s from now.
const EXPIRES_IN: u64 = 3;

#[test]
fn a_signature_expiring_while_serving_retires_the_plugin_at_the_next_reload() {
    let env = TestEnv::new();
    let build = weighted_hash(&env); // may build the plugins first: before the clock starts
    let expires = now_secs() + EXPIRES_IN;
    let lib = deploy_signed(&env, &build, "plugins/wh.so", &env.seckey, 1, Some(expires));
    let body = plugin_experiment_toml("weighted-hash", &lib, None);
    let sdk = sdk_on(&env.write_config(&body, false));
    let serving = decider(&sdk, "exp", &Unit::new("u1")).unwrap();
    assert_eq!(serving.expires, Some(expires));
    assert_eq!(
        sdk.status().plugins[0].serving.as_ref().unwrap().expires,
        Some(expires)
    );
    sleep_past(expires);

    // Before: the unrelated edit was refused `expired` and the expired plugin kept serving.
    env.write_config(&(body + &builtin_toml("other")), false);
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    assert!(
        report
            .experiments
            .iter()
            .any(|e| e.key == "other" && e.change == Change::Added),
        "{report}"
    );
    let change = plugin_change(&report, "weighted-hash");
    assert_eq!(change.change, Change::Expired, "{report}");
    assert_eq!(
        change.refusal.as_ref().unwrap().reason,
        RefusalReason::Expired,
        "{report}"
    );
    let status = sdk.status();
    assert_eq!(status.plugins[0].state, PluginState::Fallback, "{status}");
    assert_eq!(
        decider(&sdk, "exp", &Unit::new("u1")).unwrap_err(),
        DecidedBy::Fallback(FallbackReason::PluginRefused)
    );
}

#[test]
fn a_signature_expiring_while_serving_falls_back_to_a_still_valid_last_good() {
    let env = TestEnv::new();
    let build = weighted_hash(&env);
    let v1 = deploy_signed(&env, &build, "plugins/wh-v1.so", &env.seckey, 1, None);
    let sdk = sdk_on(&env.write_config(&plugin_experiment_toml("weighted-hash", &v1, None), false));
    let expires = now_secs() + EXPIRES_IN;
    let v2 = deploy_signed(
        &env,
        &build,
        "plugins/wh-v2.so",
        &env.seckey,
        2,
        Some(expires),
    );
    let body = plugin_experiment_toml("weighted-hash", &v2, None);
    env.write_config(&body, false);
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    assert_eq!(decider(&sdk, "exp", &Unit::new("u1")).unwrap().version, 2);
    sleep_past(expires);

    env.write_config(&(body + &builtin_toml("other")), false);
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    let change = plugin_change(&report, "weighted-hash");
    assert_eq!(change.change, Change::Expired, "{report}");
    assert_eq!(change.to.as_ref().map(|s| s.version), Some(1), "{report}");
    assert_eq!(sdk.status().plugins[0].state, PluginState::LastGood);
    assert_eq!(decider(&sdk, "exp", &Unit::new("u1")).unwrap().version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_retires_a_plugin_right_after_its_signature_expires() {
    let env = TestEnv::new();
    let build = weighted_hash(&env); // may build the plugins first: before the clock starts
    let expires = now_secs() + EXPIRES_IN;
    let lib = deploy_signed(&env, &build, "plugins/wh.so", &env.seckey, 1, Some(expires));
    let config = env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), false);
    let sdk = sdk_on(&config);
    assert!(decider(&sdk, "exp", &Unit::new("u1")).is_ok());
    let handle = watch(Arc::clone(&sdk), WatchOptions::default().with_sighup(false)).unwrap();
    let mut reports = handle.subscribe();

    // No edit at all: the watcher reloads at the expiry by itself.
    let report = tokio::time::timeout(Duration::from_secs(EXPIRES_IN + 8), reports.recv())
        .await
        .expect("before: no reload at the expiry, the expired plugin kept serving")
        .unwrap();
    assert_eq!(report.trigger, "expiry", "{report}");
    assert!(report.accepted, "{report}");
    assert_eq!(
        plugin_change(&report, "weighted-hash").change,
        Change::Expired,
        "{report}"
    );
    let expired_at_ms = (expires + 1) * 1000;
    let late_ms = report.at_unix_ms.saturating_sub(expired_at_ms);
    assert!(
        report.at_unix_ms >= expired_at_ms && late_ms < 2_000,
        "retired {late_ms} ms after the expiry: {report}"
    );
    assert_eq!(
        decider(&sdk, "exp", &Unit::new("u1")).unwrap_err(),
        DecidedBy::Fallback(FallbackReason::PluginRefused)
    );
    handle.shutdown().await;
}
