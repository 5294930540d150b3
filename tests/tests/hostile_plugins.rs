//! The catalogue of `hostile-plugins.md`, rows 1-22 and 24-26: each hostile artifact is refused
//! with its named reason (or contained at run time), and assignment keeps working.
#![allow(clippy::unwrap_used)]

use abkit::GuardConfig;
use abkit::PluginState;
use abkit::ProbeConfig;
use abkit::{
    Change, DecidedBy, FallbackReason, LoadError, Reason, RefusalCause, RefusalReason, Sdk,
    Serving, Step, TrustError, Unit,
};
use abkit_tests::env::{plugin_experiment_toml, sha256_hex, TestEnv};
use abkit_tests::fixtures::{fixture, fx, reference, rf};
use std::path::Path;
use std::time::Duration;

fn probe() -> ProbeConfig {
    ProbeConfig::default()
        .with_units(128)
        .with_p99_budget(Duration::from_millis(1))
        .with_deadline(Duration::from_secs(3))
}

fn build(config: &Path) -> Sdk {
    Sdk::builder()
        .probe(probe())
        .build_from_file(config)
        .unwrap()
}

/// Deploys `plugin` as `name` for experiment `exp` and builds an SDK on it.
fn sdk_for(env: &TestEnv, name: &str, plugin: &Path, strategy_config: Option<&str>) -> Sdk {
    build(&env.write_config(
        &plugin_experiment_toml(name, plugin, strategy_config),
        false,
    ))
}

fn builtin_variant(unit: &str) -> Option<u32> {
    abkit_bucketing::assign("exp", unit, &[50, 50], 1.0)
        .unwrap()
        .map(|v| v as u32)
}

/// The plugin is refused with `reason`, nothing of it serves, and `exp` is answered by the
/// builtin as a reported fallback.
#[track_caller]
fn assert_refused(sdk: &Sdk, name: &str, reason: RefusalReason) {
    let status = sdk.status();
    let p = status
        .plugins
        .iter()
        .find(|p| p.name == name)
        .expect("plugin in status");
    let refusal = p
        .refusal
        .as_ref()
        .unwrap_or_else(|| panic!("{name} was not refused: {status}"));
    assert_eq!(refusal.reason, reason, "wrong reason; status:\n{status}");
    assert_eq!(p.state, PluginState::Fallback);
    assert!(!refusal.message.is_empty());
    assert_serves_builtin_fallback(sdk);
}

#[track_caller]
fn assert_serves_builtin_fallback(sdk: &Sdk) {
    for i in 0..200 {
        let id = format!("user-{i}");
        let a = sdk.assign("exp", &Unit::new(&id));
        assert_eq!(a.variant.map(|v| v.index), builtin_variant(&id));
        assert_eq!(
            a.decided_by,
            DecidedBy::Fallback(FallbackReason::PluginRefused)
        );
    }
}

fn flip_byte(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    let tmp = file.with_extension("flip");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, file).unwrap();
}

fn v1_comment(name: &str, version: u64, sha: &str, extra: &str) -> String {
    format!("abkit-plugin v1 name={name} version={version} sha256={sha}{extra}")
}

// ---- the good path, for contrast ----

#[test]
fn a_signed_reference_plugin_loads_and_serves_exactly_the_builtin_answers() {
    let env = TestEnv::new();
    let lib = env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        1,
    );
    let sdk = sdk_for(&env, "weighted-hash", &lib, None);
    let status = sdk.status();
    assert_eq!(status.plugins[0].state, PluginState::Active, "{status}");
    for i in 0..100_000 {
        let id = format!("u{i}");
        let a = sdk.assign("exp", &Unit::new(&id));
        assert!(
            matches!(a.decided_by, DecidedBy::Plugin(p) if p.name == "weighted-hash" && p.version == 1)
        );
        assert_eq!(
            a.variant.map(|v| v.index),
            builtin_variant(&id),
            "unit {id}"
        );
    }
}

// ---- signature and metadata (rows 1-12) ----

#[test]
fn row01_flipped_byte_is_refused_as_bad_signature() {
    let env = TestEnv::new();
    let lib = env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        1,
    );
    flip_byte(&lib, 5000);
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::BadSignature,
    );
}

#[test]
fn row02_signature_by_an_untrusted_key_is_refused() {
    let env = TestEnv::new();
    let other = TestEnv::new();
    let lib = env.copy(&reference(rf::WEIGHTED_HASH), "plugins/wh.so");
    other.sign(&lib, "weighted-hash", 1);
    let sdk = sdk_for(&env, "weighted-hash", &lib, None);
    assert_refused(&sdk, "weighted-hash", RefusalReason::UnknownKeyId);
    // The typed error behind the refusal: the loader's, wrapping the trust error with the key.
    let status = sdk.status();
    let refusal = status.plugins[0].refusal.as_ref().unwrap();
    assert_eq!(refusal.step, Step::Signature);
    match refusal.cause() {
        Some(RefusalCause::Load(e)) => match &**e {
            LoadError::Trust(TrustError::UnknownKeyId { key_id, .. }) => {
                assert!(refusal.message.contains(key_id.as_str()), "{refusal:?}");
            }
            other => panic!("wrong load error: {other:?}"),
        },
        other => panic!("no typed cause: {other:?}"),
    }
    let msg = &sdk.status().plugins[0].refusal.clone().unwrap().message;
    assert!(msg.contains("not trusted"), "{msg}");
}

#[test]
fn row03_missing_signature_is_refused() {
    let env = TestEnv::new();
    let lib = env.copy(&reference(rf::WEIGHTED_HASH), "plugins/wh.so");
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::SignatureMissing,
    );
}

#[test]
fn row04_valid_signature_of_another_file_is_refused() {
    let env = TestEnv::new();
    let lib = env.copy(&reference(rf::WEIGHTED_HASH), "plugins/wh.so");
    let other = env.install(
        &reference(rf::CLUSTER),
        "plugins/other.so",
        "weighted-hash",
        1,
    );
    std::fs::copy(
        other.with_extension("so.minisig"),
        lib.with_extension("so.minisig"),
    )
    .unwrap();
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::BadSignature,
    );
}

#[test]
fn row05_legacy_non_prehashed_signature_is_refused() {
    let env = TestEnv::new();
    let lib = env.copy(&reference(rf::WEIGHTED_HASH), "plugins/wh.so");
    env.minisign(
        &lib,
        &v1_comment("weighted-hash", 1, &sha256_hex(&lib), ""),
        true,
    );
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::LegacyAlgorithm,
    );
}

#[test]
fn row06_trusted_comment_edited_after_signing_is_refused() {
    let env = TestEnv::new();
    let lib = env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        1,
    );
    let sig = lib.with_extension("so.minisig");
    let text = std::fs::read_to_string(&sig)
        .unwrap()
        .replace("version=1 ", "version=9 ");
    std::fs::write(&sig, text).unwrap();
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::BadSignature,
    );
}

#[test]
fn row07_malformed_signatures_are_refused_without_panic() {
    let env = TestEnv::new();
    let lib = env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        1,
    );
    let sig = lib.with_extension("so.minisig");
    let good = std::fs::read_to_string(&sig).unwrap();
    let cases: Vec<(Vec<u8>, RefusalReason)> = vec![
        (
            good.as_bytes()[..good.len() / 2].to_vec(),
            RefusalReason::MalformedSignature,
        ),
        (
            good.replacen("RU", "R!", 1).into_bytes(),
            RefusalReason::MalformedSignature,
        ),
        (
            b"untrusted comment: x\n!!!!not base64!!!!\ntrusted comment: y\nzzz\n".to_vec(),
            RefusalReason::MalformedSignature,
        ),
        (vec![b'A'; 10 << 20], RefusalReason::TooLarge),
    ];
    for (bytes, reason) in cases {
        std::fs::write(&sig, &bytes).unwrap();
        assert_refused(
            &sdk_for(&env, "weighted-hash", &lib, None),
            "weighted-hash",
            reason,
        );
    }
}

#[test]
fn row08_trusted_comment_not_v1_or_with_bad_fields_is_refused_naming_the_field() {
    let env = TestEnv::new();
    let lib = env.copy(&reference(rf::WEIGHTED_HASH), "plugins/wh.so");
    let sha = sha256_hex(&lib);
    for (comment, field) in [
        (format!("some other comment sha256={sha}"), ""),
        (
            format!("abkit-plugin v1 name=weighted-hash sha256={sha}"),
            "version",
        ),
        (
            format!("abkit-plugin v1 name=weighted-hash version=1 version=1 sha256={sha}"),
            "version",
        ),
        (v1_comment("weighted-hash", 1, &sha, " color=red"), "color"),
    ] {
        env.minisign(&lib, &comment, false);
        let sdk = sdk_for(&env, "weighted-hash", &lib, None);
        assert_refused(&sdk, "weighted-hash", RefusalReason::BadMetadata);
        let msg = sdk.status().plugins[0].refusal.clone().unwrap().message;
        assert!(
            msg.contains(field),
            "message `{msg}` does not name `{field}`"
        );
    }
}

#[test]
fn row09_signed_name_differing_from_config_is_refused() {
    let env = TestEnv::new();
    let lib = env.install(&reference(rf::SWITCHBACK), "plugins/sb.so", "switchback", 1);
    assert_refused(
        &sdk_for(&env, "cluster", &lib, None),
        "cluster",
        RefusalReason::NameMismatch,
    );
}

#[test]
fn row10_rollback_is_refused_in_process_and_after_a_restart() {
    let env = TestEnv::new();
    let lib = env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        5,
    );
    let cfg = env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), true);
    let sdk = build(&cfg);
    assert_eq!(sdk.status().plugins[0].state, PluginState::Active);
    // v3 over the same path: the reload is refused, v5 keeps serving.
    env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        3,
    );
    let report = sdk.reload();
    assert!(!report.accepted, "{report}");
    assert_eq!(
        report.refusal.as_ref().unwrap().reason,
        RefusalReason::Rollback,
        "{report}"
    );
    assert_eq!(report.generation, 1);
    assert_eq!(sdk.status().plugins[0].serving.as_ref().unwrap().version, 5);
    let a = sdk.assign("exp", &Unit::new("u1"));
    assert!(matches!(a.decided_by, DecidedBy::Plugin(p) if p.version == 5));
    // A restart with the same state dir still refuses v3.
    drop(sdk);
    assert_refused(&build(&cfg), "weighted-hash", RefusalReason::Rollback);
}

#[test]
fn row11_expired_plugin_is_refused() {
    let env = TestEnv::new();
    let lib = env.copy(&reference(rf::WEIGHTED_HASH), "plugins/wh.so");
    env.minisign(
        &lib,
        &v1_comment(
            "weighted-hash",
            1,
            &sha256_hex(&lib),
            " expires=2020-01-01T00:00:00Z",
        ),
        false,
    );
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::Expired,
    );
}

#[test]
fn row12_signed_digest_differing_from_the_file_is_refused() {
    let env = TestEnv::new();
    let lib = env.copy(&reference(rf::WEIGHTED_HASH), "plugins/wh.so");
    env.minisign(
        &lib,
        &v1_comment("weighted-hash", 1, &"ab".repeat(32), ""),
        false,
    );
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::DigestMismatch,
    );
}

// ---- the library itself, validly signed (rows 13-19) ----

#[test]
fn row13_truncated_elf_is_refused_before_dlopen() {
    let env = TestEnv::new();
    let full = std::fs::read(reference(rf::WEIGHTED_HASH)).unwrap();
    let lib = env.path("plugins/trunc.so");
    std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
    std::fs::write(&lib, &full[..full.len() / 2]).unwrap();
    env.sign(&lib, "weighted-hash", 1);
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::MalformedLibrary,
    );
}

#[test]
fn row14_a_text_file_is_refused_as_cannot_open() {
    let env = TestEnv::new();
    let lib = env.path("plugins/readme.so");
    std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
    std::fs::write(&lib, "I am not a library\n").unwrap();
    env.sign(&lib, "weighted-hash", 1);
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::CannotOpen,
    );
}

#[test]
fn row15_library_without_root_module_is_refused() {
    let env = TestEnv::new();
    let lib = env.install(&fixture(fx::NO_ROOT_MODULE), "plugins/none.so", "none", 1);
    assert_refused(
        &sdk_for(&env, "none", &lib, None),
        "none",
        RefusalReason::SymbolMissing,
    );
}

#[test]
fn row16_changed_abi_layout_is_refused() {
    let env = TestEnv::new();
    let lib = env.install(
        &fixture(fx::ALTERED_LAYOUT),
        "plugins/alt.so",
        "altered-layout",
        1,
    );
    assert_refused(
        &sdk_for(&env, "altered-layout", &lib, None),
        "altered-layout",
        RefusalReason::AbiLayoutMismatch,
    );
}

#[test]
fn row17_other_major_api_version_is_refused() {
    let env = TestEnv::new();
    let lib = env.install(&fixture(fx::API_V9), "plugins/v9.so", "api-v9", 1);
    let sdk = sdk_for(&env, "api-v9", &lib, None);
    assert_refused(&sdk, "api-v9", RefusalReason::AbiVersion);
    assert!(sdk.status().plugins[0]
        .refusal
        .clone()
        .unwrap()
        .message
        .contains("9.0.0"));
}

#[test]
fn row17b_a_plugin_built_for_abi_0_1_is_refused_naming_both_versions() {
    let env = TestEnv::new();
    let lib = env.install(&fixture(fx::API_V0_1), "plugins/v01.so", "api-v0-1", 1);
    let sdk = sdk_for(&env, "api-v0-1", &lib, None);
    assert_refused(&sdk, "api-v0-1", RefusalReason::AbiVersion);
    let message = sdk.status().plugins[0].refusal.clone().unwrap().message;
    assert!(
        message.contains("0.1.0") && message.contains("0.2.0"),
        "both versions are named: {message}"
    );
    assert!(message.contains("rebuild"), "{message}");
}

#[test]
fn row18_root_module_constructor_panicking_or_failing_is_refused() {
    for plugin in [fx::INIT_PANICS, fx::INIT_ERROR] {
        let fx = plugin.name;
        let env = TestEnv::new();
        let lib = env.install(&fixture(plugin), "plugins/init.so", fx, 1);
        assert_refused(
            &sdk_for(&env, fx, &lib, None),
            fx,
            RefusalReason::InitFailed,
        );
    }
}

#[test]
fn row19_strategy_rejecting_the_experiment_config_refuses_that_experiment_only() {
    let env = TestEnv::new();
    let lib = env.install(&reference(rf::SWITCHBACK), "plugins/sb.so", "switchback", 1);
    let body = format!(
        "{}\n[[experiments]]\nkey = \"good\"\nstrategy = \"plugin:switchback\"\nstrategy_config = {{ window_minutes = 30, region_attribute = \"city\" }}\nvariants = [ {{ name = \"a\", weight = 1 }}, {{ name = \"b\", weight = 1 }} ]\n",
        plugin_experiment_toml("switchback", &lib, Some("{ window_minutes = 0, region_attribute = \"city\" }"))
    );
    let sdk = build(&env.write_config(&body, false));
    let status = sdk.status();
    assert_eq!(status.plugins[0].state, PluginState::Active, "{status}");
    let exp = status.experiments.iter().find(|e| e.key == "exp").unwrap();
    let refusal = exp.refusal.as_ref().unwrap();
    assert_eq!(refusal.reason, RefusalReason::StrategyConfigRejected);
    assert!(
        refusal.message.contains("window_minutes"),
        "{}",
        refusal.message
    );
    assert_serves_builtin_fallback(&sdk);
    let good = sdk.assign("good", &Unit::new("u1"));
    assert!(matches!(good.decided_by, DecidedBy::Plugin(p) if p.name == "switchback"));
}

// ---- at run time (rows 20-22) ----

fn runtime_hostile_sdk(env: &TestEnv) -> Sdk {
    let lib = env.install(
        &fixture(fx::RUNTIME_HOSTILE),
        "plugins/rh.so",
        "runtime-hostile",
        1,
    );
    let sdk = sdk_for(env, "runtime-hostile", &lib, None);
    assert_eq!(
        sdk.status().plugins[0].state,
        PluginState::Active,
        "the probe cannot see run-time hostility"
    );
    sdk
}

#[test]
fn row20_panicking_assign_gets_the_builtin_answer_and_the_host_lives() {
    let env = TestEnv::new();
    let sdk = runtime_hostile_sdk(&env);
    for i in 0..10 {
        let id = format!("panic-{i}");
        let a = sdk.assign("exp", &Unit::new(&id));
        assert_eq!(
            a.decided_by,
            DecidedBy::Fallback(FallbackReason::StrategyError)
        );
        assert_eq!(a.variant.map(|v| v.index), builtin_variant(&id));
        assert_eq!(a.reason, Reason::Assigned);
    }
    let c = sdk.status().experiments[0].counters.unwrap();
    assert_eq!((c.errors, c.demoted), (10, false));
}

#[test]
fn row21_out_of_range_answers_and_errors_fall_back_and_demote_past_the_threshold() {
    let env = TestEnv::new();
    let sdk = runtime_hostile_sdk(&env);
    let a = sdk.assign("exp", &Unit::new("oob-1"));
    assert_eq!(
        a.decided_by,
        DecidedBy::Fallback(FallbackReason::InvalidAnswer)
    );
    assert_eq!(a.variant.map(|v| v.index), builtin_variant("oob-1"));
    // 1% of the last 10,000 calls: 100 errors among 1,000 calls demote the plugin.
    for i in 0..1000 {
        let id = if i % 10 == 0 {
            format!("err-{i}")
        } else {
            format!("user-{i}")
        };
        sdk.assign("exp", &Unit::new(&id));
    }
    let status = sdk.status();
    let c = status.experiments[0].counters.unwrap();
    assert!(c.demoted, "{status}");
    assert_eq!(c.invalid_answers, 1);
    assert!(
        status.experiments[0].serving == Serving::Fallback(FallbackReason::Demoted),
        "{status}"
    );
    let a = sdk.assign("exp", &Unit::new("user-1"));
    assert_eq!(a.decided_by, DecidedBy::Fallback(FallbackReason::Demoted));
}

/// Issue 9, item 4: a demotion by real traffic sticks across reloads that change nothing for
/// the experiment (no flapping on SIGHUP); status says since when and why; an explicit reset
/// or a new spec re-promotes.
#[test]
fn row21_demotion_sticks_across_unchanged_reloads_until_reset_or_a_new_spec() {
    let env = TestEnv::new();
    let sdk = runtime_hostile_sdk(&env);
    for i in 0..1000 {
        let id = if i % 10 == 0 {
            format!("err-{i}")
        } else {
            format!("user-{i}")
        };
        sdk.assign("exp", &Unit::new(&id));
    }
    let demoted = |sdk: &Sdk| {
        sdk.assign("exp", &Unit::new("user-1")).decided_by
            == DecidedBy::Fallback(FallbackReason::Demoted)
    };
    assert!(demoted(&sdk));
    let d = sdk.status().experiments[0]
        .demotion
        .clone()
        .expect("status says why");
    assert!(d.since_ms > 0 && d.why.contains("last failure"), "{d:?}");
    // Unchanged reloads (a SIGHUP, a touch of the file): still demoted, same since.
    for _ in 0..3 {
        let report = sdk.reload();
        assert!(report.accepted, "{report}");
        assert!(
            demoted(&sdk),
            "an unchanged reload re-promoted a demoted plugin"
        );
    }
    assert_eq!(
        sdk.status().experiments[0]
            .demotion
            .clone()
            .unwrap()
            .since_ms,
        d.since_ms
    );
    assert!(sdk.status().to_string().contains("demoted since"));
    // An explicit reset re-promotes.
    assert!(sdk.reset_demotion("exp"));
    assert!(!demoted(&sdk));
    assert!(sdk.status().experiments[0].demotion.is_none());
    assert!(!sdk.reset_demotion("exp"));
    // Demoted again, then a new spec for the experiment (other weights) builds a fresh strategy.
    for i in 0..1000 {
        sdk.assign("exp", &Unit::new(&format!("err-{i}")));
    }
    assert!(demoted(&sdk));
    let cfg = env.path("abkit.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("weight = 50 }, {", "weight = 51 }, {")).unwrap();
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    assert!(!demoted(&sdk), "a new spec re-promotes");
}

#[test]
fn row22_nondeterministic_or_slow_strategies_are_refused_by_the_probe() {
    for (plugin, reason) in [
        (fx::NONDETERMINISTIC, RefusalReason::ProbeNondeterministic),
        (fx::SLOW, RefusalReason::ProbeTooSlow),
    ] {
        let fx = plugin.name;
        let env = TestEnv::new();
        let lib = env.install(&fixture(plugin), "plugins/p.so", fx, 1);
        assert_refused(&sdk_for(&env, fx, &lib, None), fx, reason);
    }
}

// ---- deployment and races (rows 24-26) ----

fn mapped_files() -> String {
    std::fs::read_to_string("/proc/self/maps").unwrap()
}

#[test]
fn row24_the_loaded_code_is_the_verified_private_copy_not_the_configured_path() {
    let env = TestEnv::new();
    let lib = env.install(&fixture(fx::MARKER_A), "plugins/marker.so", "marker", 1);
    let sdk = sdk_for(&env, "marker", &lib, None);
    let maps = mapped_files();
    assert!(
        maps.contains("/memfd:abkit:marker"),
        "the verified bytes are mapped from a sealed memory file"
    );
    assert!(
        !maps.contains(env.dir.path().to_str().unwrap()),
        "no file of the deployment directory is ever mapped"
    );
    // Swapping the configured file after verification changes nothing that serves …
    env.copy(&fixture(fx::MARKER_B), "plugins/marker.so");
    assert_eq!(sdk.assign("exp", &Unit::new("u")).variant.unwrap().index, 0);
    // … and a reload sees bytes that no longer match their signature: refused whole.
    let report = sdk.reload();
    assert!(!report.accepted);
    assert_eq!(
        report.refusal.as_ref().unwrap().reason,
        RefusalReason::BadSignature,
        "{report}"
    );
    assert_eq!(report.plugins[0].change, Change::Refused);
    assert_eq!(sdk.assign("exp", &Unit::new("u")).variant.unwrap().index, 0);
}

#[test]
fn row25_a_new_version_over_the_same_path_really_runs() {
    let env = TestEnv::new();
    let lib = env.install(&fixture(fx::MARKER_A), "plugins/marker.so", "marker", 1);
    // The marker builds answer one variant for everybody: no sample-ratio guard for this row.
    let no_srm = GuardConfig::default().with_srm_min_p_value(0.0);
    let cfg = env.write_config(&plugin_experiment_toml("marker", &lib, None), false);
    let sdk = Sdk::builder()
        .probe(probe())
        .guards(no_srm)
        .build_from_file(cfg)
        .unwrap();
    assert_eq!(sdk.assign("exp", &Unit::new("u")).variant.unwrap().index, 0);
    env.install(&fixture(fx::MARKER_B), "plugins/marker.so", "marker", 2);
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    assert_eq!(report.plugins[0].change, Change::Updated);
    assert_eq!(sdk.status().plugins[0].state, PluginState::Active);
    let a = sdk.assign("exp", &Unit::new("u"));
    assert_eq!(a.variant.unwrap().index, 1, "build B's code serves");
    assert!(matches!(a.decided_by, DecidedBy::Plugin(p) if p.version == 2));
}

#[test]
fn row26_unsafe_paths_are_refused_with_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let lib = env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        1,
    );
    // `..` in the path
    let dotted = env.path("plugins/../plugins/wh.so");
    assert_refused(
        &sdk_for(&env, "weighted-hash", &dotted, None),
        "weighted-hash",
        RefusalReason::UnsafePath,
    );
    // a symlink
    let link = env.path("plugins/link.so");
    std::os::unix::fs::symlink(&lib, &link).unwrap();
    std::fs::copy(
        lib.with_extension("so.minisig"),
        env.path("plugins/link.so.minisig"),
    )
    .unwrap();
    assert_refused(
        &sdk_for(&env, "weighted-hash", &link, None),
        "weighted-hash",
        RefusalReason::UnsafePath,
    );
    // a world-writable file
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o666)).unwrap();
    let sdk = sdk_for(&env, "weighted-hash", &lib, None);
    assert_refused(&sdk, "weighted-hash", RefusalReason::UnsafePath);
    assert!(sdk.status().plugins[0]
        .refusal
        .clone()
        .unwrap()
        .message
        .contains("wh.so"));
    // a group-writable directory
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(env.path("plugins"), std::fs::Permissions::from_mode(0o775)).unwrap();
    assert_refused(
        &sdk_for(&env, "weighted-hash", &lib, None),
        "weighted-hash",
        RefusalReason::UnsafePath,
    );
}

#[test]
fn rollback_protection_survives_a_change_of_state_dir() {
    let env = TestEnv::new();
    let lib = env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        5,
    );
    let body = plugin_experiment_toml("weighted-hash", &lib, None);
    let sdk = build(&env.write_config(&body, true));
    assert_eq!(sdk.status().plugins[0].serving.as_ref().unwrap().version, 5);
    // Re-signed as v3 and the state_dir dropped from the config: still a rollback.
    env.install(
        &reference(rf::WEIGHTED_HASH),
        "plugins/wh.so",
        "weighted-hash",
        3,
    );
    env.write_config(&body, false);
    let report = sdk.reload();
    assert!(!report.accepted, "{report}");
    assert_eq!(
        report.refusal.as_ref().unwrap().reason,
        RefusalReason::Rollback
    );
}

/// Set in the child run of [`plugin_panics_are_quiet_even_with_rust_backtrace`].
const QUIET_PANIC_CHILD: &str = "ABKIT_TEST_QUIET_PANIC_CHILD";

/// The child half: a constructor that panics (init-panics, exported without the macro) and
/// assigns that panic (runtime-hostile), under RUST_BACKTRACE=1. A no-op in a normal run.
#[test]
fn quiet_panic_child() {
    if std::env::var_os(QUIET_PANIC_CHILD).is_none() {
        return;
    }
    let env = TestEnv::new();
    let lib = env.install(
        &fixture(fx::INIT_PANICS),
        "plugins/init.so",
        "init-panics",
        1,
    );
    assert_refused(
        &sdk_for(&env, "init-panics", &lib, None),
        "init-panics",
        RefusalReason::InitFailed,
    );
    let env = TestEnv::new();
    let sdk = runtime_hostile_sdk(&env);
    for i in 0..3 {
        let a = sdk.assign("exp", &Unit::new(&format!("panic-{i}")));
        assert_eq!(
            a.decided_by,
            DecidedBy::Fallback(FallbackReason::StrategyError)
        );
    }
}

#[test]
fn plugin_panics_are_quiet_even_with_rust_backtrace() {
    // Before: with RUST_BACKTRACE=1 in the environment, a passing run printed a backtrace for
    // the init-panics fixture and a "panicked at" line per caught plugin panic.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        // By name, without --exact: the test's path depends on the binary it is linked into.
        .args(["quiet_panic_child", "--nocapture", "--test-threads=1"])
        .env(QUIET_PANIC_CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    // The panics still happened and are still reported, one line each.
    assert!(
        stderr.contains("abkit plugin init-panics: caught a panic at"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("abkit plugin runtime-hostile: caught a panic at")
            .count(),
        3,
        "{stderr}"
    );
}
