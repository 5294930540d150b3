//! The stable ABI between the abkit SDK and its strategy plugins, and the one place it lives.
//!
//! # Who depends on this crate
//!
//! - the SDK (`abkit`), on the host side: it loads a signed plugin library, checks it with
//!   abi_stable, asks its root module ([`PluginModRef`]) for one [`StrategyBox`] per
//!   experiment and calls [`Strategy::assign`] on the hot path;
//! - every strategy plugin (`strategies/<name>/` and third-party ones), on the other side: it
//!   implements [`StrategyImpl`] and exports it with [`export_strategy_plugin!`].
//!
//! Nothing else should. The crate is small, depends on abi_stable alone and changes
//! rarely: every change is a change of the contract between separately built binaries.
//!
//! # Writing a plugin
//!
//! `Cargo.toml` of the plugin crate (`abi_stable` must be a direct dependency because the
//! code `#[export_root_module]` generates names `::abi_stable`):
//!
//! ```toml
//! [package]
//! name = "abkit-strategy-by-length"   # the library becomes libabkit_strategy_by_length.so
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]     # cdylib to load, rlib to unit-test
//!
//! [dependencies]
//! abkit-strategy-api = { path = "../../strategy-api" }
//! abi_stable = "0.11.3"
//!
//! [profile.release]                   # in a workspace: in the root Cargo.toml
//! panic = "unwind"                    # required: see "Panics" below
//! ```
//!
//! `src/lib.rs`, complete:
//!
//! ```
//! use abkit_strategy_api::{export_strategy_plugin, Decision, ExperimentSpec, Request, StrategyImpl};
//!
//! /// Variant = length of the unit id modulo the number of variants (a toy).
//! pub struct ByLength {
//!     variants: usize,
//! }
//!
//! impl ByLength {
//!     /// Built once per experiment; accepts only an empty `strategy_config`.
//!     pub fn new(spec: &ExperimentSpec<'_>) -> Result<Self, String> {
//!         match spec.strategy_config_json() {
//!             "{}" if !spec.weights().is_empty() => Ok(ByLength { variants: spec.weights().len() }),
//!             "{}" => Err("no variants".to_string()),
//!             other => Err(format!("by-length takes no strategy_config, got {other}")),
//!         }
//!     }
//! }
//!
//! impl StrategyImpl for ByLength {
//!     // `declaration` is not overridden: it randomises by unit id and reads no attribute.
//!     fn assign(&self, request: &Request<'_>) -> Decision {
//!         Decision::from_index(Some(request.unit_id.len() % self.variants))
//!     }
//! }
//!
//! export_strategy_plugin! {
//!     name: "by-length",
//!     version: env!("CARGO_PKG_VERSION"),
//!     new: ByLength::new,
//! }
//!
//! // A unit test goes through the very functions the host calls:
//! # fn main() {
//! use abkit_strategy_api::{abi_stable::std_types::{ROption, RSlice}, Randomisation};
//!
//! let root = abkit_root_module();
//! assert_eq!(root.name()().as_str(), "by-length");
//! let weights = [50, 50];
//! let spec = ExperimentSpec::new("checkout", "checkout", &weights, 10_000, "{}");
//! assert!(root.new_strategy()(&ExperimentSpec { strategy_config_json: "{\"x\":1}".into(), ..spec }).is_err());
//! let built = root.new_strategy()(&spec).unwrap();
//! assert_eq!(built.declaration.randomisation, Randomisation::UnitId);
//! let request = Request {
//!     unit_id: "user-42".into(),
//!     attributes: RSlice::from_slice(&[]),
//!     fixed_now_ms: ROption::RSome(0),
//! };
//! assert_eq!(built.strategy.assign(&request), Decision::Variant(1));
//! # }
//! ```
//!
//! The host side, for reference (the SDK's loader does this, plus signature checks first):
//!
//! ```no_run
//! use abkit_strategy_api::{abi_stable::library::lib_header_from_path, PluginModRef};
//! use std::path::Path;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let header = lib_header_from_path(Path::new("libabkit_strategy_by_length.so"))?;
//! let root: PluginModRef = header.init_root_module()?; // version + layout checks
//! let spec = abkit_strategy_api::ExperimentSpec::new("checkout", "checkout", &[50, 50], 10_000, "{}");
//! let built = root.new_strategy()(&spec).into_result().map_err(|e| e.into_string())?;
//! # let _ = built; Ok(()) }
//! ```
//!
//! # Panics
//!
//! A panic must never cross the boundary: abi_stable turns a panic that leaves a trait
//! method into `process::exit(1)` of the *host*, and a host-side `catch_unwind` cannot
//! help. So the plugin catches: [`export_strategy_plugin!`] wraps every exported call
//! (`name`, `version`, `new_strategy`, [`StrategyImpl::declaration`]) and every
//! [`Strategy::assign`] in `catch_unwind`, as well as the drop of a strategy; a panic
//! becomes [`Decision::Error`] (`"strategy panicked: <message>"`) or an `RErr` naming the
//! panic. The plugin's own panic hook still prints the message to stderr.
//!
//! That only works when the plugin unwinds. Plugins MUST be built with `panic = "unwind"`
//! (the default; the workspace's release profile says so explicitly). With
//! `panic = "abort"` a panic kills the host outright, so the macro emits
//! `#[cfg(panic = "abort")] compile_error!(..)` and such a build fails. This guard cannot be
//! tested at run time (test builds always unwind); it was checked by building a plugin with
//! `--config 'profile.release.panic="abort"'`, which fails with that message.
//!
//! # The contract, version 0.2
//!
//! - **A strategy is built once per experiment.** `new_strategy(&ExperimentSpec)` receives
//!   everything that is fixed for the experiment (key, salt, weights, coverage, the
//!   `strategy_config` JSON) and returns the strategy together with its [`Declaration`]:
//!   which unit attributes it reads (and which of them it cannot decide without) and what it
//!   randomises by ([`Randomisation`]: the unit id, or an attribute such as a cluster or a
//!   region, possibly per time window). The SDK uses the declaration to answer a unit that
//!   lacks a required attribute with the reason `missing_attribute` (without calling the
//!   plugin), and to test splits at the level the strategy randomises (reload guards,
//!   simulations).
//! - **A [`Request`] carries only per-call data**: the unit id, its attributes and the fixed
//!   time, if the caller fixed one. Precompute everything else (variant ranges, a salted
//!   hasher) in the constructor: the SDK reuses a strategy for as long as the plugin's
//!   identity and the [`ExperimentSpec`] are unchanged, across reloads.
//! - **[`Decision`]**: a variant index (`< weights.len()`), not enrolled, or an error (the SDK
//!   answers that call with `builtin:hash-v1` and counts the error against the plugin).
//!
//! Version 0.1 (a strategy built from the `strategy_config` alone, weights and salt sent with
//! every request) is no longer accepted: the SDK refuses such a plugin with the reason
//! `abi_version`, naming both versions; rebuild it against this crate.
//!
//! # ABI evolution
//!
//! The root module [`PluginMod`] is an abi_stable *prefix type*. Its fields up to and
//! including the one marked `#[sabi(last_prefix_field)]` (`new_strategy`) are fixed
//! for this version. New fields may only be **appended after it**; a host then reads them
//! through the generated accessors and must cope with older plugins that lack them (give a
//! new field `#[sabi(missing_field(option))]` so its accessor returns `None` instead of
//! panicking, which is what the struct-wide `missing_field(panic)` would do).
//!
//! Everything else is frozen layout: changing [`Request`], [`ExperimentSpec`],
//! [`Declaration`], [`Randomisation`], [`Decision`], [`Attribute`] or the [`Strategy`] trait
//! (a field, a variant, a method, a signature), or removing or reordering root-module
//! fields, is a **breaking change** and needs a new version of this crate (`0.(y+1).0`
//! now, `(x+1).0.0` after 1.0). abi_stable's `package_version_strings!` records this
//! crate's version (from `Cargo.toml`, independent of the workspace version) in the
//! library, and loading a plugin checks, with `expected` = the host's copy and `actual` =
//! the plugin's:
//!
//! - at load time, the plugin is refused (`IncompatibleVersionNumber`) when
//!   `expected.major != actual.major`, or when `major == 0` and
//!   `expected.minor > actual.minor`;
//! - then every type layout is compared, and each type's package version must be
//!   "loosely compatible": same major for `1.x` and later, same major *and minor* for
//!   `0.x` (otherwise `AbiInstability`). The patch number is never compared.
//!
//! So for `0.y.z` the minor `y` acts as the major: `0.2.0` and `0.2.7` interoperate,
//! `0.1.x` and `0.2.x` do not, in either direction. An append-only change is therefore a
//! patch release (`0.2.z`) now and a minor release after `1.0`; a breaking change is
//! `0.(y+1).0` now and `(x+1).0.0` after `1.0`. History: 0.1 (a strategy per
//! `strategy_config`, weights in every request), 0.2 (a strategy per experiment, with a
//! declaration; this version).
#![allow(non_local_definitions)]

pub use abi_stable;

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

mod export;

pub use export::StrategyImpl;

/// What the export macro expands to; not part of the API (it may change in any release).
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{
        guarded_static_str, install_quiet_panic_hook, new_guarded_strategy, panic_message, Guarded,
    };
}

/// One attribute of a unit (`country = "US"`), borrowed for the duration of one call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// Attribute name, e.g. `country`.
    pub key: RStr<'a>,
    /// Attribute value, e.g. `US`.
    pub value: RStr<'a>,
}

impl<'a> Attribute<'a> {
    /// An attribute from two string slices.
    pub const fn new(key: &'a str, value: &'a str) -> Self {
        Attribute {
            key: RStr::from_str(key),
            value: RStr::from_str(value),
        }
    }
}

/// What a strategy is built from: everything fixed for one experiment.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct ExperimentSpec<'a> {
    /// The experiment key.
    pub key: RStr<'a>,
    /// The experiment salt (defaults to the key).
    pub salt: RStr<'a>,
    /// The variants' weights, in config order; a valid answer indexes into this slice. The
    /// SDK sends only valid weights (at least one, summing to at least 1).
    pub weights: RSlice<'a, u32>,
    /// Coverage in basis points, `0..=10000`.
    pub coverage_bp: u32,
    /// The experiment's `strategy_config` as JSON text (`{}` when it has none).
    pub strategy_config_json: RStr<'a>,
}

impl<'a> ExperimentSpec<'a> {
    /// A spec from plain Rust values (tests, tools).
    pub const fn new(
        key: &'a str,
        salt: &'a str,
        weights: &'a [u32],
        coverage_bp: u32,
        strategy_config_json: &'a str,
    ) -> Self {
        ExperimentSpec {
            key: RStr::from_str(key),
            salt: RStr::from_str(salt),
            weights: RSlice::from_slice(weights),
            coverage_bp,
            strategy_config_json: RStr::from_str(strategy_config_json),
        }
    }

    /// The experiment key.
    pub fn key(&self) -> &'a str {
        self.key.as_str()
    }

    /// The salt.
    pub fn salt(&self) -> &'a str {
        self.salt.as_str()
    }

    /// The variants' weights.
    pub fn weights(&self) -> &'a [u32] {
        self.weights.as_slice()
    }

    /// The `strategy_config` JSON text.
    pub fn strategy_config_json(&self) -> &'a str {
        self.strategy_config_json.as_str()
    }
}

/// One unit attribute a strategy reads.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct DeclaredAttribute {
    /// The attribute name, e.g. `team_id`.
    pub name: RString,
    /// Whether the strategy cannot decide without it: a unit that lacks it (or has it empty)
    /// is answered by the SDK, not enrolled with the reason `missing_attribute`, and the
    /// strategy is not called. `false`: the strategy handles its absence itself.
    pub required: bool,
}

/// What a strategy randomises by: the level at which its split is tested.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Randomisation {
    /// Each unit id on its own (a user, a device).
    UnitId,
    /// The value of one attribute (a cluster: a team, a household, a region): every unit
    /// with the same value gets the same answer, within one time window when `window_ms`
    /// is set (a switchback: a region per half hour).
    Attribute {
        /// The attribute's name.
        name: RString,
        /// The length of a time window in ms, if the answer changes per window.
        window_ms: ROption<u64>,
    },
}

/// What a strategy tells the SDK about itself when it is built.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// The unit attributes it reads.
    pub attributes: RVec<DeclaredAttribute>,
    /// What it randomises by.
    pub randomisation: Randomisation,
}

impl Declaration {
    /// Randomises by unit id and reads no attribute (the default).
    pub fn unit_id() -> Self {
        Declaration {
            attributes: RVec::new(),
            randomisation: Randomisation::UnitId,
        }
    }

    /// Randomises by the value of `attribute` (optionally per time window of `window_ms`),
    /// which it reads; `required`: see [`DeclaredAttribute::required`].
    pub fn by_attribute(attribute: &str, window_ms: Option<u64>, required: bool) -> Self {
        Declaration {
            attributes: RVec::from(vec![DeclaredAttribute {
                name: RString::from(attribute),
                required,
            }]),
            randomisation: Randomisation::Attribute {
                name: RString::from(attribute),
                window_ms: window_ms.into(),
            },
        }
    }
}

/// Everything a strategy sees for one assignment: only what changes per call. Borrowed;
/// nothing is allocated to build it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The id being randomised (user, device, household ...), raw UTF-8.
    pub unit_id: RStr<'a>,
    /// The unit's attributes.
    pub attributes: RSlice<'a, Attribute<'a>>,
    /// The request's time when the caller fixes it (simulations, tests, replays), in ms since
    /// the Unix epoch; `RNone` when serving live. Read it through [`Request::now_ms`]: the clock
    /// is then read only by strategies that need time (a clock read costs more than the rest of
    /// a hash strategy's call).
    pub fixed_now_ms: ROption<u64>,
}

impl<'a> Request<'a> {
    /// A request for `unit_id` with `attributes`, at the fixed time `now_ms` (tests, tools).
    pub const fn at(unit_id: &'a str, attributes: &'a [Attribute<'a>], now_ms: u64) -> Self {
        Request {
            unit_id: RStr::from_str(unit_id),
            attributes: RSlice::from_slice(attributes),
            fixed_now_ms: ROption::RSome(now_ms),
        }
    }

    /// The request's time in ms since the Unix epoch: the fixed time if the caller set one,
    /// else the system clock, read now.
    pub fn now_ms(&self) -> u64 {
        match self.fixed_now_ms {
            ROption::RSome(ms) => ms,
            ROption::RNone => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// The value of the first attribute named `key`, if any (a linear scan; no allocation).
    pub fn attribute(&self, key: &str) -> Option<&'a str> {
        self.attributes
            .as_slice()
            .iter()
            .find(|a| a.key.as_str() == key)
            .map(|a| a.value.as_str())
    }
}

/// A strategy's answer for one request.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The unit gets the variant with this index (must be `< weights.len()`).
    Variant(u32),
    /// The unit is not enrolled (e.g. outside coverage).
    NotEnrolled,
    /// The strategy could not decide; the SDK answers this call with `builtin:hash-v1`.
    Error(RString),
}

impl Decision {
    /// `Some(i)` -> [`Decision::Variant`], `None` -> [`Decision::NotEnrolled`].
    ///
    /// An index that does not fit in `u32` (impossible for real weight lists) becomes an
    /// error rather than a wrong variant.
    pub fn from_index(index: Option<usize>) -> Self {
        match index.map(u32::try_from) {
            None => Decision::NotEnrolled,
            Some(Ok(i)) => Decision::Variant(i),
            Some(Err(_)) => Decision::Error(RString::from("variant index does not fit in u32")),
        }
    }
}

/// The strategy trait as it crosses the boundary.
///
/// Plugins do not implement it directly: they implement [`StrategyImpl`] and export it with
/// [`export_strategy_plugin!`], which wraps it in a guard that catches panics.
#[sabi_trait]
pub trait Strategy: Send + Sync {
    /// Decides one request. Must not panic across the boundary: the export macro catches panics.
    fn assign(&self, request: &Request<'_>) -> Decision;
}

/// An owned, type-erased strategy instance as it crosses the boundary.
pub type StrategyBox = Strategy_TO<'static, RBox<()>>;

/// What `new_strategy` returns: the strategy for one experiment and its declaration.
#[repr(C)]
#[derive(StableAbi)]
pub struct BuiltStrategy {
    /// The strategy.
    pub strategy: StrategyBox,
    /// What it reads and randomises by.
    pub declaration: Declaration,
}

/// The root module every plugin exports (a prefix type: fields may only be appended).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's name, e.g. `switchback`.
    pub name: extern "C" fn() -> RStr<'static>,
    /// The plugin's own version string.
    pub version: extern "C" fn() -> RStr<'static>,
    /// Builds the strategy for one experiment, or says why it cannot (a message for the
    /// operator, e.g. an invalid `strategy_config` field).
    #[sabi(last_prefix_field)]
    pub new_strategy: extern "C" fn(spec: &ExperimentSpec<'_>) -> RResult<BuiltStrategy, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "abkit_strategy";
    const NAME: &'static str = "abkit_strategy";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
