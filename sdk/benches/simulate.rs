//! Offline simulation throughput against its floor, measured in the same run: all cores doing
//! nothing but the SHA-256 hashes the simulation must do (one per experiment per unit, over the
//! same `salt:unit` bytes, ids generated the same way), each as cheaply as abkit computes it
//! (`abkit_bucketing::Salted`: the salt laid out once, per unit the layout, padding and block
//! compression). Run:
//! `cargo bench -p abkit --bench simulate --features simulate`.
#![allow(missing_docs, clippy::unwrap_used)]

#[allow(dead_code)] // only `output_dir` and `mean_ns` are used here
mod common;
use common::report;

use abkit::simulate::{self, SimulateOptions, SyntheticIds, SyntheticSpec, UnitSource};
use abkit::Sdk;
use criterion::{black_box, BenchmarkId, Criterion, SamplingMode, Throughput};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// Three experiments, no layer: 3 SHA-256 per unit.
const FROM: &str = r#"
[[experiments]]
key = "checkout_button"
variants = [ { name = "control", weight = 50 }, { name = "treatment", weight = 50 } ]

[[experiments]]
key = "search_ranking"
salt = "search_ranking-2026q4"
coverage = 0.5
variants = [ { name = "control", weight = 1 }, { name = "bm25", weight = 1 }, { name = "neural", weight = 1 } ]

[[experiments]]
key = "price_banner"
variants = [ { name = "control", weight = 90 }, { name = "banner", weight = 10 } ]
"#;

/// The proposed change for `diff`: new weights and coverage, same salts.
fn to_config() -> String {
    FROM.replace(
        "weight = 50 }, { name = \"treatment\", weight = 50",
        "weight = 60 }, { name = \"treatment\", weight = 40",
    )
    .replace("coverage = 0.5", "coverage = 0.8")
}

const SIZES: [u64; 2] = [1_000_000, 10_000_000];
const TASK: u64 = 4096;

/// The floor: every core hashing `salt:unit` for each salt (the salts prepared once, as the
/// engine does), ids generated as the simulation generates them. Returns a checksum so
/// nothing is optimised away.
fn floor(salts: &[String], spec: &SyntheticSpec) -> u64 {
    let prepared: Vec<abkit_bucketing::Salted> = salts
        .iter()
        .map(|s| abkit_bucketing::Salted::new(s.as_bytes()))
        .collect();
    (0..spec.count.div_ceil(TASK))
        .into_par_iter()
        .map(|task| {
            let mut ids = SyntheticIds::new(spec);
            let mut acc = 0u64;
            for i in task * TASK..spec.count.min((task + 1) * TASK) {
                let id = ids.id(i);
                for salt in &prepared {
                    acc ^= u64::from(salt.bucket(id.as_bytes()));
                }
            }
            acc
        })
        .reduce(|| 0, |a, b| a ^ b)
}

fn salts(toml: &str) -> Vec<String> {
    let sdk = Sdk::from_toml_str(toml).unwrap();
    let snap = sdk.snapshot();
    snap.config()
        .experiments()
        .iter()
        .map(|e| e.salt().to_string())
        .collect()
}

fn bench(c: &mut Criterion) {
    let from = Sdk::from_toml_str(FROM).unwrap().snapshot();
    let to = Sdk::from_toml_str(&to_config()).unwrap().snapshot();
    let one = salts(FROM);
    let both: Vec<String> = one
        .iter()
        .chain(salts(&to_config()).iter())
        .cloned()
        .collect();
    let opts = SimulateOptions::default().with_now_ms(Some(0));
    let mut g = c.benchmark_group("simulate");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500));
    for n in SIZES {
        g.throughput(Throughput::Elements(n))
            .measurement_time(Duration::from_secs(if n > 1_000_000 { 5 } else { 2 }));
        let spec = SyntheticSpec::new(n);
        g.bench_with_input(BenchmarkId::new("floor_sha256_x3", n), &spec, |b, spec| {
            b.iter(|| black_box(floor(&one, spec)))
        });
        g.bench_with_input(BenchmarkId::new("run", n), &spec, |b, spec| {
            b.iter(|| {
                simulate::run(&from, UnitSource::synthetic(spec.clone()), &opts)
                    .unwrap()
                    .units
            })
        });
        g.bench_with_input(BenchmarkId::new("floor_sha256_x6", n), &spec, |b, spec| {
            b.iter(|| black_box(floor(&both, spec)))
        });
        g.bench_with_input(BenchmarkId::new("diff", n), &spec, |b, spec| {
            b.iter(|| {
                simulate::diff(&from, &to, UnitSource::synthetic(spec.clone()), &opts)
                    .unwrap()
                    .units
            })
        });
    }
    g.finish();
}

/// Best-of-`rounds` wall times of the floor and of `run`, alternated so that load from other
/// processes hits both alike: `(floor_s, run_s)`.
fn interleaved(n: u64, rounds: usize) -> (f64, f64) {
    let from = Sdk::from_toml_str(FROM).unwrap().snapshot();
    let one = salts(FROM);
    let spec = SyntheticSpec::new(n);
    let opts = SimulateOptions::default().with_now_ms(Some(0));
    let (mut best_floor, mut best_run) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(floor(&one, &spec));
        best_floor = best_floor.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(
            simulate::run(&from, UnitSource::synthetic(spec.clone()), &opts)
                .unwrap()
                .units,
        );
        best_run = best_run.min(t.elapsed().as_secs_f64());
    }
    (best_floor, best_run)
}

fn main() {
    let mut c = Criterion::default()
        .output_directory(&report::output_dir())
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    println!(
        "\n### simulate: synthetic units/s vs the SHA-256 floor ({} threads, same run)\n",
        rayon::current_num_threads()
    );
    println!("| benchmark | units | mean | units/s | floor units/s | ratio to floor |\n|---|---|---|---|---|---|");
    for n in SIZES {
        for (id, floor_id, what) in [
            ("run", "floor_sha256_x3", "simulate, 3 experiments"),
            ("diff", "floor_sha256_x6", "diff, 3 experiments x 2 configs"),
        ] {
            let (Some(m), Some(f)) = (
                report::mean_ns(&format!("simulate/{id}/{n}")),
                report::mean_ns(&format!("simulate/{floor_id}/{n}")),
            ) else {
                continue;
            };
            let rate = |ns: f64| n as f64 / (ns / 1e9);
            println!(
                "| {what} | {n} | {:.0} ms | {:.2} M | {:.2} M | {:.0}% |",
                m / 1e6,
                rate(m) / 1e6,
                rate(f) / 1e6,
                100.0 * f / m
            );
        }
    }
    let n = 10_000_000;
    let (f, r) = interleaved(n, 3);
    println!(
        "\nsimulate {n} units, floor and run alternated, best of 3: floor {:.2} s, run {:.2} s: {:.0}% of the floor",
        f,
        r,
        100.0 * f / r
    );
}
