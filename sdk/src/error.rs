//! The one error type at the SDK's boundary.

use crate::config::ConfigError;

/// Everything the SDK can refuse. Messages say what was wrong, where, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (all problems are listed).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The etcd source could not provide a configuration (feature `etcd`).
    #[cfg(feature = "etcd")]
    #[error(transparent)]
    Etcd(#[from] crate::source::etcd::EtcdError),
}
