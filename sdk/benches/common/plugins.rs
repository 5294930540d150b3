//! Bench helper: builds a reference strategy in release into its own target dir and deploys it
//! signed with a throwaway key, so benchmarks measure the real plugin path.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `abkit-strategy-<name>` in release; returns the library path.
pub fn build_release(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("bench-plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ok = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            &format!("abkit-strategy-{name}"),
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&root)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "building the {name} plugin for the benchmark failed");
    target
        .join("release")
        .join(format!("libabkit_strategy_{}.so", name.replace('-', "_")))
}

/// A deployment directory with a key pair, a signed copy of `lib` and a config using it for a
/// 3-variant experiment `checkout_button` (plus `builtin_button`, the same on the builtin).
pub struct Deployment {
    /// Kept for its lifetime.
    pub _dir: tempfile::TempDir,
    /// The config file.
    pub config: PathBuf,
}

pub fn deploy(lib: &Path, name: &str) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let (pubkey, key) = abkit_signing::keygen(&dir.path().join("keys"), "bench", None).unwrap();
    let dest = dir.path().join("plugin.so");
    std::fs::copy(lib, &dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
    abkit_signing::sign(&key, None, &dest, name, 1, None).unwrap();
    let config = dir.path().join("abkit.toml");
    std::fs::write(
        &config,
        format!(
            "[trust]\npublic_key_files = [{:?}]\n[[plugins]]\nname = \"{name}\"\npath = {:?}\n\
             [[experiments]]\nkey = \"checkout_button\"\nstrategy = \"plugin:{name}\"\n\
             variants = [ {{ name = \"control\", weight = 34 }}, {{ name = \"b\", weight = 33 }}, {{ name = \"c\", weight = 33 }} ]\n\
             [[experiments]]\nkey = \"builtin_button\"\nsalt = \"checkout_button\"\n\
             variants = [ {{ name = \"control\", weight = 34 }}, {{ name = \"b\", weight = 33 }}, {{ name = \"c\", weight = 33 }} ]\n",
            pubkey.display().to_string(),
            dest.display().to_string()
        ),
    )
    .unwrap();
    Deployment { _dir: dir, config }
}
