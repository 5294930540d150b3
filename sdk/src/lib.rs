//! # abkit
//!
//! Assigns users (or devices, households ...) to A/B-experiment variants. Services link this
//! crate and call [`Sdk::assign`] on their hot path: synchronous, lock-free, no heap
//! allocation, and it never fails the caller — every failure ends in a defined fallback.
//!
//! ```
//! use abkit::{Attribute, Sdk, Unit};
//!
//! let sdk = Sdk::from_toml_str(r#"
//!     [[experiments]]
//!     key = "checkout_button"
//!     variants = [ { name = "control", weight = 50 }, { name = "treatment", weight = 50 } ]
//!     targeting = { country = ["US", "CA"] }
//! "#).expect("valid config");
//!
//! let attrs = [Attribute::new("country", "US")];
//! let unit = Unit::new("user-42").with_attributes(&attrs);
//! let a = sdk.assign("checkout_button", &unit);
//! assert!(matches!(a.variant_name(), Some("control" | "treatment")));
//! ```
//!
//! The crate's (private) modules follow the path of a configuration: `config` (TOML ->
//! validated [`Config`]) -> `registry` (immutable [`Snapshot`]s behind one atomic pointer) ->
//! evaluation (disabled -> override -> holdout -> targeting -> prerequisite -> layer ->
//! strategy) -> the built-in
//! bucketer `builtin:hash-v1` (`spec/bucketing-v1.md`). The `abkit` command-line tool lives in
//! `cli` behind the `cli` feature, so services do not compile its dependencies.

mod assignment;
mod bucketer;
mod bulk;
mod client;
mod config;
mod deadline;
mod error;
mod evaluation;
mod exposure;
mod files;
mod guard;
mod intern;
mod loader;
mod metrics;
mod outcome;
mod plugins;
mod preflight;
mod probe;
mod registry;
mod reload;
mod srm;
mod status;
mod strategy;
mod trust;
mod unit;

// ============================================================================================
// The public interface. Everything a user of the crate can name is listed here; the modules
// above are implementation and stay private.
// ============================================================================================

// Assigning: the client, what it assigns and what it answers.
pub use assignment::{Assignment, DecidedBy, FallbackReason, Reason, Variant};
pub use client::{Sdk, SdkBuilder};
pub use registry::{ExperimentHandle, ExperimentId, Snapshot};
pub use unit::{Attribute, Unit};

// Configuration: parsed and validated from TOML.
pub use config::{
    is_valid_plugin_name, Config, ConfigError, ConfigIssue, ExperimentConfig, HoldoutConfig,
    LayerConfig, LayerSlice, PluginConfig, PreflightConfig, ReloadConfig, Requirement, StrategyRef,
    TrustConfig, VariantConfig, STRATEGY_BUILTIN,
};

// The builder's options (`SdkBuilder::probe`, `guards`, `demotion`, `on_exposure` ...).
pub use exposure::{Exposure, ExposureChannel, ExposureDedup, ExposureEvent, ExposureHook};
pub use guard::GuardConfig;
pub use probe::ProbeConfig;
pub use strategy::DemotionPolicy;

// Status and reload reports, and the typed outcomes in them.
pub use guard::{check as check_guards, check_seeded as check_guards_seeded, GuardResult};
pub use loader::elf::ElfError;
pub use loader::{loaded_libraries, LoadError, PluginIdentity};
pub use outcome::{Change, GuardKind, RefusalCause, RefusalReason, Serving, Step};
pub use probe::ProbeError;
pub use reload::{ExperimentChange, PluginChange, ReloadReport};
pub use status::{
    ExperimentStatus, PluginState, PluginStatus, Refusal, ServingPlugin, Status,
    PLUGIN_TEXT_MAX_BYTES,
};
pub use strategy::{Demotion, Randomisation, StrategyCounters};

// Plugin trust: signature verification and rollback protection.
pub use trust::{
    FileKind, SignedMetadata, TrustError, TrustStore, VersionLedger, LEDGER_FILE, PLUGIN_MAX_BYTES,
    SIGNATURE_MAX_BYTES,
};

// Bulk assignment of a CSV of units.
pub use bulk::{assign_csv, BulkError, BulkStats};

// Errors of the constructors.
pub use error::Error;

// Reload triggers: a file watcher and SIGHUP (feature `watch`).
#[cfg(feature = "watch")]
pub use reload::{watch, ReloadReports, ReportsError, WatchError, WatchHandle, WatchOptions};

// Where the configuration comes from: its status (`Status::source`), and etcd as the source
// of a fleet (feature `etcd`: `source::etcd`).
pub mod source;

// Offline simulation (feature `simulate`).
#[cfg(feature = "simulate")]
pub mod simulate;

// The `abkit` command-line tool's subcommands (feature `cli`): used by the `abkit` binary
// only, not a library interface.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;

/// Not a public interface: what the fuzz targets and the cross-crate tests reach into (the ELF
/// checks, the signature parsers, capped reads). It may change in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::bulk::write_csv_field;
    pub use crate::loader::{check_library, elf};
    pub use crate::trust::{
        parse_trusted_comment, read_capped, read_claimed_metadata, signature_text, ParsedComment,
    };

    /// `config` without its plugins and `[trust]` table (see the `config` fuzz target): its
    /// plugin experiments are answered by the builtin fallback; experiments are unchanged.
    pub fn config_without_plugins(config: crate::Config) -> crate::Config {
        config.without_plugins()
    }
}

/// The README's Rust snippets run as doctests, so the quick start stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
