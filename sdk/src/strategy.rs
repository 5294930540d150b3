//! A plugin strategy serving one experiment: builds the request, checks the answer, counts
//! calls and errors, and demotes the plugin to the builtin when its error rate is too high.

use crate::assignment::FallbackReason;
use crate::loader::PluginIdentity;
use crate::unit::Unit;
use abkit_strategy_api::abi_stable::std_types::{ROption, RSlice, RStr};
use abkit_strategy_api::{BuiltStrategy, Decision, ExperimentSpec, Request, StrategyBox};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// When a plugin is demoted: more than `max_error_rate` of the last `window` calls failed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct DemotionPolicy {
    /// Calls the error rate is measured over.
    pub window: u64,
    /// Largest tolerated fraction of failed calls (errors, panics, out-of-range answers).
    pub max_error_rate: f64,
}

impl Default for DemotionPolicy {
    /// 1% of the last 10,000 calls.
    fn default() -> Self {
        DemotionPolicy {
            window: 10_000,
            max_error_rate: 0.01,
        }
    }
}

impl DemotionPolicy {
    /// This value with `window` set to `window`.
    pub const fn with_window(mut self, window: u64) -> Self {
        self.window = window;
        self
    }

    /// This value with `max_error_rate` set to `max_error_rate`.
    pub const fn with_max_error_rate(mut self, max_error_rate: f64) -> Self {
        self.max_error_rate = max_error_rate;
        self
    }
}

impl DemotionPolicy {
    /// How many failures within `window` calls demote (at least 1, at most `MAX_RING`).
    fn failures_to_demote(&self) -> usize {
        ((self.window as f64 * self.max_error_rate).ceil() as usize).clamp(1, MAX_RING)
    }
}

const MAX_RING: usize = 1024;

/// Threads that can own a counter shard at once; more threads share an atomic overflow cell.
const SLOTS: usize = 64;

/// A call counter written on every plugin call without a locked instruction.
///
/// Each live thread owns one of [`SLOTS`] shards exclusively (claimed on its first call,
/// handed back when it exits), so its increment is a plain load and store on its own cache
/// line: no `lock`-prefixed read-modify-write, which would drain the store buffer on every
/// assign and make threads contend. Threads beyond the first [`SLOTS`] alive at once add to a
/// shared atomic instead. The sum is exact either way: a shard has one writer at a time, and a
/// slot changes owner through a mutex (the next owner sees the last count).
#[derive(Debug)]
struct CallCounter {
    shards: Box<[Padded; SLOTS]>,
    overflow: AtomicU64,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

/// This thread's shard index (`usize::MAX`: none, use the overflow cell).
struct ThreadSlot(usize);

static FREE_SLOTS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

impl ThreadSlot {
    fn claim() -> Self {
        let free = FREE_SLOTS.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match free {
            Some(i) => ThreadSlot(i),
            None => match NEXT_SLOT.fetch_add(1, Ordering::Relaxed) {
                i if i < SLOTS => ThreadSlot(i),
                _ => ThreadSlot(usize::MAX),
            },
        }
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        if self.0 < SLOTS {
            FREE_SLOTS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(self.0);
        }
    }
}

thread_local!(static SLOT: ThreadSlot = ThreadSlot::claim());

impl Default for CallCounter {
    fn default() -> Self {
        CallCounter {
            shards: Box::new(std::array::from_fn(|_| Padded::default())),
            overflow: AtomicU64::new(0),
        }
    }
}

impl CallCounter {
    #[inline]
    fn incr(&self) {
        let slot = SLOT.try_with(|s| s.0).unwrap_or(usize::MAX);
        match self.shards.get(slot) {
            // The only writer of this shard: a plain load + store is exact.
            Some(shard) => shard
                .0
                .store(shard.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed),
            None => {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn sum(&self) -> u64 {
        self.shards
            .iter()
            .map(|p| p.0.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.overflow.load(Ordering::Relaxed)
    }
}

/// Counters of one plugin strategy.
#[derive(Debug)]
struct Health {
    calls: CallCounter,
    errors: AtomicU64,
    invalid: AtomicU64,
    /// Call count at each of the last `need` failures (a ring): if the oldest of them is less
    /// than `window` calls ago, the error rate over the last `window` calls crossed the limit.
    ring: Box<[AtomicU64]>,
    ring_pos: AtomicU64,
    demoted: AtomicBool,
    /// When and why it was demoted (written once per demotion, on the cold path).
    demotion: std::sync::Mutex<Option<Demotion>>,
    policy: DemotionPolicy,
}

/// Why and since when a plugin strategy is demoted to the builtin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Demotion {
    /// When it was demoted, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// The error rate that demoted it and the last failure (plugin text cut to 1 KiB).
    pub why: String,
}

impl Health {
    fn new(policy: DemotionPolicy) -> Self {
        Health {
            calls: CallCounter::default(),
            errors: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            ring: (0..policy.failures_to_demote())
                .map(|_| AtomicU64::new(0))
                .collect(),
            ring_pos: AtomicU64::new(0),
            demoted: AtomicBool::new(false),
            demotion: std::sync::Mutex::new(None),
            policy,
        }
    }

    /// Lifts a demotion: counts failures afresh from now on.
    fn reset(&self) {
        for slot in self.ring.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        self.ring_pos.store(0, Ordering::Relaxed);
        *self.demotion.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.demoted.store(false, Ordering::Relaxed);
    }

    /// Records a failure (cold path); returns true when this failure demotes the plugin.
    #[cold]
    fn failure(&self) -> bool {
        let now = self.calls.sum();
        let k = self.ring.len() as u64;
        let pos = self.ring_pos.fetch_add(1, Ordering::Relaxed);
        self.ring[(pos % k) as usize].store(now, Ordering::Relaxed);
        if pos + 1 >= k {
            let oldest = self.ring[((pos + 1) % k) as usize].load(Ordering::Relaxed);
            if now.saturating_sub(oldest) < self.policy.window
                && !self.demoted.swap(true, Ordering::Relaxed)
            {
                return true;
            }
        }
        false
    }
}

/// Live counters of a plugin strategy, for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StrategyCounters {
    /// Calls into the plugin.
    pub calls: u64,
    /// Calls that returned an error (including caught panics).
    pub errors: u64,
    /// Calls that returned an out-of-range variant.
    pub invalid_answers: u64,
    /// Whether the plugin was demoted to the builtin for this experiment.
    pub demoted: bool,
}

/// What a plugin strategy is built from for one experiment (besides the plugin itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StrategySpec {
    pub(crate) experiment: String,
    pub(crate) salt: String,
    pub(crate) weights: Vec<u32>,
    pub(crate) coverage_bp: u32,
    pub(crate) strategy_config_json: String,
}

impl StrategySpec {
    pub(crate) fn of(e: &crate::config::ExperimentConfig) -> Self {
        StrategySpec {
            experiment: e.key.clone(),
            salt: e.salt.clone(),
            weights: e.weights(),
            coverage_bp: e.coverage_bp,
            strategy_config_json: e.strategy_config_json.clone(),
        }
    }

    /// The spec as it crosses the plugin boundary (borrowed from `self`).
    pub(crate) fn as_abi(&self) -> ExperimentSpec<'_> {
        ExperimentSpec::new(
            &self.experiment,
            &self.salt,
            &self.weights,
            self.coverage_bp,
            &self.strategy_config_json,
        )
    }
}

/// What a strategy randomises by, as its plugin declared it when it was built.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum Randomisation {
    /// Each unit id on its own.
    UnitId,
    /// The value of one attribute (a cluster), within one time window if `window_ms` is set.
    Attribute {
        /// The attribute.
        attribute: String,
        /// The window length in ms, if the answer changes per window.
        #[serde(skip_serializing_if = "Option::is_none")]
        window_ms: Option<u64>,
    },
}

impl std::fmt::Display for Randomisation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Randomisation::UnitId => f.write_str("unit id"),
            Randomisation::Attribute {
                attribute,
                window_ms: None,
            } => write!(f, "attribute {attribute}"),
            Randomisation::Attribute {
                attribute,
                window_ms: Some(ms),
            } => write!(f, "attribute {attribute} per {ms} ms window"),
        }
    }
}

/// A strategy's declaration, checked and copied out of the plugin's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StrategyDeclaration {
    /// Attributes it reads (at most [`MAX_DECLARED`]).
    pub(crate) attributes: Vec<String>,
    /// Attributes it cannot decide without: a unit lacking one is answered `missing_attribute`.
    pub(crate) required: Box<[Box<str>]>,
    pub(crate) randomisation: Randomisation,
}

/// Most attributes a declaration may list; names longer than [`MAX_NAME`] bytes are refused.
const MAX_DECLARED: usize = 64;
const MAX_NAME: usize = 256;

impl StrategyDeclaration {
    /// Copies and checks what the plugin declared; an unusable declaration is an error
    /// message for the operator (the experiment's strategy is refused).
    pub(crate) fn from_abi(d: &abkit_strategy_api::Declaration) -> Result<Self, String> {
        let name_ok = |n: &str| !n.is_empty() && n.len() <= MAX_NAME;
        if d.attributes.len() > MAX_DECLARED {
            return Err(format!(
                "the strategy declared {} attributes; at most {MAX_DECLARED} are accepted",
                d.attributes.len()
            ));
        }
        let mut attributes = Vec::new();
        let mut required = Vec::new();
        for a in d.attributes.iter() {
            let name = a.name.as_str();
            if !name_ok(name) {
                return Err(format!(
                    "the strategy declared an attribute name of {} bytes; names must have 1 to {MAX_NAME}",
                    name.len()
                ));
            }
            attributes.push(name.to_string());
            if a.required {
                required.push(Box::from(name));
            }
        }
        let randomisation = match &d.randomisation {
            abkit_strategy_api::Randomisation::UnitId => Randomisation::UnitId,
            abkit_strategy_api::Randomisation::Attribute { name, window_ms } => {
                if !name_ok(name.as_str()) {
                    return Err(format!(
                        "the strategy declared it randomises by an attribute name of {} bytes; names must have 1 to {MAX_NAME}",
                        name.len()
                    ));
                }
                if let ROption::RSome(0) = window_ms {
                    return Err("the strategy declared a time window of 0 ms".into());
                }
                if !attributes.iter().any(|a| a == name.as_str()) {
                    attributes.push(name.to_string());
                }
                Randomisation::Attribute {
                    attribute: name.to_string(),
                    window_ms: (*window_ms).into(),
                }
            }
        };
        Ok(StrategyDeclaration {
            attributes,
            required: required.into(),
            randomisation,
        })
    }
}

/// One experiment's instance of a plugin strategy.
pub(crate) struct PluginStrategy {
    pub(crate) identity: &'static PluginIdentity,
    spec: StrategySpec,
    instance: StrategyBox,
    declaration: StrategyDeclaration,
    experiment: Box<str>,
    variants: u32,
    health: Health,
}

impl std::fmt::Debug for PluginStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginStrategy")
            .field("plugin", &self.identity.name)
            .field("version", &self.identity.version)
            .field("experiment", &self.experiment)
            .field("counters", &self.counters())
            .finish()
    }
}

impl PluginStrategy {
    /// Wraps what the plugin built; its declaration must be usable (else the message says why).
    pub(crate) fn new(
        identity: &'static PluginIdentity,
        built: BuiltStrategy,
        spec: StrategySpec,
        policy: DemotionPolicy,
    ) -> Result<Self, String> {
        let declaration = StrategyDeclaration::from_abi(&built.declaration)?;
        Ok(PluginStrategy {
            identity,
            instance: built.strategy,
            declaration,
            experiment: spec.experiment.clone().into(),
            variants: spec.weights.len() as u32,
            spec,
            health: Health::new(policy),
        })
    }

    /// What the strategy declared when it was built.
    pub(crate) fn declaration(&self) -> &StrategyDeclaration {
        &self.declaration
    }

    /// Whether `unit` lacks (or has empty) an attribute the strategy declared required: the
    /// SDK then answers `missing_attribute` without calling the plugin.
    #[inline]
    pub(crate) fn lacks_required(&self, unit: &Unit<'_>) -> bool {
        self.declaration
            .required
            .iter()
            .any(|k| unit.attribute(k).is_none_or(str::is_empty))
    }

    /// What this strategy was built from: a reload reuses it (with its health) when the plugin
    /// identity and this spec are unchanged.
    pub(crate) fn spec(&self) -> &StrategySpec {
        &self.spec
    }

    /// Why and since when it is demoted, if it is.
    pub(crate) fn demotion(&self) -> Option<Demotion> {
        if !self.is_demoted() {
            return None;
        }
        self.health
            .demotion
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Lifts a demotion (an explicit reset): the plugin serves again and failures count afresh.
    pub(crate) fn reset_demotion(&self) -> bool {
        let was = self.is_demoted();
        self.health.reset();
        if was {
            tracing::warn!(plugin = %self.identity.name, experiment = %self.experiment, "demotion reset: the plugin serves again");
        }
        was
    }

    /// Calls the plugin once for `unit` with `id` as the unit id (the unit's own id, or its
    /// `bucket_by` value), without counting (the probe uses this).
    #[inline]
    pub(crate) fn call(&self, unit: &Unit<'_>, id: &str, fixed_now_ms: Option<u64>) -> Decision {
        let request = Request {
            unit_id: RStr::from_str(id),
            attributes: RSlice::from_slice(unit.attributes()),
            fixed_now_ms: fixed_now_ms.into(),
        };
        self.instance.assign(&request)
    }

    /// Whether the plugin was demoted.
    #[inline]
    pub(crate) fn is_demoted(&self) -> bool {
        self.health.demoted.load(Ordering::Relaxed)
    }

    /// Decides one unit: `Ok(Some(variant))`, `Ok(None)` (not enrolled), or the reason the
    /// builtin must answer this call instead.
    #[inline]
    pub(crate) fn decide(
        &self,
        unit: &Unit<'_>,
        id: &str,
        fixed_now_ms: Option<u64>,
    ) -> Result<Option<u32>, FallbackReason> {
        // Fixed-time answers (simulations, probes, guards) say nothing about serving health: a
        // strategy carried into a reload candidate must not be demoted by the guards' calls.
        let serving = fixed_now_ms.is_none();
        if serving {
            self.health.calls.incr();
        }
        match self.call(unit, id, fixed_now_ms) {
            Decision::Variant(i) if i < self.variants => Ok(Some(i)),
            Decision::NotEnrolled => Ok(None),
            Decision::Variant(i) => {
                if serving {
                    self.health.invalid.fetch_add(1, Ordering::Relaxed);
                    self.record_failure(format_args!("variant index {i} out of range"));
                }
                Err(FallbackReason::InvalidAnswer)
            }
            Decision::Error(msg) => {
                if serving {
                    self.health.errors.fetch_add(1, Ordering::Relaxed);
                    self.record_failure(format_args!(
                        "{}",
                        crate::status::ClippedText(msg.as_str())
                    ));
                }
                Err(FallbackReason::StrategyError)
            }
        }
    }

    #[cold]
    fn record_failure(&self, what: std::fmt::Arguments<'_>) {
        tracing::debug!(plugin = %self.identity.name, experiment = %self.experiment, "strategy call failed: {what}");
        if self.health.failure() {
            let since_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            *self
                .health
                .demotion
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Demotion {
                since_ms,
                why: format!(
                    "more than {} of the last {} calls failed; last failure: {what}",
                    self.health.policy.max_error_rate, self.health.policy.window
                ),
            });
            tracing::error!(
                plugin = %self.identity.name,
                version = self.identity.version,
                experiment = %self.experiment,
                window = self.health.policy.window,
                max_error_rate = self.health.policy.max_error_rate,
                "plugin demoted to builtin:hash-v1: error rate over the limit (last failure: {what})"
            );
        }
    }

    /// Current counters.
    pub(crate) fn counters(&self) -> StrategyCounters {
        StrategyCounters {
            calls: self.health.calls.sum(),
            errors: self.health.errors.load(Ordering::Relaxed),
            invalid_answers: self.health.invalid.load(Ordering::Relaxed),
            demoted: self.is_demoted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_counter_is_exact_with_more_threads_than_slots_and_across_thread_exits() {
        let counter = CallCounter::default();
        // 3 waves of 100 threads alive at once: slots are claimed, shared via overflow, handed
        // back and reclaimed.
        for _ in 0..3 {
            let start = std::sync::Barrier::new(100);
            std::thread::scope(|s| {
                for _ in 0..100 {
                    s.spawn(|| {
                        start.wait();
                        for _ in 0..1_000 {
                            counter.incr();
                        }
                    });
                }
            });
        }
        assert_eq!(counter.sum(), 300_000);
    }

    #[test]
    fn one_failure_per_hundred_calls_is_tolerated_but_a_burst_demotes() {
        let h = Health::new(DemotionPolicy {
            window: 1000,
            max_error_rate: 0.01,
        }); // 10 failures
        for i in 0..10_000u64 {
            h.calls.incr();
            if i % 500 == 0 {
                assert!(!h.failure(), "sparse failures must not demote");
            }
        }
        assert!(!h.demoted.load(Ordering::Relaxed));
        let mut demoted_at = None;
        for i in 0..20 {
            h.calls.incr();
            if h.failure() {
                demoted_at.get_or_insert(i);
            }
        }
        // Sparse failures every 500 calls: the one at call 9501 plus 9 of the burst are the first
        // 10 failures within 1000 calls.
        assert_eq!(
            demoted_at,
            Some(8),
            "the 10th failure within the window demotes"
        );
        assert!(h.demoted.load(Ordering::Relaxed));
    }
}
