//! How a refused reload reads (issue 13, item 7): each refusal printed once, a refused plugin
//! names the version that was tried (not `v2 -> v2`), and what a refused candidate would have
//! changed is listed as not applied, never as if it went live.
#![allow(clippy::unwrap_used)]

use abkit::Change;
use abkit::ProbeConfig;
use abkit::Sdk;
use abkit_tests::env::{plugin_experiment_toml, TestEnv};
use abkit_tests::fixtures::{reference, rf};

fn sdk_on(config: &std::path::Path) -> Sdk {
    let probe = ProbeConfig::default().with_units(64);
    Sdk::builder().probe(probe).build_from_file(config).unwrap()
}

#[test]
fn a_refused_rollback_names_the_tried_version_once_and_lists_what_was_not_applied() {
    let env = TestEnv::new();
    let build = env.stripped(&reference(rf::WEIGHTED_HASH), "weighted-hash");
    let lib = env.install(&build, "plugins/wh.so", "weighted-hash", 2);
    let body = plugin_experiment_toml("weighted-hash", &lib, None);
    let sdk = sdk_on(&env.write_config(&body, false));
    let serving = sdk.status().plugins[0].serving.clone().unwrap();
    assert_eq!(serving.version, 2);

    // A rollback to v1, and in the same edit a new builtin experiment.
    env.install(&build, "plugins/wh.so", "weighted-hash", 1);
    let extra = "\n[[experiments]]\nkey = \"extra\"\nvariants = [ { name = \"a\", weight = 1 } ]\n";
    env.write_config(&format!("{body}{extra}"), false);
    let report = sdk.reload();
    assert!(!report.accepted, "{report}");
    let change = report
        .plugins
        .iter()
        .find(|p| p.name == "weighted-hash")
        .unwrap();
    assert_eq!(change.change, Change::Refused);
    assert_eq!(change.tried, Some(1), "{report}");
    assert_eq!(change.to.as_ref().map(|s| s.version), Some(2));

    let text = report.to_string();
    // Before: the refusal under the headline and again under the plugin.
    assert_eq!(text.matches("refused at rollback").count(), 1, "{text}");
    // Before: "refused   v2 <sha> -> v2 <sha>".
    let sha = &serving.sha256[..12];
    assert!(
        text.contains(&format!("tried v1; v2 {sha} keeps serving")),
        "{text}"
    );
    assert!(!text.contains(&format!("-> v2 {sha}")), "{text}");
    // Before: "  experiment extra added serving builtin:hash-v1", as if it went live.
    let heading = text
        .find("  would have changed (not applied):\n")
        .unwrap_or_else(|| panic!("{text}"));
    let listed = text
        .find("    experiment extra")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(listed > heading, "{text}");
    assert!(!text.contains("\n  experiment extra"), "{text}");

    // The status embedding this report prints the refusal once as well.
    let status = sdk.status().to_string();
    assert_eq!(status.matches("refused at rollback").count(), 1, "{status}");
    // One library in this test process (v1 and v2 are the same bytes). Before: "1 plugin libraries".
    assert!(
        status.starts_with("generation 1 | 1 plugin library mapped\n"),
        "{status}"
    );
}
