//! The v1 signed metadata (the trusted comment), parsed strictly.
//!
//! `abkit-plugin v1 name=<name> version=<version> sha256=<hex> [expires=YYYY-MM-DDTHH:MM:SSZ]`:
//! single spaces, this field order; an unknown, duplicate, missing or malformed field is
//! refused with an error naming it (`docs/plugin-signing.md`). The format has one home, shared
//! with the writer (`abkit sign`): `abkit_signing::metadata`, linked without its minisign part.
//! This module adds what only the loader needs: the [`TrustError`] and what a verified
//! signature vouches for.

use super::TrustError;
pub use abkit_signing::metadata::ParsedComment;
use abkit_signing::metadata::{format_utc, hex, CommentError};

/// What a verified signature vouches for: the signed metadata and the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMetadata {
    /// The plugin's name (equal to the configured name once verified).
    pub name: String,
    /// The release number.
    pub version: u64,
    /// SHA-256 of the plugin bytes.
    pub sha256: [u8; 32],
    /// Unix seconds after which the plugin is refused, if any.
    pub expires: Option<u64>,
    /// Id of the signing key, as minisign prints it (16 uppercase hex digits).
    pub key_id: String,
}

impl SignedMetadata {
    /// The SHA-256 as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }

    /// The expiry as `YYYY-MM-DDTHH:MM:SSZ`, if any.
    pub fn expires_utc(&self) -> Option<String> {
        self.expires.map(format_utc)
    }
}

/// Parses a v1 trusted comment strictly (see the module docs); a malformed one is
/// [`TrustError::BadMetadata`] naming the field at fault.
pub fn parse_trusted_comment(comment: &str) -> Result<ParsedComment, TrustError> {
    abkit_signing::metadata::parse_trusted_comment(comment)
        .map_err(|CommentError { field, detail }| TrustError::metadata(field, detail))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::outcome::RefusalReason;

    const SHA: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    // Every malformation and its field: `abkit_signing::metadata`'s tests. Here: the mapping.
    #[test]
    fn a_malformed_comment_is_bad_metadata_naming_its_field() {
        for (comment, field) in [
            (String::new(), "format"),
            (
                format!("abkit-plugin v2 name=x version=1 sha256={SHA}"),
                "format version",
            ),
            (
                format!("abkit-plugin v1 name=x version=01 sha256={SHA}"),
                "version",
            ),
            (
                format!(
                    "abkit-plugin v1 name=x version=1 sha256={SHA} expires=2030-02-30T00:00:00Z"
                ),
                "expires",
            ),
        ] {
            let e = parse_trusted_comment(&comment).unwrap_err();
            assert_eq!(e.reason(), RefusalReason::BadMetadata, "{e}");
            match &e {
                TrustError::BadMetadata { field: f, .. } => assert_eq!(f, field, "{comment:?}"),
                other => panic!("{comment:?} gave {other:?}"),
            }
            assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
        }
        let c = parse_trusted_comment(&format!(
            "abkit-plugin v1 name=x version=2 sha256={SHA} expires=2030-01-31T12:00:00Z"
        ))
        .unwrap();
        let meta = SignedMetadata {
            name: c.name,
            version: c.version,
            sha256: c.sha256,
            expires: c.expires,
            key_id: "0".repeat(16),
        };
        assert_eq!(meta.sha256_hex(), SHA);
        assert_eq!(meta.expires_utc().as_deref(), Some("2030-01-31T12:00:00Z"));
    }
}
