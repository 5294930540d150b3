//! The trust path (catalogue rows 28-32 and 36): no byte that was not verified ever runs in the
//! process. Every "never runs" is proven with the ctor-marker fixture, whose ELF constructor
//! writes a marker file the moment the dynamic loader maps it: the marker must stay absent
//! wherever that library is planted, and a positive control shows that it does appear when the
//! same library is legitimately signed and loaded.
#![allow(clippy::unwrap_used)]

use abkit::PluginState;
use abkit::ProbeConfig;
use abkit::RefusalReason;
use abkit::{DecidedBy, Sdk, Unit};
use abkit_tests::elf_patch::{patchelf, with_dynamic_value};
use abkit_tests::env::{plugin_experiment_toml, sha256_hex, TestEnv};
use abkit_tests::fixtures::{reference, rf};
use abkit_tests::marker::{assert_never_ran, images_named, marker_library};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn probe() -> ProbeConfig {
    ProbeConfig::default()
        .with_units(128)
        .with_p99_budget(Duration::from_millis(50))
        .with_deadline(Duration::from_secs(10))
}

fn build(config: &Path) -> Sdk {
    Sdk::builder()
        .probe(probe())
        .build_from_file(config)
        .unwrap()
}

/// A signed, stripped weighted-hash plugin at `plugins/wh.so` (version `version`).
fn weighted_hash(env: &TestEnv, version: u64) -> PathBuf {
    let small = env.stripped(&reference(rf::WEIGHTED_HASH), "wh");
    env.install(&small, "plugins/wh.so", "weighted-hash", version)
}

/// The refusal reason of plugin `name`, panicking with the status if it was not refused.
#[track_caller]
fn refusal_reason(sdk: &Sdk, name: &str) -> RefusalReason {
    let status = sdk.status();
    let p = status.plugins.iter().find(|p| p.name == name).unwrap();
    p.refusal
        .as_ref()
        .unwrap_or_else(|| panic!("{name} was not refused:\n{status}"))
        .reason
}

#[track_caller]
fn assert_serves_plugin(sdk: &Sdk, name: &str) {
    let status = sdk.status();
    let p = status.plugins.iter().find(|p| p.name == name).unwrap();
    assert_eq!(p.state, PluginState::Active, "{status}");
    let a = sdk.assign("exp", &Unit::new("user-1"));
    assert!(
        matches!(a.decided_by, DecidedBy::Plugin(p) if p.name == name),
        "{a:?}"
    );
}

fn private_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path.to_path_buf()
}

// ---- the positive control: the fixture really does run when it is loaded ----

#[test]
fn control_a_signed_marker_plugin_runs_its_constructor_when_mapped() {
    let env = TestEnv::new();
    let marker = env.path("control.marker");
    let lib = marker_library(&env.path("plugins/cm.so"), &marker);
    env.sign(&lib, "ctor-marker", 1);
    let sdk = build(&env.write_config(&plugin_experiment_toml("ctor-marker", &lib, None), false));
    assert_serves_plugin(&sdk, "ctor-marker");
    let text = std::fs::read_to_string(&marker).expect("the constructor wrote its marker");
    assert!(text.contains(&std::process::id().to_string()), "{text}");
}

// ---- row 28: nothing found on disk is ever mapped; the mapped bytes are the verified ones ----

#[test]
fn row28_files_planted_where_copies_used_to_be_kept_are_never_mapped() {
    let env = TestEnv::new();
    let lib = weighted_hash(&env, 1);
    let sha = sha256_hex(&lib);
    let marker = env.path("planted.marker");
    let planted = marker_library(&env.path("elsewhere/planted.so"), &marker);
    // Another user's idea of our cache: a symlink and a regular file named after the verified
    // bytes, in the state directory and in the temporary directory.
    let state = private_dir(&env.path("state"));
    let cache = private_dir(&state.join("plugin-cache"));
    std::os::unix::fs::symlink(&planted, cache.join(format!("{sha}.so"))).unwrap();
    std::fs::copy(&planted, state.join(format!("{sha}.so"))).unwrap();
    let sdk = build(&env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), true));
    assert_serves_plugin(&sdk, "weighted-hash");
    assert_never_ran(&marker);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.contains("/memfd:abkit:weighted-hash"),
        "mapped from sealed memory"
    );
    assert!(
        !maps.contains(env.dir.path().to_str().unwrap()),
        "no file of the deployment or state directory is mapped"
    );
    // And a reload (same bytes, content-addressed in memory) still maps nothing from disk.
    assert!(sdk.reload().accepted);
    assert_never_ran(&marker);
}

#[test]
fn row28_the_configured_file_swapped_during_reloads_never_runs_unsigned_code() {
    let env = TestEnv::new();
    let lib = weighted_hash(&env, 1);
    let good = std::fs::read(&lib).unwrap();
    let marker = env.path("swapped.marker");
    let evil = marker_library(&env.path("elsewhere/evil.so"), &marker);
    let evil_bytes = std::fs::read(&evil).unwrap();
    let sdk = build(&env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), false));
    assert_serves_plugin(&sdk, "weighted-hash");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // An attacker flips the configured file between the signed and the unsigned bytes.
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tmp = env.path(&format!("plugins/.swap{}", i % 2));
                std::fs::write(&tmp, if i % 2 == 0 { &evil_bytes } else { &good }).unwrap();
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
                std::fs::rename(&tmp, &lib).unwrap();
                i += 1;
            }
        });
        for _ in 0..40 {
            let report = sdk.reload();
            if !report.accepted {
                let r = report.refusal.as_ref().unwrap();
                assert!(
                    [RefusalReason::BadSignature, RefusalReason::DigestMismatch]
                        .contains(&r.reason),
                    "{report}"
                );
            }
            assert_serves_plugin(&sdk, "weighted-hash");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_never_ran(&marker);
}

// ---- row 29: an insecure state directory is never trusted ----

#[test]
fn row29_an_insecure_state_dir_refuses_plugins_and_status_says_why() {
    let env = TestEnv::new();
    let lib = weighted_hash(&env, 1);
    let state = env.path("state");
    let config = env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), true);

    // World-writable: another user could delete the ledger and re-enable a rollback.
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sdk = build(&config);
    assert_eq!(
        refusal_reason(&sdk, "weighted-hash"),
        RefusalReason::InsecureStateDir
    );
    let status = sdk.status().to_string();
    assert!(
        status.contains("777") && status.contains("state"),
        "{status}"
    );
    drop(sdk);

    // A symlink to a good directory.
    std::fs::remove_dir(&state).unwrap();
    let real = private_dir(&env.path("real-state"));
    std::os::unix::fs::symlink(&real, &state).unwrap();
    assert_eq!(
        refusal_reason(&build(&config), "weighted-hash"),
        RefusalReason::InsecureStateDir
    );
    std::fs::remove_file(&state).unwrap();

    // Owned by another user (only root can arrange that).
    if is_root() {
        private_dir(&state);
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        assert_eq!(
            refusal_reason(&build(&config), "weighted-hash"),
            RefusalReason::InsecureStateDir
        );
        std::os::unix::fs::chown(&state, Some(0), Some(0)).unwrap();
    } else {
        private_dir(&state);
    }

    // Made private: served.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sdk = build(&config);
    assert_serves_plugin(&sdk, "weighted-hash");

    // Opened up while serving: the next reload is refused, what serves keeps serving.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o757)).unwrap();
    let report = sdk.reload();
    assert!(!report.accepted, "{report}");
    assert_eq!(
        report.refusal.as_ref().unwrap().reason,
        RefusalReason::InsecureStateDir
    );
    assert_serves_plugin(&sdk, "weighted-hash");
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[test]
fn row29_rollback_protection_is_not_lost_to_a_world_writable_state_dir() {
    let env = TestEnv::new();
    let state = private_dir(&env.path("state"));
    let lib = weighted_hash(&env, 5);
    let config = env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), true);
    assert_serves_plugin(&build(&config), "weighted-hash");
    // Someone opens the directory up and deletes the ledger, then deploys the old v4.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::remove_file(state.join(abkit::LEDGER_FILE)).unwrap();
    weighted_hash(&env, 4);
    let sdk = build(&config);
    assert_eq!(
        refusal_reason(&sdk, "weighted-hash"),
        RefusalReason::InsecureStateDir
    );
    assert!(matches!(
        sdk.assign("exp", &Unit::new("u")).decided_by,
        DecidedBy::Fallback(_)
    ));
}

// ---- row 30: the ledger is never written or read through a planted link ----

#[test]
fn row30_a_symlink_at_the_ledger_is_refused_and_its_target_never_written() {
    let env = TestEnv::new();
    let state = private_dir(&env.path("state"));
    let victim = env.path("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, state.join(abkit::LEDGER_FILE)).unwrap();
    let lib = weighted_hash(&env, 1);
    let sdk = build(&env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), true));
    assert_eq!(
        refusal_reason(&sdk, "weighted-hash"),
        RefusalReason::BadLedger
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn row30_a_ledger_fifo_is_refused_in_milliseconds_not_waited_on() {
    let env = TestEnv::new();
    let state = private_dir(&env.path("state"));
    let fifo = state.join(abkit::LEDGER_FILE);
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let lib = weighted_hash(&env, 1);
    let config = env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), true);
    // Built on another thread so a regression fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sdk = build(&config);
        let _ = tx.send(refusal_reason(&sdk, "weighted-hash"));
    });
    let reason = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("building the SDK hung on a FIFO ledger");
    assert_eq!(reason, RefusalReason::BadLedger);
}

#[test]
fn row30_a_ledger_that_cannot_be_persisted_is_shown_in_status() {
    let env = TestEnv::new();
    let state = private_dir(&env.path("state"));
    let lib = weighted_hash(&env, 1);
    let sdk = build(&env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), true));
    assert_serves_plugin(&sdk, "weighted-hash");
    assert_eq!(sdk.status().ledger_problem, None);
    // The ledger's name now holds a non-empty directory: renaming the new ledger over it fails.
    let ledger = state.join(abkit::LEDGER_FILE);
    std::fs::remove_file(&ledger).unwrap();
    std::fs::create_dir(&ledger).unwrap();
    std::fs::write(ledger.join("keep"), "x").unwrap();
    weighted_hash(&env, 2);
    let report = sdk.reload();
    assert!(report.accepted, "{report}");
    let status = sdk.status();
    let problem = status
        .ledger_problem
        .clone()
        .expect("the failed write is shown");
    assert!(
        problem.contains("weighted-hash") && problem.contains("v2"),
        "{problem}"
    );
    assert!(
        status.to_string().contains("could not be persisted"),
        "{status}"
    );
    // Once writing works again the problem clears.
    std::fs::remove_dir_all(&ledger).unwrap();
    weighted_hash(&env, 3);
    assert!(sdk.reload().accepted);
    assert_eq!(sdk.status().ledger_problem, None);
}

// ---- row 31: a plugin cannot pull in a library nobody signed ----

#[test]
fn row31_dependencies_outside_the_allowlist_are_refused_before_dlopen() {
    let env = TestEnv::new();
    let marker = env.path("dependency.marker");
    let evil = marker_library(&env.path("elsewhere/libevil.so"), &marker);
    let base = env.stripped(&reference(rf::WEIGHTED_HASH), "wh");
    std::fs::create_dir_all(env.path("plugins")).unwrap();
    let dir = evil.parent().unwrap().display().to_string();
    let evil_path = evil.display().to_string();
    let cases: [(&str, Vec<Vec<&str>>); 4] = [
        // A DT_NEEDED naming the unsigned library by absolute path.
        ("absolute", vec![vec!["--add-needed", &evil_path]]),
        // A DT_NEEDED on its soname, and a DT_RUNPATH pointing at its directory.
        (
            "runpath",
            vec![
                vec!["--add-needed", "libevil.so"],
                vec!["--set-rpath", &dir],
            ],
        ),
        // A DT_RPATH (the legacy tag) alone.
        ("rpath", vec![vec!["--force-rpath", "--set-rpath", &dir]]),
        // A system library that is not on the allowlist.
        ("unlisted", vec![vec!["--add-needed", "libz.so.1"]]),
    ];
    for (what, edits) in cases {
        let lib = env.path(&format!("plugins/{what}.so"));
        std::fs::copy(&base, &lib).unwrap();
        for args in edits {
            patchelf(&lib, &args);
        }
        env.sign(&lib, "weighted-hash", 1);
        let sdk =
            build(&env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), false));
        assert_eq!(
            refusal_reason(&sdk, "weighted-hash"),
            RefusalReason::DisallowedDependency,
            "{what}"
        );
        let status = sdk.status().to_string();
        assert!(status.contains("DT_"), "{what}: {status}");
        assert_never_ran(&marker);
    }
}

#[test]
fn row31_allowed_libraries_names_what_a_plugin_may_need() {
    let env = TestEnv::new();
    let base = env.stripped(&reference(rf::WEIGHTED_HASH), "wh");
    std::fs::create_dir_all(env.path("plugins")).unwrap();
    let lib = env.path("plugins/wh.so");
    std::fs::copy(&base, &lib).unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o644)).unwrap();
    patchelf(&lib, &["--add-needed", "libm.so.6"]);
    env.sign(&lib, "weighted-hash", 1);
    let body = plugin_experiment_toml("weighted-hash", &lib, None);
    // libm is on the default list.
    assert_serves_plugin(&build(&env.write_config(&body, false)), "weighted-hash");
    // A list of one's own replaces the default: without libm the same plugin is refused.
    let trust = format!(
        "{}allowed_libraries = [\"libc.so.6\", \"libgcc_s.so.1\", \"ld-linux-x86-64.so.2\", \"ld-linux-aarch64.so.1\"]\n\n{body}",
        env.trust_toml(false)
    );
    let config = env.path("narrow.toml");
    std::fs::write(&config, trust).unwrap();
    assert_eq!(
        refusal_reason(&build(&config), "weighted-hash"),
        RefusalReason::DisallowedDependency
    );
}

// ---- row 32: a corrupt dynamic section is refused before dlopen (no SIGSEGV) ----

#[test]
fn row32_dynamic_pointers_outside_the_segments_are_refused_before_dlopen() {
    use object::elf::{DT_INIT_ARRAY, DT_NEEDED, DT_RELA, DT_STRTAB, DT_SYMTAB};
    let env = TestEnv::new();
    let marker = env.path("corrupt.marker");
    // The marker plugin itself, corrupted: had dlopen got this far its constructor would run.
    let base = std::fs::read(marker_library(&env.path("elsewhere/cm.so"), &marker)).unwrap();
    std::fs::create_dir_all(env.path("plugins")).unwrap();
    for (tag, value) in [
        (DT_STRTAB, 0x7fff_ffff_0000u64),
        (DT_SYMTAB, 0x7fff_ffff_0000),
        (DT_NEEDED, 0x00ff_ffff),
        (DT_INIT_ARRAY, 0x7fff_ffff_0000),
        (DT_RELA, 0x7fff_ffff_0000),
    ] {
        let lib = env.path(&format!("plugins/corrupt-{tag}.so"));
        std::fs::write(&lib, with_dynamic_value(&base, tag, value)).unwrap();
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o644)).unwrap();
        env.sign(&lib, "ctor-marker", 1);
        let sdk =
            build(&env.write_config(&plugin_experiment_toml("ctor-marker", &lib, None), false));
        assert_eq!(
            refusal_reason(&sdk, "ctor-marker"),
            RefusalReason::MalformedLibrary,
            "tag {tag}"
        );
        assert_never_ran(&marker);
    }
}

// ---- row 36: megabytes of text from a plugin are cut before status, reports and logs ----

#[test]
fn row36_megabytes_of_plugin_text_are_cut_before_status_and_reports() {
    let env = TestEnv::new();
    let lib = env.install(
        &abkit_tests::fixtures::fixture(abkit_tests::fixtures::fx::VERBOSE),
        "plugins/verbose.so",
        "verbose",
        1,
    );
    // A 50 MB rejection of the experiment's config.
    let sdk = build(&env.write_config(
        &plugin_experiment_toml("verbose", &lib, Some(r#"{ reject = true }"#)),
        false,
    ));
    let json = serde_json::to_string(&sdk.status()).unwrap();
    assert!(json.len() < 16 << 10, "status JSON is {} bytes", json.len());
    assert!(
        json.contains("strategy_config_rejected") && json.contains("[cut: "),
        "{json}"
    );
    // A 5 MB error from every call: refused by the probe, with the message cut.
    let sdk = build(&env.write_config(&plugin_experiment_toml("verbose", &lib, None), false));
    let status = sdk.status();
    let json = serde_json::to_string(&status).unwrap();
    assert!(json.len() < 16 << 10, "status JSON is {} bytes", json.len());
    assert!(json.contains("[cut: "), "{json}");
    let report = sdk.reload();
    assert!(report.to_string().len() < 16 << 10);
}

// ---- mapped-then-refused libraries: never stand in for other bytes, never mapped twice ----

#[test]
fn a_library_refused_after_mapping_never_stands_in_for_later_bytes() {
    let env = TestEnv::new();
    // Mapped by dlopen, then refused by abi_stable's layout check: it stays mapped.
    let bad = env.install(
        &abkit_tests::fixtures::fixture(abkit_tests::fixtures::fx::ALTERED_LAYOUT),
        "plugins/bad.so",
        "refused-twice",
        1,
    );
    let cfg = env.write_config(&plugin_experiment_toml("refused-twice", &bad, None), false);
    assert_eq!(
        refusal_reason(&build(&cfg), "refused-twice"),
        RefusalReason::AbiLayoutMismatch
    );
    assert_eq!(images_named("refused-twice"), 1);
    // The same bytes again: the same refusal, and no second mapping.
    assert_eq!(
        refusal_reason(&build(&cfg), "refused-twice"),
        RefusalReason::AbiLayoutMismatch
    );
    assert_eq!(images_named("refused-twice"), 1);
    // Other bytes loaded afterwards are really those bytes (a reused descriptor number must
    // never make the dynamic loader hand back the refused library).
    for _ in 0..3 {
        let lib = weighted_hash(&env, 1);
        let sdk =
            build(&env.write_config(&plugin_experiment_toml("weighted-hash", &lib, None), false));
        assert_serves_plugin(&sdk, "weighted-hash");
    }
}
