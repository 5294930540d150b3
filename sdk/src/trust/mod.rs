//! Trust: the first gate of the plugin loader (`docs/plugin-signing.md`).
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
//! use abkit::{TrustError, TrustStore, VersionLedger};
//! use std::time::SystemTime;
//!
//! # fn main() -> Result<(), TrustError> {
//! # let trust = abkit::TrustConfig::default();
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

pub(crate) use abkit_signing::metadata::format_utc;
pub use error::TrustError;
#[cfg(feature = "etcd")]
pub(crate) use ledger::StateDir;
pub use ledger::{VersionLedger, LEDGER_FILE};
pub use metadata::{parse_trusted_comment, ParsedComment, SignedMetadata};
pub use store::{signature_text, TrustStore};

use std::fmt;
use std::path::Path;

/// Largest signature file read: 4 KiB.
pub const SIGNATURE_MAX_BYTES: u64 = 4096;
/// Largest plugin file read: 256 MiB (the limit `abkit sign` enforces too: one constant for both).
pub use abkit_signing::metadata::PLUGIN_MAX_BYTES;

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

/// Reads a regular file of at most `cap` bytes (the same primitive as the config reader): opened
/// non-blocking (a FIFO never hangs), plugins and signatures with `O_NOFOLLOW` (a symlink is
/// refused), the type and size checked with `fstat` on the opened file (a FIFO, device or
/// directory is refused at once), and the read itself stops after `cap + 1` bytes, so a file
/// that grows meanwhile is refused too. Errors name the path; a missing signature is
/// [`TrustError::SignatureMissing`].
pub fn read_capped(path: &Path, cap: u64, what: FileKind) -> Result<Vec<u8>, TrustError> {
    use crate::files::{read_regular_capped, FileReadError};
    let follow_symlinks = match what {
        FileKind::Plugin | FileKind::Signature => false,
        FileKind::PublicKey => true,
    };
    read_regular_capped(path, cap, follow_symlinks).map_err(|e| match e {
        FileReadError::NotFound { .. } if what == FileKind::Signature => {
            TrustError::SignatureMissing {
                path: path.to_path_buf(),
            }
        }
        FileReadError::TooLarge { size, limit, .. } => TrustError::TooLarge {
            path: path.to_path_buf(),
            kind: what,
            size,
            limit,
        },
        other => TrustError::Io {
            path: path.to_path_buf(),
            source: other.into_io_error(),
        },
    })
}

/// What a signature file claims, read ([`read_capped`]) and parsed but **not verified**: the
/// minisign envelope decodes and its trusted comment is v1 metadata ([`parse_trusted_comment`]).
/// For `abkit check` (a signature that cannot even be parsed) and for reports naming the version
/// a refused candidate was signed as; never a reason to trust anything.
pub fn read_claimed_metadata(path: &Path) -> Result<ParsedComment, TrustError> {
    let bytes = read_capped(path, SIGNATURE_MAX_BYTES, FileKind::Signature)?;
    let text = signature_text(&bytes)?;
    envelope::decode(text)?;
    let sig = minisign_verify::Signature::decode(text)
        .map_err(|e| TrustError::malformed(e.to_string().to_lowercase()))?;
    parse_trusted_comment(sig.trusted_comment())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::outcome::RefusalReason;

    #[test]
    fn claimed_metadata_is_parsed_without_verification() {
        let dir = tempfile::tempdir().unwrap();
        let sig = dir.path().join("p.so.minisig");
        let comment = format!(
            "abkit-plugin v1 name=p version=7 sha256={}",
            "ab".repeat(32)
        );
        std::fs::write(&sig, envelope::tests::synthetic(b"ED", &[1; 8], &comment)).unwrap();
        let claimed = read_claimed_metadata(&sig).unwrap();
        assert_eq!((claimed.name.as_str(), claimed.version), ("p", 7));
        std::fs::write(&sig, "junk").unwrap();
        assert_eq!(
            read_claimed_metadata(&sig).unwrap_err().reason(),
            RefusalReason::MalformedSignature
        );
        let missing = read_claimed_metadata(&dir.path().join("none.minisig")).unwrap_err();
        assert_eq!(missing.reason(), RefusalReason::SignatureMissing);
    }

    #[test]
    fn read_capped_refuses_missing_oversized_and_odd_files_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("p.so");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_capped(&small, 5, FileKind::Plugin).unwrap(), b"12345");

        let cases = [
            (
                read_capped(&small, 4, FileKind::Plugin),
                RefusalReason::TooLarge,
            ),
            (
                read_capped(&dir.path().join("p.so.minisig"), 4096, FileKind::Signature),
                RefusalReason::SignatureMissing,
            ),
            (
                read_capped(&dir.path().join("q.so"), 4096, FileKind::Plugin),
                RefusalReason::Io,
            ),
            (
                read_capped(dir.path(), 4096, FileKind::Plugin),
                RefusalReason::Io,
            ),
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

    #[test]
    fn read_capped_refuses_fifos_devices_and_symlinked_plugins_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("key.pub");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let started = std::time::Instant::now();
        for what in [FileKind::PublicKey, FileKind::Signature, FileKind::Plugin] {
            // Before: refused as "not a regular file" after a path lookup; a FIFO swapped in
            // between that lookup and the open hung. Run on a thread so a hang fails the test.
            let (tx, rx) = std::sync::mpsc::channel();
            let path = fifo.clone();
            std::thread::spawn(move || tx.send(read_capped(&path, 4096, what)));
            let e = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("blocked on a FIFO")
                .unwrap_err();
            assert_eq!(e.reason(), RefusalReason::Io, "{e}");
            let msg = e.to_string();
            assert!(msg.contains("key.pub") && msg.contains("FIFO"), "{msg}");
        }
        let e =
            read_capped(Path::new("/dev/zero"), PLUGIN_MAX_BYTES, FileKind::Plugin).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));

        // Plugins and signatures: O_NOFOLLOW. Public key files may be links.
        let lib = dir.path().join("real.so");
        std::fs::write(&lib, b"bytes").unwrap();
        let link = dir.path().join("link.so");
        std::os::unix::fs::symlink(&lib, &link).unwrap();
        for what in [FileKind::Plugin, FileKind::Signature] {
            let e = read_capped(&link, 4096, what).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        assert_eq!(
            read_capped(&link, 4096, FileKind::PublicKey).unwrap(),
            b"bytes"
        );
    }
}
