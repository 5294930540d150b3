//! # abkit-signing
//!
//! Key generation and signing of abkit strategy plugins, on the `minisign` crate. This is
//! the operator's side (the `abkit keygen` and `abkit sign` commands); services never link
//! minisign: the SDK verifies with the small verify-only `minisign-verify` (`abkit::trust`) and
//! links this crate without its `sign` feature, for [`metadata`] alone.
//!
//! ```
//! # #[cfg(not(feature = "sign"))] fn main() {}
//! # #[cfg(feature = "sign")]
//! # fn main() -> Result<(), abkit_signing::SigningError> {
//! # let dir = tempfile::tempdir().map_err(|e| abkit_signing::SigningError::Io { path: ".".into(), source: e })?;
//! # let out = dir.path();
//! # let plugin = out.join("libswitchback.so");
//! # std::fs::write(&plugin, b"...").map_err(|e| abkit_signing::SigningError::Io { path: plugin.clone(), source: e })?;
//! # let password: Option<String> = None; // None: unencrypted key (tests); Some(..) in real life
//! // Once: a key pair, `ops.pub` (goes into the SDK's `[trust]`) and `ops.key` (stays secret).
//! let (_pub_key, secret_key) = abkit_signing::keygen(out, "ops", password.clone())?;
//!
//! // Every release: `libswitchback.so.minisig` beside the plugin.
//! let expires = Some("2999-12-31T00:00:00Z".parse()?);
//! let sig = abkit_signing::sign(&secret_key, password, &plugin, "switchback", 7, expires)?;
//! assert!(sig.ends_with("libswitchback.so.minisig"));
//! # Ok(()) }
//! ```
//!
//! Signatures are standard prehashed (`ED`) minisign signatures whose trusted comment is
//! the v1 signed metadata ([`metadata`]), so the reference `minisign -V` verifies them and
//! keys from `minisign -G` sign with `sign` (`docs/plugin-signing.md`).
//!
//! ## Features
//!
//! - `sign` (default): key generation and signing, on `minisign`. Without it the crate is
//!   only [`metadata`], which uses nothing but `std`: the v1 format (written here, parsed by
//!   the SDK's loader), the plugin-name rule, the plugin size limit and the UTC calendar. The
//!   SDK links the crate that way, so both sides share one implementation of each rule.

#[cfg(feature = "sign")]
mod error;
#[cfg(feature = "sign")]
mod keys;
pub mod metadata;
#[cfg(feature = "sign")]
mod sign;

// Public API.
#[cfg(feature = "sign")]
pub use error::SigningError;
#[cfg(feature = "sign")]
pub use keys::{key_id_hex, key_is_encrypted, keygen, prompt_new_password, prompt_password};
pub use metadata::{UtcTime, PLUGIN_MAX_BYTES};
#[cfg(feature = "sign")]
pub use sign::{sign, sign_plugin, SignedPlugin};
