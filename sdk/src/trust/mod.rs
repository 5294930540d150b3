//! Trust: the first gate of the plugin loader (`spec/plugin-signing.md`).
//!
//! Nothing of a plugin is mapped or run before these checks pass on the exact bytes that
//! will be loaded:
//!
//! 1. [`read_capped`] reads the plugin and its `.minisig` once, with size caps checked
//!    before reading ([`PLUGIN_MAX_BYTES`], [`SIGNATURE_MAX_BYTES`]);
//! 2. [`TrustStore::verify`] checks the minisign signature against the trusted keys (prehashed
//!    `ED` only, key id among the trusted ones, signature and global signature), then the
//!    signed metadata of the trusted comment ([`parse_trusted_comment`]): name, expiry, SHA-256;
//! 3. [`VersionLedger::check`] refuses a rollback, and [`VersionLedger::record`] remembers
//!    the version once the plugin is accepted.
//!
//! ```
//! use abkit::trust::{TrustError, TrustStore, VersionLedger};
//! use std::time::SystemTime;
//!
//! # fn main() -> Result<(), TrustError> {
//! # let trust = abkit::config::TrustConfig::default();
//! // `trust` is the `[trust]` table of a validated `Config`.
//! let store = TrustStore::from_config(&trust)?;
//! let mut ledger = VersionLedger::in_memory();
//! # let (plugin_bytes, signature_text) = (b"...".to_vec(), String::new());
//! // bytes read once with read_capped(); the loader then maps exactly these bytes.
//! match store.verify("switchback", &plugin_bytes, &signature_text, SystemTime::now()) {
//!     Ok(meta) => {
//!         ledger.check(&meta)?;
//!         // ... load, probe, then:
//!         ledger.record(&meta)?;
//!     }
//!     Err(refusal) => eprintln!("refused ({}): {refusal}", refusal.reason()),
//! }
//! # Ok(()) }
//! ```

mod envelope;
mod error;
mod ledger;
mod metadata;
mod store;

pub use error::TrustError;
pub use ledger::{VersionLedger, LEDGER_FILE};
pub use metadata::{parse_trusted_comment, ParsedComment, SignedMetadata};
pub use store::{signature_text, TrustStore};

use std::fmt;
use std::io::Read;
use std::path::Path;

/// Largest signature file read: 4 KiB.
pub const SIGNATURE_MAX_BYTES: u64 = 4096;
/// Largest plugin file read: 256 MiB.
pub const PLUGIN_MAX_BYTES: u64 = 256 << 20;

/// What a file is read as (for limits and messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// A plugin library.
    Plugin,
    /// A `.minisig` signature; a missing one is [`TrustError::SignatureMissing`].
    Signature,
    /// A minisign `.pub` public key.
    PublicKey,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Plugin => "plugin",
            FileKind::Signature => "signature",
            FileKind::PublicKey => "public key",
        })
    }
}

/// Reads a regular file of at most `cap` bytes. The size is checked before reading (the
/// path's metadata, then again on the opened file in case the path changed in between),
/// and the read itself stops after `cap + 1` bytes, so a file that grows meanwhile is
/// refused too. Errors name the path.
pub fn read_capped(path: &Path, cap: u64, what: FileKind) -> Result<Vec<u8>, TrustError> {
    let io = |source| TrustError::Io {
        path: path.to_path_buf(),
        source,
    };
    let open_error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound && what == FileKind::Signature {
            TrustError::SignatureMissing {
                path: path.to_path_buf(),
            }
        } else {
            io(source)
        }
    };
    let too_large = |size| TrustError::TooLarge {
        path: path.to_path_buf(),
        kind: what,
        size,
        limit: cap,
    };
    let check = |meta: std::fs::Metadata| {
        if !meta.is_file() {
            let detail = format!("not a regular {what} file");
            Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                detail,
            )))
        } else if meta.len() > cap {
            Err(too_large(meta.len()))
        } else {
            Ok(meta.len())
        }
    };
    check(std::fs::metadata(path).map_err(open_error)?)?;
    let file = std::fs::File::open(path).map_err(open_error)?;
    let len = check(file.metadata().map_err(io)?)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn read_capped_refuses_missing_oversized_and_odd_files_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("p.so");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_capped(&small, 5, FileKind::Plugin).unwrap(), b"12345");

        let cases = [
            (read_capped(&small, 4, FileKind::Plugin), "too_large"),
            (
                read_capped(&dir.path().join("p.so.minisig"), 4096, FileKind::Signature),
                "signature_missing",
            ),
            (
                read_capped(&dir.path().join("q.so"), 4096, FileKind::Plugin),
                "io",
            ),
            (read_capped(dir.path(), 4096, FileKind::Plugin), "io"),
        ];
        for (result, reason) in cases {
            let e = result.unwrap_err();
            assert_eq!(e.reason(), reason, "{e}");
            assert!(
                e.to_string().contains(&dir.path().display().to_string()),
                "{e}"
            );
        }
    }
}
