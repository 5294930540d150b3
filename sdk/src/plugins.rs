//! Resolving a configuration's plugins into the strategies a snapshot serves.
//!
//! Per plugin: load (see [`crate::loader`]) -> instantiate one strategy per experiment with its
//! `strategy_config` -> probe each -> accept (record the version) or refuse. A refused
//! candidate leaves that plugin on its last good version, or with none, its experiments on
//! `builtin:hash-v1`. Every outcome is written into the snapshot's [`Status`].
//!
//! A version may only serve while its signer's key is trusted and its signature has not
//! expired: a version whose key left `[trust]` (revoked) or whose signature expired stops
//! serving at the next reload — it neither blocks that reload nor stands in as last good.

use crate::assignment::FallbackReason;
use crate::config::{Config, ExperimentConfig, PluginConfig, StrategyRef};
use crate::evaluation::Decider;
use crate::loader::{self, LoadContext, LoadError, LoadedPlugin};
use crate::probe::{self, ProbeConfig};
use crate::status::{PluginState, PluginStatus, Refusal, RefusalReason, ServingPlugin, Step};
use crate::strategy::{DemotionPolicy, PluginStrategy, StrategySpec};
use crate::trust::{SignedMetadata, TrustError, TrustStore, VersionLedger};
use abkit_strategy_api::abi_stable::std_types::RResult;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a resolution hands to the snapshot builder.
#[derive(Debug, Default)]
pub(crate) struct Resolution {
    pub(crate) deciders: FxHashMap<String, Decider>,
    pub(crate) plugins: Vec<PluginStatus>,
    /// Experiments refused on their own, with why.
    pub(crate) experiments: Vec<(String, Refusal)>,
    /// Why this candidate may not replace a serving snapshot: a refused artifact of a plugin
    /// that has a good version, or an experiment whose `strategy_config` its plugin rejected.
    /// Ignored at the first build (nothing serves yet: those experiments use the builtin).
    pub(crate) blocking: Option<Refusal>,
    /// Experiments moved off a plugin version that may no longer serve (its key revoked, its
    /// signature expired): the reassignment guard reports their move but does not refuse it.
    pub(crate) forced: Vec<String>,
    /// The preflight child's answers to the guard populations, by experiment: the guards use
    /// them instead of calling those (new) plugins in this process.
    pub(crate) guard_answers: FxHashMap<String, crate::guard::GuardAnswers>,
}

/// What to remember once a candidate goes live (nothing is remembered for a refused one).
#[derive(Debug, Default)]
pub(crate) struct PendingCommit {
    accepted: Vec<(LoadedPlugin, SignedMetadata, bool)>,
    /// What serves each plugin once the candidate is live (none: its experiments on builtin).
    serving: Vec<(String, LoadedPlugin)>,
    /// The key ids the candidate's `[trust]` table trusts.
    trusted: Vec<String>,
}

/// Most accepted versions remembered per plugin as last-good candidates.
const HISTORY_MAX: usize = 8;

/// Options of plugin handling.
#[derive(Debug, Clone)]
pub(crate) struct PluginOptions {
    pub(crate) probe: ProbeConfig,
    pub(crate) demotion: DemotionPolicy,
    /// Most distinct plugin libraries this process may map (they are never unloaded).
    pub(crate) max_libraries: usize,
    /// Deadline of each plugin call a reload makes, unless `[reload] deadline_ms` sets one.
    pub(crate) deadline: std::time::Duration,
    /// Child-process preflight, unless `[preflight]` sets one.
    pub(crate) preflight: Option<crate::config::PreflightConfig>,
    /// The guards' population size (the preflight child evaluates the same units).
    pub(crate) guard_population: usize,
    /// The seed of the current reload's sample-ratio units (set by each reload).
    pub(crate) guard_seed: u64,
}

impl Default for PluginOptions {
    fn default() -> Self {
        PluginOptions {
            probe: ProbeConfig::default(),
            demotion: DemotionPolicy::default(),
            max_libraries: 256,
            deadline: crate::deadline::DEFAULT_DEADLINE,
            preflight: None,
            guard_population: crate::guard::GuardConfig::default().population,
            guard_seed: 0,
        }
    }
}

/// Long-lived plugin state across reloads (held by the SDK, never touched by `assign`).
#[derive(Debug, Default)]
pub(crate) struct PluginManager {
    ledger: Option<VersionLedger>,
    ledger_dir: Option<std::path::PathBuf>,
    /// Versions accepted in this process, per plugin, oldest first (at most [`HISTORY_MAX`]):
    /// the newest one that may still serve is the last good version.
    history: FxHashMap<String, Vec<LoadedPlugin>>,
    /// What serves each plugin in the live snapshot.
    serving: FxHashMap<String, LoadedPlugin>,
    /// Key ids trusted by a configuration that went live in this process: such a key missing
    /// from a later `[trust]` table was revoked (not merely unknown).
    trusted_before: FxHashSet<String>,
    pub(crate) options: PluginOptions,
    /// Why the last accepted versions could not be persisted (cleared by the next success);
    /// shared with the SDK so `status()` shows it without taking the reload lock.
    pub(crate) ledger_problem: Arc<std::sync::Mutex<Option<String>>>,
    /// The deadline of each plugin call in the resolution under way.
    call_deadline: std::time::Duration,
    /// The plugin strategies of the serving snapshot, by experiment (see `instantiate_all`).
    live: FxHashMap<String, Arc<PluginStrategy>>,
    /// Guard answers of the preflights run in the resolution under way.
    preflight_answers: FxHashMap<String, crate::guard::GuardAnswers>,
}

impl PluginManager {
    /// The deadline of each plugin call under `config`: `[reload] deadline_ms`, else the
    /// builder's setting.
    pub(crate) fn deadline_for(&self, config: &Config) -> std::time::Duration {
        config.reload.deadline.unwrap_or(self.options.deadline)
    }

    pub(crate) fn new(options: PluginOptions) -> Self {
        PluginManager {
            call_deadline: options.deadline,
            options,
            ..Default::default()
        }
    }

    /// Remembers the versions and libraries of a candidate that went live. A version that
    /// cannot be persisted is still remembered in this process; the failure is logged as an
    /// error and shown by `status()` until a later write succeeds (never silent).
    pub(crate) fn commit(&mut self, pending: PendingCommit, serving: &crate::registry::Snapshot) {
        self.live = serving
            .plugin_strategies()
            .map(|(key, s)| (key.to_string(), Arc::clone(s)))
            .collect();
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
            let versions = self.history.entry(meta.name.clone()).or_default();
            versions.retain(|v| !std::ptr::eq(v.identity, loaded.identity));
            versions.push(loaded);
            if versions.len() > HISTORY_MAX {
                versions.remove(0);
            }
        }
        self.serving = pending.serving.into_iter().collect();
        self.trusted_before.extend(pending.trusted);
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
        self.call_deadline = self.deadline_for(config);
        self.preflight_answers.clear();
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
        if let Ok(trust) = &prepared {
            pending.trusted = trust.key_ids();
        }
        let allow_unsigned = config.trust.danger_allow_unsigned;
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for p in &config.plugins {
            let exps = users(&p.name);
            let trust = prepared.as_ref().ok();
            // What serves this plugin now, if it may no longer serve: it must stop now.
            let invalid = self
                .serving
                .get(&p.name)
                .and_then(|s| unservable(*s, trust, allow_unsigned, now_secs));
            let serving_now = self.serving.contains_key(&p.name);
            let outcome = match &prepared {
                Ok(trust) => self.try_candidate(p, &exps, trust, config, now),
                Err(refusal) => Err(refusal.clone()),
            };
            match outcome {
                Ok((loaded, meta, strategies, refused_exps)) => {
                    pending
                        .accepted
                        .push((loaded, meta, config.trust.danger_allow_unsigned));
                    pending.serving.push((p.name.clone(), loaded));
                    res.plugins.push(PluginStatus::new(
                        p,
                        PluginState::Active,
                        Some(ServingPlugin::from(loaded.identity)),
                        None,
                    ));
                    if let (None, Some((_, r))) = (&res.blocking, refused_exps.first()) {
                        res.blocking = Some(experiment_blocking(r));
                    }
                    install(&mut res, strategies, refused_exps);
                }
                Err(refusal) => {
                    // A revoked key or an expired signature is a decision, not a fault: the
                    // reload applies and the version stops serving.
                    let forced = invalid.is_some() || refusal.reason == RefusalReason::Revoked;
                    let refusal = match invalid {
                        Some(inv) => inv.with_message(format!(
                            "{}. The configured artifact {} is refused ({}): {}",
                            inv.message,
                            p.path.display(),
                            refusal.reason,
                            refusal.message
                        )),
                        None => refusal,
                    };
                    tracing::warn!(plugin = %p.name, step = %refusal.step, reason = %refusal.reason, "plugin refused: {}", refusal.message);
                    // The newest accepted version that may still serve.
                    let fallback =
                        self.history
                            .get(&p.name)
                            .and_then(|versions| {
                                versions.iter().rev().copied().find(|v| {
                                    unservable(*v, trust, allow_unsigned, now_secs).is_none()
                                })
                            })
                            .and_then(|lg| {
                                self.instantiate_all(lg, &exps, now)
                                    .ok()
                                    .map(|(s, r)| (lg, s, r))
                            });
                    // A refused artifact never changes what serves: it blocks the reload when
                    // its plugin serves now or when a good version would stand in for it.
                    if !forced && res.blocking.is_none() && (serving_now || fallback.is_some()) {
                        res.blocking =
                            Some(refusal.with_message(format!(
                                "plugin \"{}\": {}",
                                p.name, refusal.message
                            )));
                    }
                    if forced {
                        res.forced.extend(exps.iter().map(|e| e.key.clone()));
                    }
                    match fallback {
                        Some((lg, strategies, refused_exps)) => {
                            pending.serving.push((p.name.clone(), lg));
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
        res.guard_answers = std::mem::take(&mut self.preflight_answers);
        (res, pending)
    }

    /// Trust store and ledger for this config; a failure refuses every plugin of it (an
    /// insecure state directory included: rollback protection could not be trusted).
    fn prepare(&mut self, config: &Config) -> Result<TrustStore, Refusal> {
        let t = &config.trust;
        let trust = TrustStore::from_config(t).map_err(Refusal::trust)?;
        if trust.is_empty() && !t.danger_allow_unsigned {
            return Err(Refusal::new(
                Step::Trust,
                RefusalReason::NoTrustedKeys,
                "no trusted public key is configured; add [trust] public_keys or public_key_files"
                    .into(),
            ));
        }
        if self.ledger.is_none() || self.ledger_dir != t.state_dir {
            let mut next = match &t.state_dir {
                Some(dir) => VersionLedger::open(dir).map_err(Refusal::trust)?,
                None => VersionLedger::in_memory(),
            };
            // Versions accepted in this process stay accepted whatever the state directory.
            if let Some(previous) = &self.ledger {
                next.absorb(previous).map_err(Refusal::trust)?;
            }
            self.ledger = Some(next);
            self.ledger_dir = t.state_dir.clone();
        } else if let Some(ledger) = &self.ledger {
            // Same directory as before: it may have been chmod-ed or chown-ed meanwhile.
            ledger.verify_state_dir().map_err(Refusal::trust)?;
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
        let trusted_before = &self.trusted_before;
        let refusal_of = |e: LoadError| {
            match &e {
            LoadError::Trust(TrustError::UnknownKeyId { key_id, .. })
                if trusted_before.contains(key_id) =>
            {
                Refusal::new(
                    Step::Signature,
                    RefusalReason::Revoked,
                    format!(
                        "{}: signed by key {key_id}, which this process trusted before and [trust] no longer lists: the key is revoked, so this artifact does not serve; sign the plugin with a trusted key",
                        p.signature.display()
                    ),
                )
            }
            _ => Refusal::load(e),
        }
        };
        let verified = loader::verify(p, &cx).map_err(refusal_of)?;
        // A new artifact runs in a child process first; this process maps it only if the child
        // survived it (and then takes the guard answers from the child).
        let preflight = config
            .preflight
            .as_ref()
            .or(self.options.preflight.as_ref());
        if let (Some(pf), false) = (preflight, verified.already_accepted()) {
            let now_ms = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let guards = crate::guard::GuardConfig {
                population: self.options.guard_population,
                ..Default::default()
            };
            let request = crate::preflight::Request {
                guard_seed: self.options.guard_seed,
                ..crate::preflight::Request::new(
                    &p.name,
                    exps,
                    config,
                    &self.options.probe,
                    &guards,
                    now_ms,
                    self.call_deadline,
                )
            };
            let response = crate::preflight::run(pf, &request, &verified.bytes)?;
            if let Some(refusal) = response.refusal {
                return Err(refusal.into_refusal());
            }
            self.preflight_answers.extend(response.answers);
        }
        let (loaded, meta) = loader::map(p, &cx, verified).map_err(refusal_of)?;
        let (strategies, refused) = self.instantiate_all(loaded, exps, now)?;
        tracing::info!(plugin = %p.name, version = meta.version, experiments = strategies.len(), "plugin candidate passed load and probe");
        Ok((loaded, meta, strategies, refused))
    }

    /// Instantiates and probes the plugin for each experiment. A strategy constructor that
    /// rejects an experiment's config refuses that experiment (at the first build it uses the
    /// builtin; on a reload it refuses the whole reload, see [`Resolution::blocking`]); a failed
    /// probe refuses the plugin (it misbehaves, whatever the experiment).
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
        instantiate(
            loaded,
            exps,
            now_ms,
            &self.options.probe,
            self.options.demotion,
            self.call_deadline,
            Some(&self.live),
        )
    }
}

/// Instantiates and probes `loaded` for each experiment, every plugin call under `deadline`;
/// strategies in `live` whose plugin identity and spec are unchanged are reused as they are.
/// Used by reloads here and by the preflight child.
#[allow(clippy::type_complexity)]
pub(crate) fn instantiate(
    loaded: LoadedPlugin,
    exps: &[&ExperimentConfig],
    now_ms: u64,
    probe_cfg: &ProbeConfig,
    demotion: DemotionPolicy,
    deadline: std::time::Duration,
    live: Option<&FxHashMap<String, Arc<PluginStrategy>>>,
) -> Result<(Vec<(String, Arc<PluginStrategy>)>, Vec<(String, Refusal)>), Refusal> {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    let limit = deadline;
    let deadline_refusal = |err: crate::deadline::DeadlineError| {
        Refusal::new(
            Step::Deadline,
            RefusalReason::DeadlineExceeded,
            format!(
                "plugin \"{}\": {err}; fix the plugin, or raise [reload] deadline_ms",
                loaded.identity.name
            ),
        )
    };
    for e in exps {
        // Unchanged plugin identity and spec: the serving strategy carries over with its
        // health, so a demotion survives unchanged reloads (no flapping on SIGHUP).
        if let Some(live) = live.and_then(|l| l.get(&e.key)).filter(|s| {
            std::ptr::eq(s.identity, loaded.identity) && *s.spec() == StrategySpec::of(e)
        }) {
            ok.push((e.key.clone(), Arc::clone(live)));
            continue;
        }
        let module = loaded.module;
        let spec = StrategySpec::of(e);
        let abi_spec = spec.clone();
        let built = crate::deadline::call(
            &format!("new_strategy for experiment \"{}\"", e.key),
            limit,
            move || module.new_strategy()(&abi_spec.as_abi()),
        )
        .map_err(deadline_refusal)?;
        let rejected = |why: &str| {
            Refusal::new(
                Step::Instantiate,
                RefusalReason::StrategyConfigRejected,
                format!(
                    "plugin \"{}\" rejected the strategy_config of experiment \"{}\": {}",
                    loaded.identity.name,
                    e.key,
                    crate::status::ClippedText(why)
                ),
            )
        };
        let built = match built {
            RResult::ROk(b) => b,
            RResult::RErr(msg) => {
                refused.push((e.key.clone(), rejected(msg.as_str())));
                continue;
            }
        };
        let strategy = match PluginStrategy::new(loaded.identity, built, spec, demotion) {
            Ok(s) => Arc::new(s),
            Err(why) => {
                // The plugin built a strategy whose declaration the SDK cannot use.
                return Err(Refusal::new(
                    Step::Instantiate,
                    RefusalReason::InvalidDeclaration,
                    format!(
                        "plugin \"{}\", experiment \"{}\": {why}; fix the plugin's declaration",
                        loaded.identity.name, e.key
                    ),
                ));
            }
        };
        let (probed, experiment, cfg) = (Arc::clone(&strategy), (*e).clone(), *probe_cfg);
        crate::deadline::call(
            &format!("the probe of experiment \"{}\"", e.key),
            limit,
            move || probe::probe(&probed, &experiment, &cfg, now_ms),
        )
        .map_err(deadline_refusal)?
        .map_err(|err| {
            let message = format!("experiment \"{}\": {err}", e.key);
            Refusal::probe(err, message)
        })?;
        ok.push((e.key.clone(), strategy));
    }
    Ok((ok, refused))
}

/// Why version `v` may no longer serve under `trust` at `now_secs`: its signer's key is not
/// trusted (`revoked`) or its signature has expired (`expired`). `None`: it may serve.
/// Without a usable trust store (its `[trust]` table is refused anyway) keys are not judged.
fn unservable(
    v: LoadedPlugin,
    trust: Option<&TrustStore>,
    allow_unsigned: bool,
    now_secs: u64,
) -> Option<Refusal> {
    let id = v.identity;
    let what = format!(
        "plugin \"{}\" v{} (sha256 {})",
        id.name,
        id.version,
        id.sha256_prefix()
    );
    if id.key_id == "UNSIGNED" {
        if !allow_unsigned {
            return Some(Refusal::new(
                Step::Signature,
                RefusalReason::Revoked,
                format!("{what} is unsigned and trust.danger_allow_unsigned is now off, so it stops serving; deploy a signed release"),
            ));
        }
    } else if trust.is_some_and(|t| !t.trusts(&id.key_id)) {
        return Some(Refusal::new(
            Step::Signature,
            RefusalReason::Revoked,
            format!(
                "{what} is signed by key {}, which [trust] no longer lists: the key is revoked, so this version stops serving; deploy a release signed by a trusted key",
                id.key_id
            ),
        ));
    }
    match id.expires {
        Some(expires) if now_secs > expires => Some(Refusal::new(
            Step::Signature,
            RefusalReason::Expired,
            format!(
                "{what}: its signature expired at {}, so it stops serving; re-sign it with a later --expires (or deploy a newer release) and reload",
                crate::trust::format_utc(expires)
            ),
        )),
        _ => None,
    }
}

/// The refusal of a whole reload for an experiment whose `strategy_config` was rejected.
fn experiment_blocking(r: &Refusal) -> Refusal {
    r.with_message(format!(
            "{}; a rejected experiment refuses the whole reload, so what serves keeps serving: fix that experiment's strategy_config (or deploy a plugin version that accepts it) and reload",
            r.message
        ))
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
        res.experiments.push((key, refusal));
    }
}
