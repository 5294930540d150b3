//! Row 27 of `hostile-plugins.md`: 1,000 reloads mixing good plugin versions (weighted-hash
//! re-signed v3, v4 ... at the same path; marker builds a and b swapped), hostile artifacts of
//! the catalogue, and configuration edits (weights, coverage, experiments and plugins added and
//! removed, invalid configs, a reassignment-guard violation), while 4 threads call `assign`.
//!
//! In every 40 reloads: 4 good changes (accepted), 3 refusals that hash or load the library,
//! and 33 refusals that stop earlier. What costs is the work done per configured plugin on
//! every reload (read, hash, verify, probe) and the guards: measured 2026-12-03 in a debug
//! build (sha2 and minisign-verify optimised even there), an unchanged reload takes ~18 ms, a
//! plugin version bump ~95 ms, a refusal that stops before reading a plugin ~2 ms, and the
//! whole soak ~10 s. The plugins are stripped copies, and refused candidates configure only
//! the plugin they are about.
//!
//! What is checked, on every single call of every caller thread:
//! - `assign` returns (the callers never see a panic or an error);
//! - the answer is valid for a snapshot that was live during the call: the caller reads the
//!   generation before and after the call, and the answer must equal what one of the
//!   configurations of those generations gives (weights, coverage, which experiments exist,
//!   which plugin build and signed version decides). The reload thread registers what a
//!   generation will serve *before* asking for the reload, so a published generation that was
//!   not meant to be published (a refused artifact going live) is caught at once;
//! - a `Plugin` provenance always names an accepted identity, never a refused artifact.
//!
//! And by the reload thread: each hostile artifact is refused with its named reason and leaves
//! the generation unchanged; each good change is accepted. At the end: the libraries mapped
//! stay bounded by the distinct builds (content addressing), resident memory growth is bounded,
//! and the final status matches the last good configuration.
//!
//! This file holds one test on purpose: `status().loaded_libraries` counts the whole process.
#![allow(clippy::unwrap_used)]

use abkit::GuardConfig;
use abkit::PluginState;
use abkit::ProbeConfig;
use abkit::ReloadReport;
use abkit::{Assignment, DecidedBy, FallbackReason, Reason, Sdk, Unit};
use abkit::{Change, RefusalReason};
use abkit_tests::env::{sha256_hex, TestEnv};
use abkit_tests::fixtures::{fixture, fx, reference, rf};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Reload attempts (row 27 asks for 1,000).
const RELOADS: usize = 1000;
/// Threads calling `assign` during the reloads.
const CALLERS: usize = 4;
/// Distinct unit ids the callers use (answers are precomputed for each).
const UNITS: usize = 256;
/// Calls between two 1 ms pauses of a caller, so that on 2 cores the reload thread keeps
/// enough CPU to finish quickly; the callers still run during every reload.
const BATCH: usize = 64;

/// The weight sets the `wh` experiment (plugin weighted-hash) goes through.
const WH_WEIGHTS: [&[u32]; 4] = [&[50, 50], &[60, 40], &[34, 33, 33], &[10, 0, 90]];
/// The coverages it goes through.
const WH_COVERAGE: [f64; 3] = [1.0, 0.5, 0.8];
const WH_NAMES: [&str; 3] = ["w0", "w1", "w2"];
/// `extra`: a builtin experiment that is added and removed.
const EXTRA_WEIGHTS: [u32; 3] = [1, 2, 1];
const EXTRA_NAMES: [&str; 3] = ["x0", "x1", "x2"];
/// `mk` (plugin marker: build a answers the first variant, build b the last one).
const MK_NAMES: [&str; 3] = ["m0", "m1", "m2"];
/// `nd` and `sl`: experiments of plugins that never pass the probe (nondeterministic, slow).
const PAIR_NAMES: [&str; 2] = ["p0", "p1"];

/// What a configuration looks like (the part the callers can observe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// Index into `WH_WEIGHTS`.
    weights: usize,
    /// Index into `WH_COVERAGE`.
    coverage: usize,
    /// The builtin experiment `extra` exists.
    extra: bool,
    /// Plugin `marker` and experiment `mk` exist.
    marker: bool,
    /// Plugin `nondeterministic` and experiment `nd` exist (the plugin is always refused).
    nondeterministic: bool,
    /// Plugin `slow` and experiment `sl` exist (the plugin is always refused).
    slow: bool,
}

/// Everything a generation serves that a caller can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Live {
    shape: Shape,
    /// Signed version of the weighted-hash build that decides `wh`.
    wh_version: u64,
    /// Signed version of the marker build deciding `mk` and whether it is build b.
    marker: Option<(u64, bool)>,
}

/// Where each configured plugin points for one reload attempt.
#[derive(Debug, Clone)]
struct Paths {
    wh: PathBuf,
    marker: PathBuf,
}

/// Answers precomputed with `abkit-bucketing` (the normative math), per unit.
struct Expected {
    /// `[weights][coverage][unit]`.
    wh: Vec<Vec<Vec<Option<u32>>>>,
    extra: Vec<Option<u32>>,
    nd: Vec<Option<u32>>,
    sl: Vec<Option<u32>>,
    /// SHA-256 of the good builds.
    wh_sha: String,
    marker_a_sha: String,
    marker_b_sha: String,
    /// SHA-256 of every artifact that must never serve.
    refused_shas: Vec<String>,
}

fn bucketing(salt: &str, unit: &str, weights: &[u32], coverage: f64) -> Option<u32> {
    abkit_bucketing::assign(salt, unit, weights, coverage)
        .unwrap()
        .map(|v| v as u32)
}

impl Expected {
    fn new(
        ids: &[String],
        wh_sha: String,
        marker_a_sha: String,
        marker_b_sha: String,
        refused_shas: Vec<String>,
    ) -> Self {
        let wh = WH_WEIGHTS
            .iter()
            .map(|w| {
                WH_COVERAGE
                    .iter()
                    .map(|&c| ids.iter().map(|id| bucketing("wh", id, w, c)).collect())
                    .collect()
            })
            .collect();
        Expected {
            wh,
            extra: ids
                .iter()
                .map(|id| bucketing("extra", id, &EXTRA_WEIGHTS, 1.0))
                .collect(),
            nd: ids
                .iter()
                .map(|id| bucketing("nd", id, &[50, 50], 1.0))
                .collect(),
            sl: ids
                .iter()
                .map(|id| bucketing("sl", id, &[50, 50], 1.0))
                .collect(),
            wh_sha,
            marker_a_sha,
            marker_b_sha,
            refused_shas,
        }
    }

    /// Whether `a` is the answer generation `live` gives unit `u` in `exp`.
    fn matches(&self, live: &Live, exp: &str, u: usize, a: &Assignment) -> bool {
        let s = &live.shape;
        let builtin_answer = |want: Option<u32>, names: &[&str], decided_by: DecidedBy| {
            a.decided_by == decided_by && variant_is(a, want, names)
        };
        match exp {
            "wh" => {
                let want = self.wh[s.weights][s.coverage][u];
                matches!(a.decided_by, DecidedBy::Plugin(p)
                    if p.name == "weighted-hash" && p.version == live.wh_version && p.sha256 == self.wh_sha)
                    && variant_is(a, want, &WH_NAMES)
            }
            "extra" if s.extra => builtin_answer(self.extra[u], &EXTRA_NAMES, DecidedBy::Builtin),
            "mk" => match live.marker {
                Some((version, b)) => {
                    let (sha, index) = if b {
                        (&self.marker_b_sha, 2)
                    } else {
                        (&self.marker_a_sha, 0)
                    };
                    matches!(a.decided_by, DecidedBy::Plugin(p) if p.name == "marker" && p.version == version && p.sha256 == *sha)
                        && variant_is(a, Some(index), &MK_NAMES)
                }
                None => unknown(a),
            },
            "nd" if s.nondeterministic => builtin_answer(
                self.nd[u],
                &PAIR_NAMES,
                DecidedBy::Fallback(FallbackReason::PluginRefused),
            ),
            "sl" if s.slow => builtin_answer(
                self.sl[u],
                &PAIR_NAMES,
                DecidedBy::Fallback(FallbackReason::PluginRefused),
            ),
            _ => unknown(a),
        }
    }
}

fn variant_is(a: &Assignment, want: Option<u32>, names: &[&str]) -> bool {
    match (want, a.variant) {
        (Some(i), Some(v)) => {
            v.index == i && v.name == names[i as usize] && a.reason == Reason::Assigned
        }
        (None, None) => a.reason == Reason::OutsideCoverage,
        _ => false,
    }
}

fn unknown(a: &Assignment) -> bool {
    a.variant.is_none()
        && a.reason == Reason::UnknownExperiment
        && a.decided_by == DecidedBy::Nobody
}

/// A reload that must be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Good {
    /// The same weighted-hash bytes signed again with the next version, at the same path.
    WhVersionBump,
    /// A configuration edit (weights, coverage, an experiment or a plugin added or removed).
    ConfigEdit,
    /// The same, handed over with `reload_with` instead of re-reading the file.
    ConfigEditWith,
    /// The other marker build, signed with the next version, over the same path.
    MarkerSwap,
    /// Reload of an unchanged configuration.
    Unchanged,
}

const GOOD: [Good; 6] = [
    Good::ConfigEdit,
    Good::WhVersionBump,
    Good::ConfigEditWith,
    Good::MarkerSwap,
    Good::ConfigEdit,
    Good::Unchanged,
];

/// A reload that must be refused: a hostile artifact configured for a plugin that has a good
/// version, or a bad configuration edit. Artifacts are prepared once under `hostile/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    // Refused before the plugin bytes are hashed: cheap even in a debug build.
    SignatureMissing,
    UnknownKey,
    MalformedSignature,
    Missing,
    WorldWritable,
    Symlink,
    NotALibrary,
    NoTrustedKeys,
    InvalidToml,
    InvalidConfig,
    // Refused after hashing the whole library (signature) or loading it.
    BadSignature,
    Rollback,
    Truncated,
    NoRootModule,
    InitPanics,
    WrongModule,
    /// For plugin `marker`: a marker build signed under another name.
    MarkerNameMismatch,
    /// A weight change on an experiment with `max_reassignment = 0.01`.
    ReassignmentGuard,
}

const CHEAP: [Refused; 10] = [
    Refused::SignatureMissing,
    Refused::UnknownKey,
    Refused::MalformedSignature,
    Refused::Missing,
    Refused::WorldWritable,
    Refused::Symlink,
    Refused::NotALibrary,
    Refused::NoTrustedKeys,
    Refused::InvalidToml,
    Refused::InvalidConfig,
];

const COSTLY: [Refused; 8] = [
    Refused::BadSignature,
    Refused::Rollback,
    Refused::Truncated,
    Refused::NoRootModule,
    Refused::InitPanics,
    Refused::WrongModule,
    Refused::MarkerNameMismatch,
    Refused::ReassignmentGuard,
];

impl Refused {
    /// The artifact configured for weighted-hash (or marker), if this is an artifact.
    fn file(self) -> Option<&'static str> {
        Some(match self {
            Refused::SignatureMissing => "hostile/no-signature.so",
            Refused::UnknownKey => "hostile/unknown-key.so",
            Refused::MalformedSignature => "hostile/malformed-signature.so",
            Refused::Missing => "hostile/missing.so",
            Refused::WorldWritable => "hostile/world-writable.so",
            Refused::Symlink => "hostile/symlink.so",
            Refused::NotALibrary => "hostile/text.so",
            Refused::BadSignature => "hostile/bad-signature.so",
            Refused::Rollback => "hostile/rollback.so",
            Refused::Truncated => "hostile/truncated.so",
            Refused::NoRootModule => "hostile/no-root-module.so",
            Refused::InitPanics => "hostile/init-panics.so",
            Refused::WrongModule => "hostile/wrong-module.so",
            Refused::MarkerNameMismatch => "hostile/marker-signed-as-other.so",
            Refused::NoTrustedKeys
            | Refused::InvalidToml
            | Refused::InvalidConfig
            | Refused::ReassignmentGuard => return None,
        })
    }

    fn reason(self) -> RefusalReason {
        match self {
            Refused::SignatureMissing => RefusalReason::SignatureMissing,
            Refused::UnknownKey => RefusalReason::UnknownKeyId,
            Refused::MalformedSignature => RefusalReason::MalformedSignature,
            Refused::Missing => RefusalReason::PluginMissing,
            Refused::WorldWritable | Refused::Symlink => RefusalReason::UnsafePath,
            Refused::NotALibrary => RefusalReason::CannotOpen,
            Refused::NoTrustedKeys => RefusalReason::NoTrustedKeys,
            Refused::InvalidToml | Refused::InvalidConfig => RefusalReason::InvalidConfig,
            Refused::BadSignature => RefusalReason::BadSignature,
            Refused::Rollback => RefusalReason::Rollback,
            Refused::Truncated => RefusalReason::MalformedLibrary,
            Refused::NoRootModule => RefusalReason::SymbolMissing,
            Refused::InitPanics => RefusalReason::InitFailed,
            Refused::WrongModule => RefusalReason::ModuleNameMismatch,
            Refused::MarkerNameMismatch => RefusalReason::NameMismatch,
            Refused::ReassignmentGuard => RefusalReason::GuardReassignment,
        }
    }
}

/// A version far above any good one: were such an artifact ever accepted, every later good
/// version would be a rollback and the test would fail loudly.
const HOSTILE_VERSION: u64 = 1_000_000;

/// The builds the soak deploys, stripped ([`TestEnv::stripped`]): every reload reads and
/// hashes every configured plugin, and an unstripped debug plugin is 14 MB.
struct Builds {
    wh: PathBuf,
    marker_a: PathBuf,
    marker_b: PathBuf,
    nondeterministic: PathBuf,
    slow: PathBuf,
    init_panics: PathBuf,
    no_root_module: PathBuf,
}

impl Builds {
    fn new(env: &TestEnv) -> Builds {
        Builds {
            wh: env.stripped(&reference(rf::WEIGHTED_HASH), "weighted-hash"),
            marker_a: env.stripped(&fixture(fx::MARKER_A), "marker-a"),
            marker_b: env.stripped(&fixture(fx::MARKER_B), "marker-b"),
            nondeterministic: env.stripped(&fixture(fx::NONDETERMINISTIC), "nondeterministic"),
            slow: env.stripped(&fixture(fx::SLOW), "slow"),
            init_panics: env.stripped(&fixture(fx::INIT_PANICS), "init-panics"),
            no_root_module: env.stripped(&fixture(fx::NO_ROOT_MODULE), "no-root-module"),
        }
    }
}

/// Writes every hostile artifact; returns the SHA-256 of those that are libraries.
fn prepare_hostile(env: &TestEnv, builds: &Builds, installed_wh: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = |b: Refused| env.path(b.file().unwrap());
    let rel = |b: Refused| b.file().unwrap();
    let wh = &builds.wh;
    let good = std::fs::read(wh).unwrap();
    std::fs::create_dir_all(env.path("hostile")).unwrap();

    env.copy(wh, rel(Refused::SignatureMissing));
    let stranger = TestEnv::new();
    stranger.sign(
        &env.copy(wh, rel(Refused::UnknownKey)),
        "weighted-hash",
        HOSTILE_VERSION,
    );
    env.install(
        wh,
        rel(Refused::MalformedSignature),
        "weighted-hash",
        HOSTILE_VERSION,
    );
    let sig = path(Refused::MalformedSignature).with_extension("so.minisig");
    let text = std::fs::read_to_string(&sig).unwrap();
    std::fs::write(&sig, &text[..text.len() / 2]).unwrap();
    env.install(
        wh,
        rel(Refused::WorldWritable),
        "weighted-hash",
        HOSTILE_VERSION,
    );
    std::fs::set_permissions(
        path(Refused::WorldWritable),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::os::unix::fs::symlink(installed_wh, path(Refused::Symlink)).unwrap();
    std::fs::copy(
        installed_wh.with_extension("so.minisig"),
        path(Refused::Symlink).with_extension("so.minisig"),
    )
    .unwrap();
    write_replacing(&path(Refused::NotALibrary), b"not a library\n");
    env.sign(
        &path(Refused::NotALibrary),
        "weighted-hash",
        HOSTILE_VERSION,
    );

    env.install(
        wh,
        rel(Refused::BadSignature),
        "weighted-hash",
        HOSTILE_VERSION,
    );
    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 1;
    write_replacing(&path(Refused::BadSignature), &flipped);
    env.install(wh, rel(Refused::Rollback), "weighted-hash", 1);
    write_replacing(&path(Refused::Truncated), &good[..good.len() / 2]);
    env.sign(&path(Refused::Truncated), "weighted-hash", HOSTILE_VERSION);
    env.install(
        &builds.no_root_module,
        rel(Refused::NoRootModule),
        "weighted-hash",
        HOSTILE_VERSION,
    );
    env.install(
        &builds.init_panics,
        rel(Refused::InitPanics),
        "weighted-hash",
        HOSTILE_VERSION,
    );
    env.install(
        &builds.nondeterministic,
        rel(Refused::WrongModule),
        "weighted-hash",
        HOSTILE_VERSION,
    );
    env.install(
        &builds.marker_b,
        rel(Refused::MarkerNameMismatch),
        "weighted-hash",
        HOSTILE_VERSION,
    );

    let mut shas: Vec<String> = [
        Refused::BadSignature,
        Refused::Truncated,
        Refused::NoRootModule,
        Refused::InitPanics,
        Refused::WrongModule,
    ]
    .iter()
    .map(|&b| sha256_hex(&path(b)))
    .collect();
    shas.push(sha256_hex(&builds.slow));
    shas
}

fn write_replacing(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn variants_toml(names: &[&str], weights: &[u32]) -> String {
    let v: Vec<String> = weights
        .iter()
        .zip(names)
        .map(|(w, n)| format!("{{ name = \"{n}\", weight = {w} }}"))
        .collect();
    format!("[{}]", v.join(", "))
}

fn plugin_toml(name: &str, path: &Path) -> String {
    format!(
        "[[plugins]]\nname = \"{name}\"\npath = {}\n\n",
        abkit_tests::toml_string(&path.display().to_string())
    )
}

/// The configuration body of `shape` (after the trust table).
fn config_body(env: &TestEnv, shape: &Shape, paths: &Paths, max_reassignment: bool) -> String {
    let mut t = plugin_toml("weighted-hash", &paths.wh);
    if shape.marker {
        t += &plugin_toml("marker", &paths.marker);
    }
    if shape.nondeterministic {
        t += &plugin_toml("nondeterministic", &env.path("plugins/nd.so"));
    }
    if shape.slow {
        t += &plugin_toml("slow", &env.path("plugins/slow.so"));
    }
    t += &format!(
        "[[experiments]]\nkey = \"wh\"\nstrategy = \"plugin:weighted-hash\"\ncoverage = {:?}\nvariants = {}\n",
        WH_COVERAGE[shape.coverage],
        variants_toml(&WH_NAMES, WH_WEIGHTS[shape.weights])
    );
    if max_reassignment {
        t += "max_reassignment = 0.01\n";
    }
    if shape.extra {
        t += &format!(
            "\n[[experiments]]\nkey = \"extra\"\nvariants = {}\n",
            variants_toml(&EXTRA_NAMES, &EXTRA_WEIGHTS)
        );
    }
    if shape.marker {
        t += &format!(
            "\n[[experiments]]\nkey = \"mk\"\nstrategy = \"plugin:marker\"\nvariants = {}\n",
            variants_toml(&MK_NAMES, &[1, 1, 1])
        );
    }
    for (on, key, plugin) in [
        (shape.nondeterministic, "nd", "nondeterministic"),
        (shape.slow, "sl", "slow"),
    ] {
        if on {
            t += &format!("\n[[experiments]]\nkey = \"{key}\"\nstrategy = \"plugin:{plugin}\"\nvariants = {}\n", variants_toml(&PAIR_NAMES, &[50, 50]));
        }
    }
    t
}

/// A small deterministic PRNG (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Generation -> what it serves. An entry is written before the reload that may publish that
/// generation and removed if the reload is refused, so every published generation has its
/// final entry before any caller can see it.
type Lives = Mutex<Vec<Option<Live>>>;

/// Sets `stop` when dropped, so callers end even if the reload thread panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Resident set size of this process in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

/// Distinct files of `dir` mapped into this process.
/// The distinct sealed memory files (by inode) plugin code is mapped from.
fn mapped_plugin_images() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("/memfd:abkit:"))
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(str::to_string)
        .collect()
}

#[derive(Default)]
struct CallerStats {
    calls: AtomicU64,
    /// Calls during which the generation changed.
    straddled: AtomicU64,
    /// Highest generation a caller saw.
    max_generation: AtomicU64,
}

/// What the caller threads share.
struct Shared<'a> {
    sdk: &'a Sdk,
    ids: &'a [String],
    expected: &'a Expected,
    lives: &'a Lives,
    stop: &'a AtomicBool,
    errors: &'a Mutex<Vec<String>>,
    stats: &'a CallerStats,
}

impl Shared<'_> {
    fn fail(&self, msg: String) {
        let mut e = self.errors.lock().unwrap();
        if e.len() < 20 {
            e.push(msg);
        }
        self.stop.store(true, Ordering::Release);
    }
}

/// One caller thread: `assign` in a loop until `stop`, every answer checked.
fn caller(t: usize, sh: &Shared<'_>) {
    const EXPERIMENTS: [&str; 6] = ["wh", "extra", "mk", "nd", "sl", "missing"];
    let mut known: Vec<Live> = Vec::new(); // generation g at index g - 1 (final once published)
    let mut n = t * 7919;
    while !sh.stop.load(Ordering::Acquire) {
        for _ in 0..BATCH {
            n += 1;
            let u = n % UNITS;
            let exp = EXPERIMENTS[(n / UNITS + t) % EXPERIMENTS.len()];
            let g0 = sh.sdk.snapshot().generation();
            let a = sh.sdk.assign(exp, &Unit::new(&sh.ids[u]));
            let g1 = sh.sdk.snapshot().generation();
            sh.stats.calls.fetch_add(1, Ordering::Relaxed);
            if g1 != g0 {
                sh.stats.straddled.fetch_add(1, Ordering::Relaxed);
            }
            sh.stats.max_generation.fetch_max(g1, Ordering::Relaxed);
            if let DecidedBy::Plugin(p) = a.decided_by {
                if sh.expected.refused_shas.contains(&p.sha256) {
                    return sh.fail(format!(
                        "a refused artifact served: {exp} {} -> {a:?}",
                        sh.ids[u]
                    ));
                }
            }
            if known.len() < g1 as usize {
                let all = sh.lives.lock().unwrap();
                for g in known.len() + 1..=g1 as usize {
                    match all.get(g).copied().flatten() {
                        Some(live) => known.push(live),
                        None => {
                            return sh.fail(format!(
                                "generation {g} was published but no reload meant to publish it"
                            ))
                        }
                    }
                }
            }
            if !(g0..=g1).any(|g| sh.expected.matches(&known[g as usize - 1], exp, u, &a)) {
                let window: Vec<&Live> = (g0..=g1).map(|g| &known[g as usize - 1]).collect();
                return sh.fail(format!(
                    "caller {t}: {exp} / {} answered {a:?} ({}), valid for no generation in {g0}..={g1}: {window:?}",
                    sh.ids[u], a.decided_by
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The reload side: state of the deployment and of what serves.
struct Deployer<'a> {
    env: &'a TestEnv,
    sdk: &'a Sdk,
    lives: &'a Lives,
    builds: &'a Builds,
    config: PathBuf,
    /// What serves now.
    live: Live,
    generation: u64,
    /// The marker file on disk (version, build b).
    marker_file: (u64, bool),
    good: Paths,
    rng: Rng,
    steps: [usize; 3],
    edits: usize,
    accepted: usize,
    refused: usize,
    /// Refusals by reason: of whole reloads, and of the never-good plugins in accepted ones.
    refused_by_reason: BTreeMap<RefusalReason, usize>,
    slowest_reload: Duration,
    /// Time spent per kind of reload: (count, total).
    time_by_kind: BTreeMap<String, (u32, Duration)>,
}

impl Deployer<'_> {
    fn write(&self, shape: &Shape, paths: &Paths, max_reassignment: bool) {
        self.env
            .write_config(&config_body(self.env, shape, paths, max_reassignment), true);
    }

    fn reload(&mut self, with: bool) -> ReloadReport {
        let started = Instant::now();
        let report = if with {
            let config = abkit::Config::from_file(&self.config).unwrap();
            self.sdk.reload_with(config, "soak")
        } else {
            self.sdk.reload()
        };
        self.slowest_reload = self.slowest_reload.max(started.elapsed());
        report
    }

    fn timed(&mut self, kind: String, f: impl FnOnce(&mut Self)) {
        let started = Instant::now();
        f(self);
        let e = self.time_by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += started.elapsed();
    }

    /// Reloads expecting `next` to go live (registered first: see [`Lives`]).
    fn expect_accepted(&mut self, next: Live, with: bool, what: &str) {
        let g = self.generation + 1;
        self.lives.lock().unwrap()[g as usize] = Some(next);
        let report = self.reload(with);
        assert!(
            report.accepted,
            "{what}: a good change was refused:\n{report}"
        );
        assert_eq!(report.generation, g, "{what}\n{report}");
        assert_eq!(self.sdk.snapshot().generation(), g, "{what}");
        self.generation = g;
        self.live = next;
        self.accepted += 1;
        for p in report
            .plugins
            .iter()
            .filter(|p| p.change != Change::Removed)
        {
            let never_good = match p.name.as_str() {
                "nondeterministic" => Some(RefusalReason::ProbeNondeterministic),
                "slow" => Some(RefusalReason::ProbeTooSlow),
                _ => None,
            };
            match never_good {
                Some(reason) => {
                    assert_eq!(
                        p.refusal.as_ref().map(|r| r.reason),
                        Some(reason),
                        "{what}\n{report}"
                    );
                    *self.refused_by_reason.entry(reason).or_default() += 1;
                }
                None => assert!(p.refusal.is_none(), "{what}\n{report}"),
            }
        }
    }

    /// Reloads expecting a refusal with `reason` that leaves everything as it was.
    fn expect_refused(&mut self, reason: RefusalReason, what: &str) {
        self.lives.lock().unwrap()[self.generation as usize + 1] = None;
        let report = self.reload(false);
        assert!(
            !report.accepted,
            "{what}: accepted, expected refusal {reason}:\n{report}"
        );
        assert_eq!(
            report.refusal.as_ref().map(|r| r.reason),
            Some(reason),
            "{what}\n{report}"
        );
        assert_eq!(
            report.generation, self.generation,
            "{what}: a refused reload changed the generation"
        );
        assert_eq!(
            self.sdk.snapshot().generation(),
            self.generation,
            "{what}: a refused reload published"
        );
        *self.refused_by_reason.entry(reason).or_default() += 1;
        self.refused += 1;
    }

    fn edited_shape(&mut self) -> Shape {
        self.edits += 1;
        let mut s = self.live.shape;
        match self.rng.below(3) {
            0 => {
                s.weights =
                    (s.weights + 1 + self.rng.below(WH_WEIGHTS.len() - 1)) % WH_WEIGHTS.len()
            }
            1 => {
                s.coverage =
                    (s.coverage + 1 + self.rng.below(WH_COVERAGE.len() - 1)) % WH_COVERAGE.len()
            }
            _ => s.extra = !s.extra,
        }
        // Marker in one edit out of three (and after each marker swap): it costs its share.
        s.marker = self.rng.below(3) == 0;
        // Plugins that never pass the probe: now and then, for one edit period each. The slow
        // one costs the probe its deadline (1 s) on each reload it is part of: twice only.
        s.nondeterministic = self.edits % 8 == 3;
        s.slow = self.edits % 25 == 10;
        s
    }

    fn live_for(&self, shape: Shape, wh_version: u64) -> Live {
        Live {
            shape,
            wh_version,
            marker: shape.marker.then_some(self.marker_file),
        }
    }

    /// Reload number `i`: in every 40, 4 good changes, 3 costly refusals, 33 cheap refusals.
    /// (What costs is the per-plugin work of each reload and the guards: ~18 ms for an
    /// unchanged reload in a debug build. Cheap refusals stop before that, at ~2 ms.)
    fn step(&mut self, i: usize) {
        let next = |k: &mut usize| {
            *k += 1;
            *k - 1
        };
        match i % 40 {
            0 | 10 | 20 | 30 => {
                let g = GOOD[next(&mut self.steps[0]) % GOOD.len()];
                self.timed(format!("{g:?}"), |d| {
                    d.good_step(g, &format!("reload {i} ({g:?})"))
                });
            }
            5 | 15 | 35 => {
                let b = COSTLY[next(&mut self.steps[1]) % COSTLY.len()];
                self.timed(format!("{b:?}"), |d| {
                    d.bad_step(b, &format!("reload {i} ({b:?})"))
                });
            }
            _ => {
                let b = CHEAP[next(&mut self.steps[2]) % CHEAP.len()];
                self.timed(format!("{b:?}"), |d| {
                    d.bad_step(b, &format!("reload {i} ({b:?})"))
                });
            }
        }
    }

    fn good_step(&mut self, action: Good, what: &str) {
        let shape = self.live.shape;
        match action {
            Good::WhVersionBump => {
                let v = self.live.wh_version + 1;
                self.env.sign(&self.good.wh, "weighted-hash", v);
                self.write(&shape, &self.good, false);
                let next = self.live_for(shape, v);
                self.expect_accepted(next, false, what);
            }
            Good::ConfigEdit | Good::ConfigEditWith => {
                let next_shape = self.edited_shape();
                self.write(&next_shape, &self.good, false);
                let next = self.live_for(next_shape, self.live.wh_version);
                self.expect_accepted(next, action == Good::ConfigEditWith, what);
            }
            Good::MarkerSwap => {
                let (v, b) = self.marker_file;
                self.marker_file = (v + 1, !b);
                let build = if b {
                    &self.builds.marker_a
                } else {
                    &self.builds.marker_b
                };
                self.env
                    .install(build, "plugins/marker.so", "marker", v + 1);
                let next_shape = Shape {
                    marker: true,
                    ..shape
                };
                self.write(&next_shape, &self.good, false);
                let next = self.live_for(next_shape, self.live.wh_version);
                self.expect_accepted(next, false, what);
            }
            Good::Unchanged => {
                self.write(&shape, &self.good, false);
                self.expect_accepted(self.live, false, what);
            }
        }
    }

    fn bad_step(&mut self, action: Refused, what: &str) {
        // Only the plugins a refusal needs are configured: every configured plugin is read
        // and verified on each reload, and that is what costs.
        let mut shape = Shape {
            marker: false,
            nondeterministic: false,
            slow: false,
            ..self.live.shape
        };
        let mut paths = self.good.clone();
        match action.file() {
            Some(f) if action == Refused::MarkerNameMismatch => {
                // Marker has had a good version since the start (only a plugin with one
                // blocks a reload), whether or not it is configured now.
                shape.marker = true;
                paths.marker = self.env.path(f);
            }
            Some(f) => paths.wh = self.env.path(f),
            None => {}
        }
        match action {
            Refused::NoTrustedKeys => {
                std::fs::write(&self.config, config_body(self.env, &shape, &paths, false)).unwrap();
            }
            Refused::InvalidToml => std::fs::write(&self.config, "[[experiments]\nkey = ").unwrap(),
            Refused::InvalidConfig => {
                // The same experiment key twice.
                let body = config_body(self.env, &shape, &paths, false);
                let wh = &body[body.find("[[experiments]]").unwrap()..];
                let wh = &wh[..wh.find("\n\n").unwrap_or(wh.len())];
                self.env.write_config(&format!("{body}\n{wh}\n"), true);
            }
            Refused::ReassignmentGuard => {
                shape.weights = (shape.weights + 1) % WH_WEIGHTS.len();
                self.write(&shape, &paths, true);
            }
            _ => self.write(&shape, &paths, false),
        }
        self.expect_refused(action.reason(), what);
    }
}

#[test]
fn row27_a_thousand_hot_swaps_under_concurrent_assign() {
    // With RUST_BACKTRACE set (it is on this machine and in CI), every panic of the
    // `init-panics` fixture — caught by abi_stable on each of its reloads — makes the
    // fixture's own std capture and symbolicate a backtrace, which costs ~100 KiB of retained
    // memory per panic and would swamp the SDK's memory-growth bound measured below. The
    // plugin reads the variable at its first panic, so turning it off here (before any
    // plugin is loaded, in this single-test binary) measures the SDK alone.
    std::env::set_var("RUST_BACKTRACE", "0");
    let started = Instant::now();
    let env = TestEnv::new();
    let builds = Builds::new(&env);
    let wh = env.install(&builds.wh, "plugins/wh.so", "weighted-hash", 2);
    env.install(&builds.marker_a, "plugins/marker.so", "marker", 1);
    env.install(
        &builds.nondeterministic,
        "plugins/nd.so",
        "nondeterministic",
        1,
    );
    env.install(&builds.slow, "plugins/slow.so", "slow", 1);
    let refused_shas = prepare_hostile(&env, &builds, &wh);
    let ids: Vec<String> = (0..UNITS).map(|i| format!("soak-user-{i}")).collect();
    let expected = Expected::new(
        &ids,
        sha256_hex(&wh),
        sha256_hex(&builds.marker_a),
        sha256_hex(&builds.marker_b),
        refused_shas,
    );

    let good = Paths {
        wh: wh.clone(),
        marker: env.path("plugins/marker.so"),
    };
    let shape = Shape {
        weights: 0,
        coverage: 0,
        extra: true,
        marker: true,
        nondeterministic: false,
        slow: false,
    };
    let config = env.write_config(&config_body(&env, &shape, &good, false), true);
    // The marker builds answer one variant for everybody: no sample-ratio test here (see
    // guards.rs for that guard); the reassignment guard stays on.
    let guards = GuardConfig::default()
        .with_population(2000)
        .with_srm_min_p_value(0.0)
        .with_srm_min_enrolled(500);
    // Every reload probes the serving plugins again, the last good one too when a candidate is
    // refused (and if that re-probe failed, the refused reload would go live with the plugin on
    // the builtin). A debug call takes ~20 µs; 10 ms leaves 500x room for a loaded 2-core
    // machine where 4 callers wake every millisecond, and still refuses `slow` (25 ms per
    // call, 2.5x the budget: it sleeps at least that long, however idle the machine).
    let probe = ProbeConfig::default()
        .with_units(32)
        .with_p99_budget(Duration::from_millis(10))
        .with_deadline(Duration::from_secs(1));
    let sdk = Sdk::builder()
        .probe(probe)
        .guards(guards)
        .build_from_file(&config)
        .unwrap();
    assert_eq!(sdk.status().generation, 1);
    let first = Live {
        shape,
        wh_version: 2,
        marker: Some((1, false)),
    };
    let lives: Lives = Mutex::new(vec![None; RELOADS + 2]);
    lives.lock().unwrap()[1] = Some(first);
    let rss_before = rss_bytes();
    let setup = started.elapsed();

    let stop = AtomicBool::new(false);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let stats = CallerStats::default();
    let shared = Shared {
        sdk: &sdk,
        ids: &ids,
        expected: &expected,
        lives: &lives,
        stop: &stop,
        errors: &errors,
        stats: &stats,
    };
    let mut deployer = Deployer {
        env: &env,
        sdk: &sdk,
        lives: &lives,
        builds: &builds,
        config: config.clone(),
        live: first,
        generation: 1,
        marker_file: (1, false),
        good,
        rng: Rng(0x9E37_79B9_7F4A_7C15),
        steps: [0; 3],
        edits: 0,
        accepted: 0,
        refused: 0,
        refused_by_reason: BTreeMap::new(),
        slowest_reload: Duration::ZERO,
        time_by_kind: BTreeMap::new(),
    };
    let reloads_started = Instant::now();
    let mut done = 0;
    std::thread::scope(|s| {
        for t in 0..CALLERS {
            let shared = &shared;
            s.spawn(move || caller(t, shared));
        }
        let _stop = StopOnDrop(&stop);
        // Let the callers start before the first swap.
        while stats.calls.load(Ordering::Relaxed) < 1000
            && reloads_started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 0..RELOADS {
            if stop.load(Ordering::Acquire) {
                break; // a caller failed: its message is asserted below
            }
            deployer.step(i);
            done += 1;
        }
    });
    let reload_time = reloads_started.elapsed();
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} caller failure(s):\n{}",
        errors.len(),
        errors.join("\n")
    );
    assert_eq!(done, RELOADS);
    assert_eq!(deployer.accepted + deployer.refused, RELOADS);

    // Every kind of refusal happened, repeatedly, with its own reason.
    let by_reason = &deployer.refused_by_reason;
    for b in CHEAP.iter().chain(&COSTLY) {
        assert!(
            by_reason.get(&b.reason()).copied().unwrap_or(0) >= 5,
            "{b:?}: {by_reason:?}"
        );
    }
    for reason in [
        RefusalReason::ProbeNondeterministic,
        RefusalReason::ProbeTooSlow,
    ] {
        assert!(by_reason.contains_key(&reason), "{reason}: {by_reason:?}");
    }
    let calls = stats.calls.load(Ordering::Relaxed);
    assert!(calls >= 10_000, "the callers made only {calls} calls");

    // Memory: libraries are content-addressed, so 1,000 swaps map only the distinct builds.
    let status = sdk.status();
    // Good builds: weighted-hash, marker a, marker b. Others pass the loader (and so stay
    // mapped) and are refused later: nondeterministic (probe, or its name), slow (probe).
    let good_builds = 3;
    assert!(
        status.loaded_libraries <= good_builds + 2,
        "{} libraries mapped",
        status.loaded_libraries
    );
    let mapped = mapped_plugin_images();
    // Plus what dlopen saw and refused: init-panics (and no-root-module if it stays mapped).
    assert!(
        mapped.len() <= good_builds + 4,
        "{} distinct plugin images mapped: {mapped:#?}",
        mapped.len()
    );
    let rss_after = rss_bytes();
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 64 << 20,
        "resident memory grew by {} MiB over {RELOADS} reloads",
        growth >> 20
    );

    // The final status is the last good configuration.
    let last = deployer.live;
    assert_eq!(status.generation, deployer.generation);
    assert_eq!(status.generation, 1 + deployer.accepted as u64);
    assert_eq!(
        status.last_reload.as_ref().unwrap().generation,
        status.generation
    );
    let plugin = |name: &str| status.plugins.iter().find(|p| p.name == name);
    let wh_status = plugin("weighted-hash").unwrap();
    assert_eq!(wh_status.state, PluginState::Active, "{status}");
    let serving = wh_status.serving.as_ref().unwrap();
    assert_eq!(
        (serving.version, serving.sha256.as_str()),
        (last.wh_version, expected.wh_sha.as_str()),
        "{status}"
    );
    match last.marker {
        Some((version, b)) => {
            let m = plugin("marker").unwrap();
            assert_eq!(m.state, PluginState::Active, "{status}");
            let sha = if b {
                &expected.marker_b_sha
            } else {
                &expected.marker_a_sha
            };
            let serving = m.serving.as_ref().unwrap();
            assert_eq!(
                (serving.version, &serving.sha256),
                (version, sha),
                "{status}"
            );
        }
        None => assert!(plugin("marker").is_none(), "{status}"),
    }
    for (on, name, reason) in [
        (
            last.shape.nondeterministic,
            "nondeterministic",
            RefusalReason::ProbeNondeterministic,
        ),
        (last.shape.slow, "slow", RefusalReason::ProbeTooSlow),
    ] {
        match plugin(name) {
            Some(p) => {
                assert!(on, "{status}");
                assert_eq!(p.state, PluginState::Fallback, "{status}");
                assert_eq!(p.refusal.as_ref().unwrap().reason, reason, "{status}");
            }
            None => assert!(!on, "{status}"),
        }
    }
    let keys: Vec<&str> = status.experiments.iter().map(|e| e.key.as_str()).collect();
    let mut want = vec!["wh"];
    for (on, key) in [
        (last.shape.extra, "extra"),
        (last.shape.marker, "mk"),
        (last.shape.nondeterministic, "nd"),
        (last.shape.slow, "sl"),
    ] {
        if on {
            want.push(key);
        }
    }
    assert_eq!(keys, want, "{status}");
    let snapshot = sdk.snapshot();
    let wh_config = snapshot.experiment("wh").unwrap();
    assert_eq!(wh_config.weights(), WH_WEIGHTS[last.shape.weights]);
    assert_eq!(wh_config.coverage(), WH_COVERAGE[last.shape.coverage]);
    for (u, id) in ids.iter().enumerate() {
        for exp in ["wh", "extra", "mk", "nd", "sl"] {
            let a = sdk.assign(exp, &Unit::new(id));
            assert!(
                expected.matches(&last, exp, u, &a),
                "final {exp} {id}: {a:?}"
            );
        }
    }

    let per_kind: Vec<String> = deployer
        .time_by_kind
        .iter()
        .map(|(k, (n, t))| format!("{k} {n}x {:.1} ms", t.as_secs_f64() * 1e3 / f64::from(*n)))
        .collect();
    eprintln!("soak: mean time per step kind: {}", per_kind.join(", "));
    eprintln!(
        "soak: setup {:.1} s; {RELOADS} reloads in {:.1} s (slowest {:.0} ms): {} accepted, {} refused; refusals by reason \
         {by_reason:?}; {calls} checked assign calls by {CALLERS} threads ({} across a swap, generations 1..={}); \
         {} libraries mapped by the SDK, {} distinct cache files mapped; RSS {} -> {} MiB",
        setup.as_secs_f64(),
        reload_time.as_secs_f64(),
        deployer.slowest_reload.as_secs_f64() * 1e3,
        deployer.accepted,
        deployer.refused,
        stats.straddled.load(Ordering::Relaxed),
        stats.max_generation.load(Ordering::Relaxed),
        status.loaded_libraries,
        mapped.len(),
        rss_before >> 20,
        rss_after >> 20,
    );
}
