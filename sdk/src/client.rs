//! [`Sdk`]: what a service holds and calls `assign` on, and how it is reloaded.

use crate::assignment::Assignment;
use crate::config::Config;
use crate::error::Error;
use crate::exposure::{Exposure, ExposureHook};
use crate::guard::{self, GuardConfig, GuardKind};
use crate::plugins::{PluginManager, PluginOptions};
use crate::probe::ProbeConfig;
use crate::registry::{ExperimentHandle, Registry, Snapshot};
use crate::reload::ReloadReport;
use crate::status::{Refusal, RefusalReason, Status, Step};
use crate::strategy::DemotionPolicy;
use crate::unit::Unit;
use arc_swap::ArcSwapOption;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The abkit client. Cheap to share (`Arc<Sdk>` or `&Sdk`); `assign` never blocks or fails.
pub struct Sdk {
    registry: Registry,
    exposure: Option<ExposureHook>,
    /// Reload state; locked only by reloads (one at a time), never by `assign`.
    control: Mutex<Control>,
    last_report: ArcSwapOption<ReloadReport>,
    /// Shared with the plugin manager: why accepted versions could not be persisted.
    ledger_problem: Arc<Mutex<Option<String>>>,
    /// Where the configuration comes from (file or etcd) and how current it is.
    source: crate::source::SourceCell,
}

#[derive(Debug)]
struct Control {
    plugins: PluginManager,
    source: Option<PathBuf>,
    guards: GuardConfig,
}

impl std::fmt::Debug for Sdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sdk")
            .field("generation", &self.registry.load().generation())
            .field("exposure_hook", &self.exposure.is_some())
            .finish_non_exhaustive()
    }
}

/// Options for building an [`Sdk`].
#[derive(Clone, Default)]
pub struct SdkBuilder {
    options: PluginOptions,
    guards: GuardConfig,
    source: Option<PathBuf>,
    exposure: Option<ExposureHook>,
}

impl std::fmt::Debug for SdkBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkBuilder")
            .field("options", &self.options)
            .field("guards", &self.guards)
            .finish_non_exhaustive()
    }
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

    /// The guards a reload candidate must pass (sample ratio, reassignment).
    pub fn guards(mut self, guards: GuardConfig) -> Self {
        self.guards = guards;
        self.options.guard_population = guards.population;
        self
    }

    /// Runs every plugin artifact not yet accepted in this process in a child process first
    /// (`abkit preflight`; see [`crate::config::PreflightConfig`]); `[preflight]` in the
    /// configuration wins. A child that crashes, exits without a result or times out refuses
    /// the artifact, which this process then never maps.
    pub fn preflight(mut self, preflight: crate::config::PreflightConfig) -> Self {
        self.options.preflight = Some(preflight);
        self
    }

    /// Calls `hook` after every assignment with the exposure (experiment, unit, answer with its
    /// provenance, timestamp). It runs on the caller's thread: keep it short and non-blocking
    /// (see [`crate::exposure::ExposureChannel`] for a bounded, never-blocking queue).
    pub fn on_exposure(mut self, hook: ExposureHook) -> Self {
        self.exposure = Some(hook);
        self
    }

    /// How long each plugin call a reload (or the first build) makes may take: `new_strategy`,
    /// the probe of each experiment, the reload guards (default 10 s; `[reload] deadline_ms`
    /// in the configuration wins). Past it the plugin or candidate is refused
    /// `deadline_exceeded` and the stuck call is abandoned on its thread, counted in
    /// [`Status::abandoned_plugin_calls`].
    pub fn deadline(mut self, deadline: std::time::Duration) -> Self {
        self.options.deadline = deadline;
        self
    }

    /// The most distinct plugin libraries the process may map (default 256; each costs memory
    /// for the life of the process since libraries are never unloaded).
    pub fn max_libraries(mut self, cap: usize) -> Self {
        self.options.max_libraries = cap;
        self
    }

    /// Builds the client from a validated configuration: loads, verifies and probes its
    /// plugins. A refused plugin does not fail the build: its experiments use
    /// `builtin:hash-v1` and [`Sdk::status`] says why. Only an invalid configuration is an error.
    pub fn build(self, config: Config) -> Result<Sdk, Error> {
        let mut plugins = PluginManager::new(self.options);
        let (resolution, pending) = plugins.resolve(&config, SystemTime::now());
        let snapshot = Snapshot::build_resolved(config, 1, resolution)?;
        plugins.commit(pending, &snapshot);
        let source = self
            .source
            .as_deref()
            .map(crate::source::SourceStatus::file);
        Ok(Sdk {
            source: crate::source::SourceCell::new(source),
            ledger_problem: plugins.ledger_problem.clone(),
            registry: Registry::new(snapshot),
            exposure: self.exposure,
            control: Mutex::new(Control {
                plugins,
                source: self.source,
                guards: self.guards,
            }),
            last_report: ArcSwapOption::empty(),
        })
    }

    /// Reads, validates and serves a configuration file; [`Sdk::reload`] re-reads it.
    pub fn build_from_file(mut self, path: impl AsRef<Path>) -> Result<Sdk, Error> {
        let config = Config::from_file(path.as_ref())?;
        self.source = Some(path.as_ref().to_path_buf());
        self.build(config)
    }

    /// Reads the configuration from one etcd key (feature `etcd`) and serves it; falls back to
    /// the local copy of the last good document when etcd is unreachable or its document is
    /// refused (see [`crate::source::etcd`]). Start [`crate::source::etcd::watch`] next to
    /// follow changes.
    #[cfg(feature = "etcd")]
    pub async fn build_from_etcd(
        self,
        options: &crate::source::etcd::EtcdOptions,
    ) -> Result<Sdk, Error> {
        crate::source::etcd::build(self, options).await
    }
}

impl Sdk {
    /// Options for building a client (probe budget, demotion policy, guards).
    pub fn builder() -> SdkBuilder {
        SdkBuilder::default()
    }

    /// Builds a client serving a validated configuration (see [`SdkBuilder::build`]).
    pub fn from_config(config: Config) -> Result<Sdk, Error> {
        Sdk::builder().build(config)
    }

    /// Reads, validates and serves a TOML configuration file ([`Sdk::reload`] re-reads it).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Sdk, Error> {
        Sdk::builder().build_from_file(path)
    }

    /// Validates and serves TOML text (relative paths resolve against the current directory).
    pub fn from_toml_str(text: &str) -> Result<Sdk, Error> {
        Sdk::from_config(Config::from_toml_str(text, "<string>", Path::new("."))?)
    }

    /// Assigns `unit` in `experiment`: synchronous, lock-free, no heap allocation, never fails.
    /// An unknown experiment answers not-enrolled with [`crate::Reason::UnknownExperiment`].
    #[inline]
    pub fn assign(&self, experiment: &str, unit: &Unit<'_>) -> Assignment {
        let assignment = self.registry.load().assign(experiment, unit);
        if let Some(hook) = &self.exposure {
            let timestamp_ms = crate::reload::now_ms();
            hook(&Exposure {
                experiment,
                unit,
                assignment: &assignment,
                timestamp_ms,
            });
        }
        assignment
    }

    /// Resolves experiment `key` once, for a caller that assigns in it on every request:
    /// [`Sdk::assign_handle`] then skips hashing the key. The handle follows reloads (it is
    /// re-resolved, once, after each swap) and may be shared between threads; an experiment
    /// that does not exist (yet, or any more) answers `unknown_experiment`, as by key.
    pub fn handle(&self, key: &str) -> ExperimentHandle {
        ExperimentHandle::new(key)
    }

    /// [`Sdk::assign`] through a handle from [`Sdk::handle`]: the same answer, the same
    /// metrics and exposure events, without the per-call lookup by key.
    #[inline]
    pub fn assign_handle(&self, handle: &ExperimentHandle, unit: &Unit<'_>) -> Assignment {
        let assignment = self.registry.load().assign_handle(handle, unit);
        if let Some(hook) = &self.exposure {
            let timestamp_ms = crate::reload::now_ms();
            hook(&Exposure {
                experiment: handle.key(),
                unit,
                assignment: &assignment,
                timestamp_ms,
            });
        }
        assignment
    }

    /// The serving snapshot, held for as long as the caller keeps it (simulations, status).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.registry.snapshot()
    }

    /// What serves now: plugins and, per experiment, which strategy really decides, with live
    /// counters; plus the last reload report.
    pub fn status(&self) -> Status {
        let mut status = self.registry.load().status();
        status.last_reload = self.last_reload().map(|r| (*r).clone());
        status.ledger_problem = self
            .ledger_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        status.source = self.source.status();
        status
    }

    /// Where the configuration comes from and how current it is (the `source` section of
    /// [`Sdk::status`], cheaper: for readiness checks, see
    /// [`crate::source::SourceStatus::stale_reason`]).
    pub fn source_status(&self) -> Option<crate::source::SourceStatus> {
        self.source.status()
    }

    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn source_cell(&self) -> &crate::source::SourceCell {
        &self.source
    }

    /// Records a reload refused before a candidate could be built (a document that does not
    /// parse, a missing plugin file): the report is published and counted like any other.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn refuse(&self, trigger: &str, refusal: Refusal) -> ReloadReport {
        let report =
            ReloadReport::refused_early(trigger, self.registry.load().generation(), refusal);
        self.finish(report, Instant::now())
    }

    /// Lifts the demotion of the plugin strategy serving `experiment` (an explicit operator
    /// decision: demotion otherwise sticks until a new artifact or a new spec for that
    /// experiment is accepted). Returns whether it was demoted; `false` also when no plugin
    /// serves it. Takes effect for the next `assign`, lock-free.
    pub fn reset_demotion(&self, experiment: &str) -> bool {
        let snapshot = self.registry.load();
        let found = snapshot
            .plugin_strategies()
            .find(|(key, _)| *key == experiment)
            .map(|(_, s)| Arc::clone(s));
        found.is_some_and(|s| s.reset_demotion())
    }

    /// The report of the last reload attempt, if any.
    pub fn last_reload(&self) -> Option<Arc<ReloadReport>> {
        self.last_report.load_full()
    }

    /// The configuration file this client was built from, if any.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .source
            .clone()
    }

    /// Re-reads the configuration file the client was built from and reloads it.
    pub fn reload(&self) -> ReloadReport {
        self.reload_from_source("api")
    }

    /// [`Sdk::reload`] with the trigger named in the report (`file`, `sighup` ...).
    pub fn reload_from_source(&self, trigger: &str) -> ReloadReport {
        let Some(path) = self.config_path() else {
            let refusal = Refusal::new(
                Step::Config,
                RefusalReason::NoConfigFile,
                "this client was not built from a file; use reload_with".into(),
            );
            return self.finish(
                ReloadReport::refused_early(trigger, self.registry.load().generation(), refusal),
                Instant::now(),
            );
        };
        match Config::from_file(&path) {
            Ok(config) => self.reload_with(config, trigger),
            Err(e) => {
                let started = Instant::now();
                let refusal = Refusal::config(e);
                self.finish(
                    ReloadReport::refused_early(
                        trigger,
                        self.registry.load().generation(),
                        refusal,
                    ),
                    started,
                )
            }
        }
    }

    /// Reloads with a validated configuration: resolves its plugins, builds a complete
    /// candidate snapshot off the hot path, runs the guards, and publishes it with one atomic
    /// store — or refuses it whole, leaving what serves untouched. Readers never block.
    ///
    /// Refused when: a plugin that has a good version gets a refused candidate artifact (its
    /// good version keeps serving), a plugin rejects the `strategy_config` of an experiment,
    /// or a guard fails. A plugin that never had a good version does not block a reload: its
    /// experiments stay on `builtin:hash-v1`, reported. Neither does a plugin version whose
    /// signer's key left `[trust]` (`revoked`) or whose signature expired (`expired`): it stops
    /// serving, for its newest earlier version that may still serve, else the builtin.
    pub fn reload_with(&self, config: Config, trigger: &str) -> ReloadReport {
        let started = Instant::now();
        let mut control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.registry.snapshot();
        let now = SystemTime::now();
        // Fresh sample-ratio units for this reload; the preflight child evaluates the same.
        let seed = guard::fresh_seed();
        control.plugins.options.guard_seed = seed;
        let (mut resolution, pending) = control.plugins.resolve(&config, now);
        let blocking = resolution.blocking.take();
        let forced = std::mem::take(&mut resolution.forced);
        let answers = std::mem::take(&mut resolution.guard_answers);
        let candidate = match Snapshot::build_resolved(config, current.generation() + 1, resolution)
        {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let refusal = Refusal::config(e);
                return self.finish(
                    ReloadReport::refused_early(trigger, current.generation(), refusal),
                    started,
                );
            }
        };
        let (old_status, new_status) = (current.status(), candidate.status());
        let mut report =
            ReloadReport::compare(trigger, &current, &old_status, &candidate, &new_status);
        if let Some(refusal) = blocking {
            report.refusal = Some(refusal);
        } else {
            let now_ms = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            report.guards = match run_guards(&current, &candidate, &control, now_ms, seed, answers)
            {
                Ok(results) => results,
                Err(refusal) => {
                    report.refusal = Some(refusal);
                    Vec::new()
                }
            };
            // A version that may no longer serve cannot be kept to spare reassignments.
            for g in report.guards.iter_mut().filter(|g| {
                !g.passed && g.guard == GuardKind::Reassignment && forced.contains(&g.experiment)
            }) {
                g.passed = true;
                g.detail += "; allowed: the plugin version that served it may no longer serve (key revoked or signature expired)";
            }
            if let Some(g) = report.guards.iter().find(|g| !g.passed) {
                report.refusal = Some(Refusal::new(
                    Step::Guard,
                    g.guard.refusal_reason(),
                    format!("experiment \"{}\": {}", g.experiment, g.detail),
                ));
            }
        }
        if report.refusal.is_none() {
            report.accepted = true;
            report.generation = candidate.generation();
            control.plugins.commit(pending, &candidate);
            self.registry.publish_shared(candidate);
        }
        drop(control);
        self.finish(report, started)
    }

    fn finish(&self, mut report: ReloadReport, started: Instant) -> ReloadReport {
        report.duration_us = started.elapsed().as_micros() as u64;
        match &report.refusal {
            None => {
                tracing::info!(trigger = %report.trigger, generation = report.generation, duration_us = report.duration_us, "reload accepted")
            }
            Some(r) => {
                tracing::warn!(trigger = %report.trigger, step = %r.step, reason = %r.reason, "reload refused: {}", r.message)
            }
        }
        crate::metrics::reload(&report);
        self.last_report.store(Some(Arc::new(report.clone())));
        report
    }
}

/// Runs the reload guards on their own thread under the plugin-call deadline: the guards call
/// every plugin-decided experiment's strategy thousands of times, and a plugin that stops
/// answering must not hang the reload. The limit is the deadline per plugin of the candidate.
fn run_guards(
    current: &Arc<Snapshot>,
    candidate: &Arc<Snapshot>,
    control: &Control,
    now_ms: u64,
    seed: u64,
    answers: rustc_hash::FxHashMap<String, guard::GuardAnswers>,
) -> Result<Vec<guard::GuardResult>, Refusal> {
    let per_plugin = control.plugins.deadline_for(candidate.config());
    let plugins = u32::try_from(candidate.config().plugins.len().max(1)).unwrap_or(u32::MAX);
    let limit = per_plugin.saturating_mul(plugins);
    let (current, candidate, cfg) = (Arc::clone(current), Arc::clone(candidate), control.guards);
    crate::deadline::call("the reload guards", limit, move || {
        guard::check_with(&current, &candidate, &cfg, now_ms, seed, &answers)
    })
    .map_err(|e| {
        Refusal::new(
            Step::Deadline,
            RefusalReason::DeadlineExceeded,
            format!("{e}; a plugin stopped answering during the guards: fix it, or raise [reload] deadline_ms"),
        )
    })
}
