//! [`VersionLedger`]: the highest accepted version per plugin name (rollback protection).
//!
//! The ledger lives in the state directory, which must be a real directory (not a symlink)
//! owned by this process's user or root and not writable by group or others; anything else is
//! refused as `insecure_state_dir`, since another user who can delete or edit the ledger can
//! re-enable a rollback. The directory is opened once (no-follow) and every later access goes
//! through that descriptor, so a path swapped afterwards changes nothing. The ledger file is
//! read no-follow and non-blocking (a planted symlink or FIFO is refused, never followed or
//! waited on) and written through an exclusive, no-follow temporary file (`O_CREAT|O_EXCL|
//! O_NOFOLLOW`, mode 0600), fsynced, renamed into place, then the directory is fsynced.

use super::metadata::SignedMetadata;
use super::TrustError;
use crate::config::is_valid_plugin_name;
use rustix::fs::{Mode, OFlags};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// File name of the ledger inside the state directory.
pub const LEDGER_FILE: &str = "accepted-versions";
const HEADER: &str = "# abkit accepted plugin versions v1: the highest version accepted per plugin name. Do not lower.";
const LEDGER_MAX_BYTES: u64 = 1 << 20;

/// Highest accepted version per plugin name. With a state directory it is persisted
/// (exclusive temporary file, fsync, rename, directory fsync) and reloaded on start, so a
/// rollback is refused across restarts too. One process owns a state directory.
#[derive(Debug, Clone, Default)]
pub struct VersionLedger {
    versions: BTreeMap<String, u64>,
    store: Option<Store>,
}

/// The checked state directory, held open.
#[derive(Debug, Clone)]
struct Store {
    dir: Arc<OwnedFd>,
    path: PathBuf,
}

fn errno(e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::from(e)
}

impl VersionLedger {
    /// A ledger that lives as long as this process.
    pub fn in_memory() -> VersionLedger {
        VersionLedger::default()
    }

    /// Opens (or starts) the ledger of `state_dir`, creating the directory with mode 0700 if it
    /// does not exist. Refuses ([`TrustError::InsecureStateDir`]) a state directory that is a
    /// symlink, not a directory, owned by another user (root excepted), or writable by group
    /// or others; refuses ([`TrustError::Ledger`]) a ledger that is not a regular file.
    pub fn open(state_dir: &Path) -> Result<VersionLedger, TrustError> {
        let dir = StateDir::open(state_dir)?;
        let store = Store {
            dir: dir.fd,
            path: state_dir.join(LEDGER_FILE),
        };
        let versions = store.read()?;
        Ok(VersionLedger {
            versions,
            store: Some(store),
        })
    }

    /// Checks again that the held state directory is still owned by this user (or root) and not
    /// writable by group or others (its mode can change while the process runs). A no-op for an
    /// in-memory ledger.
    pub fn verify_state_dir(&self) -> Result<(), TrustError> {
        match &self.store {
            Some(store) => {
                let dir = store.path.parent().unwrap_or(Path::new("."));
                check_dir_owner_and_mode(dir, &store.dir)
            }
            None => Ok(()),
        }
    }

    /// The ledger file, if persisted.
    pub fn path(&self) -> Option<&Path> {
        self.store.as_ref().map(|s| s.path.as_path())
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
        match &self.store {
            Some(store) => store.write(&self.versions),
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
        match (&self.store, changed) {
            (Some(store), true) => store.write(&self.versions),
            _ => Ok(()),
        }
    }

    /// The highest version accepted for `name`, if any.
    pub fn highest(&self, name: &str) -> Option<u64> {
        self.versions.get(name).copied()
    }
}

/// A checked state directory, held open (the ledger's rules: created mode 0700 if missing, a
/// real directory, owned by this user or root, not writable by group or others). Other files
/// the SDK keeps there (the local copy of the last good etcd document) go through it, read
/// no-follow and written like the ledger (exclusive temporary file, fsync, rename, directory
/// fsync).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub(crate) struct StateDir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
impl StateDir {
    /// Opens (creating it if missing) and checks `state_dir`.
    pub(crate) fn open(state_dir: &Path) -> Result<StateDir, TrustError> {
        let insecure = |detail: String| TrustError::InsecureStateDir {
            path: state_dir.to_path_buf(),
            detail,
        };
        let io = |source| TrustError::Io {
            path: state_dir.to_path_buf(),
            source,
        };
        match fs::symlink_metadata(state_dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = state_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent).map_err(io)?;
                }
                let mut b = fs::DirBuilder::new();
                std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
                match b.create(state_dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io(e)),
                }
            }
            Err(e) => return Err(io(e)),
            Ok(_) => {}
        }
        let dir = rustix::fs::open(
            state_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP => insecure("is a symlink".into()),
            rustix::io::Errno::NOTDIR => insecure("is not a directory".into()),
            other => io(errno(other)),
        })?;
        check_dir_owner_and_mode(state_dir, &dir)?;
        Ok(StateDir {
            fd: Arc::new(dir),
            path: state_dir.to_path_buf(),
        })
    }

    /// The directory's path (for messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The contents of regular file `name` (at most `max_bytes`), `None` if it does not exist.
    /// A symlink or anything but a regular file is refused ([`TrustError::Ledger`]).
    pub(crate) fn read(&self, name: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, TrustError> {
        let path = self.path.join(name);
        let Some(f) = open_regular_at(&self.fd, name, &path)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        f.take(max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| TrustError::Io {
                path: path.clone(),
                source,
            })?;
        if bytes.len() as u64 > max_bytes {
            return Err(TrustError::Ledger {
                path,
                detail: format!("larger than {max_bytes} bytes"),
            });
        }
        Ok(Some(bytes))
    }

    /// Replaces file `name` with `bytes` atomically (mode 0600).
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TrustError> {
        write_atomic(&self.fd, name, &self.path.join(name), bytes)
    }
}

/// The state directory `fd` (named `path` in messages) must be owned by this process's user
/// or root, and not writable by group or others.
fn check_dir_owner_and_mode(path: &Path, fd: &OwnedFd) -> Result<(), TrustError> {
    let insecure = |detail: String| TrustError::InsecureStateDir {
        path: path.to_path_buf(),
        detail,
    };
    let st = rustix::fs::fstat(fd).map_err(|e| TrustError::Io {
        path: path.to_path_buf(),
        source: errno(e),
    })?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me && st.st_uid != 0 {
        return Err(insecure(format!(
            "is owned by uid {}, not by this process's uid {me} or root",
            st.st_uid
        )));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(insecure(format!(
            "has mode {mode:o}: writable by group or others"
        )));
    }
    Ok(())
}

impl Store {
    /// Reads the ledger: no-follow, non-blocking, a regular file only, size-capped.
    fn read(&self) -> Result<BTreeMap<String, u64>, TrustError> {
        match open_regular_at(&self.dir, LEDGER_FILE, &self.path)? {
            Some(f) => parse(&self.path, f),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Writes the ledger through an exclusive, no-follow temporary file in the held directory,
    /// fsyncs it, renames it over the ledger and fsyncs the directory.
    fn write(&self, versions: &BTreeMap<String, u64>) -> Result<(), TrustError> {
        let mut text = format!("{HEADER}\n");
        for (name, version) in versions {
            text.push_str(&format!("{name} {version}\n"));
        }
        write_atomic(&self.dir, LEDGER_FILE, &self.path, text.as_bytes())
    }
}

/// Opens `name` in `dir` no-follow and non-blocking; `None` if it does not exist. A symlink or
/// anything but a regular file is refused ([`TrustError::Ledger`], named `path`).
fn open_regular_at(dir: &OwnedFd, name: &str, path: &Path) -> Result<Option<fs::File>, TrustError> {
    let corrupt = |detail: &str| TrustError::Ledger {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => {
            return Err(corrupt("is a symlink; it is never read through one"))
        }
        Err(e) => {
            return Err(TrustError::Io {
                path: path.to_path_buf(),
                source: errno(e),
            })
        }
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| TrustError::Io {
        path: path.to_path_buf(),
        source: errno(e),
    })?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(corrupt("is not a regular file"));
    }
    Ok(Some(fs::File::from(fd)))
}

/// Writes `bytes` to `name` in `dir` (named `path` in messages) through an exclusive,
/// no-follow temporary file (mode 0600), fsyncs it, renames it into place and fsyncs the
/// directory.
fn write_atomic(
    dir: &Arc<OwnedFd>,
    name: &str,
    path: &Path,
    bytes: &[u8],
) -> Result<(), TrustError> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let fail = |source: std::io::Error| TrustError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A name taken (by a leftover, or by something planted there) is skipped, never reused.
    let mut last = None;
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = format!(
            ".{name}.tmp-{}-{}-{nanos:08x}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        );
        let fd = match rustix::fs::openat(
            &**dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => fd,
            Err(e) => {
                last = Some(errno(e));
                continue;
            }
        };
        let mut f = fs::File::from(fd);
        let written = f
            .write_all(bytes)
            .and_then(|()| f.sync_all())
            .and_then(|()| rustix::fs::renameat(&**dir, tmp.as_str(), &**dir, name).map_err(errno))
            .and_then(|()| rustix::fs::fsync(&**dir).map_err(errno));
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&**dir, tmp.as_str(), rustix::fs::AtFlags::empty());
            return Err(fail(e));
        }
        return Ok(());
    }
    Err(fail(last.unwrap_or_else(|| {
        std::io::Error::other("no free temporary file name")
    })))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::outcome::RefusalReason;

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
            RefusalReason::Rollback
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
            assert_eq!(e.reason(), RefusalReason::BadLedger, "{junk:?}: {e}");
            assert!(e.to_string().contains(LEDGER_FILE), "{e}");
        }
    }

    #[test]
    fn an_insecure_state_dir_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // World-writable.
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = VersionLedger::open(&open).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::InsecureStateDir, "{e}");
        assert!(e.to_string().contains("777"), "{e}");
        // Group-writable.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o770)).unwrap();
        assert_eq!(
            VersionLedger::open(&open).unwrap_err().reason(),
            RefusalReason::InsecureStateDir
        );
        // A symlink to a good directory.
        let good = dir.path().join("good");
        fs::create_dir(&good).unwrap();
        fs::set_permissions(&good, fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let e = VersionLedger::open(&link).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::InsecureStateDir, "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
        // A file.
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        assert_eq!(
            VersionLedger::open(&file).unwrap_err().reason(),
            RefusalReason::InsecureStateDir
        );
        // Owned by another user (only root can set that up).
        if rustix::process::geteuid().is_root() {
            let theirs = dir.path().join("theirs");
            fs::create_dir(&theirs).unwrap();
            fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let e = VersionLedger::open(&theirs).unwrap_err();
            assert_eq!(e.reason(), RefusalReason::InsecureStateDir, "{e}");
            assert!(e.to_string().contains("65534"), "{e}");
        }
        // The good one works.
        VersionLedger::open(&good).unwrap();
    }

    #[test]
    fn a_planted_symlink_or_fifo_at_the_ledger_is_refused_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        VersionLedger::open(&state).unwrap();
        std::os::unix::fs::symlink(&victim, state.join(LEDGER_FILE)).unwrap();
        let e = VersionLedger::open(&state).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::BadLedger, "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
        fs::remove_file(state.join(LEDGER_FILE)).unwrap();

        let fifo = state.join(LEDGER_FILE);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let started = std::time::Instant::now();
        let e = VersionLedger::open(&state).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::BadLedger, "{e}");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    #[test]
    fn writes_never_go_through_a_symlink_planted_at_the_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let mut l = VersionLedger::open(&state).unwrap();
        // Planted after the ledger was opened: the next write replaces the link, not its target.
        std::os::unix::fs::symlink(&victim, state.join(LEDGER_FILE)).unwrap();
        l.record(&meta("a", 3)).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        let m = fs::symlink_metadata(state.join(LEDGER_FILE)).unwrap();
        assert!(m.is_file());
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
            0o600
        );
        assert_eq!(VersionLedger::open(&state).unwrap().highest("a"), Some(3));
    }

    #[test]
    fn a_state_dir_swapped_after_opening_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut l = VersionLedger::open(&state).unwrap();
        // Someone renames the directory away and puts another in its place.
        fs::rename(&state, dir.path().join("moved")).unwrap();
        fs::create_dir(&state).unwrap();
        l.record(&meta("a", 4)).unwrap();
        assert!(!state.join(LEDGER_FILE).exists());
        assert!(dir.path().join("moved").join(LEDGER_FILE).exists());
    }
}
