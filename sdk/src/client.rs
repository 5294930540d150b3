//! [`Sdk`]: what a service holds and calls `assign` on.

use crate::assignment::Assignment;
use crate::config::Config;
use crate::error::Error;
use crate::registry::{Registry, Snapshot};
use crate::unit::Unit;
use std::path::Path;
use std::sync::Arc;

/// The abkit client. Cheap to share (`Arc<Sdk>` or `&Sdk`); `assign` never blocks or fails.
#[derive(Debug)]
pub struct Sdk {
    registry: Registry,
}

impl Sdk {
    /// Builds a client serving a validated configuration.
    pub fn from_config(config: Config) -> Result<Sdk, Error> {
        Ok(Sdk { registry: Registry::new(Snapshot::build(config, 1)?) })
    }

    /// Reads, validates and serves a TOML configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Sdk, Error> {
        Sdk::from_config(Config::from_file(path.as_ref())?)
    }

    /// Validates and serves TOML text (relative paths resolve against the current directory).
    pub fn from_toml_str(text: &str) -> Result<Sdk, Error> {
        Sdk::from_config(Config::from_toml_str(text, "<string>", Path::new("."))?)
    }

    /// Assigns `unit` in `experiment`: synchronous, lock-free, no heap allocation, never fails.
    /// An unknown experiment answers not-enrolled with [`crate::Reason::UnknownExperiment`].
    #[inline]
    pub fn assign(&self, experiment: &str, unit: &Unit<'_>) -> Assignment {
        self.registry.load().assign(experiment, unit)
    }

    /// The serving snapshot, held for as long as the caller keeps it (simulations, status).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.registry.snapshot()
    }
}
