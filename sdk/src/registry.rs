//! Snapshots: everything `assign` reads, immutable, published with one atomic store.
//!
//! A reload builds a complete new [`Snapshot`] off the hot path and swaps it in with
//! `arc-swap`; readers never block and never see a half-applied change.

use crate::assignment::{Assignment, Reason};
use crate::config::{Config, ExperimentConfig};
use crate::error::Error;
use crate::evaluation::CompiledExperiment;
use crate::unit::Unit;
use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// One immutable generation of the configuration, compiled for evaluation.
#[derive(Debug)]
pub struct Snapshot {
    generation: u64,
    experiments: Vec<CompiledExperiment>,
    by_key: FxHashMap<Box<str>, usize>,
    config: Config,
}

impl Snapshot {
    /// Compiles a validated configuration.
    pub fn build(config: Config, generation: u64) -> Result<Snapshot, Error> {
        let mut experiments = Vec::with_capacity(config.experiments.len());
        let mut by_key = FxHashMap::default();
        for (i, e) in config.experiments.iter().enumerate() {
            let compiled = CompiledExperiment::compile(e, &config).map_err(|err| Error::Experiment {
                experiment: e.key.clone(),
                message: err.to_string(),
            })?;
            by_key.insert(e.key.as_str().into(), i);
            experiments.push(compiled);
        }
        Ok(Snapshot { generation, experiments, by_key, config })
    }

    /// Assigns `unit` in experiment `key`. Synchronous, lock-free, allocation-free; an unknown
    /// key is a not-enrolled answer with [`Reason::UnknownExperiment`].
    #[inline]
    pub fn assign(&self, key: &str, unit: &Unit<'_>) -> Assignment {
        match self.by_key.get(key) {
            Some(&i) => self.experiments[i].evaluate(unit),
            None => Assignment::not_enrolled(Reason::UnknownExperiment),
        }
    }

    /// The generation number (1 for the first snapshot, +1 per accepted reload).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The validated configuration this snapshot serves.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The experiment configuration for `key`.
    pub fn experiment(&self, key: &str) -> Option<&ExperimentConfig> {
        self.by_key.get(key).map(|&i| &self.experiments[i].config)
    }
}

/// Holds the serving snapshot.
#[derive(Debug)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
}

impl Registry {
    /// A registry serving `snapshot`.
    pub fn new(snapshot: Snapshot) -> Registry {
        Registry { current: ArcSwap::from_pointee(snapshot) }
    }

    /// A cheap, lock-free read guard on the serving snapshot (for one or a few calls).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// A reference-counted handle on the serving snapshot (for long work such as simulations).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes `next` with one atomic store; returns the previous snapshot.
    pub fn publish(&self, next: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(next))
    }
}
