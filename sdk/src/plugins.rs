//! Resolving a configuration's plugins into the strategies a snapshot serves.
//!
//! Per plugin: load (see [`crate::loader`]) -> instantiate one strategy per experiment with its
//! `strategy_config` -> probe each -> accept (record the version) or refuse. A refused
//! candidate leaves that plugin on its last good version, or with none, its experiments on
//! `builtin:hash-v1`. Every outcome is written into the snapshot's [`Status`].

use crate::assignment::FallbackReason;
use crate::config::{Config, ExperimentConfig, PluginConfig, StrategyRef};
use crate::evaluation::Decider;
use crate::loader::{self, LoadContext, LoadedPlugin};
use crate::probe::{self, ProbeConfig};
use crate::status::{ExperimentStatus, PluginState, PluginStatus, Refusal, ServingPlugin};
use crate::strategy::{DemotionPolicy, PluginStrategy};
use crate::trust::{SignedMetadata, TrustStore, VersionLedger};
use abkit_strategy_api::abi_stable::std_types::{RResult, RStr};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a resolution hands to the snapshot builder.
#[derive(Debug, Default)]
pub(crate) struct Resolution {
    pub(crate) deciders: FxHashMap<String, Decider>,
    pub(crate) plugins: Vec<PluginStatus>,
    pub(crate) experiments: Vec<ExperimentStatus>,
}

/// What to remember once a candidate goes live (nothing is remembered for a refused one).
#[derive(Debug, Default)]
pub(crate) struct PendingCommit {
    accepted: Vec<(LoadedPlugin, SignedMetadata, bool)>,
}

/// Options of plugin handling.
#[derive(Debug, Clone)]
pub(crate) struct PluginOptions {
    pub(crate) probe: ProbeConfig,
    pub(crate) demotion: DemotionPolicy,
    /// Most distinct plugin libraries this process may map (they are never unloaded).
    pub(crate) max_libraries: usize,
}

impl Default for PluginOptions {
    fn default() -> Self {
        PluginOptions {
            probe: ProbeConfig::default(),
            demotion: DemotionPolicy::default(),
            max_libraries: 256,
        }
    }
}

/// Long-lived plugin state across reloads (held by the SDK, never touched by `assign`).
#[derive(Debug, Default)]
pub(crate) struct PluginManager {
    ledger: Option<VersionLedger>,
    ledger_dir: Option<std::path::PathBuf>,
    last_good: FxHashMap<String, LoadedPlugin>,
    pub(crate) options: PluginOptions,
    /// Why the last accepted versions could not be persisted (cleared by the next success);
    /// shared with the SDK so `status()` shows it without taking the reload lock.
    pub(crate) ledger_problem: Arc<std::sync::Mutex<Option<String>>>,
}

impl PluginManager {
    pub(crate) fn new(options: PluginOptions) -> Self {
        PluginManager {
            options,
            ..Default::default()
        }
    }

    /// Remembers the versions and libraries of a candidate that went live. A version that
    /// cannot be persisted is still remembered in this process; the failure is logged as an
    /// error and shown by `status()` until a later write succeeds (never silent).
    pub(crate) fn commit(&mut self, pending: PendingCommit) {
        let mut problem = None;
        let mut wrote = false;
        for (loaded, meta, unsigned) in pending.accepted {
            if !unsigned {
                if let Some(ledger) = self.ledger.as_mut() {
                    match ledger.record(&meta) {
                        Ok(()) => wrote = true,
                        Err(e) => {
                            tracing::error!(plugin = %meta.name, version = meta.version, error = %e, "cannot persist the accepted version: rollback protection across restarts is not guaranteed");
                            problem =
                                Some(format!("plugin \"{}\" v{}: {e}", meta.name, meta.version));
                        }
                    }
                }
            }
            self.last_good.insert(meta.name.clone(), loaded);
        }
        if problem.is_some() || wrote {
            *self
                .ledger_problem
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = problem;
        }
    }

    /// Resolves every experiment's strategy for `config`; nothing is remembered until
    /// [`PluginManager::commit`] is called with the returned pending commit.
    pub(crate) fn resolve(
        &mut self,
        config: &Config,
        now: SystemTime,
    ) -> (Resolution, PendingCommit) {
        let mut res = Resolution::default();
        let mut pending = PendingCommit::default();
        let users = |name: &str| -> Vec<&ExperimentConfig> {
            config
                .experiments
                .iter()
                .filter(|e| e.strategy == StrategyRef::Plugin(name.to_string()))
                .collect()
        };
        for e in &config.experiments {
            if e.strategy == StrategyRef::Builtin {
                res.deciders.insert(e.key.clone(), Decider::Builtin);
            }
        }
        if config.plugins.is_empty() {
            return (res, pending);
        }
        let prepared = self.prepare(config);
        for p in &config.plugins {
            let exps = users(&p.name);
            let outcome = match &prepared {
                Ok(trust) => self.try_candidate(p, &exps, trust, config, now),
                Err(refusal) => Err(refusal.clone()),
            };
            match outcome {
                Ok((loaded, meta, strategies, refused_exps)) => {
                    pending
                        .accepted
                        .push((loaded, meta, config.trust.danger_allow_unsigned));
                    res.plugins.push(PluginStatus::new(
                        p,
                        PluginState::Active,
                        Some(ServingPlugin::from(loaded.identity)),
                        None,
                    ));
                    install(&mut res, strategies, refused_exps);
                }
                Err(refusal) => {
                    tracing::warn!(plugin = %p.name, step = refusal.step, reason = refusal.reason, "plugin refused: {}", refusal.message);
                    let fallback = self.last_good.get(&p.name).copied().and_then(|lg| {
                        self.instantiate_all(lg, &exps, now)
                            .ok()
                            .map(|(s, r)| (lg, s, r))
                    });
                    match fallback {
                        Some((lg, strategies, refused_exps)) => {
                            res.plugins.push(PluginStatus::new(
                                p,
                                PluginState::LastGood,
                                Some(ServingPlugin::from(lg.identity)),
                                Some(refusal),
                            ));
                            install(&mut res, strategies, refused_exps);
                        }
                        None => {
                            for e in &exps {
                                res.deciders.insert(
                                    e.key.clone(),
                                    Decider::Fallback(FallbackReason::PluginRefused),
                                );
                            }
                            res.plugins.push(PluginStatus::new(
                                p,
                                PluginState::Fallback,
                                None,
                                Some(refusal),
                            ));
                        }
                    }
                }
            }
        }
        (res, pending)
    }

    /// Trust store and ledger for this config; a failure refuses every plugin of it (an
    /// insecure state directory included: rollback protection could not be trusted).
    fn prepare(&mut self, config: &Config) -> Result<TrustStore, Refusal> {
        let t = &config.trust;
        let trust = TrustStore::from_config(t)
            .map_err(|e| Refusal::new("trust", e.reason(), e.to_string()))?;
        if trust.is_empty() && !t.danger_allow_unsigned {
            return Err(Refusal::new(
                "trust",
                "no_trusted_keys",
                "no trusted public key is configured; add [trust] public_keys or public_key_files"
                    .into(),
            ));
        }
        if self.ledger.is_none() || self.ledger_dir != t.state_dir {
            let mut next = match &t.state_dir {
                Some(dir) => VersionLedger::open(dir)
                    .map_err(|e| Refusal::new("trust", e.reason(), e.to_string()))?,
                None => VersionLedger::in_memory(),
            };
            // Versions accepted in this process stay accepted whatever the state directory.
            if let Some(previous) = &self.ledger {
                next.absorb(previous)
                    .map_err(|e| Refusal::new("trust", e.reason(), e.to_string()))?;
            }
            self.ledger = Some(next);
            self.ledger_dir = t.state_dir.clone();
        } else if let Some(ledger) = &self.ledger {
            // Same directory as before: it may have been chmod-ed or chown-ed meanwhile.
            ledger
                .verify_state_dir()
                .map_err(|e| Refusal::new("trust", e.reason(), e.to_string()))?;
        }
        Ok(trust)
    }

    #[allow(clippy::type_complexity)]
    fn try_candidate(
        &mut self,
        p: &PluginConfig,
        exps: &[&ExperimentConfig],
        trust: &TrustStore,
        config: &Config,
        now: SystemTime,
    ) -> Result<
        (
            LoadedPlugin,
            SignedMetadata,
            Vec<(String, Arc<PluginStrategy>)>,
            Vec<(String, Refusal)>,
        ),
        Refusal,
    > {
        let ledger = self.ledger.get_or_insert_with(VersionLedger::in_memory);
        let allowed_libraries = config.trust.allowed_libraries();
        let cx = LoadContext {
            trust,
            ledger,
            allowed_libraries: &allowed_libraries,
            allow_unsigned: config.trust.danger_allow_unsigned,
            now,
            max_libraries: self.options.max_libraries,
        };
        let (loaded, meta) =
            loader::load(p, &cx).map_err(|e| Refusal::new(e.step(), e.reason(), e.to_string()))?;
        let (strategies, refused) = self.instantiate_all(loaded, exps, now)?;
        tracing::info!(plugin = %p.name, version = meta.version, experiments = strategies.len(), "plugin candidate passed load and probe");
        Ok((loaded, meta, strategies, refused))
    }

    /// Instantiates and probes the plugin for each experiment. A strategy constructor that
    /// rejects an experiment's config refuses that experiment only; a failed probe refuses the
    /// plugin (it misbehaves, whatever the experiment).
    #[allow(clippy::type_complexity)]
    fn instantiate_all(
        &self,
        loaded: LoadedPlugin,
        exps: &[&ExperimentConfig],
        now: SystemTime,
    ) -> Result<(Vec<(String, Arc<PluginStrategy>)>, Vec<(String, Refusal)>), Refusal> {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut ok = Vec::new();
        let mut refused = Vec::new();
        for e in exps {
            let instance =
                match loaded.module.new_strategy()(RStr::from_str(&e.strategy_config_json)) {
                    RResult::ROk(s) => s,
                    RResult::RErr(msg) => {
                        let message =
                            format!(
                        "plugin \"{}\" rejected the strategy_config of experiment \"{}\": {}",
                        loaded.identity.name, e.key, crate::status::ClippedText(msg.as_str())
                    );
                        refused.push((
                            e.key.clone(),
                            Refusal::new("instantiate", "strategy_config_rejected", message),
                        ));
                        continue;
                    }
                };
            let strategy = PluginStrategy::new(
                loaded.identity,
                instance,
                &e.key,
                &e.salt,
                &e.weights(),
                e.coverage_bp,
                self.options.demotion,
            );
            probe::probe(&strategy, e, &self.options.probe, now_ms).map_err(|err| {
                Refusal::new(
                    "probe",
                    err.reason(),
                    format!("experiment \"{}\": {err}", e.key),
                )
            })?;
            ok.push((e.key.clone(), Arc::new(strategy)));
        }
        Ok((ok, refused))
    }
}

fn install(
    res: &mut Resolution,
    strategies: Vec<(String, Arc<PluginStrategy>)>,
    refused: Vec<(String, Refusal)>,
) {
    for (key, s) in strategies {
        res.deciders.insert(key, Decider::Plugin(s));
    }
    for (key, refusal) in refused {
        res.deciders.insert(
            key.clone(),
            Decider::Fallback(FallbackReason::PluginRefused),
        );
        res.experiments
            .push(ExperimentStatus::refused(key, refusal));
    }
}
