//! Snapshots: everything `assign` reads, immutable, published with one atomic store.
//!
//! A reload builds a complete new [`Snapshot`] off the hot path and swaps it in with
//! `arc-swap`; readers never block and never see a half-applied change.

use crate::assignment::FallbackReason;
use crate::assignment::{Assignment, Reason};
use crate::config::{Config, ConfigError, ConfigIssue, ExperimentConfig};
use crate::evaluation::{Clock, CompiledExperiment, Decider};
use crate::plugins::Resolution;
use crate::status::{ExperimentStatus, PluginStatus, Status};
use crate::unit::Unit;
use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An experiment resolved by key once and remembered across calls and reloads (from
/// [`crate::Sdk::handle`]): lock-free, shareable between threads.
///
/// It remembers where the experiment sits in the last snapshot it was used with (one atomic
/// word: that snapshot's process-wide serial number and the experiment's index). In the same
/// snapshot a call reads the word and indexes; after a reload the first call resolves the key
/// again. (Serials wrap after 2^40 snapshots, which no process lives to build.)
#[derive(Debug)]
pub struct ExperimentHandle {
    key: Box<str>,
    /// `(snapshot serial << INDEX_BITS) | slot`, slot = index + 1 (0: not in that snapshot);
    /// 0 before the first use (serials start at 1).
    cache: AtomicU64,
}

/// Bits of the cached index; experiments at higher indices are looked up by key every time.
const INDEX_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << INDEX_BITS) - 1;
const GENERATION_MASK: u64 = u64::MAX >> INDEX_BITS;

impl ExperimentHandle {
    pub(crate) fn new(key: &str) -> Self {
        ExperimentHandle {
            key: key.into(),
            cache: AtomicU64::new(0),
        }
    }

    /// The experiment key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A pre-resolved experiment of one snapshot (see [`Snapshot::experiment_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExperimentId(usize);

/// One immutable generation of the configuration, compiled for evaluation.
#[derive(Debug)]
pub struct Snapshot {
    generation: u64,
    /// Unique among all snapshots of this process (of every `Sdk`), from 1: what an
    /// [`ExperimentHandle`] remembers, so a handle can never take one snapshot's index for
    /// another's, whichever `Sdk` it is used with.
    serial: u64,
    experiments: Vec<CompiledExperiment>,
    by_key: FxHashMap<Box<str>, usize>,
    config: Config,
    plugins: Vec<PluginStatus>,
    /// Experiments refused on their own (their strategy_config rejected), with why.
    refusals: Vec<(String, crate::status::Refusal)>,
}

impl Snapshot {
    /// Compiles a validated configuration with its resolved strategies. Validation leaves
    /// nothing to fail here; should an experiment still not compile (a configuration built
    /// inside the crate, e.g. from the preflight request), it is a problem of that
    /// configuration, reported like one.
    pub(crate) fn build_resolved(
        config: Config,
        generation: u64,
        mut res: Resolution,
    ) -> Result<Snapshot, ConfigError> {
        let mut experiments = Vec::with_capacity(config.experiments.len());
        let mut by_key = FxHashMap::default();
        let holdouts: Vec<_> = config
            .holdouts
            .iter()
            .map(|h| {
                (
                    h.clone(),
                    Arc::new(crate::evaluation::CompiledHoldout::new(h)),
                )
            })
            .collect();
        for (i, e) in config.experiments.iter().enumerate() {
            let decider = res
                .deciders
                .remove(&e.key)
                .unwrap_or(Decider::Fallback(FallbackReason::PluginRefused));
            let compiled =
                CompiledExperiment::compile(e, &config, decider, &holdouts).map_err(|message| {
                    ConfigError {
                        source_name: format!("experiment \"{}\"", e.key),
                        issues: vec![ConfigIssue {
                            path: format!("experiments[{i}]"),
                            message,
                        }],
                    }
                })?;
            by_key.insert(e.key.as_str().into(), i);
            experiments.push(compiled);
        }
        for c in &mut experiments {
            c.resolve_requirement(|k| by_key.get(k).copied());
        }
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        Ok(Snapshot {
            generation,
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            experiments,
            by_key,
            config,
            plugins: res.plugins,
            refusals: res.experiments,
        })
    }

    /// The plugin strategies of this snapshot, by experiment key.
    pub(crate) fn plugin_strategies(
        &self,
    ) -> impl Iterator<Item = (&str, &Arc<crate::strategy::PluginStrategy>)> {
        self.experiments
            .iter()
            .filter_map(|c| c.plugin_strategy().map(|s| (c.config.key.as_str(), s)))
    }

    /// The status of this snapshot: plugins, and which strategy decides each experiment.
    pub fn status(&self) -> Status {
        let experiments = self
            .experiments
            .iter()
            .map(|c| {
                let (serving, counters) = c.serving();
                let refusal = self
                    .refusals
                    .iter()
                    .find(|(key, _)| *key == c.config.key)
                    .map(|(_, r)| r.clone());
                ExperimentStatus {
                    key: c.config.key.clone(),
                    configured: c.config.strategy.clone(),
                    serving,
                    counters,
                    randomisation: c
                        .plugin_strategy()
                        .map(|s| s.declaration().randomisation.clone()),
                    demotion: c.plugin_strategy().and_then(|s| s.demotion()),
                    refusal,
                }
            })
            .collect();
        Status {
            generation: self.generation,
            loaded_libraries: crate::loader::loaded_libraries(),
            danger_unsigned_plugins: self.config.trust.danger_allow_unsigned,
            ledger_problem: None,
            abandoned_plugin_calls: crate::deadline::abandoned_calls(),
            plugins: self.plugins.clone(),
            experiments,
            last_reload: None,
            source: None,
        }
    }

    /// Assigns `unit` in experiment `key`. Synchronous, lock-free, allocation-free; an unknown
    /// key is a not-enrolled answer with [`Reason::UnknownExperiment`].
    #[inline]
    pub fn assign(&self, key: &str, unit: &Unit<'_>) -> Assignment {
        self.assign_with(key, unit, Clock::System)
    }

    /// Like [`Snapshot::assign`], with the clock fixed at `now_ms` (ms since the Unix epoch) for
    /// time-based strategies: simulations and tests get reproducible answers. These answers
    /// are not counted in the `abkit_assignments_total` / `abkit_fallbacks_total` metrics.
    #[inline]
    pub fn assign_at(&self, key: &str, unit: &Unit<'_>, now_ms: u64) -> Assignment {
        self.assign_with(key, unit, Clock::Fixed(now_ms))
    }

    /// The pre-resolved handle of experiment `key` in this snapshot, for bulk work that assigns
    /// many units (simulations): [`Snapshot::assign_id_at`] then skips the per-call lookup.
    pub fn experiment_id(&self, key: &str) -> Option<ExperimentId> {
        self.by_key.get(key).map(|&i| ExperimentId(i))
    }

    /// [`Snapshot::assign_at`] by a handle from [`Snapshot::experiment_id`] of THIS snapshot
    /// (a handle from another snapshot answers `UnknownExperiment` if out of range).
    #[inline]
    pub fn assign_id_at(&self, id: ExperimentId, unit: &Unit<'_>, now_ms: u64) -> Assignment {
        match self.experiments.get(id.0) {
            Some(e) => e.evaluate(&self.experiments, unit, Clock::Fixed(now_ms)),
            None => Assignment::not_enrolled(Reason::UnknownExperiment),
        }
    }

    /// [`Snapshot::assign`] through a handle (see [`crate::Sdk::handle`]).
    #[inline]
    pub fn assign_handle(&self, handle: &ExperimentHandle, unit: &Unit<'_>) -> Assignment {
        let generation = self.serial & GENERATION_MASK;
        let cached = handle.cache.load(Ordering::Relaxed);
        let slot = if cached >> INDEX_BITS == generation {
            cached & SLOT_MASK
        } else {
            self.resolve(handle, generation)
        };
        match slot.checked_sub(1) {
            Some(i) => {
                self.experiments[i as usize].evaluate(&self.experiments, unit, Clock::System)
            }
            None => Assignment::not_enrolled(Reason::UnknownExperiment),
        }
    }

    /// Looks the handle's key up in this snapshot and remembers the answer in the handle.
    #[cold]
    fn resolve(&self, handle: &ExperimentHandle, generation: u64) -> u64 {
        match self.by_key.get(&*handle.key) {
            Some(&i) if (i as u64) < SLOT_MASK => {
                let slot = i as u64 + 1;
                handle
                    .cache
                    .store((generation << INDEX_BITS) | slot, Ordering::Relaxed);
                slot
            }
            // Beyond the cacheable range (16 million experiments): by key, every time.
            Some(&i) => i as u64 + 1,
            None => {
                handle
                    .cache
                    .store(generation << INDEX_BITS, Ordering::Relaxed);
                0
            }
        }
    }

    #[inline]
    fn assign_with(&self, key: &str, unit: &Unit<'_>, clock: Clock) -> Assignment {
        match self.by_key.get(key) {
            Some(&i) => self.experiments[i].evaluate(&self.experiments, unit, clock),
            None => Assignment::not_enrolled(Reason::UnknownExperiment),
        }
    }

    /// The generation number (1 for the first snapshot, +1 per accepted reload).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The earliest signature expiry (unix seconds) among the plugin versions that serve in
    /// this snapshot, if any expires: the watcher reloads right after it.
    #[cfg_attr(not(feature = "watch"), allow(dead_code))]
    pub(crate) fn earliest_expiry(&self) -> Option<u64> {
        self.plugins
            .iter()
            .filter_map(|p| p.serving.as_ref()?.expires)
            .min()
    }

    /// What the plugin strategy deciding experiment `key` declared (attributes it reads, what
    /// it randomises by); `None` when no plugin strategy decides it.
    pub(crate) fn declaration(&self, key: &str) -> Option<&crate::strategy::StrategyDeclaration> {
        let i = *self.by_key.get(key)?;
        self.experiments[i]
            .plugin_strategy()
            .map(|s| s.declaration())
    }

    /// What the strategy of experiment `key` randomises by: its plugin's declaration, or the
    /// unit id for the builtin (and for an experiment no plugin serves).
    pub fn randomisation(&self, key: &str) -> crate::strategy::Randomisation {
        self.declaration(key)
            .map_or(crate::strategy::Randomisation::UnitId, |d| {
                d.randomisation.clone()
            })
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
pub(crate) struct Registry {
    current: ArcSwap<Snapshot>,
}

impl Registry {
    /// A registry serving `snapshot`.
    pub(crate) fn new(snapshot: Snapshot) -> Registry {
        Registry {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// A cheap, lock-free read guard on the serving snapshot (for one or a few calls).
    #[inline]
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// A reference-counted handle on the serving snapshot (for long work such as simulations).
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes `next` with one atomic store; returns the previous snapshot.
    pub(crate) fn publish_shared(&self, next: Arc<Snapshot>) -> Arc<Snapshot> {
        self.current.swap(next)
    }
}
