//! Exposure events: who saw which variant, decided by what, and when.
//!
//! Install a hook with [`crate::SdkBuilder::on_exposure`]; `assign` calls it synchronously
//! after deciding, with borrowed data (no allocation by abkit). For a queue to another thread,
//! [`ExposureChannel`] is a ready-made hook over a bounded channel: when the consumer falls
//! behind, events are dropped and counted — `assign` never blocks. (That adapter copies the
//! unit id into an owned event, so it allocates per exposure; the zero-allocation guarantee
//! of `assign` holds without a hook or with a hook that does not allocate.)
//!
//! **Deduplication.** A service that assigns the same user on every request would log the
//! same exposure thousands of times. [`ExposureChannel::with_dedup`] drops repeats of the same
//! (experiment, unit id, variant, provenance) within a time window, in a fixed amount of
//! memory ([`ExposureDedup`]): a table of `slots` entries (16 bytes each) split into 64
//! shards, allocated once. A key passes, and is remembered with the time it passed; a repeat
//! within the window is dropped and counted. What the fixed memory costs, and the guarantees:
//! - a repeat can **pass** again inside the window when its entry was overwritten by another
//!   key that hashed to the same slot (more distinct keys per window than slots): dedup is
//!   best effort, never a loss of a first exposure;
//! - a first exposure is **dropped** only if another key has the same 64-bit keyed hash
//!   (SipHash with a random key per process) and lands in the same slot within the window:
//!   about 2^-64 per pair of keys;
//! - `assign` never waits: a shard whose lock is held by another thread at that instant lets
//!   the event through undeduplicated (counted in `passed`).

use crate::assignment::{Assignment, DecidedBy, Reason};
use crate::unit::Unit;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One exposure, borrowed for the duration of the hook call.
#[derive(Debug, Clone, Copy)]
pub struct Exposure<'a> {
    /// The experiment key.
    pub experiment: &'a str,
    /// The unit (id and attributes).
    pub unit: &'a Unit<'a>,
    /// The answer (variant, reason, provenance).
    pub assignment: &'a Assignment,
    /// When it was decided, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// The hook type.
pub type ExposureHook = Arc<dyn Fn(&Exposure<'_>) + Send + Sync>;

/// An owned exposure event, as delivered by [`ExposureChannel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureEvent {
    /// The experiment key.
    pub experiment: String,
    /// The unit id.
    pub unit: String,
    /// The variant name, if enrolled.
    pub variant: Option<&'static str>,
    /// Why.
    pub reason: Reason,
    /// Which strategy decided (plugin name, signed version, sha256, key id), if one ran.
    pub decided_by: DecidedBy,
    /// When, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// A bounded queue of exposure events that never blocks `assign`.
#[derive(Debug, Clone)]
pub struct ExposureChannel {
    sender: SyncSender<ExposureEvent>,
    dropped: Arc<AtomicU64>,
    dedup: Option<Arc<ExposureDedup>>,
}

/// Shards of an [`ExposureDedup`] table (a power of two).
const DEDUP_SHARDS: usize = 64;

/// One shard of the dedup table: `(key hash, time it passed in ms)` per slot.
type DedupShard = Mutex<Box<[(u64, u64)]>>;

/// Drops repeated exposures within a window, in fixed memory (see the module docs).
pub struct ExposureDedup {
    window_ms: u64,
    hasher: std::collections::hash_map::RandomState,
    /// Per shard: `(key hash, time it passed in ms)`; hash 0 marks an empty slot.
    shards: Box<[DedupShard]>,
    deduplicated: AtomicU64,
    passed: AtomicU64,
}

impl std::fmt::Debug for ExposureDedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExposureDedup")
            .field("window_ms", &self.window_ms)
            .field("slots", &self.slots())
            .field("deduplicated", &self.deduplicated())
            .field("passed", &self.passed())
            .finish()
    }
}

impl ExposureDedup {
    /// Remembers up to `slots` keys (rounded up to a multiple of 64, at least 64), each for
    /// `window`. Memory: 16 bytes per slot, allocated here and never again (`1 << 18` slots
    /// = 4 MiB).
    pub fn new(window: Duration, slots: usize) -> Self {
        let per_shard = slots.div_ceil(DEDUP_SHARDS).max(1);
        ExposureDedup {
            window_ms: window.as_millis().min(u128::from(u64::MAX)) as u64,
            hasher: std::collections::hash_map::RandomState::new(),
            shards: (0..DEDUP_SHARDS)
                .map(|_| Mutex::new(vec![(0u64, 0u64); per_shard].into_boxed_slice()))
                .collect(),
            deduplicated: AtomicU64::new(0),
            passed: AtomicU64::new(0),
        }
    }

    /// The number of slots (the most distinct keys remembered at once).
    pub fn slots(&self) -> usize {
        self.shards.len() * self.shard_len()
    }

    fn shard_len(&self) -> usize {
        self.shards
            .first()
            .map_or(0, |s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    /// The table's memory in bytes (fixed at construction).
    pub fn memory_bytes(&self) -> usize {
        self.slots() * std::mem::size_of::<(u64, u64)>()
    }

    /// Exposures dropped as repeats so far.
    pub fn deduplicated(&self) -> u64 {
        self.deduplicated.load(Ordering::Relaxed)
    }

    /// Exposures let through so far.
    pub fn passed(&self) -> u64 {
        self.passed.load(Ordering::Relaxed)
    }

    /// Whether `e` should be delivered: `false` for a repeat of a key that passed less than the
    /// window ago. Allocation-free; never waits for a lock.
    pub fn admit(&self, e: &Exposure<'_>) -> bool {
        let mut h = self.hasher.build_hasher();
        e.experiment.hash(&mut h);
        e.unit.id().hash(&mut h);
        e.assignment.variant.map(|v| v.index).hash(&mut h);
        match e.assignment.decided_by {
            DecidedBy::Nobody => 0u8.hash(&mut h),
            DecidedBy::Builtin => 1u8.hash(&mut h),
            DecidedBy::Plugin(p) => {
                2u8.hash(&mut h);
                p.name.hash(&mut h);
                p.version.hash(&mut h);
                p.sha256.hash(&mut h);
            }
            DecidedBy::Fallback(r) => {
                3u8.hash(&mut h);
                r.as_str().hash(&mut h);
            }
        }
        let key = h.finish().max(1); // 0 marks an empty slot
        let shard = &self.shards[(key as usize) & (DEDUP_SHARDS - 1)];
        let repeat = match shard.try_lock() {
            Ok(mut slots) => {
                let i = ((key >> 6) % slots.len() as u64) as usize;
                let (held, since) = slots[i];
                let repeat = held == key && e.timestamp_ms.saturating_sub(since) < self.window_ms;
                if !repeat {
                    slots[i] = (key, e.timestamp_ms);
                }
                repeat
            }
            // Another thread holds this shard right now: never wait, let it through.
            Err(_) => false,
        };
        if repeat {
            self.deduplicated.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("abkit_exposures_deduplicated_total").increment(1);
        } else {
            self.passed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("abkit_exposures_passed_total").increment(1);
        }
        !repeat
    }
}

impl ExposureChannel {
    /// A channel holding at most `capacity` undelivered events, and its receiving end.
    pub fn bounded(capacity: usize) -> (ExposureChannel, Receiver<ExposureEvent>) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(capacity);
        (
            ExposureChannel {
                sender,
                dropped: Arc::new(AtomicU64::new(0)),
                dedup: None,
            },
            receiver,
        )
    }

    /// Delivers only the first exposure of each (experiment, unit, variant, provenance) within
    /// the dedup's window (see the module docs for the memory bound and the guarantees).
    pub fn with_dedup(mut self, dedup: ExposureDedup) -> Self {
        self.dedup = Some(Arc::new(dedup));
        self
    }

    /// The dedup, if one is set (its counters).
    pub fn dedup(&self) -> Option<&ExposureDedup> {
        self.dedup.as_deref()
    }

    /// Events dropped so far because the queue was full (or the receiver gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The hook to install with [`crate::SdkBuilder::on_exposure`].
    pub fn hook(&self) -> ExposureHook {
        let this = self.clone();
        Arc::new(move |e: &Exposure<'_>| this.offer(e))
    }

    fn offer(&self, e: &Exposure<'_>) {
        if let Some(dedup) = &self.dedup {
            if !dedup.admit(e) {
                return;
            }
        }
        let event = ExposureEvent {
            experiment: e.experiment.to_string(),
            unit: e.unit.id().to_string(),
            variant: e.assignment.variant_name(),
            reason: e.assignment.reason,
            decided_by: e.assignment.decided_by,
            timestamp_ms: e.timestamp_ms,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sender.try_send(event)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("abkit_exposures_dropped_total").increment(1);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::assignment::Variant;

    fn exposure<'a>(
        unit: &'a Unit<'a>,
        a: &'a Assignment,
        experiment: &'a str,
        t: u64,
    ) -> Exposure<'a> {
        Exposure {
            experiment,
            unit,
            assignment: a,
            timestamp_ms: t,
        }
    }

    fn assigned(index: u32, decided_by: DecidedBy) -> Assignment {
        Assignment {
            variant: Some(Variant { index, name: "v" }),
            reason: Reason::Assigned,
            decided_by,
        }
    }

    #[test]
    fn repeats_within_the_window_are_dropped_and_pass_again_after_it() {
        let d = ExposureDedup::new(Duration::from_secs(60), 1024);
        let u = Unit::new("user-1");
        let a = assigned(0, DecidedBy::Builtin);
        assert!(d.admit(&exposure(&u, &a, "e", 1_000)));
        assert!(!d.admit(&exposure(&u, &a, "e", 30_000)));
        assert!(!d.admit(&exposure(&u, &a, "e", 60_999)));
        assert!(
            d.admit(&exposure(&u, &a, "e", 61_000)),
            "the window has passed"
        );
        assert!(!d.admit(&exposure(&u, &a, "e", 61_001)));
        assert_eq!((d.passed(), d.deduplicated()), (2, 3));
    }

    #[test]
    fn another_experiment_unit_variant_or_provenance_is_another_key() {
        let d = ExposureDedup::new(Duration::from_secs(60), 1024);
        let (u1, u2) = (Unit::new("user-1"), Unit::new("user-2"));
        let a0 = assigned(0, DecidedBy::Builtin);
        let a1 = assigned(1, DecidedBy::Builtin);
        let fallback = assigned(0, DecidedBy::Fallback(crate::FallbackReason::Demoted));
        for (unit, a, exp) in [
            (&u1, &a0, "e"),
            (&u1, &a0, "f"),
            (&u2, &a0, "e"),
            (&u1, &a1, "e"),
            (&u1, &fallback, "e"),
        ] {
            assert!(d.admit(&exposure(unit, a, exp, 5)), "{exp} {unit:?} {a:?}");
        }
        assert_eq!(d.deduplicated(), 0);
    }

    #[test]
    fn memory_is_fixed_at_construction_and_repeats_of_recent_keys_are_still_caught() {
        let d = ExposureDedup::new(Duration::from_secs(3600), 1 << 12);
        assert_eq!(d.slots(), 1 << 12);
        assert_eq!(d.memory_bytes(), (1 << 12) * 16);
        let a = assigned(0, DecidedBy::Builtin);
        // Far more distinct keys than slots: every first exposure passes.
        for i in 0..100_000 {
            let id = format!("user-{i}");
            assert!(d.admit(&exposure(&Unit::new(&id), &a, "e", 10)));
        }
        assert_eq!(d.memory_bytes(), (1 << 12) * 16);
        // The most recent key is remembered.
        assert!(!d.admit(&exposure(&Unit::new("user-99999"), &a, "e", 11)));
    }
}
