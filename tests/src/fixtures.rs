//! The plugins the tests load — the three reference strategies ([`rf`]) and the hostile
//! fixtures of `tests/fixtures/` ([`fx`]) — built once per build of this crate by `build.rs`,
//! each set into its own target directory (never the one the tests run from, so no fixture
//! can be compiled against a wrong copy of the interface), and named by constants. Also the
//! `abkit` binary and the example service, for tests that run them as processes.

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

/// A plugin library the tests load, built once by `build.rs` (see [`rf`] and [`fx`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plugin {
    /// Its name: the package name without prefix, e.g. `runtime-hostile`; the tests sign and
    /// configure it under this name.
    pub name: &'static str,
    file: &'static str,
}

impl Plugin {
    /// The built library.
    pub fn path(self) -> PathBuf {
        PathBuf::from(self.file)
    }
}

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// A reference strategy library, e.g. `reference(rf::WEIGHTED_HASH)`.
pub fn reference(plugin: Plugin) -> PathBuf {
    plugin.path()
}

/// A fixture library of `tests/fixtures/`, e.g. `fixture(fx::RUNTIME_HOSTILE)`.
pub fn fixture(plugin: Plugin) -> PathBuf {
    plugin.path()
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
        cargo_build(&["-p", "abkit", "--all-features", "--bin", "abkit"], &own);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fixture is loaded by some test (a fixture nobody uses is dead weight or a test
    /// that was lost), and every constant names a library that exists.
    #[test]
    fn every_fixture_is_used_by_a_test_and_built() {
        let dir = workspace_root().join("tests/tests");
        let mut sources = String::new();
        for entry in std::fs::read_dir(&dir).expect("tests/tests") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources += &std::fs::read_to_string(&path).expect("read a test file");
            }
        }
        sources += &std::fs::read_to_string(workspace_root().join("tests/src/marker.rs"))
            .expect("marker.rs");
        for plugin in fx::ALL.iter().chain(rf::ALL) {
            assert!(plugin.path().exists(), "{plugin:?} was not built");
        }
        for plugin in fx::ALL {
            let constant = format!("fx::{}", plugin.name.replace('-', "_").to_uppercase());
            assert!(
                sources.contains(&constant),
                "fixture {} ({constant}) is used by no test: write its test or remove it",
                plugin.name
            );
        }
    }
}
