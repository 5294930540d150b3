//! [`VersionLedger`]: the highest accepted version per plugin name (rollback protection).

use super::metadata::SignedMetadata;
use super::TrustError;
use crate::config::is_valid_plugin_name;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// File name of the ledger inside the state directory.
pub const LEDGER_FILE: &str = "accepted-versions";
const HEADER: &str = "# abkit accepted plugin versions v1: the highest version accepted per plugin name. Do not lower.";
const LEDGER_MAX_BYTES: u64 = 1 << 20;

/// Highest accepted version per plugin name. With a state directory it is persisted
/// (temporary file, fsync, rename) and reloaded on start, so a rollback is refused across
/// restarts too. One process owns a state directory.
#[derive(Debug, Clone, Default)]
pub struct VersionLedger {
    versions: BTreeMap<String, u64>,
    path: Option<PathBuf>,
}

impl VersionLedger {
    /// A ledger that lives as long as this process.
    pub fn in_memory() -> VersionLedger {
        VersionLedger::default()
    }

    /// Opens (or starts) the ledger of `state_dir`, creating the directory with mode 0700.
    pub fn open(state_dir: &Path) -> Result<VersionLedger, TrustError> {
        let io = |source| TrustError::Io {
            path: state_dir.to_path_buf(),
            source,
        };
        if !state_dir.is_dir() {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(state_dir).map_err(io)?;
        }
        let path = state_dir.join(LEDGER_FILE);
        let versions = match fs::File::open(&path) {
            Ok(f) => parse(&path, f)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(TrustError::Io { path, source }),
        };
        Ok(VersionLedger {
            versions,
            path: Some(path),
        })
    }

    /// The ledger file, if persisted.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Refuses `meta` if its version is lower than the highest accepted for its name
    /// ([`TrustError::Rollback`]); the same version again is fine (the same release reloaded).
    pub fn check(&self, meta: &SignedMetadata) -> Result<(), TrustError> {
        match self.highest(&meta.name) {
            Some(highest) if meta.version < highest => Err(TrustError::Rollback {
                name: meta.name.clone(),
                version: meta.version,
                highest,
            }),
            _ => Ok(()),
        }
    }

    /// Records `meta.version` as accepted for `meta.name` (after [`check`](Self::check)) and
    /// persists the ledger if it has a state directory. The version is remembered in this
    /// process even when writing the file fails.
    pub fn record(&mut self, meta: &SignedMetadata) -> Result<(), TrustError> {
        self.check(meta)?;
        if self.highest(&meta.name) == Some(meta.version) {
            return Ok(());
        }
        self.versions.insert(meta.name.clone(), meta.version);
        match &self.path {
            Some(path) => persist(path, &self.versions),
            None => Ok(()),
        }
    }

    /// Takes over every version `other` accepted that is higher than this ledger's (and
    /// persists them): moving to another state directory never forgets a version.
    pub fn absorb(&mut self, other: &VersionLedger) -> Result<(), TrustError> {
        let mut changed = false;
        for (name, &version) in &other.versions {
            let mine = self.versions.entry(name.clone()).or_insert(0);
            if version > *mine {
                *mine = version;
                changed = true;
            }
        }
        match (&self.path, changed) {
            (Some(path), true) => persist(path, &self.versions),
            _ => Ok(()),
        }
    }

    /// The highest version accepted for `name`, if any.
    pub fn highest(&self, name: &str) -> Option<u64> {
        self.versions.get(name).copied()
    }
}

fn parse(path: &Path, f: fs::File) -> Result<BTreeMap<String, u64>, TrustError> {
    let corrupt = |detail: String| TrustError::Ledger {
        path: path.to_path_buf(),
        detail,
    };
    let mut bytes = Vec::new();
    f.take(LEDGER_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > LEDGER_MAX_BYTES {
        return Err(corrupt(format!("larger than {LEDGER_MAX_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| corrupt("not text".into()))?;
    let mut versions = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || corrupt(format!("line {} is not `<plugin name> <version>`", i + 1));
        let (name, version) = line.split_once(' ').ok_or_else(bad)?;
        let version: u64 = version.parse().map_err(|_| bad())?;
        if !is_valid_plugin_name(name) {
            return Err(bad());
        }
        if versions.insert(name.to_string(), version).is_some() {
            return Err(corrupt(format!(
                "line {}: plugin `{name}` is listed twice",
                i + 1
            )));
        }
    }
    Ok(versions)
}

/// Writes the ledger to a temporary file, fsyncs it, renames it over `path`, fsyncs the directory.
fn persist(path: &Path, versions: &BTreeMap<String, u64>) -> Result<(), TrustError> {
    let mut text = format!("{HEADER}\n");
    for (name, version) in versions {
        text.push_str(&format!("{name} {version}\n"));
    }
    // Unique per process and per write, so two ledgers on one directory never share a temp file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut o = fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp);
        TrustError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta(name: &str, version: u64) -> SignedMetadata {
        SignedMetadata {
            name: name.into(),
            version,
            sha256: [0; 32],
            expires: None,
            key_id: "0".repeat(16),
        }
    }

    #[test]
    fn lower_versions_are_refused_and_equal_ones_accepted() {
        let mut l = VersionLedger::in_memory();
        l.record(&meta("a", 5)).unwrap();
        l.record(&meta("b", 1)).unwrap();
        assert!(l.check(&meta("a", 5)).is_ok());
        assert!(l.check(&meta("a", 6)).is_ok());
        let e = l.check(&meta("a", 4)).unwrap_err();
        assert!(
            matches!(
                e,
                TrustError::Rollback {
                    version: 4,
                    highest: 5,
                    ..
                }
            ),
            "{e}"
        );
        assert!(l.record(&meta("a", 4)).is_err());
        assert_eq!(
            (l.highest("a"), l.highest("b"), l.highest("c")),
            (Some(5), Some(1), None)
        );
        assert!(l.path().is_none());
    }

    #[test]
    fn a_state_dir_keeps_versions_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state/abkit");
        let mut l = VersionLedger::open(&state).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&state).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        l.record(&meta("switchback", 7)).unwrap();
        l.record(&meta("cluster", u64::MAX)).unwrap();
        drop(l);
        let l = VersionLedger::open(&state).unwrap();
        assert_eq!(
            (l.highest("switchback"), l.highest("cluster")),
            (Some(7), Some(u64::MAX))
        );
        assert_eq!(
            l.check(&meta("switchback", 6)).unwrap_err().reason(),
            "rollback"
        );
        let leftovers: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [LEDGER_FILE]);
    }

    #[test]
    fn a_corrupt_ledger_is_refused_not_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        for junk in ["switchback seven\n", "Bad 1\n", "a 1\na 2\n", "a\n"] {
            fs::write(dir.path().join(LEDGER_FILE), junk).unwrap();
            let e = VersionLedger::open(dir.path()).unwrap_err();
            assert_eq!(e.reason(), "bad_ledger", "{junk:?}: {e}");
            assert!(e.to_string().contains(LEDGER_FILE), "{e}");
        }
    }
}
