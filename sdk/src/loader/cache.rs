//! The private, content-addressed copy of verified plugin bytes that `dlopen` actually opens.
//!
//! The loader never opens the configured path: between verification and `dlopen` that file
//! could be replaced (TOCTOU), and overwriting a loaded `.so` in place crashes the host. The
//! verified bytes go to `<dir>/<sha256>.so` in a directory only this user can enter (0700),
//! written to a temporary name and renamed into place; new bytes always get a new path, so a
//! new version really runs (`dlopen` of an already loaded path returns the old image).

use super::LoadError;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A private plugin cache directory.
#[derive(Debug, Clone)]
pub(crate) struct PluginCache {
    dir: PathBuf,
}

impl PluginCache {
    /// Uses (creating it 0700 if needed) `dir`; refuses a directory others can write or enter.
    pub(crate) fn open(dir: &Path) -> Result<PluginCache, LoadError> {
        let fail = |what: String| LoadError::Cache {
            path: dir.to_path_buf(),
            detail: what,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(format!("cannot create: {e}")))?;
        let meta = fs::symlink_metadata(dir).map_err(|e| fail(format!("cannot stat: {e}")))?;
        if !meta.is_dir() {
            return Err(fail(
                "is not a directory (a symlink is not allowed here)".into(),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(fail(format!(
                "has mode {:o}; the plugin cache must be private (chmod 700)",
                meta.mode() & 0o777
            )));
        }
        Ok(PluginCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The process-wide default cache: a fresh private temporary directory, kept for the
    /// life of the process (mapped libraries live in it).
    pub(crate) fn process_default() -> Result<PluginCache, LoadError> {
        static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let dir = DIR.get_or_init(|| {
            tempfile::Builder::new()
                .prefix("abkit-plugins-")
                .tempdir()
                .map(tempfile::TempDir::keep)
                .and_then(|d| {
                    fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).map(|()| d)
                })
                .map_err(|e| e.to_string())
        });
        match dir {
            Ok(d) => PluginCache::open(d),
            Err(e) => Err(LoadError::Cache {
                path: std::env::temp_dir(),
                detail: format!("cannot create a private cache directory: {e}"),
            }),
        }
    }

    /// Stores verified `bytes` as `<sha256_hex>.so` (reusing an identical existing file) and
    /// returns the path to open.
    pub(crate) fn store(&self, sha256_hex: &str, bytes: &[u8]) -> Result<PathBuf, LoadError> {
        let path = self.dir.join(format!("{sha256_hex}.so"));
        let fail = |what: String| LoadError::Cache {
            path: path.clone(),
            detail: what,
        };
        if let Ok(existing) = fs::read(&path) {
            if existing == bytes {
                return Ok(path);
            }
            // A damaged copy: replace it through a rename below (never in place).
        }
        // Unique per process and call: two clients storing the same bytes never share a temp file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{sha256_hex}.{}.{n}.tmp", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| fail(format!("cannot create a temporary file: {e}")))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| fail(format!("cannot write: {e}")))?;
        drop(f);
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o500))
            .map_err(|e| fail(format!("cannot chmod: {e}")))?;
        fs::rename(&tmp, &path).map_err(|e| fail(format!("cannot move into place: {e}")))?;
        Ok(path)
    }

    /// The directory.
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_path_new_bytes_new_path() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = PluginCache::open(&tmp.path().join("cache")).unwrap();
        let a = cache.store("aa", b"one").unwrap();
        assert_eq!(cache.store("aa", b"one").unwrap(), a);
        let b = cache.store("bb", b"two").unwrap();
        assert_ne!(a, b);
        assert_eq!(fs::read(&b).unwrap(), b"two");
        assert_eq!(fs::metadata(cache.dir()).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn concurrent_stores_of_the_same_bytes_never_collide() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = PluginCache::open(&tmp.path().join("cache")).unwrap();
        let bytes = vec![7u8; 1 << 20];
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let p = cache.store("cc", &bytes).unwrap();
                        assert_eq!(fs::read(p).unwrap().len(), bytes.len());
                    }
                });
            }
        });
    }

    #[test]
    fn a_directory_others_can_enter_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("open");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(PluginCache::open(&d).is_err());
    }
}
