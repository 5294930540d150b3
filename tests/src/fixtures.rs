//! Builds the plugins the tests load — the three reference strategies and the hostile fixtures
//! of `tests/fixtures/` — with cargo, each set into its own target directory (never the one
//! the tests run from, so no fixture can be compiled against a wrong copy of the interface).
//! Concurrent test binaries are serialised by cargo's own lock; a second build is a no-op.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_base() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo_build(args: &[&str], target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let out = Command::new(cargo)
        .arg("build")
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace_root())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build test plugins: {e}"));
    assert!(
        out.status.success(),
        "building test plugins failed ({args:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Dirs {
    reference: PathBuf,
    fixtures: PathBuf,
}

fn built() -> &'static Dirs {
    static DIRS: OnceLock<Dirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        let reference = target_base().join("test-plugins");
        cargo_build(
            &[
                "-p",
                "abkit-strategy-weighted-hash",
                "-p",
                "abkit-strategy-switchback",
                "-p",
                "abkit-strategy-cluster",
            ],
            &reference,
        );
        let fixtures = target_base().join("test-fixtures");
        let manifest = workspace_root().join("tests/fixtures/Cargo.toml");
        cargo_build(
            &["--manifest-path", manifest.to_str().unwrap_or_default()],
            &fixtures,
        );
        Dirs {
            reference: reference.join("debug"),
            fixtures: fixtures.join("debug"),
        }
    })
}

/// A reference strategy library, e.g. `reference("weighted-hash")`.
pub fn reference(name: &str) -> PathBuf {
    let p = built()
        .reference
        .join(format!("libabkit_strategy_{}.so", name.replace('-', "_")));
    assert!(p.exists(), "reference plugin {} was not built", p.display());
    p
}

/// A fixture library of `tests/fixtures/`, e.g. `fixture("runtime-hostile")`.
pub fn fixture(name: &str) -> PathBuf {
    let p = built()
        .fixtures
        .join(format!("libfixture_{}.so", name.replace('-', "_")));
    assert!(p.exists(), "fixture {} was not built", p.display());
    p
}

/// The `abkit` command-line binary, for tests that need it as a process of its own. Uses the
/// one `cargo test --workspace --all-features` builds (`<target>/debug/abkit`); if there is
/// none (a lone `cargo test -p abkit-tests`), builds it into its own target dir once.
pub fn abkit_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = target_base().join("debug/abkit");
        if built.exists() {
            return built;
        }
        let own = target_base().join("test-bin");
        cargo_build(
            &["-p", "abkit", "--features", "cli", "--bin", "abkit"],
            &own,
        );
        own.join("debug/abkit")
    })
    .clone()
}

/// The example service (`sdk/examples/service.rs`): `ABKIT_SERVICE_BIN` if set, else the one
/// `cargo test --workspace --all-features` builds into `<target>/debug/examples/service`, else
/// built into its own target dir.
pub fn service_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // An explicit binary (e.g. a release build, to measure): ABKIT_SERVICE_BIN.
        if let Some(bin) = std::env::var_os("ABKIT_SERVICE_BIN") {
            return PathBuf::from(bin);
        }
        // The profile of this test binary: a `--release` test run measures a release service.
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        let built = target_base().join(profile).join("examples/service");
        if built.exists() {
            return built;
        }
        let own = target_base().join("test-bin");
        // `etcd`: the etcd tests start it on an etcd key too.
        let mut args = vec![
            "-p",
            "abkit",
            "--features",
            "watch,etcd",
            "--example",
            "service",
        ];
        if profile == "release" {
            args.push("--release");
        }
        cargo_build(&args, &own);
        own.join(profile).join("examples/service")
    })
    .clone()
}
