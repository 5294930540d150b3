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
//! The modules follow the path of a configuration: [`config`] (TOML -> validated
//! [`Config`]) -> [`registry`] (immutable snapshots behind one atomic pointer) ->
//! evaluation (disabled -> override -> targeting -> layer -> strategy) -> the built-in
//! bucketer `builtin:hash-v1` (`spec/bucketing-v1.md`). The `abkit` command-line tool lives in
//! `cli` behind the `cli` feature, so services do not compile its dependencies.

mod assignment;
mod bucketer;
pub mod bulk;
mod client;
pub mod config;
mod deadline;
mod error;
mod evaluation;
pub mod exposure;
mod files;
pub mod guard;
mod intern;
pub mod loader;
mod metrics;
mod outcome;
mod plugins;
mod preflight;
pub mod probe;
pub mod registry;
pub mod reload;
mod srm;
pub mod status;
pub mod strategy;
pub mod trust;
mod unit;

#[cfg(feature = "simulate")]
pub mod simulate;

#[cfg(feature = "cli")]
pub mod cli;

// Public API.
pub use assignment::{Assignment, DecidedBy, FallbackReason, Reason, Variant};
pub use client::{Sdk, SdkBuilder};
pub use config::{Config, ConfigError, ConfigIssue};
pub use error::Error;
pub use guard::{GuardConfig, GuardResult};
pub use loader::{LoadError, PluginIdentity};
pub use outcome::{Change, GuardKind, RefusalCause, RefusalReason, Serving, Step};
pub use probe::{ProbeConfig, ProbeError};
pub use registry::{ExperimentHandle, Snapshot};
pub use reload::{ExperimentChange, PluginChange, ReloadReport};
pub use status::{ExperimentStatus, PluginState, PluginStatus, Refusal, ServingPlugin, Status};
pub use strategy::{DemotionPolicy, Randomisation};
pub use trust::{SignedMetadata, TrustError, TrustStore, VersionLedger};
pub use unit::{Attribute, Unit};

/// The README's Rust snippets run as doctests, so the quick start stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
