//! Reload triggers for ops (feature `watch`): a file watcher and SIGHUP, on one tokio task.
//!
//! The main call is [`watch`]`(Arc::clone(&sdk), WatchOptions::default())`: it starts a tokio
//! task that reloads `sdk` when its files change or on SIGHUP, and returns a [`WatchHandle`]
//! whose [`subscribe`](WatchHandle::subscribe) delivers every [`ReloadReport`].
//!
//! [`watch`] documents what is watched and when a reload runs.

use super::signal::Hangup;
use super::ReloadReport;
use crate::config::Config;
use crate::Sdk;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// How [`watch`] triggers reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Quiet time after the last file event before the reload runs (default 250 ms).
    pub debounce: Duration,
    /// Watch the configuration file and the plugin and signature files it names (default on).
    pub files: bool,
    /// Reload on SIGHUP, unix only (default on). Once installed, the handler stays for the
    /// life of the process (tokio never uninstalls it): SIGHUP no longer ends the process.
    pub sighup: bool,
    /// How many reports the broadcast channel keeps for a subscriber that lags (default 16).
    pub capacity: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(250),
            files: true,
            sighup: true,
            capacity: 16,
        }
    }
}

impl WatchOptions {
    /// This value with `debounce` set to `debounce`.
    pub const fn with_debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// This value with `files` set to `files`.
    pub const fn with_files(mut self, files: bool) -> Self {
        self.files = files;
        self
    }

    /// This value with `sighup` set to `sighup`.
    pub const fn with_sighup(mut self, sighup: bool) -> Self {
        self.sighup = sighup;
        self
    }

    /// This value with `capacity` set to `capacity`.
    pub const fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }
}

/// The reload reports of a watcher, from [`WatchHandle::subscribe`].
#[derive(Debug)]
pub struct ReloadReports {
    inner: broadcast::Receiver<ReloadReport>,
}

/// Why [`ReloadReports`] has no report to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportsError {
    /// This subscriber fell behind: that many reports were dropped; the next call continues
    /// with the oldest report still kept.
    #[error("{0} reload reports were skipped: the subscriber read too slowly (raise WatchOptions::capacity)")]
    Lagged(u64),
    /// The watcher stopped: no report will come.
    #[error("the watcher stopped, so no reload report will come")]
    Closed,
    /// No report is waiting now (only from [`ReloadReports::try_recv`]).
    #[error("no reload report is waiting")]
    Empty,
}

impl ReloadReports {
    /// Reports from a broadcast channel (the file watcher's, the etcd watch's).
    pub(crate) fn new(inner: broadcast::Receiver<ReloadReport>) -> Self {
        ReloadReports { inner }
    }

    /// Waits for the next report.
    pub async fn recv(&mut self) -> Result<ReloadReport, ReportsError> {
        self.inner.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => ReportsError::Lagged(n),
            broadcast::error::RecvError::Closed => ReportsError::Closed,
        })
    }

    /// The next report if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Result<ReloadReport, ReportsError> {
        self.inner.try_recv().map_err(|e| match e {
            broadcast::error::TryRecvError::Lagged(n) => ReportsError::Lagged(n),
            broadcast::error::TryRecvError::Closed => ReportsError::Closed,
            broadcast::error::TryRecvError::Empty => ReportsError::Empty,
        })
    }
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// [`watch`] was called outside a tokio runtime.
    #[error("the reload watcher needs a tokio runtime: call abkit::watch from async code or inside Runtime::enter")]
    NoRuntime,
    /// The client was built from a configuration in memory: there is no file to watch.
    #[error("this client was not built from a file, so there is nothing to watch; build it with Sdk::builder().build_from_file(path)")]
    NoConfigFile,
    /// The platform's file watcher could not be created.
    #[error("cannot start the file watcher for {}: {source}", path.display())]
    Start {
        /// The configuration file that was to be watched.
        path: PathBuf,
        /// What the platform said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The directory of the configuration file could not be watched.
    #[error("cannot watch directory {} (of the configuration file): {source}; check that it exists and is readable", path.display())]
    Watch {
        /// The directory.
        path: PathBuf,
        /// What the platform said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The SIGHUP handler could not be installed.
    #[error("cannot install the SIGHUP handler while watching {}: {source}; or turn SIGHUP off with WatchOptions::default().with_sighup(false)", path.display())]
    Signal {
        /// The configuration file that was to be reloaded on SIGHUP.
        path: PathBuf,
        /// What the platform said.
        source: std::io::Error,
    },
}

/// A running watcher. Stops on [`WatchHandle::stop`] or when dropped; a reload in progress
/// still finishes.
#[derive(Debug)]
pub struct WatchHandle {
    reports: broadcast::Sender<ReloadReport>,
    watched: Arc<Mutex<Vec<PathBuf>>>,
    sighup: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl WatchHandle {
    /// A receiver of every reload report from now on. A subscriber that falls more than
    /// [`WatchOptions::capacity`] reports behind gets [`ReportsError::Lagged`] and skips ahead.
    pub fn subscribe(&self) -> ReloadReports {
        ReloadReports::new(self.reports.subscribe())
    }

    /// The files watched now (absolute paths, sorted); empty when file watching is off.
    pub fn watched(&self) -> Vec<PathBuf> {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether SIGHUP triggers reloads.
    pub fn sighup(&self) -> bool {
        self.sighup
    }

    /// Stops the watcher without waiting for it.
    pub fn stop(mut self) {
        self.stop.take();
    }

    /// Stops the watcher and waits until its task has ended (after a reload in progress).
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!("the reload watcher task failed: {e}");
            }
        }
    }
}

/// Starts watching the configuration file the [`Sdk`] was built from and every plugin file
/// and signature file that configuration names. It watches their parent **directories**
/// (non-recursively) and filters events by file name, so both deploy styles trigger: an
/// atomic rename over the old file (write a temporary file, `rename` it into place) and an
/// in-place edit. Events are debounced (250 ms by default): a burst of them gives one reload,
/// run when the files have been quiet for the debounce time, and at the latest ten debounce
/// times after the burst began.
///
/// A reload calls [`Sdk::reload_from_source`] with trigger `file` (or `sighup` for a SIGHUP,
/// unix only) on tokio's blocking pool — verification, `dlopen` and the probe are blocking
/// work — one reload at a time. Each [`ReloadReport`] is sent on a broadcast channel
/// ([`WatchHandle::subscribe`]); a slow subscriber misses reports (it sees
/// `RecvError::Lagged`) but never holds the watcher up. After every reload the watched set is
/// recomputed from the configuration file as it is now; while that file is invalid the
/// previous set stays watched.
///
/// A plugin version whose signature expires stops serving at its expiry: the watcher runs a
/// reload (trigger `expiry`) right after the earliest `expires` second among the serving
/// plugins; the version is reported `expired` and its experiments move to an earlier version
/// that may still serve, or the builtin. Should that reload be refused (a guard, another
/// plugin's refused artifact), it is retried every 10 s, each report saying why.
///
/// Not covered: a watched directory that is deleted and re-created (its watch is lost until
/// a later reload re-adds it), and symlink swaps of a directory *above* a watched file
/// (e.g. Kubernetes ConfigMap volumes): send SIGHUP after such deploys.
///
/// Must be called inside a tokio runtime; the watch (and the SIGHUP handler) is in place when
/// this returns.
///
/// # Panics
/// When SIGHUP is on and the runtime has I/O disabled. The runtime also needs timers: build it
/// with `enable_all` (`#[tokio::main]` does).
///
/// # Errors
/// No runtime, a client not built from a file, or the configuration file's directory (or
/// SIGHUP) cannot be watched. A plugin directory that cannot be watched is logged and retried
/// after each reload.
///
/// # Example
/// ```no_run
/// use abkit::{watch, WatchOptions};
/// use abkit::Sdk;
/// use std::sync::Arc;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let sdk = Arc::new(Sdk::from_file("/etc/abkit/abkit.toml")?);
/// let watcher = watch(Arc::clone(&sdk), WatchOptions::default())?;
/// let mut reports = watcher.subscribe();
/// while let Ok(report) = reports.recv().await {
///     print!("{report}"); // accepted or refused, and why
/// }
/// # Ok(())
/// # }
/// ```
pub fn watch(sdk: Arc<Sdk>, options: WatchOptions) -> Result<WatchHandle, WatchError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
    let _entered = runtime.enter();
    let config_path = sdk.config_path().ok_or(WatchError::NoConfigFile)?;
    let config_path = std::path::absolute(&config_path).unwrap_or(config_path);
    let fs = if options.files {
        let files = Files::of(&config_path, Some(sdk.snapshot().config()));
        Some(FileWatch::start(&config_path, files)?)
    } else {
        None
    };
    let hup = Hangup::new(options.sighup).map_err(|source| WatchError::Signal {
        path: config_path.clone(),
        source,
    })?;
    let watched = Arc::new(Mutex::new(
        fs.as_ref().map(|f| f.files.paths()).unwrap_or_default(),
    ));
    let (reports, _) = broadcast::channel(options.capacity.max(1));
    let (stop, stopped) = oneshot::channel();
    let sighup = hup.enabled();
    let debounce = options.debounce;
    let task = Task {
        sdk,
        config_path,
        debounce,
        fs,
        hup,
        reports: reports.clone(),
        watched: Arc::clone(&watched),
    };
    tracing::info!(files = ?watched.lock().unwrap_or_else(|p| p.into_inner()), sighup, "watching for reloads");
    let task = runtime.spawn(task.run(stopped));
    Ok(WatchHandle {
        reports,
        watched,
        sighup,
        stop: Some(stop),
        task: Some(task),
    })
}

/// The files to watch, by (absolute) parent directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Files {
    by_dir: BTreeMap<PathBuf, BTreeSet<OsString>>,
}

impl Files {
    /// The configuration file and, if known, the plugin and signature files it names.
    fn of(config_path: &Path, config: Option<&Config>) -> Files {
        let mut files = Files::default();
        files.add(config_path);
        for plugin in config.map_or(&[][..], |c| &c.plugins) {
            files.add(&plugin.path);
            files.add(&plugin.signature);
        }
        files
    }

    fn add(&mut self, path: &Path) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            self.by_dir
                .entry(dir.to_path_buf())
                .or_default()
                .insert(name.to_os_string());
        }
    }

    fn contains(&self, path: &Path) -> bool {
        match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => self
                .by_dir
                .get(dir)
                .is_some_and(|names| names.contains(name)),
            _ => false,
        }
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.by_dir
            .iter()
            .flat_map(|(dir, names)| names.iter().map(move |n| dir.join(n)))
            .collect()
    }
}

/// The platform watcher on the directories of [`Files`], and its event stream.
struct FileWatch {
    watcher: RecommendedWatcher,
    events: mpsc::UnboundedReceiver<notify::Result<Event>>,
    files: Files,
    /// Directories with a watch in place.
    dirs: BTreeSet<PathBuf>,
}

impl FileWatch {
    fn start(config_path: &Path, files: Files) -> Result<FileWatch, WatchError> {
        let (tx, events) = mpsc::unbounded_channel();
        // Runs on notify's own thread; an unbounded send never blocks it.
        let watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| WatchError::Start {
            path: config_path.to_path_buf(),
            source: Box::new(e),
        })?;
        let mut fw = FileWatch {
            watcher,
            events,
            files: Files::default(),
            dirs: BTreeSet::new(),
        };
        let config_dir = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if let Some((_, e)) = fw
            .apply(files)
            .into_iter()
            .find(|(dir, _)| *dir == config_dir)
        {
            return Err(WatchError::Watch {
                path: config_dir,
                source: Box::new(e),
            });
        }
        Ok(fw)
    }

    /// Watches the directories of `files` that are not watched yet (retrying earlier failures)
    /// and drops the watches no longer needed. Returns the directories that could not be
    /// watched (also logged).
    fn apply(&mut self, files: Files) -> Vec<(PathBuf, notify::Error)> {
        let stale: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|d| !files.by_dir.contains_key(*d))
            .cloned()
            .collect();
        for dir in stale {
            if let Err(e) = self.watcher.unwatch(&dir) {
                tracing::debug!("cannot unwatch {}: {e}", dir.display());
            }
            self.dirs.remove(&dir);
        }
        let mut failed = Vec::new();
        for dir in files.by_dir.keys() {
            if self.dirs.contains(dir) {
                continue;
            }
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(dir.clone());
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot watch directory {}: {e}; changes there trigger no reload",
                        dir.display()
                    );
                    failed.push((dir.clone(), e));
                }
            }
        }
        self.files = files;
        failed
    }

    /// Whether `event` may change what a reload reads: a change (not a mere read) of a
    /// watched file, or a lost-events notice.
    fn relevant(&self, event: &Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        let change = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        };
        change && event.paths.iter().any(|p| self.files.contains(p))
    }
}

/// Waits for the next file event; pends forever without a file watch.
async fn next_event(fs: &mut Option<FileWatch>) -> notify::Result<Event> {
    if let Some(fs) = fs {
        if let Some(event) = fs.events.recv().await {
            return event;
        }
    }
    std::future::pending().await
}

/// How long after a reload that left an expired signature serving (it was refused) the
/// watcher tries again.
const EXPIRY_RETRY: Duration = Duration::from_secs(10);

/// When to reload for the earliest signature expiry among the plugins serving now: the second
/// after its `expires` second (a signature is valid through that second). One already past is
/// due now, or, `after_reload` (a reload just left it serving: it was refused), in
/// [`EXPIRY_RETRY`].
fn expiry_due(sdk: &Sdk, after_reload: bool) -> Option<SystemTime> {
    let expires = sdk.snapshot().earliest_expiry()?;
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(expires.saturating_add(1)))?;
    let now = SystemTime::now();
    Some(if at > now {
        at
    } else if after_reload {
        tracing::warn!(
            expires = %crate::trust::format_utc(expires),
            "a plugin whose signature has expired still serves (the reload that should retire it was refused: see its report); retrying in {} s",
            EXPIRY_RETRY.as_secs()
        );
        now + EXPIRY_RETRY
    } else {
        now
    })
}

/// The watcher's task: owns the platform watcher and the SIGHUP stream.
struct Task {
    sdk: Arc<Sdk>,
    config_path: PathBuf,
    debounce: Duration,
    fs: Option<FileWatch>,
    hup: Hangup,
    reports: broadcast::Sender<ReloadReport>,
    watched: Arc<Mutex<Vec<PathBuf>>>,
}

impl Task {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        // When the pending burst of file events is due: `(first event, due)`.
        let mut burst: Option<(Instant, Instant)> = None;
        let max_delay = self.debounce.saturating_mul(10);
        // When the first serving signature has expired (a reload then retires it).
        let mut expiry = expiry_due(&self.sdk, false);
        loop {
            let due = burst.map_or_else(
                || Instant::now() + Duration::from_secs(3600),
                |(_, due)| due,
            );
            // Wall-clock time, re-read on every turn; at most an hour ahead (then looked at again).
            let expiry_wait = expiry.map_or(Duration::from_secs(3600), |at| {
                at.duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .min(Duration::from_secs(3600))
            });
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                () = tokio::time::sleep(expiry_wait), if expiry.is_some() => {
                    if expiry.is_some_and(|at| SystemTime::now() >= at) {
                        self.reload("expiry").await;
                        expiry = expiry_due(&self.sdk, true);
                    }
                }
                () = self.hup.recv() => {
                    // The reload reads everything afresh: events so far need no reload of their own.
                    burst = None;
                    self.reload("sighup").await;
                    expiry = expiry_due(&self.sdk, true);
                }
                () = tokio::time::sleep_until(due), if burst.is_some() => {
                    burst = None;
                    self.reload("file").await;
                    expiry = expiry_due(&self.sdk, true);
                }
                event = next_event(&mut self.fs) => match event {
                    Ok(event) if self.fs.as_ref().is_some_and(|fs| fs.relevant(&event)) => {
                        let now = Instant::now();
                        let first = burst.map_or(now, |(first, _)| first);
                        burst = Some((first, (now + self.debounce).min(first + max_delay)));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("file watcher error while watching {}: {e}", self.config_path.display()),
                },
            }
        }
        tracing::debug!("reload watcher of {} stopped", self.config_path.display());
    }

    /// One reload on the blocking pool, then the watched set from the file as it is now.
    async fn reload(&mut self, trigger: &'static str) {
        let sdk = Arc::clone(&self.sdk);
        let path = self.config_path.clone();
        let reread = self.fs.is_some();
        let done = tokio::task::spawn_blocking(move || {
            let report = sdk.reload_from_source(trigger);
            let config = if reread {
                Config::from_file(&path).ok()
            } else {
                None
            };
            (report, config)
        })
        .await;
        match done {
            Ok((report, config)) => {
                if let (Some(fs), Some(config)) = (&mut self.fs, config) {
                    let files = Files::of(&self.config_path, Some(&config));
                    let changed = files != fs.files;
                    fs.apply(files); // also retries directories that could not be watched before
                    if changed {
                        let paths = fs.files.paths();
                        tracing::info!(files = ?paths, "watched files changed");
                        *self.watched.lock().unwrap_or_else(|p| p.into_inner()) = paths;
                    }
                }
                // An error only means nobody subscribes now.
                let _ = self.reports.send(report);
            }
            Err(e) => tracing::error!(
                "reload of {} ({trigger}) failed: {e}",
                self.config_path.display()
            ),
        }
    }
}
