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
//! use abkit_strategy_api::{export_strategy_plugin, Decision, Request, StrategyImpl};
//!
//! /// Variant = length of the unit id modulo the number of variants (a toy).
//! pub struct ByLength;
//!
//! impl ByLength {
//!     /// Accepts only an empty `strategy_config`.
//!     pub fn from_config_json(config_json: &str) -> Result<Self, String> {
//!         match config_json.trim() {
//!             "{}" => Ok(ByLength),
//!             other => Err(format!("by-length takes no strategy_config, got {other}")),
//!         }
//!     }
//! }
//!
//! impl StrategyImpl for ByLength {
//!     fn assign(&self, request: &Request<'_>) -> Decision {
//!         let n = request.weights.len();
//!         if n == 0 {
//!             return Decision::Error("no variants".into());
//!         }
//!         Decision::from_index(Some(request.unit_id.len() % n))
//!     }
//! }
//!
//! export_strategy_plugin! {
//!     name: "by-length",
//!     version: env!("CARGO_PKG_VERSION"),
//!     new: ByLength::from_config_json,
//! }
//!
//! // A unit test goes through the very functions the host calls:
//! # fn main() {
//! use abkit_strategy_api::abi_stable::std_types::{ROption, RSlice, RStr};
//!
//! let root = abkit_root_module();
//! assert_eq!(root.name()().as_str(), "by-length");
//! assert!(root.new_strategy()(RStr::from("{\"x\":1}")).is_err());
//! let strategy = root.new_strategy()(RStr::from("{}")).unwrap();
//! let request = Request {
//!     unit_id: RStr::from("user-42"),
//!     experiment: RStr::from("checkout"),
//!     salt: RStr::from("checkout"),
//!     weights: RSlice::from_slice(&[50, 50]),
//!     coverage_bp: 10_000,
//!     attributes: RSlice::from_slice(&[]),
//!     fixed_now_ms: ROption::RSome(0),
//! };
//! assert_eq!(strategy.assign(&request), Decision::Variant(1));
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
//! let strategy = root.new_strategy()("{}".into()).into_result().map_err(|e| e.into_string())?;
//! # let _ = strategy; Ok(()) }
//! ```
//!
//! # Panics
//!
//! A panic must never cross the boundary: abi_stable turns a panic that leaves a trait
//! method into `process::exit(1)` of the *host*, and a host-side `catch_unwind` cannot
//! help. So the plugin catches: [`export_strategy_plugin!`] wraps every exported call
//! (`name`, `version`, `new_strategy`) and, through [`Guarded`], every
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
//! # ABI evolution
//!
//! The root module [`PluginMod`] is an abi_stable *prefix type*. Its fields up to and
//! including the one marked `#[sabi(last_prefix_field)]` (`new_strategy`) are fixed
//! forever. New fields may only be **appended after it**; a host then reads them through
//! the generated accessors and must cope with older plugins that lack them (give a new
//! field `#[sabi(missing_field(option))]` so its accessor returns `None` instead of
//! panicking, which is what the struct-wide `missing_field(panic)` would do).
//!
//! Everything else is frozen layout: changing [`Request`], [`Decision`], [`Attribute`] or
//! the [`Strategy`] trait (a field, a variant, a method, a signature), or removing or
//! reordering root-module fields, is a **breaking change** and needs a major version
//! bump of this crate. abi_stable's `package_version_strings!` records this crate's
//! version (from `Cargo.toml`, independent of the workspace version) in the library, and
//! loading a plugin checks, with `expected` = the host's copy and `actual` = the plugin's:
//!
//! - at load time, the plugin is refused (`IncompatibleVersionNumber`) when
//!   `expected.major != actual.major`, or when `major == 0` and
//!   `expected.minor > actual.minor`;
//! - then every type layout is compared, and each type's package version must be
//!   "loosely compatible": same major for `1.x` and later, same major *and minor* for
//!   `0.x` (otherwise `AbiInstability`). The patch number is never compared.
//!
//! So for `0.y.z` the minor `y` acts as the major: `0.1.0` and `0.1.7` interoperate,
//! `0.1.x` and `0.2.x` do not, in either direction. An append-only change is therefore a
//! patch release (`0.1.z`) now and a minor release after `1.0`; a breaking change is
//! `0.(y+1).0` now and `(x+1).0.0` after `1.0`. (Checked with abi_stable 0.11.3: a plugin
//! built against a `0.1.5` copy of this crate loads in a `0.1.0` host; one built against
//! `0.2.0` is refused with `AbiInstability`.)
#![allow(non_local_definitions)]

pub use abi_stable;

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString},
    StableAbi,
};

mod export;

pub use export::{
    guarded_static_str, install_quiet_panic_hook, new_guarded_strategy, panic_message, Guarded,
    StrategyImpl,
};

/// The version of this ABI (this crate's version): what abi_stable compares at load time.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

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

/// Everything a strategy sees for one assignment. Borrowed; nothing is allocated to build it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The id being randomised (user, device, household ...), raw UTF-8.
    pub unit_id: RStr<'a>,
    /// The experiment key.
    pub experiment: RStr<'a>,
    /// The experiment salt (defaults to the key).
    pub salt: RStr<'a>,
    /// The variants' weights, in config order; a valid answer indexes into this slice.
    pub weights: RSlice<'a, u32>,
    /// Coverage in basis points, `0..=10000`.
    pub coverage_bp: u32,
    /// The unit's attributes.
    pub attributes: RSlice<'a, Attribute<'a>>,
    /// The request's time when the caller fixes it (simulations, tests, replays), in ms since
    /// the Unix epoch; `RNone` when serving live. Read it through [`Request::now_ms`]: the clock
    /// is then read only by strategies that need time (a clock read costs more than the rest of
    /// a hash strategy's call).
    pub fixed_now_ms: ROption<u64>,
}

impl<'a> Request<'a> {
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
/// [`export_strategy_plugin!`], which wraps it in [`Guarded`] (the implementation of this
/// trait that catches panics).
#[sabi_trait]
pub trait Strategy: Send + Sync {
    /// Decides one request. Must not panic across the boundary: the export macro catches panics.
    fn assign(&self, request: &Request<'_>) -> Decision;
}

/// An owned, type-erased strategy instance as it crosses the boundary.
pub type StrategyBox = Strategy_TO<'static, RBox<()>>;

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
    /// Builds a strategy for one experiment from its `strategy_config` (JSON text, `{}` if none).
    #[sabi(last_prefix_field)]
    pub new_strategy: extern "C" fn(config_json: RStr<'_>) -> RResult<StrategyBox, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "abkit_strategy";
    const NAME: &'static str = "abkit_strategy";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
