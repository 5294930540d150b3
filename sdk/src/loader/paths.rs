//! Where a plugin may be read from: no `..`, no symlinks, nothing others can write.

use super::LoadError;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

/// Checks a configured plugin or signature path before anything is read from it.
pub(crate) fn check(path: &Path) -> Result<(), LoadError> {
    let refuse = |detail: String| LoadError::UnsafePath {
        path: path.to_path_buf(),
        detail,
    };
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(refuse(
            "contains `..`; give a path without parent-directory steps".into(),
        ));
    }
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(refuse(format!("cannot stat: {e}"))),
    };
    if meta.file_type().is_symlink() {
        return Err(refuse(
            "is a symlink; point the config at the file itself".into(),
        ));
    }
    if !meta.is_file() {
        return Err(refuse("is not a regular file".into()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "is writable by group or others (mode {:o}); chmod go-w",
            meta.mode() & 0o777
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let pm =
            fs::metadata(parent).map_err(|e| refuse(format!("cannot stat its directory: {e}")))?;
        // A sticky directory (like /tmp) keeps others from replacing our files.
        if pm.mode() & 0o022 != 0 && pm.mode() & 0o1000 == 0 {
            return Err(refuse(format!(
                "its directory {} is writable by group or others (mode {:o}); chmod go-w",
                parent.display(),
                pm.mode() & 0o777
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parent_steps_symlinks_and_writable_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("lib.so");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        check(&f).unwrap();
        assert!(matches!(
            check(&tmp.path().join("a/../lib.so")),
            Err(LoadError::UnsafePath { .. })
        ));
        let link = tmp.path().join("link.so");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(matches!(check(&link), Err(LoadError::UnsafePath { .. })));
        fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(check(&f), Err(LoadError::UnsafePath { .. })));
        assert!(matches!(
            check(&tmp.path().join("none.so")),
            Err(LoadError::Missing { .. })
        ));
    }
}
