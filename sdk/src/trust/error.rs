//! [`TrustError`]: every reason a plugin is refused before it is loaded.

use super::FileKind;
use crate::outcome::RefusalReason;
use std::path::PathBuf;

/// Why a plugin (or the trust configuration) was refused. Each variant has a stable
/// snake_case [`reason`](TrustError::reason) code for status, metrics and tests; messages
/// are lowercase, name the thing and say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The `.minisig` file does not exist.
    #[error(
        "signature file {path} does not exist; sign the plugin (`abkit sign`, or `minisign -S` with an \
         `abkit-plugin v1` trusted comment) and put the .minisig beside it, or set the plugin's `signature` path",
        path = path.display()
    )]
    SignatureMissing {
        /// The missing signature file.
        path: PathBuf,
    },
    /// A file is over its size limit; it was not read.
    #[error(
        "{kind} file {path} is {size} bytes, over the limit of {limit} bytes, so it was refused unread; \
         check that the path names the right file",
        path = path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What the file was read as.
        kind: FileKind,
        /// Its size (or how much of it was read before stopping).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A file could not be read (or the ledger written).
    #[error("i/o error on {path}: {source}; check the path and its permissions", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The signature is not a well-formed minisign signature.
    #[error("malformed signature: {detail}; expected a minisign .minisig file (re-sign the plugin with `abkit sign`)")]
    MalformedSignature {
        /// What is wrong with it.
        detail: String,
    },
    /// A legacy, non-prehashed (`Ed`) signature.
    #[error(
        "the signature uses the legacy non-prehashed algorithm (made by `minisign -l`), which is refused; \
         re-sign the plugin without -l (`abkit sign` or `minisign -S`)"
    )]
    LegacyAlgorithm,
    /// The signature was made by a key that is not trusted.
    #[error(
        "the signature was made by key {key_id}, which is not trusted (trusted keys: {}); \
         add its public key to [trust] or re-sign the plugin with a trusted key",
        if trusted.is_empty() { "none".to_string() } else { trusted.join(", ") }
    )]
    UnknownKeyId {
        /// Id of the signing key, as minisign prints it.
        key_id: String,
        /// Ids of the trusted keys.
        trusted: Vec<String>,
    },
    /// The signature (over the plugin bytes, or the global one over the trusted comment) is invalid.
    #[error(
        "bad signature: the plugin bytes or the signed metadata were changed after signing, or the \
         .minisig belongs to another file; deploy the matching .minisig or re-sign the plugin"
    )]
    BadSignature,
    /// The trusted comment is not valid v1 signed metadata.
    #[error(
        "signed metadata, field `{field}`: {detail}; re-sign with `abkit sign` (trusted comment format: \
         `abkit-plugin v1 name=<name> version=<version> sha256=<hex> [expires=YYYY-MM-DDTHH:MM:SSZ]`)"
    )]
    BadMetadata {
        /// The field at fault (`name`, `version`, `sha256`, `expires`, or `format`, `format version`, `separator`).
        field: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The signed name is not the name the configuration gives the plugin.
    #[error(
        "the plugin is signed as `{signed}` but configured as `{configured}`; point `{configured}` at its own \
         file, or fix the name in the configuration"
    )]
    NameMismatch {
        /// The name in the signed metadata.
        signed: String,
        /// The name in the configuration.
        configured: String,
    },
    /// The signed `expires` time has passed.
    #[error("the signature expired at {expires}; re-sign the plugin with a later --expires")]
    Expired {
        /// The expiry, `YYYY-MM-DDTHH:MM:SSZ`.
        expires: String,
    },
    /// The file's SHA-256 is not the signed one.
    #[error(
        "digest mismatch: the plugin's sha256 is {actual} but the signed metadata says {signed}; \
         the signed metadata describes another file: re-sign the plugin"
    )]
    DigestMismatch {
        /// Signed SHA-256 (lowercase hex).
        signed: String,
        /// SHA-256 of the bytes (lowercase hex).
        actual: String,
    },
    /// The version is lower than one already accepted for this name.
    #[error(
        "rollback refused: plugin `{name}` version {version} is older than version {highest}, which was already \
         accepted; deploy version {highest} or newer"
    )]
    Rollback {
        /// The plugin name.
        name: String,
        /// The refused version.
        version: u64,
        /// The highest version accepted so far.
        highest: u64,
    },
    /// No public key is configured, so nothing can be verified.
    #[error(
        "no trusted public keys are configured; add `public_keys` or `public_key_files` to [trust] \
         (the .pub file written by `abkit keygen`)"
    )]
    NoTrustedKeys,
    /// A public key file is unreadable or not a minisign public key.
    #[error(
        "public key file {path}: {detail}; expected a minisign .pub file (two lines) or its base64 line alone",
        path = path.display()
    )]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// An inline public key (`trust.public_keys[index]`) is not a minisign public key.
    #[error("trust.public_keys[{index}]: {detail}; paste the base64 line of a minisign public key (the second line of the .pub file)")]
    PublicKey {
        /// Index in `public_keys`.
        index: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// The version ledger in the state directory cannot be used.
    #[error(
        "version ledger {path}: {detail}; fix it, or delete it to forget the accepted versions (which allows \
         rollbacks to older versions once)",
        path = path.display()
    )]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The state directory cannot be trusted to keep rollback protection (a symlink, owned by
    /// another user, or writable by group or others): plugins are refused (fail closed).
    #[error(
        "state directory {path}: {detail}; rollback protection cannot be trusted there, so plugins are \
         refused. Use a directory owned by this user (or root), not a symlink, with mode 0700 \
         (e.g. `install -d -m 700 DIR`)",
        path = path.display()
    )]
    InsecureStateDir {
        /// The configured state directory.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl TrustError {
    /// Stable snake_case code of the refusal, for status, metrics and tests.
    pub fn reason(&self) -> RefusalReason {
        match self {
            TrustError::SignatureMissing { .. } => RefusalReason::SignatureMissing,
            TrustError::TooLarge { .. } => RefusalReason::TooLarge,
            TrustError::Io { .. } => RefusalReason::Io,
            TrustError::MalformedSignature { .. } => RefusalReason::MalformedSignature,
            TrustError::LegacyAlgorithm => RefusalReason::LegacyAlgorithm,
            TrustError::UnknownKeyId { .. } => RefusalReason::UnknownKeyId,
            TrustError::BadSignature => RefusalReason::BadSignature,
            TrustError::BadMetadata { .. } => RefusalReason::BadMetadata,
            TrustError::NameMismatch { .. } => RefusalReason::NameMismatch,
            TrustError::Expired { .. } => RefusalReason::Expired,
            TrustError::DigestMismatch { .. } => RefusalReason::DigestMismatch,
            TrustError::Rollback { .. } => RefusalReason::Rollback,
            TrustError::NoTrustedKeys => RefusalReason::NoTrustedKeys,
            TrustError::KeyFile { .. } => RefusalReason::BadKeyFile,
            TrustError::PublicKey { .. } => RefusalReason::BadPublicKey,
            TrustError::Ledger { .. } => RefusalReason::BadLedger,
            TrustError::InsecureStateDir { .. } => RefusalReason::InsecureStateDir,
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> TrustError {
        TrustError::MalformedSignature {
            detail: detail.into(),
        }
    }

    pub(crate) fn metadata(field: impl Into<String>, detail: impl Into<String>) -> TrustError {
        TrustError::BadMetadata {
            field: field.into(),
            detail: detail.into(),
        }
    }
}
