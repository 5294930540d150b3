//! Reloads: how a new configuration replaces the serving one, and the report of every attempt.
//!
//! A reload builds a complete candidate snapshot off the hot path (config -> plugins -> probe
//! -> guards) and publishes it with one atomic store, or refuses it whole: the serving
//! snapshot is untouched by a refused candidate, so a bad artifact never serves and a half
//! change never happens. Triggers: [`crate::Sdk::reload`] (re-read the config file),
//! [`crate::Sdk::reload_with`] (a config from code), and, with the `watch` feature, a file
//! watcher and SIGHUP.

mod report;
#[cfg(feature = "watch")]
mod signal;
#[cfg(feature = "watch")]
mod watch;

pub(crate) use report::now_ms;
pub use report::{ExperimentChange, PluginChange, ReloadReport};
#[cfg(feature = "watch")]
pub use watch::{watch, ReloadReports, ReportsError, WatchError, WatchHandle, WatchOptions};
