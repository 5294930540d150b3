//! Where the configuration comes from: a file (the default, and the embedded default of a
//! fleet) or, with the `etcd` feature, one etcd key holding the same TOML document
//! ([`etcd`]).
//!
//! [`SourceStatus`] is the `source` section of [`crate::Status`]: the kind, where it reads
//! from, the revision serving, when it was last confirmed current, and the health of the
//! watch. [`SourceStatus::stale_reason`] is the one staleness rule readiness checks and
//! `abkit status --strict` apply.

#[cfg(feature = "etcd")]
pub mod etcd;

use serde::Serialize;
use std::sync::Mutex;
use std::time::Duration;

/// Which kind of source a client reads its configuration from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A TOML file on this host.
    File,
    /// One etcd key holding the TOML document (feature `etcd`).
    Etcd,
}

/// The health of a source's watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchHealth {
    /// No watch runs (yet): the document was read once.
    NotWatching,
    /// The watch is established and answers progress requests.
    Healthy,
    /// The watch is lost (etcd unreachable, stream broken, no answer): the client keeps
    /// serving what it has and reconnects with backoff.
    Broken,
}

/// The state of a source's watch: since when, and why it is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchState {
    /// Healthy, broken, or not watching.
    pub state: WatchHealth,
    /// Since when (ms since the Unix epoch).
    pub since_unix_ms: u64,
    /// Why it is broken (absent when healthy).
    pub why: Option<String>,
}

/// The `source` section of [`crate::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SourceStatus {
    /// File or etcd.
    pub kind: SourceKind,
    /// The configuration file (kind `file`).
    pub path: Option<String>,
    /// The etcd endpoints (kind `etcd`).
    pub endpoints: Vec<String>,
    /// The etcd key (kind `etcd`).
    pub key: Option<String>,
    /// The `mod_revision` of the document serving (kind `etcd`).
    pub revision: Option<i64>,
    /// The newest revision seen and refused (invalid, a missing plugin file, a guard, the
    /// key deleted); `None` once a later document is accepted. The serving revision stays.
    pub refused_revision: Option<i64>,
    /// When etcd last confirmed that what this client has is current (the read, a watch
    /// event, or an answered progress request), ms since the Unix epoch. `None`: never (it
    /// started from the local copy and has not reached etcd since).
    pub last_confirmed_unix_ms: Option<u64>,
    /// It started from the local copy of the last good document (etcd was unreachable or
    /// its document refused at start).
    pub from_local_copy: bool,
    /// The watch (kind `etcd`).
    pub watch: WatchState,
    /// Reconnections after a lost watch.
    pub reconnects: u64,
    /// Watches cancelled by a compaction and restarted from a fresh read.
    pub compactions: u64,
}

impl SourceStatus {
    /// A file source.
    pub(crate) fn file(path: &std::path::Path) -> SourceStatus {
        SourceStatus {
            kind: SourceKind::File,
            path: Some(path.display().to_string()),
            endpoints: Vec::new(),
            key: None,
            revision: None,
            refused_revision: None,
            last_confirmed_unix_ms: None,
            from_local_copy: false,
            watch: WatchState {
                state: WatchHealth::NotWatching,
                since_unix_ms: crate::reload::now_ms(),
                why: None,
            },
            reconnects: 0,
            compactions: 0,
        }
    }

    /// Why this client may serve a stale configuration at `now_unix_ms`, or `None` when it is
    /// fresh. The rule (the README's "Failure behaviour" says the same): a file source is
    /// never stale (the file is the truth); an etcd source is stale when etcd has not
    /// confirmed it current for more than `max_age` — never confirmed (started from the local
    /// copy), or the watch broken or silent that long. A healthy watch confirms every few
    /// seconds (`EtcdOptions::confirm_interval`, default 5 s), so `max_age` should be several of
    /// those (the CLI's default is 30 s).
    pub fn stale_reason(&self, now_unix_ms: u64, max_age: Duration) -> Option<String> {
        if self.kind == SourceKind::File {
            return None;
        }
        let key = self.key.as_deref().unwrap_or_default();
        let revision = self
            .revision
            .map_or_else(|| "none".to_string(), |r| r.to_string());
        let broken = match (&self.watch.state, &self.watch.why) {
            (WatchHealth::Broken, Some(why)) => format!(
                "; the watch is broken since {}: {why}",
                crate::trust::format_utc(self.watch.since_unix_ms / 1000)
            ),
            _ => String::new(),
        };
        // A broken watch says why (and what to check); otherwise say where etcd should be.
        let todo = if broken.is_empty() {
            format!(
                "; check that etcd is reachable at {}",
                self.endpoints.join(",")
            )
        } else {
            broken
        };
        match self.last_confirmed_unix_ms {
            None => Some(format!(
                "etcd key {key}: serving revision {revision} from the local copy, never confirmed \
                 current by etcd{todo}"
            )),
            Some(at) if now_unix_ms.saturating_sub(at) > max_age.as_millis() as u64 => {
                Some(format!(
                    "etcd key {key}: serving revision {revision}, last confirmed current {} s ago \
                     (more than {} s){todo}",
                    now_unix_ms.saturating_sub(at) / 1000,
                    max_age.as_secs()
                ))
            }
            Some(_) => None,
        }
    }
}

impl std::fmt::Display for SourceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            SourceKind::File => writeln!(
                f,
                "source file {}",
                self.path.as_deref().unwrap_or_default()
            ),
            SourceKind::Etcd => {
                let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |r| r.to_string());
                write!(
                    f,
                    "source etcd {} key {} | revision {}",
                    self.endpoints.join(","),
                    self.key.as_deref().unwrap_or_default(),
                    opt(self.revision)
                )?;
                if self.from_local_copy {
                    write!(f, " (from the local copy)")?;
                }
                match self.last_confirmed_unix_ms {
                    Some(at) => write!(
                        f,
                        " | confirmed current {}",
                        crate::trust::format_utc(at / 1000)
                    )?,
                    None => write!(f, " | never confirmed current")?,
                }
                let state = match self.watch.state {
                    WatchHealth::NotWatching => "not watching",
                    WatchHealth::Healthy => "healthy",
                    WatchHealth::Broken => "BROKEN",
                };
                writeln!(
                    f,
                    " | watch {state} since {}",
                    crate::trust::format_utc(self.watch.since_unix_ms / 1000)
                )?;
                if let Some(why) = &self.watch.why {
                    writeln!(f, "  watch broken: {why}")?;
                }
                if let Some(r) = self.refused_revision {
                    writeln!(
                        f,
                        "  revision {r} was refused (see the last reload); revision {} keeps serving",
                        opt(self.revision)
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// The source state an [`crate::Sdk`] holds: what `status()` shows, and where an etcd watch
/// resumes. Locked by status calls and the source's task only, never by `assign`.
#[derive(Debug, Default)]
pub(crate) struct SourceCell {
    inner: Mutex<CellState>,
}

#[derive(Debug, Default)]
struct CellState {
    status: Option<SourceStatus>,
    /// The revision the first watch starts from (the header revision of the read + 1).
    resume_from: Option<i64>,
}

impl SourceCell {
    pub(crate) fn new(status: Option<SourceStatus>) -> SourceCell {
        SourceCell {
            inner: Mutex::new(CellState {
                status,
                resume_from: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CellState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The status section, if the client has a source.
    pub(crate) fn status(&self) -> Option<SourceStatus> {
        self.lock().status.clone()
    }

    /// Changes the status (no-op without one).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn update(&self, f: impl FnOnce(&mut SourceStatus)) {
        if let Some(s) = self.lock().status.as_mut() {
            f(s);
        }
    }

    /// Replaces the status and the revision a watch resumes from.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn set(&self, status: SourceStatus, resume_from: Option<i64>) {
        let mut g = self.lock();
        g.status = Some(status);
        g.resume_from = resume_from;
    }

    /// Takes the revision the first watch resumes from.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn take_resume_from(&self) -> Option<i64> {
        self.lock().resume_from.take()
    }
}

/// Exponential backoff with jitter for reconnecting: attempt `n` (from 0) waits a random time
/// in `[cap/2, cap]`, `cap = min(max, initial * 2^n)`. The random half spreads a fleet that
/// lost etcd at the same moment over time, so a restarted etcd is not hit by every instance at
/// once; the fixed half keeps each instance from retrying too eagerly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The cap of the first attempt (default 250 ms).
    pub initial: Duration,
    /// The largest cap (default 30 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The cap of attempt `attempt`: `min(max, initial * 2^attempt)`.
    pub fn cap(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before attempt `attempt` given a uniformly random `random`: in
    /// `[cap/2, cap]` (see [`Backoff`]).
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let cap = self.cap(attempt).as_millis() as u64;
        let half = cap / 2;
        let spread = cap - half;
        Duration::from_millis(half + random % (spread + 1))
    }

    /// [`Backoff::delay`] with a random number from the OS.
    pub fn delay_random(&self, attempt: u32) -> Duration {
        self.delay(attempt, getrandom::u64().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_the_jitter_stays_in_its_bounds() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        assert_eq!(b.cap(0), Duration::from_millis(100));
        assert_eq!(b.cap(3), Duration::from_millis(800));
        assert_eq!(b.cap(6), Duration::from_secs(5));
        assert_eq!(b.cap(u32::MAX), Duration::from_secs(5));
        for attempt in [0, 1, 4, 10, 40] {
            let cap = b.cap(attempt);
            for random in [0, 1, 7, 12_345, u64::MAX / 3, u64::MAX] {
                let d = b.delay(attempt, random);
                assert!(
                    d >= cap / 2 && d <= cap,
                    "{d:?} outside [{:?}, {cap:?}]",
                    cap / 2
                );
            }
            // Both ends are reachable: the jitter really spreads.
            assert_eq!(b.delay(attempt, 0), cap / 2);
            let span = cap.as_millis() as u64 - cap.as_millis() as u64 / 2;
            assert_eq!(b.delay(attempt, span), cap);
        }
    }

    #[test]
    fn random_delays_of_a_fleet_spread_over_the_window() {
        let b = Backoff::default();
        let cap = b.cap(4);
        let delays: Vec<Duration> = (0..200).map(|_| b.delay_random(4)).collect();
        assert!(delays.iter().all(|d| *d >= cap / 2 && *d <= cap));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 50,
            "only {} distinct delays",
            distinct.len()
        );
    }

    #[test]
    fn staleness_rule() {
        let mut s = SourceStatus::file(std::path::Path::new("a.toml"));
        assert_eq!(s.stale_reason(u64::MAX, Duration::ZERO), None);
        s.kind = SourceKind::Etcd;
        s.key = Some("/abkit/config".into());
        s.revision = Some(7);
        let max = Duration::from_secs(30);
        assert!(s
            .stale_reason(1_000, max)
            .is_some_and(|r| r.contains("never confirmed")));
        s.last_confirmed_unix_ms = Some(100_000);
        assert_eq!(s.stale_reason(130_000, max), None);
        s.watch = WatchState {
            state: WatchHealth::Broken,
            since_unix_ms: 100_000,
            why: Some("connection refused".into()),
        };
        let r = s.stale_reason(130_001, max).unwrap_or_default();
        assert!(
            r.contains("30 s ago") && r.contains("connection refused"),
            "{r}"
        );
    }
}
