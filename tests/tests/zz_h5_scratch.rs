#![allow(clippy::unwrap_used, missing_docs)]
use abkit::Sdk;
use abkit::guard::GuardConfig;
use abkit::probe::ProbeConfig;
use abkit_tests::env::{plugin_experiment_toml, TestEnv};
use std::time::{Duration, Instant};

#[test]
fn timing() {
    for lib in ["/work/target-h5/scratch-rel/release/libabkit_strategy_weighted_hash.so", "/tmp/wh-sa.so"] {
        let env = TestEnv::new();
        let p = env.install(lib.as_ref(), "plugins/wh.so", "weighted-hash", 1);
        let cfg = env.write_config(&plugin_experiment_toml("weighted-hash", &p, None), false);
        for pop in [0usize, 2000] {
        let sdk = Sdk::builder().probe(ProbeConfig { units: 32, p99_budget: Duration::from_millis(1), deadline: Duration::from_secs(1) }).guards(GuardConfig { population: pop, srm_min_p_value: 0.0, srm_min_enrolled: 500 }).build_from_file(&cfg).unwrap();
        for _ in 0..3 {
            let t = Instant::now();
            let r = sdk.reload();
            eprintln!("{lib} pop {pop}: reload {:?} accepted {}", t.elapsed(), r.accepted);
        }
        }
        let t = Instant::now();
        let bytes = std::fs::read(&p).unwrap();
        use sha2::Digest;
        let _ = sha2::Sha256::digest(&bytes);
        eprintln!("sha256 in test (debug) {:?}", t.elapsed());
    }
}
