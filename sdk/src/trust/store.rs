//! [`TrustStore`]: the trusted public keys, and the verification of one plugin against them.

use super::envelope::{self, key_id_hex};
use super::metadata::{parse_trusted_comment, SignedMetadata};
use super::{read_capped, FileKind, TrustError};
use crate::config::TrustConfig;
use abkit_signing::metadata::{format_utc, hex};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest public key file read (a real one is about 110 bytes).
const KEY_FILE_MAX_BYTES: u64 = 4096;

/// The trusted minisign public keys; several at once, for key rotation.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
}

#[derive(Debug, Clone)]
struct TrustedKey {
    id: [u8; 8],
    raw: Vec<u8>,
    key: minisign_verify::PublicKey,
}

impl TrustStore {
    /// The keys of a `[trust]` table: inline base64 keys, then `.pub` files (the two-line
    /// minisign file, or its base64 line alone). No key at all gives an empty store, which
    /// refuses every plugin ([`TrustError::NoTrustedKeys`]).
    pub fn from_config(trust: &TrustConfig) -> Result<TrustStore, TrustError> {
        let mut store = TrustStore::default();
        for (index, line) in trust.public_keys.iter().enumerate() {
            let key = parse_key_line(line.trim())
                .map_err(|detail| TrustError::PublicKey { index, detail })?;
            store
                .add(key)
                .map_err(|detail| TrustError::PublicKey { index, detail })?;
        }
        for path in &trust.public_key_files {
            let key_file_error = |detail: String| TrustError::KeyFile {
                path: path.clone(),
                detail,
            };
            let bytes = read_capped(path, KEY_FILE_MAX_BYTES, FileKind::PublicKey).map_err(
                |e| match e {
                    TrustError::Io { source, .. } => {
                        key_file_error(format!("cannot read it ({source})"))
                    }
                    other => other,
                },
            )?;
            let text =
                std::str::from_utf8(&bytes).map_err(|_| key_file_error("not text".into()))?;
            let key = parse_key_file(text).map_err(key_file_error)?;
            store.add(key).map_err(key_file_error)?;
        }
        Ok(store)
    }

    /// Ids of the trusted keys, as minisign prints them: 16 uppercase hex digits (the C
    /// `minisign` tool prints the same number without leading zeros).
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| key_id_hex(&k.id)).collect()
    }

    /// Whether the key with this id (as [`TrustStore::key_ids`] prints it) is trusted.
    pub fn trusts(&self, key_id: &str) -> bool {
        self.keys
            .iter()
            .any(|k| key_id_hex(&k.id).eq_ignore_ascii_case(key_id))
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn add(&mut self, key: TrustedKey) -> Result<(), String> {
        match self.keys.iter().find(|k| k.id == key.id) {
            Some(k) if k.raw == key.raw => Ok(()), // the same key twice
            Some(_) => Err(format!(
                "key id {} is already trusted with a different key; remove one of the two",
                key_id_hex(&key.id)
            )),
            None => {
                self.keys.push(key);
                Ok(())
            }
        }
    }

    /// Checks a plugin: every check of `docs/plugin-signing.md` except rollback (see
    /// [`VersionLedger`](super::VersionLedger)), on the exact bytes that will be loaded.
    ///
    /// In order: the signature decodes -> it is prehashed (`ED`) -> its key is trusted ->
    /// the signature over the bytes and the global signature over the trusted comment hold
    /// -> the trusted comment is v1 metadata -> its name is `configured_name` -> it has not
    /// expired at `now` -> the SHA-256 of `plugin_bytes` is the signed one.
    pub fn verify(
        &self,
        configured_name: &str,
        plugin_bytes: &[u8],
        signature_text: &str,
        now: SystemTime,
    ) -> Result<SignedMetadata, TrustError> {
        if self.keys.is_empty() {
            return Err(TrustError::NoTrustedKeys);
        }
        let env = envelope::decode(signature_text)?;
        if !env.prehashed {
            return Err(TrustError::LegacyAlgorithm);
        }
        let Some(key) = self.keys.iter().find(|k| k.id == env.key_id) else {
            return Err(TrustError::UnknownKeyId {
                key_id: key_id_hex(&env.key_id),
                trusted: self.key_ids(),
            });
        };
        let sig = minisign_verify::Signature::decode(signature_text)
            .map_err(|e| TrustError::malformed(e.to_string().to_lowercase()))?;
        key.key
            .verify(plugin_bytes, &sig, false)
            .map_err(|e| match e {
                minisign_verify::Error::InvalidSignature => TrustError::BadSignature,
                minisign_verify::Error::UnexpectedAlgorithm
                | minisign_verify::Error::UnsupportedLegacyMode => TrustError::LegacyAlgorithm,
                other => TrustError::malformed(other.to_string().to_lowercase()),
            })?;

        let meta = parse_trusted_comment(sig.trusted_comment())?;
        if meta.name != configured_name {
            return Err(TrustError::NameMismatch {
                signed: meta.name,
                configured: configured_name.to_string(),
            });
        }
        if let Some(expires) = meta.expires {
            let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if now > expires {
                return Err(TrustError::Expired {
                    expires: format_utc(expires),
                });
            }
        }
        let actual: [u8; 32] = Sha256::digest(plugin_bytes).into();
        if actual != meta.sha256 {
            return Err(TrustError::DigestMismatch {
                signed: hex(&meta.sha256),
                actual: hex(&actual),
            });
        }
        Ok(SignedMetadata {
            name: meta.name,
            version: meta.version,
            sha256: meta.sha256,
            expires: meta.expires,
            key_id: key_id_hex(&key.id),
        })
    }
}

/// A `.pub` file: `untrusted comment: ...` then the base64 line, or the base64 line alone.
fn parse_key_file(text: &str) -> Result<TrustedKey, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines[..] {
        [line] => parse_key_line(line),
        [comment, line] if comment.starts_with("untrusted comment:") => parse_key_line(line),
        _ => Err(format!(
            "expected `untrusted comment: ...` and a base64 line, or the base64 line alone; found {} lines",
            lines.len()
        )),
    }
}

/// The base64 line of a minisign public key: `Ed`, 8 bytes key id, 32 bytes Ed25519 key.
fn parse_key_line(line: &str) -> Result<TrustedKey, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| "not a base64 minisign public key".to_string())?;
    if raw.len() != 42 {
        return Err(format!(
            "decodes to {} bytes; a minisign public key has 42",
            raw.len()
        ));
    }
    if &raw[0..2] != b"Ed" {
        return Err("not an Ed25519 minisign public key (it does not start with `Ed`)".to_string());
    }
    let key =
        minisign_verify::PublicKey::from_base64(line).map_err(|e| e.to_string().to_lowercase())?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&raw[2..10]);
    Ok(TrustedKey { id, raw, key })
}

/// Text of a signature file read by [`read_capped`]; non-UTF-8 is a malformed signature.
pub fn signature_text(bytes: &[u8]) -> Result<&str, TrustError> {
    std::str::from_utf8(bytes)
        .map_err(|_| TrustError::malformed("the signature file is not text (not UTF-8)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::envelope::tests::synthetic;
    use super::*;
    use crate::outcome::RefusalReason;

    fn key_line(id: [u8; 8]) -> String {
        let mut raw = b"Ed".to_vec();
        raw.extend_from_slice(&id);
        raw.extend_from_slice(&[0x42; 32]);
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    fn store(ids: &[[u8; 8]]) -> TrustStore {
        let trust = TrustConfig {
            public_keys: ids.iter().map(|id| key_line(*id)).collect(),
            ..Default::default()
        };
        TrustStore::from_config(&trust).unwrap()
    }

    const COMMENT: &str = "abkit-plugin v1 name=x version=1 sha256=00";

    #[test]
    fn keys_come_inline_and_from_both_file_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let two_lines = dir.path().join("a.pub");
        std::fs::write(
            &two_lines,
            format!(
                "untrusted comment: minisign public key\n{}\n",
                key_line([2; 8])
            ),
        )
        .unwrap();
        let bare = dir.path().join("b.pub");
        std::fs::write(&bare, key_line([3; 8])).unwrap();
        let trust = TrustConfig {
            public_keys: vec![key_line([1; 8]), key_line([1; 8])],
            public_key_files: vec![two_lines, bare],
            ..Default::default()
        };
        let s = TrustStore::from_config(&trust).unwrap();
        assert_eq!(
            s.key_ids(),
            ["0101010101010101", "0202020202020202", "0303030303030303"]
        );
        assert!(!s.is_empty());
        assert!(TrustStore::from_config(&TrustConfig::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_keys_are_refused_with_where_they_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let inline = TrustConfig {
            public_keys: vec![key_line([1; 8]), "nope".into()],
            ..Default::default()
        };
        let e = TrustStore::from_config(&inline).unwrap_err();
        assert!(matches!(e, TrustError::PublicKey { index: 1, .. }), "{e}");
        assert!(e.to_string().contains("trust.public_keys[1]"), "{e}");

        let junk = dir.path().join("junk.pub");
        std::fs::write(&junk, "a\nb\nc\n").unwrap();
        for path in [junk, dir.path().join("missing.pub")] {
            let trust = TrustConfig {
                public_key_files: vec![path.clone()],
                ..Default::default()
            };
            let e = TrustStore::from_config(&trust).unwrap_err();
            assert_eq!(e.reason(), RefusalReason::BadKeyFile, "{e}");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }

        let mut other = b"Ed".to_vec();
        other.extend_from_slice(&[1; 8]);
        other.extend_from_slice(&[0x43; 32]);
        let clash = base64::engine::general_purpose::STANDARD.encode(other);
        let trust = TrustConfig {
            public_keys: vec![key_line([1; 8]), clash],
            ..Default::default()
        };
        let e = TrustStore::from_config(&trust).unwrap_err();
        assert!(
            e.to_string()
                .contains("already trusted with a different key"),
            "{e}"
        );
    }

    #[test]
    fn verification_checks_in_order_up_to_the_signature() {
        let now = SystemTime::now();
        let s = store(&[[1; 8], [2; 8]]);
        let e = TrustStore::default()
            .verify("x", b"", &synthetic(b"ED", &[1; 8], COMMENT), now)
            .unwrap_err();
        assert_eq!(e.reason(), RefusalReason::NoTrustedKeys);
        let e = s.verify("x", b"", "junk", now).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::MalformedSignature);
        let e = s
            .verify("x", b"", &synthetic(b"Ed", &[9; 8], COMMENT), now)
            .unwrap_err();
        assert_eq!(e.reason(), RefusalReason::LegacyAlgorithm);
        let e = s
            .verify("x", b"", &synthetic(b"ED", &[9; 8], COMMENT), now)
            .unwrap_err();
        assert_eq!(e.reason(), RefusalReason::UnknownKeyId);
        let msg = e.to_string();
        for id in ["0909090909090909", "0101010101010101", "0202020202020202"] {
            assert!(msg.contains(id), "{msg}");
        }
        let e = s
            .verify("x", b"", &synthetic(b"ED", &[2; 8], COMMENT), now)
            .unwrap_err();
        assert_eq!(e.reason(), RefusalReason::BadSignature, "{e}");
    }

    #[test]
    fn non_utf8_signature_files_are_malformed() {
        assert_eq!(
            signature_text(&[0xff, 0xfe]).unwrap_err().reason(),
            RefusalReason::MalformedSignature
        );
        assert_eq!(signature_text(b"ok").unwrap(), "ok");
    }
}
