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

/// The bucketing-v1 message of every unit, padded into one SHA-256 block (all ids here fit):
/// the input of the bare compression floor.
fn padded_blocks(joined: &[Vec<u8>]) -> Vec<[u8; 64]> {
    joined
        .iter()
        .map(|m| {
            assert!(m.len() + 9 <= 64, "one block per message");
            let mut b = [0u8; 64];
            b[..m.len()].copy_from_slice(m);
            b[m.len()] = 0x80;
            b[56..].copy_from_slice(&((m.len() as u64) * 8).to_be_bytes());
            b
        })
        .collect()
}

/// SHA-256's initial state.
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

fn bench_assign(c: &mut Criterion) {
    let sdk = Sdk::from_toml_str(CONFIG).unwrap();
    let ids = units();
    let joined: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| format!("checkout_button:{id}").into_bytes())
        .collect();
    let blocks = padded_blocks(&joined);
    let mut g = c.benchmark_group("assign");
    // The floor: one-shot SHA-256 of the contiguous `salt:unit` bytes, built outside the loop.
    g.bench_function("floor_sha256", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(Sha256::digest(black_box(&joined[i])))
        })
    });
    // Below any honest floor: the compression function alone, over a block padded outside the
    // loop (no message layout, no padding, no digest). Shown so the reader sees what is left.
    g.bench_function("bare_compression", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            let mut state = IV;
            let block =
                sha2::digest::generic_array::GenericArray::from_slice(black_box(&blocks[i]));
            sha2::compress256(&mut state, std::slice::from_ref(block));
            black_box(state)
        })
    });
    // The cheapest honest baseline: the same bucket as abkit computes it (the salt laid out
    // once per experiment; per unit the message layout, padding, compression and the bucket
    // multiply), and nothing else: no lookup, no gates, no ranges, no answer.
    let salted = abkit_bucketing::Salted::new(b"checkout_button");
    g.bench_function("hash_only_abkit", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(salted.bucket(black_box(ids[i].as_bytes())))
        })
    });
    g.bench_function("sdk_builtin_3_variants", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(sdk.assign(black_box("checkout_button"), &Unit::new(&ids[i])))
        })
    });
    let handle = sdk.handle("checkout_button");
    g.bench_function("sdk_builtin_handle", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(sdk.assign_handle(black_box(&handle), &Unit::new(&ids[i])))
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
    let plugin_handle = plugin_sdk.handle("checkout_button");
    g.bench_function("sdk_plugin_handle", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(plugin_sdk.assign_handle(black_box(&plugin_handle), &Unit::new(&ids[i])))
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
    bench_scaling(c, &sdk, &plugin_sdk, &ids);
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

/// `threads` threads assigning at once, each `iters` times: the time of one round (one assign
/// per thread), so `threads / time` is the throughput.
fn assign_concurrently(
    sdk: &Sdk,
    key: &str,
    ids: &[String],
    threads: usize,
    iters: u64,
) -> std::time::Duration {
    let start = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let began = std::time::Instant::now();
                    let mut i = t * 512;
                    for _ in 0..iters {
                        i = (i + 1) & 1023;
                        black_box(sdk.assign(black_box(key), &Unit::new(&ids[i])));
                    }
                    began.elapsed()
                })
            })
            .collect();
        start.wait();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

/// Scaling: the same assign on 1 and on 2 threads at once (shared atomics would show here).
fn bench_scaling(c: &mut Criterion, sdk: &Sdk, plugin_sdk: &Sdk, ids: &[String]) {
    let mut g = c.benchmark_group("scaling");
    for threads in [1usize, 2] {
        g.bench_function(format!("builtin_{threads}_threads"), |b| {
            b.iter_custom(|iters| assign_concurrently(sdk, "checkout_button", ids, threads, iters))
        });
        g.bench_function(format!("plugin_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                assign_concurrently(plugin_sdk, "checkout_button", ids, threads, iters)
            })
        });
    }
    g.finish();
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
            abkit::assign_csv(&snap, "checkout_button", &input[..], &mut out).unwrap()
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
        "assign (same run; floor = one-shot SHA-256 of the contiguous salt:unit bytes)",
        &[
            ("assign/floor_sha256", "assign/floor_sha256"),
            ("assign/bare_compression", "assign/floor_sha256"),
            ("assign/sdk_builtin_3_variants", "assign/floor_sha256"),
            ("assign/sdk_builtin_handle", "assign/floor_sha256"),
            (
                "assign/sdk_plugin_weighted_hash_3_variants",
                "assign/floor_sha256",
            ),
            ("assign/sdk_plugin_handle", "assign/floor_sha256"),
            ("assign/hash_only_abkit", "assign/floor_sha256"),
            ("assign/sdk_builtin_3_variants", "assign/hash_only_abkit"),
            ("assign/sdk_builtin_handle", "assign/hash_only_abkit"),
            (
                "assign/sdk_plugin_weighted_hash_3_variants",
                "assign/hash_only_abkit",
            ),
            ("assign/sdk_plugin_handle", "assign/hash_only_abkit"),
            (
                "assign/sdk_plugin_weighted_hash_3_variants",
                "assign/sdk_builtin_same_process",
            ),
        ],
    );
    for kind in ["builtin", "plugin"] {
        let one = report::mean_ns(&format!("scaling/{kind}_1_threads"));
        let two = report::mean_ns(&format!("scaling/{kind}_2_threads"));
        if let (Some(one), Some(two)) = (one, two) {
            let (r1, r2) = (1e3 / one, 2.0 * 1e3 / two);
            println!(
                "\nscaling, {kind}: 1 thread {r1:.2} M assigns/s, 2 threads {r2:.2} M assigns/s, 2 threads / 1 thread = {:.2}x",
                r2 / r1
            );
        }
    }
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
