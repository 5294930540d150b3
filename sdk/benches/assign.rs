//! `assign` through the SDK vs the floor (one SHA-256 of the same `salt:unit` bytes), and bulk
//! CSV assignment of 1,000,000 ids. Run: `cargo bench -p abkit --bench assign`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::{plugins, report};

use abkit::{Sdk, Unit};
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use sha2::{Digest, Sha256};

const CONFIG: &str = r#"
[[experiments]]
key = "checkout_button"
variants = [ { name = "control", weight = 34 }, { name = "b", weight = 33 }, { name = "c", weight = 33 } ]
"#;

fn units() -> Vec<String> {
    (0..1024).map(|i| format!("user-{:08}", i * 7919)).collect()
}

fn bench_assign(c: &mut Criterion) {
    let sdk = Sdk::from_toml_str(CONFIG).unwrap();
    let ids = units();
    let joined: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| format!("checkout_button:{id}").into_bytes())
        .collect();
    let mut g = c.benchmark_group("assign");
    g.bench_function("floor_sha256", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(Sha256::digest(black_box(&joined[i])))
        })
    });
    g.bench_function("sdk_builtin_3_variants", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(sdk.assign(black_box("checkout_button"), &Unit::new(&ids[i])))
        })
    });
    // The same experiment through a loaded, verified, probed weighted-hash plugin.
    let lib = plugins::build_release("weighted-hash");
    let deployment = plugins::deploy(&lib, "weighted-hash");
    let t = std::time::Instant::now();
    let plugin_sdk = Sdk::from_file(&deployment.config).unwrap();
    let first_load = t.elapsed();
    assert!(
        matches!(
            plugin_sdk
                .assign("checkout_button", &Unit::new("x"))
                .decided_by,
            abkit::DecidedBy::Plugin(_)
        ),
        "{}",
        plugin_sdk.status()
    );
    g.bench_function("sdk_plugin_weighted_hash_3_variants", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(plugin_sdk.assign(black_box("checkout_button"), &Unit::new(&ids[i])))
        })
    });
    g.bench_function("sdk_builtin_same_process", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(plugin_sdk.assign(black_box("builtin_button"), &Unit::new(&ids[i])))
        })
    });
    g.finish();
    let mut load = c.benchmark_group("load");
    load.sample_size(10);
    load.bench_function("verify_load_probe_weighted_hash_cached_library", |b| {
        b.iter(|| Sdk::from_file(&deployment.config).unwrap())
    });
    load.finish();
    println!(
        "\nfirst verify + copy + dlopen + probe of the weighted-hash plugin: {:.1} ms",
        first_load.as_secs_f64() * 1e3
    );
}

fn bench_bulk(c: &mut Criterion) {
    let sdk = Sdk::from_toml_str(CONFIG).unwrap();
    let n = 1_000_000u64;
    let mut input = Vec::with_capacity(20 * n as usize);
    for i in 0..n {
        input.extend_from_slice(format!("user-{i}\n").as_bytes());
    }
    let snap = sdk.snapshot();
    let mut g = c.benchmark_group("bulk");
    g.sample_size(10).throughput(Throughput::Elements(n));
    g.bench_with_input(BenchmarkId::new("assign_csv", n), &input, |b, input| {
        let mut out = Vec::with_capacity(40 * n as usize);
        b.iter(|| {
            out.clear();
            abkit::bulk::assign_csv(&snap, "checkout_button", &input[..], &mut out).unwrap()
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .output_directory(&report::output_dir())
        .configure_from_args();
    bench_assign(&mut c);
    bench_bulk(&mut c);
    c.final_summary();
    report::print_ratio_table(
        "assign (same run)",
        &[
            ("assign/floor_sha256", "assign/floor_sha256"),
            ("assign/sdk_builtin_3_variants", "assign/floor_sha256"),
            (
                "assign/sdk_plugin_weighted_hash_3_variants",
                "assign/floor_sha256",
            ),
            (
                "assign/sdk_plugin_weighted_hash_3_variants",
                "assign/sdk_builtin_same_process",
            ),
        ],
    );
    if let Some(ns) = report::mean_ns("load/verify_load_probe_weighted_hash_cached_library") {
        println!("\nverify + probe of a plugin whose library is already mapped (a reload of unchanged bytes): {:.2} ms", ns / 1e6);
    }
    if let Some(ns) = report::mean_ns("bulk/assign_csv/1000000") {
        println!(
            "\nbulk assign_csv: 1,000,000 ids in {:.1} ms = {:.2} M ids/s",
            ns / 1e6,
            1e3 / ns * 1e6
        );
    }
}
