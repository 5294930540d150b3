//! The one error type at the SDK's boundary.

use crate::config::ConfigError;
use std::path::PathBuf;

/// Everything the SDK can refuse. Messages say what was wrong, where, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (all problems are listed).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An experiment could not be compiled.
    #[error("experiment \"{experiment}\": {message}")]
    Experiment {
        /// The experiment key.
        experiment: String,
        /// What went wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The etcd source could not provide a configuration (feature `etcd`).
    #[cfg(feature = "etcd")]
    #[error(transparent)]
    Etcd(#[from] crate::source::etcd::EtcdError),
}
