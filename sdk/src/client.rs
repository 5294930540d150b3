//! [`Sdk`]: what a service holds and calls `assign` on.

use crate::assignment::Assignment;
use crate::config::Config;
use crate::error::Error;
use crate::plugins::{PluginManager, PluginOptions};
use crate::probe::ProbeConfig;
use crate::registry::{Registry, Snapshot};
use crate::status::Status;
use crate::strategy::DemotionPolicy;
use crate::unit::Unit;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The abkit client. Cheap to share (`Arc<Sdk>` or `&Sdk`); `assign` never blocks or fails.
#[derive(Debug)]
pub struct Sdk {
    registry: Registry,
    /// Plugin state across reloads; locked only by reloads, never by `assign`.
    plugins: Mutex<PluginManager>,
}

/// Options for building an [`Sdk`].
#[derive(Debug, Clone, Default)]
pub struct SdkBuilder {
    options: PluginOptions,
}

impl SdkBuilder {
    /// How plugin strategies are probed before they serve.
    pub fn probe(mut self, probe: ProbeConfig) -> Self {
        self.options.probe = probe;
        self
    }

    /// When a plugin with too many failing calls is demoted to the builtin.
    pub fn demotion(mut self, policy: DemotionPolicy) -> Self {
        self.options.demotion = policy;
        self
    }

    /// Builds the client: loads, verifies and probes the configuration's plugins. A refused
    /// plugin does not fail the build: its experiments use `builtin:hash-v1` and
    /// [`Sdk::status`] says why. Only an invalid configuration is an error.
    pub fn build(self, config: Config) -> Result<Sdk, Error> {
        let mut manager = PluginManager::new(self.options);
        let resolution = manager.resolve(&config, SystemTime::now());
        let snapshot = Snapshot::build_resolved(config, 1, resolution)?;
        Ok(Sdk { registry: Registry::new(snapshot), plugins: Mutex::new(manager) })
    }
}

impl Sdk {
    /// Options for building a client (probe budget, demotion policy).
    pub fn builder() -> SdkBuilder {
        SdkBuilder::default()
    }

    /// Builds a client serving a validated configuration (see [`SdkBuilder::build`]).
    pub fn from_config(config: Config) -> Result<Sdk, Error> {
        Sdk::builder().build(config)
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

    /// What serves now: plugins (active / last good / fallback, with refusal reasons) and, per
    /// experiment, which strategy really decides, with live counters.
    pub fn status(&self) -> Status {
        self.registry.load().status()
    }

    /// Applies a new validated configuration: resolves its plugins (a refused plugin keeps its
    /// last good version), builds a complete snapshot off the hot path and publishes it with one
    /// atomic store. Readers never block. Returns the new snapshot's status.
    pub fn apply(&self, config: Config) -> Result<Status, Error> {
        let mut manager = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.registry.load().generation() + 1;
        let resolution = manager.resolve(&config, SystemTime::now());
        let snapshot = Snapshot::build_resolved(config, generation, resolution)?;
        let status = snapshot.status();
        self.registry.publish(snapshot);
        Ok(status)
    }
}
