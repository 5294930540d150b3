//! The plugin half of `abkit demo`: build and sign the three reference strategies with a
//! throwaway key, serve through them, then hot-swap live while threads keep assigning:
//! a new signed version goes live, a rollback, a biased strategy and a tampered file are
//! refused with their reasons, and a fresh start on the tampered file falls back to the builtin.

use abkit::cli::CliError;
use abkit::{Attribute, DecidedBy, GuardConfig, PreflightConfig, ReloadReport, Sdk, Unit};
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const STRATEGIES: [&str; 3] = ["weighted-hash", "switchback", "cluster"];

/// The workspace this binary was built from (the demo builds the plugins there: it is run from
/// a checkout, with `cargo demo`).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `cargo build ARGS` with cargo's own progress on stderr (inherited, not `--quiet`): the
/// first run compiles for minutes, and a silent terminal reads as a hang.
fn cargo_build(args: &[&str], target_dir: &Path) -> Result<(), CliError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .arg("build")
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace_root())
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .map_err(|e| {
            CliError::Invalid(format!(
                "cannot run cargo ({}) to build the plugins: {e}; run the demo with `cargo demo`",
                cargo.to_string_lossy()
            ))
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(CliError::Invalid(format!(
            "building the plugins failed (cargo build {})",
            args.join(" ")
        )))
    }
}

/// Where the demo's plugins come from: built now, or a directory of prebuilt libraries.
fn build_plugins(prebuilt: Option<&Path>) -> Result<(PathBuf, PathBuf), CliError> {
    if let Some(dir) = prebuilt {
        return Ok((dir.to_path_buf(), dir.to_path_buf()));
    }
    let target = workspace_root().join("target");
    eprintln!("[demo] step 1/2: building the three strategy plugins (release; the first run compiles for a few minutes, cargo's progress below) ...");
    let mut args = vec!["--release"];
    let packages: Vec<String> = STRATEGIES
        .iter()
        .map(|s| format!("abkit-strategy-{s}"))
        .collect();
    for p in &packages {
        args.extend(["-p", p.as_str()]);
    }
    cargo_build(&args, &target.join("demo-plugins"))?;
    eprintln!("[demo] step 2/2: building the deliberately biased test strategy (tests/fixtures/biased) ...");
    let manifest = workspace_root().join("tests/fixtures/Cargo.toml");
    let manifest = manifest.to_string_lossy().into_owned();
    cargo_build(
        &["--manifest-path", &manifest, "-p", "fixture-biased"],
        &target.join("demo-fixtures"),
    )?;
    Ok((
        target.join("demo-plugins/release"),
        target.join("demo-fixtures/debug"),
    ))
}

struct Deploy {
    dir: PathBuf,
    key: PathBuf,
    pubkey: PathBuf,
}

impl Deploy {
    /// Copies `lib` to `plugins/<file>` (rename into place) and signs it.
    fn install(
        &self,
        lib: &Path,
        file: &str,
        name: &str,
        version: u64,
    ) -> Result<PathBuf, CliError> {
        let dest = self.dir.join("plugins").join(file);
        let tmp = dest.with_extension("tmp");
        let io = |e: std::io::Error| {
            CliError::Invalid(format!("demo deploy of {}: {e}", dest.display()))
        };
        std::fs::copy(lib, &tmp).map_err(io)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        std::fs::rename(&tmp, &dest).map_err(io)?;
        abkit_signing::sign(&self.key, None, &dest, name, version, None)
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        Ok(dest)
    }
}

fn config_text(d: &Deploy, ranking_strategy: &str) -> String {
    let p = |f: &str| d.dir.join("plugins").join(f).display().to_string();
    format!(
        r#"[trust]
public_key_files = [{pubkey:?}]

[[plugins]]
name = "weighted-hash"
path = {wh:?}
[[plugins]]
name = "switchback"
path = {sb:?}
[[plugins]]
name = "cluster"
path = {cl:?}
[[plugins]]
name = "biased"
path = {bi:?}

[[experiments]]
key = "ranking"
strategy = "{ranking_strategy}"
variants = [ {{ name = "control", weight = 50 }}, {{ name = "neural", weight = 50 }} ]

[[experiments]]
key = "delivery_fee"
strategy = "plugin:switchback"
strategy_config = {{ window_minutes = 30, region_attribute = "city" }}
variants = [ {{ name = "base_fee", weight = 1 }}, {{ name = "surge_cap", weight = 1 }} ]

[[experiments]]
key = "team_pricing"
strategy = "plugin:cluster"
strategy_config = {{ cluster_attribute = "team_id", missing = "not_enrolled" }}
variants = [ {{ name = "seat", weight = 1 }}, {{ name = "flat", weight = 1 }} ]
"#,
        pubkey = d.pubkey.display().to_string(),
        wh = p("libabkit_strategy_weighted_hash.so"),
        sb = p("libabkit_strategy_switchback.so"),
        cl = p("libabkit_strategy_cluster.so"),
        bi = p("libfixture_biased.so"),
    )
}

fn write_config(d: &Deploy, ranking_strategy: &str) -> Result<PathBuf, CliError> {
    let path = d.dir.join("abkit.toml");
    let tmp = d.dir.join("abkit.toml.tmp");
    std::fs::write(&tmp, config_text(d, ranking_strategy))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| CliError::Invalid(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

fn show_assignments(sdk: &Sdk) {
    let units: [(&str, &str, &[Attribute<'static>]); 6] = [
        ("ranking", "user-1", &[]),
        ("ranking", "user-2", &[]),
        (
            "delivery_fee",
            "order-17",
            &[Attribute::new("city", "lisbon")],
        ),
        (
            "delivery_fee",
            "order-18",
            &[Attribute::new("city", "lisbon")],
        ),
        (
            "team_pricing",
            "alice",
            &[Attribute::new("team_id", "t-42")],
        ),
        ("team_pricing", "bob", &[Attribute::new("team_id", "t-42")]),
    ];
    for (exp, id, attrs) in units {
        let a = sdk.assign(exp, &Unit::new(id).with_attributes(attrs));
        let shown: Vec<String> = attrs
            .iter()
            .map(|a| format!("{}={}", a.key, a.value))
            .collect();
        println!(
            "  {exp:<13} {id:<9} {:<12} -> {:<10} by {}",
            shown.join(","),
            a.variant_name().unwrap_or("-"),
            a.decided_by
        );
    }
}

fn step(title: &str, report: &ReloadReport) {
    println!("\n-- {title} --");
    print!("{report}");
}

/// Runs the plugin tour. `prebuilt`: a directory holding the four libraries instead of building.
pub(super) fn run(prebuilt: Option<&Path>) -> Result<(), CliError> {
    println!("\n== part 2: signed strategy plugins and live hot-swap ==");
    let (plugins, fixtures) = build_plugins(prebuilt)?;
    let tmp = tempfile::Builder::new()
        .prefix("abkit-demo-")
        .tempdir()
        .map_err(|e| CliError::Invalid(format!("temp dir: {e}")))?;
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("plugins"))
        .map_err(|e| CliError::Invalid(format!("{}: {e}", dir.display())))?;
    let (pubkey, key) = abkit_signing::keygen(&dir.join("keys"), "demo", None)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let d = Deploy {
        dir: dir.clone(),
        key,
        pubkey,
    };
    println!(
        "throwaway key pair in {} (unencrypted: demo only)",
        dir.join("keys").display()
    );
    let lib = |s: &str| plugins.join(format!("libabkit_strategy_{}.so", s.replace('-', "_")));
    for s in STRATEGIES {
        let file = format!("libabkit_strategy_{}.so", s.replace('-', "_"));
        d.install(&lib(s), &file, s, 1)?;
        println!("signed {s} v1");
    }
    d.install(
        &fixtures.join("libfixture_biased.so"),
        "libfixture_biased.so",
        "biased",
        1,
    )?;
    let config = write_config(&d, "plugin:weighted-hash")?;

    let t = Instant::now();
    let sdk = Arc::new(
        Sdk::builder()
            .guards(GuardConfig::default())
            // Every new artifact runs in a child `abkit preflight` first (this very binary).
            .preflight(PreflightConfig::new(std::env::current_exe().map_err(
                |e| CliError::Invalid(format!("cannot find this abkit binary for preflight: {e}")),
            )?))
            .build_from_file(&config)?,
    );
    println!(
        "\nloaded, verified, preflighted in a child process and probed in {:.1} ms:\n",
        t.elapsed().as_secs_f64() * 1e3
    );
    print!("{}", sdk.status());
    println!("\n-- assignments through each plugin --");
    show_assignments(&sdk);

    // Traffic keeps flowing through every swap below.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let by_v2 = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (sdk, stop, served, by_v2) =
                (sdk.clone(), stop.clone(), served.clone(), by_v2.clone());
            std::thread::spawn(move || {
                let mut id = String::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    id.clear();
                    let _ = write!(id, "traffic-{w}-{i}");
                    let a = sdk.assign("ranking", &Unit::new(&id));
                    if matches!(a.decided_by, DecidedBy::Plugin(p) if p.version == 2) {
                        by_v2.fetch_add(1, Ordering::Relaxed);
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    println!("\n2 threads now assign `ranking` continuously while ops change things:");

    d.install(
        &lib("weighted-hash"),
        "libabkit_strategy_weighted_hash.so",
        "weighted-hash",
        2,
    )?;
    step(
        "1. ops deploy weighted-hash v2 (signed) over the same path",
        &sdk.reload_from_source("demo"),
    );

    d.install(
        &lib("weighted-hash"),
        "libabkit_strategy_weighted_hash.so",
        "weighted-hash",
        1,
    )?;
    step(
        "2. someone re-deploys the older v1 (rollback attempt)",
        &sdk.reload_from_source("demo"),
    );

    d.install(
        &lib("weighted-hash"),
        "libabkit_strategy_weighted_hash.so",
        "weighted-hash",
        2,
    )?;
    write_config(&d, "plugin:biased")?;
    step(
        "3. ranking switched to the `biased` strategy (valid, signed, but skewed)",
        &sdk.reload_from_source("demo"),
    );
    write_config(&d, "plugin:weighted-hash")?;

    let sb = d.dir.join("plugins/libabkit_strategy_switchback.so");
    let mut bytes = std::fs::read(&sb).map_err(|e| CliError::Invalid(e.to_string()))?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&sb, bytes).map_err(|e| CliError::Invalid(e.to_string()))?;
    step(
        "4. one byte of the switchback plugin flipped on disk",
        &sdk.reload_from_source("demo"),
    );

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    println!(
        "\nduring the swaps: {} assignments served without a pause ({} decided by weighted-hash v2)",
        served.load(Ordering::Relaxed),
        by_v2.load(Ordering::Relaxed)
    );
    println!("\n-- the running service still serves its last good versions --");
    show_assignments(&sdk);

    println!("\n-- a fresh start on the tampered file: switchback refused, its experiment on builtin:hash-v1 --");
    let fresh = Sdk::from_file(&config)?;
    print!("{}", fresh.status());
    show_assignments(&fresh);
    Ok(())
}
