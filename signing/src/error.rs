//! The one error type of this crate.

use std::path::PathBuf;

/// Everything key generation and signing can refuse. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The plugin name does not match `[a-z0-9][a-z0-9_-]{0,63}`.
    #[error(
        "invalid plugin name {name:?}: use 1 to 64 characters of a-z, 0-9, `_` and `-`, \
         starting with a letter or digit (the name the configuration gives the plugin)"
    )]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// The key name (file stem of `N.pub`/`N.key`) is not usable.
    #[error(
        "invalid key name {name:?}: use 1 to 64 characters of A-Z, a-z, 0-9, `_`, `-` and `.`, \
         starting with a letter or digit"
    )]
    InvalidKeyName {
        /// The refused name.
        name: String,
    },
    /// The expiry time is not `YYYY-MM-DDTHH:MM:SSZ`.
    #[error("invalid expiry time {value:?}: {detail}; write it as YYYY-MM-DDTHH:MM:SSZ (UTC), e.g. 2030-01-31T00:00:00Z")]
    InvalidExpires {
        /// The refused text.
        value: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The expiry time is already past: every loader would refuse the plugin.
    #[error("the expiry time {expires} is in the past, so every loader would refuse the plugin; choose a later time")]
    ExpiresInPast {
        /// The expiry, formatted.
        expires: String,
    },
    /// The secret key file does not exist.
    #[error(
        "secret key {path} not found; run `abkit keygen --out DIR` first, or pass the right --key"
    )]
    KeyNotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// A key file that keygen would write already exists.
    #[error(
        "{path} already exists and keys are never overwritten; choose another --name or --out"
    )]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The file is not a minisign secret key.
    #[error("{path} is not a usable minisign secret key ({detail}); pass the `.key` file written by `abkit keygen` or `minisign -G`")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The secret key is encrypted and no password was given.
    #[error("secret key {path} is encrypted and no password was given; set ABKIT_KEY_PASSWORD or enter it when asked")]
    PasswordRequired {
        /// The key file.
        path: PathBuf,
    },
    /// The password does not decrypt the secret key.
    #[error("wrong password for secret key {path}; check ABKIT_KEY_PASSWORD or what you typed")]
    WrongPassword {
        /// The key file.
        path: PathBuf,
    },
    /// An empty password was given for a new key.
    #[error("empty password; choose a password, or pass --unencrypted for a key without one")]
    EmptyPassword,
    /// The password could not be read from the terminal.
    #[error(
        "cannot ask for the password on a terminal ({source}); set ABKIT_KEY_PASSWORD instead"
    )]
    PasswordPrompt {
        /// Why reading the terminal failed.
        source: std::io::Error,
    },
    /// The two passwords typed differ.
    #[error("the passwords do not match; run the command again")]
    PasswordMismatch,
    /// The plugin file does not exist.
    #[error("plugin file {path} not found; pass the path of the built plugin (the .so file)")]
    PluginNotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// The plugin file is larger than any loader accepts.
    #[error("plugin file {path} is {size} bytes; loaders refuse plugins over {limit} bytes, so it is not signed")]
    PluginTooLarge {
        /// The plugin file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The minisign library failed (key generation, random numbers, signing).
    #[error("minisign failed: {detail}")]
    Minisign {
        /// Its message.
        detail: String,
    },
}

impl From<crate::metadata::InvalidName> for SigningError {
    fn from(e: crate::metadata::InvalidName) -> SigningError {
        SigningError::InvalidName { name: e.name }
    }
}

impl From<crate::metadata::TimeError> for SigningError {
    fn from(e: crate::metadata::TimeError) -> SigningError {
        SigningError::InvalidExpires {
            value: e.value,
            detail: e.detail,
        }
    }
}

impl SigningError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SigningError {
        let path = path.into();
        move |source| SigningError::Io { path, source }
    }

    pub(crate) fn minisign(e: minisign::PError) -> SigningError {
        SigningError::Minisign {
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metadata::{format_trusted_comment, UtcTime};

    #[test]
    fn metadata_errors_become_the_signing_errors_with_their_messages() {
        let e: SigningError = "2027-02-29T00:00:00Z"
            .parse::<UtcTime>()
            .unwrap_err()
            .into();
        assert!(
            matches!(&e, SigningError::InvalidExpires { value, detail }
                if value == "2027-02-29T00:00:00Z" && detail == "no such day in that month"),
            "{e}"
        );
        assert!(e.to_string().starts_with("invalid expiry time "), "{e}");
        assert!(e.to_string().contains("YYYY-MM-DDTHH:MM:SSZ"), "{e}");
        let e: SigningError = format_trusted_comment("Bad", 1, &[0; 32], None)
            .unwrap_err()
            .into();
        assert!(
            matches!(&e, SigningError::InvalidName { name } if name == "Bad"),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("invalid plugin name \"Bad\""),
            "{e}"
        );
    }
}
