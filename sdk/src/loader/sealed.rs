//! Where the verified bytes are mapped from: a sealed, anonymous memory file.
//!
//! The loader never opens a path that names the plugin after verification: any file on disk
//! (the configured one, or a copy in a cache directory) could be replaced, or be a symlink
//! planted by someone else, between the check and `dlopen` (TOCTOU). Instead the exact verified
//! bytes are written into a `memfd` that no other process can name, sealed against every
//! further change (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`), and `dlopen`
//! opens `/proc/self/fd/N`, which resolves to that descriptor only.
//!
//! The descriptor is kept open for the life of the process (the library is never unloaded):
//! the dynamic loader keeps the name `/proc/self/fd/N`, and a closed-then-reused `N` would make
//! a later `dlopen` of another library answer with this one.

use super::LoadError;
use rustix::fs::{MemfdFlags, SealFlags};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Verified plugin bytes in a sealed memfd.
#[derive(Debug)]
pub(crate) struct SealedImage {
    fd: OwnedFd,
}

const SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

impl SealedImage {
    /// Copies `bytes` into a new memfd named after the plugin and seals it.
    pub(crate) fn new(plugin: &str, bytes: &[u8], configured: &Path) -> Result<Self, LoadError> {
        let fail = |what: &str, e: std::io::Error| LoadError::Map {
            path: configured.to_path_buf(),
            detail: format!("{what}: {e}"),
        };
        let name: String = format!("abkit:{plugin}").chars().take(200).collect();
        let fd = rustix::fs::memfd_create(
            name.as_str(),
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| fail("memfd_create", e.into()))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)
            .map_err(|e| fail("writing the verified bytes", e))?;
        let fd = OwnedFd::from(file);
        rustix::fs::fcntl_add_seals(&fd, SEALS).map_err(|e| fail("sealing", e.into()))?;
        let seals =
            rustix::fs::fcntl_get_seals(&fd).map_err(|e| fail("reading seals", e.into()))?;
        if !seals.contains(SEALS) {
            return Err(fail(
                "sealing",
                std::io::Error::other(format!("seals {seals:?} missing some of {SEALS:?}")),
            ));
        }
        let st = rustix::fs::fstat(&fd).map_err(|e| fail("fstat", e.into()))?;
        if u64::try_from(st.st_size).ok() != Some(bytes.len() as u64) {
            return Err(fail(
                "size check",
                std::io::Error::other("the sealed file's size differs from the verified bytes"),
            ));
        }
        Ok(SealedImage { fd })
    }

    /// The path `dlopen` opens: this process's descriptor, resolved by the kernel, never a name
    /// on any file system.
    pub(crate) fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Keeps the descriptor open for the life of the process (see the module doc).
    pub(crate) fn keep_forever(self) {
        std::mem::forget(self.fd);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_image_holds_the_bytes_and_refuses_every_change() {
        let img = SealedImage::new("t", b"verified bytes", Path::new("t.so")).unwrap();
        let path = img.proc_path();
        assert_eq!(std::fs::read(&path).unwrap(), b"verified bytes");
        // Neither writes nor truncation nor growth get through, even through the descriptor.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_or_else(|_| std::fs::File::from(img.fd.try_clone().unwrap()));
        assert!(f.write_all(b"X").is_err());
        assert!(f.set_len(1).is_err());
        assert!(f.set_len(1 << 20).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"verified bytes");
        let link = std::fs::read_link(&path).unwrap();
        assert!(
            link.to_string_lossy().starts_with("/memfd:abkit:t"),
            "{link:?}"
        );
    }
}
