//! SIGHUP reloads (`abkit::watch` with `sighup` on). Its own test binary: signals are
//! process-wide, and a SIGHUP without a handler would end every test running beside it.
#![allow(clippy::unwrap_used)]

use abkit::Change;
use abkit::Sdk;
use abkit::{watch, WatchOptions};
use abkit_tests::env::TestEnv;
use std::sync::Arc;
use std::time::Duration;

fn experiment(key: &str) -> String {
    format!("[[experiments]]\nkey = \"{key}\"\nvariants = [ {{ name = \"a\", weight = 50 }}, {{ name = \"b\", weight = 50 }} ]\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file_with_trigger_sighup() {
    let env = TestEnv::new();
    let config = env.write_config(&experiment("before"), false);
    let sdk = Arc::new(Sdk::from_file(&config).unwrap());
    // Files off: only the signal can trigger this reload.
    let handle = watch(Arc::clone(&sdk), WatchOptions::default().with_files(false)).unwrap();
    assert!(handle.sighup());
    assert!(handle.watched().is_empty());
    let mut reports = handle.subscribe();
    env.write_config(&experiment("after"), false);

    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let report = tokio::time::timeout(Duration::from_secs(10), reports.recv())
        .await
        .expect("no report after SIGHUP")
        .unwrap();
    assert_eq!(report.trigger, "sighup");
    assert!(report.accepted, "{report}");
    assert!(
        report
            .experiments
            .iter()
            .any(|e| e.key == "after" && e.change == Change::Added),
        "{report}"
    );
    assert_eq!(sdk.status().generation, 2);
    handle.shutdown().await;
}
