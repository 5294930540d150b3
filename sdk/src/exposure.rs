//! Exposure events: who saw which variant, decided by what, and when.
//!
//! Install a hook with [`crate::SdkBuilder::on_exposure`]; `assign` calls it synchronously
//! after deciding, with borrowed data (no allocation by abkit). For a queue to another thread,
//! [`ExposureChannel`] is a ready-made hook over a bounded channel: when the consumer falls
//! behind, events are dropped and counted — `assign` never blocks. (That adapter copies the
//! unit id into an owned event, so it allocates per exposure; the zero-allocation guarantee
//! of `assign` holds without a hook or with a hook that does not allocate.)

use crate::assignment::{Assignment, DecidedBy, Reason};
use crate::unit::Unit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

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
}

impl ExposureChannel {
    /// A channel holding at most `capacity` undelivered events, and its receiving end.
    pub fn bounded(capacity: usize) -> (ExposureChannel, Receiver<ExposureEvent>) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(capacity);
        (
            ExposureChannel {
                sender,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            receiver,
        )
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
