//! A throwaway deployment for one test: a private directory, a fresh signing key, signed plugin
//! copies and a config file that trusts the key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One test's deployment directory and signing key.
pub struct TestEnv {
    /// The temporary directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The trusted public key file.
    pub pubkey: PathBuf,
    /// The secret key file (unencrypted: tests only).
    pub seckey: PathBuf,
}

impl TestEnv {
    /// A new directory with a fresh key pair named `test`.
    pub fn new() -> TestEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pubkey, seckey) =
            abkit_signing::keygen(&dir.path().join("keys"), "test", None).expect("keygen");
        TestEnv {
            dir,
            pubkey,
            seckey,
        }
    }

    /// A path inside the directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Copies `library` to `rel` (mode 0644) without signing it.
    pub fn copy(&self, library: &Path, rel: &str) -> PathBuf {
        let dest = self.path(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        // Replace (not overwrite in place): a loaded library must never change under the process.
        let tmp = dest.with_extension("tmp-copy");
        std::fs::copy(library, &tmp).expect("copy plugin");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::rename(&tmp, &dest).expect("rename plugin");
        dest
    }

    /// Copies `library` to `rel` and signs it as `name` `version` with this env's key.
    pub fn install(&self, library: &Path, rel: &str, name: &str, version: u64) -> PathBuf {
        let dest = self.copy(library, rel);
        self.sign(&dest, name, version);
        dest
    }

    /// Signs `file` in place (writes `file.minisig`).
    pub fn sign(&self, file: &Path, name: &str, version: u64) {
        abkit_signing::sign(&self.seckey, None, file, name, version, None).expect("sign");
    }

    /// A `[trust]` table trusting this env's key (and a state dir if `state` is set).
    pub fn trust_toml(&self, state: bool) -> String {
        let mut t = format!(
            "[trust]\npublic_key_files = [{}]\n",
            crate::toml_string(&self.pubkey.display().to_string())
        );
        if state {
            t += &format!(
                "state_dir = {}\n",
                crate::toml_string(&self.path("state").display().to_string())
            );
        }
        t
    }

    /// Writes `abkit.toml` with `body` after the trust table; returns its path.
    pub fn write_config(&self, body: &str, state: bool) -> PathBuf {
        let p = self.path("abkit.toml");
        std::fs::write(&p, format!("{}\n{body}", self.trust_toml(state))).expect("write config");
        p
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

/// `[[plugins]]` + one `[[experiments]]` using it (key `exp`, two 50/50 variants).
pub fn plugin_experiment_toml(name: &str, path: &Path, strategy_config: Option<&str>) -> String {
    let mut t = format!(
        "[[plugins]]\nname = \"{name}\"\npath = {}\n\n[[experiments]]\nkey = \"exp\"\nstrategy = \"plugin:{name}\"\nvariants = [ {{ name = \"control\", weight = 50 }}, {{ name = \"treatment\", weight = 50 }} ]\n",
        crate::toml_string(&path.display().to_string())
    );
    if let Some(c) = strategy_config {
        t += &format!("strategy_config = {c}\n");
    }
    t
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_hex(file: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(file).expect("read for sha256");
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TestEnv {
    /// Signs `file` with the reference `minisign` tool and an arbitrary trusted comment
    /// (`legacy` = `-l`, the non-prehashed algorithm). Fails the test if `minisign` is missing:
    /// `.ci/test` installs it.
    pub fn minisign(&self, file: &Path, trusted_comment: &str, legacy: bool) {
        let mut cmd = std::process::Command::new("minisign");
        cmd.arg("-S")
            .arg("-s")
            .arg(&self.seckey)
            .arg("-m")
            .arg(file)
            .arg("-t")
            .arg(trusted_comment);
        if legacy {
            cmd.arg("-l");
        }
        let out = cmd.stdin(std::process::Stdio::null()).output().expect(
            "the `minisign` tool is needed (apt-get install minisign; .ci/test installs it)",
        );
        assert!(
            out.status.success(),
            "minisign -S failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl TestEnv {
    /// A compact copy of a built library at `builds/NAME.so` (not signed), made with
    /// `strip --strip-all`: the symbol table and debug info go; the dynamic symbols, the code and
    /// the unwind tables stay, so it loads and behaves like the original. For tests that load
    /// plugins many times: every load hashes the whole file twice (minisign prehash, SHA-256),
    /// ~90 ms per MB in a debug build, and a debug plugin is ~14 MB (~1 MB stripped). Without a
    /// `strip` tool the copy is unmodified (slower, same behaviour).
    pub fn stripped(&self, library: &Path, name: &str) -> PathBuf {
        let dest = self.path(&format!("builds/{name}.so"));
        std::fs::create_dir_all(self.path("builds")).expect("mkdir builds");
        let ok = std::process::Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&dest)
            .arg(library)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "`strip` is not available: using {} unstripped (slower)",
                library.display()
            );
            std::fs::copy(library, &dest).expect("copy library");
        }
        dest
    }
}
