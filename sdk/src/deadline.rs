//! Deadlines on the plugin calls a reload makes (`new_strategy`, the probe, the guards).
//!
//! Native code cannot be interrupted, so a call that never returns cannot be cancelled: it
//! runs on a thread of its own, the reload waits for it at most the deadline, and past it the
//! thread is **abandoned** (left running, never joined) and counted. The reload then refuses
//! the candidate (`deadline_exceeded`) and releases its lock, so the next reload works. The
//! count of abandoned calls is in `Status::abandoned_plugin_calls`; each one holds a thread
//! (and whatever the plugin holds) until the process ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The default deadline of each plugin call a reload makes (`[reload] deadline_ms`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

static ABANDONED: AtomicU64 = AtomicU64::new(0);

/// Plugin calls abandoned past their deadline in this process (their threads still run).
pub fn abandoned_calls() -> u64 {
    ABANDONED.load(Ordering::Relaxed)
}

/// Why a call under a deadline gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DeadlineError {
    /// It did not return in time; its thread is abandoned.
    #[error("{what} did not return within {ms} ms; the call was abandoned (its thread keeps running) and the candidate refused")]
    Exceeded {
        /// The call, e.g. `new_strategy for experiment "e"`.
        what: String,
        /// The deadline in milliseconds.
        ms: u128,
    },
    /// The thread ended without an answer (a panic that escaped, or no thread could start).
    #[error("{what} ended without an answer ({detail})")]
    Lost {
        /// The call.
        what: String,
        /// What happened.
        detail: String,
    },
}

/// Runs `f` on a thread of its own and waits at most `limit` for its result.
pub(crate) fn call<T, F>(what: &str, limit: Duration, f: F) -> Result<T, DeadlineError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("abkit-plugin-call".into())
        .spawn(move || {
            // The receiver may be gone (deadline passed): nothing to do then.
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        return Err(DeadlineError::Lost {
            what: what.to_string(),
            detail: format!("cannot start a thread: {e}"),
        });
    }
    match rx.recv_timeout(limit) {
        Ok(v) => Ok(v),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            ABANDONED.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                call = what,
                deadline_ms = limit.as_millis() as u64,
                "plugin call abandoned past its deadline"
            );
            Err(DeadlineError::Exceeded {
                what: what.to_string(),
                ms: limit.as_millis(),
            })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(DeadlineError::Lost {
            what: what.to_string(),
            detail: "the call's thread ended without a result".into(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_in_time_is_returned() {
        assert_eq!(call("add", Duration::from_secs(5), || 2 + 2), Ok(4));
    }

    #[test]
    fn a_call_that_never_returns_is_abandoned_at_the_deadline() {
        let before = abandoned_calls();
        let r: Result<(), _> = call("hang", Duration::from_millis(100), || loop {
            std::thread::sleep(Duration::from_secs(3600));
        });
        assert!(
            matches!(r, Err(DeadlineError::Exceeded { ms: 100, .. })),
            "{r:?}"
        );
        assert!(abandoned_calls() > before);
    }

    #[test]
    fn a_panic_is_an_error_not_a_hang() {
        // A generous limit: printing the panic (and a backtrace) on a loaded machine takes time.
        let r: Result<(), _> = call("boom", Duration::from_secs(60), || panic!("boom"));
        assert!(matches!(r, Err(DeadlineError::Lost { .. })), "{r:?}");
    }
}
