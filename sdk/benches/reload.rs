//! Hot reload, measured on release-built plugins:
//! (a) `assign` latency percentiles, idle vs while another thread reloads every 10 ms;
//! (b) the time of one reload: unchanged configuration (the library is already mapped: content
//!     addressing skips the sealed copy and the `dlopen`, not the verification), and a new 5 MB
//!     plugin (verify + ELF checks + sealed memfd + `dlopen` + probe + guards).
//!
//! Run: `cargo bench -p abkit --bench reload`. It builds weighted-hash in release (without
//! debug info, ~0.75 MB, so that padding can make it exactly 5 MiB) into `<target>/bench-plugins-reload`.
#![allow(missing_docs, clippy::unwrap_used)]

#[allow(dead_code)]
mod common;
use common::report;

use abkit::{Sdk, Unit};
use criterion::{black_box, Criterion, SamplingMode};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Calls timed together: one `Instant` pair per batch keeps the timer's own cost (~20-40 ns)
/// out of a ~100 ns call; the per-call figure of a batch is its mean.
const BATCH: usize = 64;
/// Batches per round; rounds alternate idle / reloading so that drift in the machine's load
/// hits both conditions alike.
const BATCHES_PER_ROUND: usize = 40_000;
const ROUNDS_PER_CONDITION: usize = 4;
/// Reload cadence of the background thread.
const RELOAD_EVERY: Duration = Duration::from_millis(10);
/// Size of the "new plugin" of (b).
const PLUGIN_BYTES: usize = 5 << 20;

/// Builds `abkit-strategy-weighted-hash` in release without debug info into its own target dir
/// (the release profile keeps line tables, which make the library larger than 5 MB).
fn build_weighted_hash() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let base =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let target = base.join("bench-plugins-reload");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "abkit-strategy-weighted-hash",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&root)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo to build the weighted-hash plugin");
    assert!(
        out.status.success(),
        "building weighted-hash failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("release/libabkit_strategy_weighted_hash.so")
}

/// A deployment: key pair, the plugin at a fixed path (re-signed on each new build), a config.
struct Deployment {
    dir: tempfile::TempDir,
    key: PathBuf,
    plugin: PathBuf,
    config: PathBuf,
    version: u64,
}

impl Deployment {
    fn new(library: &Path) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let (pubkey, key) = abkit_signing::keygen(&dir.path().join("keys"), "bench", None).unwrap();
        let plugin = dir.path().join("plugins/weighted-hash.so");
        std::fs::create_dir_all(plugin.parent().unwrap()).unwrap();
        let config = dir.path().join("abkit.toml");
        let toml = format!(
            "[trust]\npublic_key_files = [{:?}]\n\n[[plugins]]\nname = \"weighted-hash\"\npath = {:?}\n\n\
             [[experiments]]\nkey = \"checkout_button\"\nstrategy = \"plugin:weighted-hash\"\n\
             variants = [ {{ name = \"control\", weight = 34 }}, {{ name = \"b\", weight = 33 }}, {{ name = \"c\", weight = 33 }} ]\n",
            pubkey.display().to_string(),
            plugin.display().to_string()
        );
        std::fs::write(&config, toml).unwrap();
        let mut d = Deployment {
            dir,
            key,
            plugin,
            config,
            version: 0,
        };
        d.deploy(&std::fs::read(library).unwrap());
        d
    }

    /// Writes `bytes` as the plugin (new file renamed over the old: a loaded library is never
    /// changed in place) and signs it with the next version.
    fn deploy(&mut self, bytes: &[u8]) {
        let tmp = self.dir.path().join("plugins/.next");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&tmp, &self.plugin).unwrap();
        self.version += 1;
        abkit_signing::sign(
            &self.key,
            None,
            &self.plugin,
            "weighted-hash",
            self.version,
            None,
        )
        .unwrap();
    }
}

/// `base` followed by padding up to `PLUGIN_BYTES`, different for each `seed` (the loader
/// ignores bytes after the last segment, the signature and the digest cover them).
fn padded(base: &[u8], seed: u64) -> Vec<u8> {
    assert!(
        base.len() < PLUGIN_BYTES,
        "the release build is {} bytes, above {PLUGIN_BYTES}",
        base.len()
    );
    let mut out = Vec::with_capacity(PLUGIN_BYTES);
    out.extend_from_slice(base);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < PLUGIN_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes()[..(PLUGIN_BYTES - out.len()).min(8)]);
    }
    out
}

fn ids() -> Vec<String> {
    (0..1024).map(|i| format!("user-{:08}", i * 7919)).collect()
}

/// Involuntary context switches of the calling thread so far (Linux), to tell a stalled batch
/// caused by the scheduler (the thread lost its core) from one caused by `assign` itself.
fn preemptions() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Per-call latency (ns) of `BATCHES_PER_ROUND` batches of `BATCH` calls; returns how many
/// times the thread was preempted meanwhile.
fn measure_round(sdk: &Sdk, ids: &[String], out: &mut Vec<f64>) -> u64 {
    let before = preemptions();
    let mut i = 0usize;
    for _ in 0..BATCHES_PER_ROUND {
        let t = Instant::now();
        for _ in 0..BATCH {
            i = (i + 1) & 1023;
            black_box(sdk.assign(black_box("checkout_button"), &Unit::new(&ids[i])));
        }
        out.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    preemptions() - before
}

struct Percentiles {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    n: usize,
    /// Batches slower than 5 µs per call: the thread lost its core for ~0.3 ms or more
    /// (preemption, interrupts), not something `assign` itself does.
    stalled: usize,
    /// Involuntary context switches of the measuring thread during the measurement.
    preempted: u64,
}

fn percentiles(mut v: Vec<f64>, preempted: u64) -> Percentiles {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let stalled = v.iter().filter(|&&x| x > 5_000.0).count();
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: v[v.len() - 1],
        n: v.len(),
        stalled,
        preempted,
    }
}

struct LatencyResult {
    idle: Percentiles,
    reloading: Percentiles,
    reloads: usize,
    reload_mean_ms: f64,
}

/// (a): alternating rounds, idle and with a reload every `RELOAD_EVERY` in another thread.
fn assign_latency(sdk: &Sdk) -> LatencyResult {
    let ids = ids();
    // Warm up: code, caches, the strategy's range cache.
    measure_round(sdk, &ids, &mut Vec::with_capacity(BATCHES_PER_ROUND));
    let (mut idle, mut reloading) = (Vec::new(), Vec::new());
    let (mut reloads, mut reload_us) = (0usize, 0u64);
    let (mut idle_preempted, mut reloading_preempted) = (0, 0);
    for _ in 0..ROUNDS_PER_CONDITION {
        idle_preempted += measure_round(sdk, &ids, &mut idle);
        let stop = AtomicBool::new(false);
        let (n, us) = std::thread::scope(|s| {
            let reloader = s.spawn(|| {
                let (mut n, mut us) = (0usize, 0u64);
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let report = sdk.reload();
                    assert!(report.accepted, "{report}");
                    n += 1;
                    us += report.duration_us;
                    next += RELOAD_EVERY;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                (n, us)
            });
            reloading_preempted += measure_round(sdk, &ids, &mut reloading);
            stop.store(true, Ordering::Relaxed);
            reloader.join().unwrap()
        });
        reloads += n;
        reload_us += us;
    }
    LatencyResult {
        idle: percentiles(idle, idle_preempted),
        reloading: percentiles(reloading, reloading_preempted),
        reloads,
        reload_mean_ms: reload_us as f64 / 1e3 / reloads.max(1) as f64,
    }
}

fn main() {
    let library = build_weighted_hash();
    let base = std::fs::read(&library).unwrap();
    let mut c = Criterion::default()
        .output_directory(&report::output_dir())
        .configure_from_args();

    // (a)
    let deployment = Deployment::new(&library);
    let sdk = Sdk::builder().build_from_file(&deployment.config).unwrap();
    assert!(matches!(
        sdk.assign("checkout_button", &Unit::new("u")).decided_by,
        abkit::DecidedBy::Plugin(_)
    ));
    let latency = assign_latency(&sdk);
    drop(sdk);

    // (b)
    let mut g = c.benchmark_group("reload");
    let sdk = Sdk::builder().build_from_file(&deployment.config).unwrap();
    g.sample_size(30);
    g.bench_function("unchanged_config", |b| {
        b.iter(|| {
            let r = sdk.reload();
            assert!(r.accepted, "{r}");
        })
    });
    // New bytes on every iteration: a new library mapped each time, never unloaded, so only a
    // few iterations (sample size 10, one iteration each, plus warm-up).
    let mut d5 = Deployment::new(&library);
    let sdk5 = Sdk::builder()
        .max_libraries(64)
        .build_from_file(&d5.config)
        .unwrap();
    let mut seed = 0u64;
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    g.bench_function("new_5mb_plugin", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seed += 1;
                d5.deploy(&padded(&base, seed));
                let t = Instant::now();
                let r = sdk5.reload();
                total += t.elapsed();
                assert!(
                    r.accepted && r.plugins[0].change == abkit::Change::Updated,
                    "{r}"
                );
            }
            total
        })
    });
    let new_libraries = seed;
    // The last 5 MB build stays loaded: reloading it unchanged still reads and verifies 5 MB.
    g.sample_size(30)
        .sampling_mode(SamplingMode::Auto)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("unchanged_config_5mb_plugin", |b| {
        b.iter(|| {
            let r = sdk5.reload();
            assert!(
                r.accepted && r.plugins[0].change == abkit::Change::Unchanged,
                "{r}"
            );
        })
    });
    g.finish();
    c.final_summary();

    print_tables(
        &latency,
        base.len(),
        new_libraries,
        sdk5.status().loaded_libraries,
    );
}

fn print_tables(l: &LatencyResult, base_len: usize, new_libraries: u64, mapped: usize) {
    let (i, r) = (&l.idle, &l.reloading);
    println!(
        "\n### assign latency, idle vs a reload every {} ms in another thread\n",
        RELOAD_EVERY.as_millis()
    );
    println!(
        "Per-call latency = mean of a batch of {BATCH} calls timed with one `Instant` pair; percentiles over {} batches \
         per condition ({} alternating rounds each). A single slow call is diluted 1/{BATCH} in its batch.\n",
        i.n, ROUNDS_PER_CONDITION
    );
    println!(
        "| condition | p50 | p99 | p99.9 | max batch | batches > 5 µs/call | thread preempted |\n|---|---|---|---|---|---|---|"
    );
    for (name, p) in [("idle", i), ("reloading", r)] {
        println!(
            "| {name} | {:.1} ns | {:.1} ns | {:.1} ns | {:.1} ns | {} of {} | {} times |",
            p.p50, p.p99, p.p999, p.max, p.stalled, p.n, p.preempted
        );
    }
    println!(
        "| **ratio** | {:.2}x | **{:.2}x** | {:.2}x | {:.2}x | | |",
        r.p50 / i.p50,
        r.p99 / i.p99,
        r.p999 / i.p999,
        r.max / i.max
    );
    println!(
        "\n{} reloads during the measurement, {:.2} ms each on average (target: p99 ratio <= 1.5x: {}).",
        l.reloads,
        l.reload_mean_ms,
        if r.p99 / i.p99 <= 1.5 { "met" } else { "NOT met" }
    );

    println!(
        "\n### reload time (weighted-hash release build, {} KB; default probe and guards)\n",
        base_len / 1024
    );
    println!("| benchmark | mean | ratio to `reload/unchanged_config` |\n|---|---|---|");
    let base = report::mean_ns("reload/unchanged_config");
    for id in [
        "reload/unchanged_config",
        "reload/unchanged_config_5mb_plugin",
        "reload/new_5mb_plugin",
    ] {
        if let Some(m) = report::mean_ns(id) {
            let ratio = base.map_or("-".to_string(), |b| format!("{:.2}x", m / b));
            println!("| `{id}` | {:.2} ms | {ratio} |", m / 1e6);
        }
    }
    println!("\n{new_libraries} new 5 MB libraries loaded by `new_5mb_plugin`; {mapped} libraries mapped in this process.");
}
