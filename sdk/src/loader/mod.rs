//! The loader: from a configured plugin file to a callable root module, refusing at the first
//! failed check. The order is the security boundary (see `docs/hostile-plugins.md`): nothing of the
//! plugin is mapped or run before its exact bytes are verified.
//!
//! ```text
//! path checks -> read once (size-capped, no-follow) -> signature + signed metadata -> rollback
//!   -> ELF structure + dynamic section + dependency allowlist (on those bytes)
//!   -> those bytes into a sealed memfd -> dlopen /proc/self/fd/N
//!   -> root symbol + abi_stable version + layout checks -> root module initialised
//! ```
//!
//! No path on any file system is opened after verification: the bytes that are mapped are the
//! bytes that were verified (the `sealed` module: a sealed memfd). Libraries are never unloaded (unloading Rust cdylibs
//! is unsound in practice): each distinct set of bytes is mapped once per process and reused
//! through an in-process map from SHA-256 to the loaded module; [`loaded_libraries`] counts them.

pub mod elf;
pub(crate) mod paths; // `abkit check` applies the same path rules
mod sealed;

use crate::config::PluginConfig;
use crate::outcome::{RefusalReason, Step};
use crate::trust::{self, SignedMetadata, TrustError, TrustStore, VersionLedger};
use abkit_strategy_api::abi_stable::library::{lib_header_from_path, LibraryError};
use abkit_strategy_api::PluginModRef;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// Who a loaded plugin is: what provenance reports for every assignment it decides.
/// One per distinct library loaded in this process (never freed, like the library itself).
#[derive(Debug, PartialEq, Eq)]
pub struct PluginIdentity {
    /// The plugin's (signed) name.
    pub name: String,
    /// Its signed version.
    pub version: u64,
    /// Lowercase hex SHA-256 of the library file.
    pub sha256: String,
    /// The signer's key id (uppercase hex), or `UNSIGNED` in `danger_allow_unsigned` mode.
    pub key_id: String,
    /// The signed expiry (unix seconds; refused from the next second on), if any.
    pub expires: Option<u64>,
    /// The plugin's own version string (from its root module).
    pub build_version: String,
}

impl PluginIdentity {
    /// The first 12 hex digits of the SHA-256, for logs and provenance.
    pub fn sha256_prefix(&self) -> &str {
        &self.sha256[..self.sha256.len().min(12)]
    }
}

/// A plugin that passed every load check.
#[derive(Clone, Copy)]
pub(crate) struct LoadedPlugin {
    pub(crate) identity: &'static PluginIdentity,
    pub(crate) module: PluginModRef,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("identity", self.identity)
            .finish_non_exhaustive()
    }
}

/// Why a plugin was refused, by step. `reason()` is a stable snake_case code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The plugin or signature path is unsafe (`..`, symlink, writable by others).
    #[error("{path}: {detail}")]
    UnsafePath {
        /// The path.
        path: PathBuf,
        /// Why it is refused.
        detail: String,
    },
    /// The plugin file does not exist.
    #[error("{path}: no such plugin file; build it or fix `path` in [[plugins]]")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// Signature or signed-metadata check failed.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The verified bytes could not be put into a sealed memory file to map them from.
    #[error("{path}: cannot map the verified bytes from a sealed memory file ({detail}); this needs Linux with memfd and /proc mounted")]
    Map {
        /// The configured plugin path.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The bytes are not a loadable ELF shared library for this host.
    #[error("{path}: {source}")]
    Elf {
        /// The configured plugin path.
        path: PathBuf,
        /// What is wrong with the file.
        source: elf::ElfError,
    },
    /// `dlopen` failed.
    #[error("{path}: cannot open the library: {detail}")]
    Open {
        /// The configured plugin path.
        path: PathBuf,
        /// The loader's message.
        detail: String,
    },
    /// The library does not export the abkit root module.
    #[error("{path}: no abkit root module symbol; was it built with `export_strategy_plugin!`?")]
    SymbolMissing {
        /// The configured plugin path.
        path: PathBuf,
    },
    /// The library was built against an incompatible version of `abkit-strategy-api`.
    #[error("{path}: built against an incompatible abkit-strategy-api: {detail}; rebuild the plugin against this SDK's version")]
    IncompatibleVersion {
        /// The configured plugin path.
        path: PathBuf,
        /// Expected and found versions.
        detail: String,
    },
    /// The root module's layout differs from this SDK's (ABI mismatch).
    #[error("{path}: ABI layout mismatch with this SDK's abkit-strategy-api ({summary}); rebuild the plugin (full diff in the log)")]
    AbiMismatch {
        /// The configured plugin path.
        path: PathBuf,
        /// A one-line summary; the full diff goes to the log.
        summary: String,
    },
    /// The root module's initialiser failed or panicked.
    #[error("{path}: plugin initialisation failed: {detail}")]
    InitFailed {
        /// The configured plugin path.
        path: PathBuf,
        /// The plugin's message.
        detail: String,
    },
    /// The process already maps as many plugin libraries as it may (they are never unloaded).
    #[error("{path}: this process already maps {mapped} plugin libraries (cap {cap}); libraries are never unloaded, so restart the process to load more")]
    LibraryCap {
        /// The configured plugin path.
        path: PathBuf,
        /// Libraries mapped now.
        mapped: usize,
        /// The cap.
        cap: usize,
    },
    /// The root module reports another name than the signed one.
    #[error("{path}: the library calls itself \"{module_name}\" but is signed as \"{signed}\"")]
    ModuleNameMismatch {
        /// The configured plugin path.
        path: PathBuf,
        /// What the root module says.
        module_name: String,
        /// What the signature says.
        signed: String,
    },
}

impl LoadError {
    /// A stable snake_case code for status, metrics and tests.
    pub fn reason(&self) -> RefusalReason {
        match self {
            LoadError::UnsafePath { .. } => RefusalReason::UnsafePath,
            LoadError::Missing { .. } => RefusalReason::PluginMissing,
            LoadError::Trust(t) => t.reason(),
            LoadError::Map { .. } => RefusalReason::MapFailed,
            LoadError::Elf {
                source: elf::ElfError::NotElf(_),
                ..
            } => RefusalReason::CannotOpen,
            LoadError::Elf {
                source: elf::ElfError::DisallowedDependency(_),
                ..
            } => RefusalReason::DisallowedDependency,
            LoadError::Elf { .. } => RefusalReason::MalformedLibrary,
            LoadError::Open { .. } => RefusalReason::CannotOpen,
            LoadError::SymbolMissing { .. } => RefusalReason::SymbolMissing,
            LoadError::IncompatibleVersion { .. } => RefusalReason::AbiVersion,
            LoadError::AbiMismatch { .. } => RefusalReason::AbiLayoutMismatch,
            LoadError::InitFailed { .. } => RefusalReason::InitFailed,
            LoadError::ModuleNameMismatch { .. } => RefusalReason::ModuleNameMismatch,
            LoadError::LibraryCap { .. } => RefusalReason::LibraryCap,
        }
    }

    /// The pipeline step that refused.
    pub fn step(&self) -> Step {
        match self {
            LoadError::UnsafePath { .. } | LoadError::Missing { .. } => Step::Path,
            LoadError::Trust(TrustError::Rollback { .. }) => Step::Rollback,
            LoadError::Trust(_) => Step::Signature,
            LoadError::Map { .. } => Step::Map,
            LoadError::Elf { .. } => Step::Elf,
            LoadError::Open { .. }
            | LoadError::SymbolMissing { .. }
            | LoadError::LibraryCap { .. } => Step::Open,
            LoadError::IncompatibleVersion { .. } | LoadError::AbiMismatch { .. } => Step::Abi,
            LoadError::InitFailed { .. } | LoadError::ModuleNameMismatch { .. } => Step::Init,
        }
    }
}

/// Distinct libraries opened by this process, by SHA-256 (never unloaded, so never removed).
/// A library that failed a check after `dlopen` mapped it stays mapped too: its outcome is kept
/// so the same bytes are never mapped twice (a refused plugin reloaded in a loop must not map
/// a new copy each time).
fn libraries() -> &'static Mutex<FxHashMap<[u8; 32], Mapped>> {
    static LIBS: OnceLock<Mutex<FxHashMap<[u8; 32], Mapped>>> = OnceLock::new();
    LIBS.get_or_init(Default::default)
}

/// What `dlopen` + the abi_stable checks made of one set of bytes.
#[derive(Clone)]
enum Mapped {
    /// Passed: the root module.
    Module(PluginModRef),
    /// Mapped, then refused; the refusal is replayed for the same bytes.
    Refused(MappedRefusal),
}

/// A refusal that happened after the library was mapped (cloneable, path-free).
#[derive(Clone)]
enum MappedRefusal {
    SymbolMissing,
    IncompatibleVersion(String),
    AbiMismatch(String),
    InitFailed(String),
    Other(String),
}

impl MappedRefusal {
    fn of(e: &LoadError) -> MappedRefusal {
        match e {
            LoadError::SymbolMissing { .. } => MappedRefusal::SymbolMissing,
            LoadError::IncompatibleVersion { detail, .. } => {
                MappedRefusal::IncompatibleVersion(detail.clone())
            }
            LoadError::AbiMismatch { summary, .. } => MappedRefusal::AbiMismatch(summary.clone()),
            LoadError::InitFailed { detail, .. } => MappedRefusal::InitFailed(detail.clone()),
            other => MappedRefusal::Other(other.to_string()),
        }
    }

    fn error(&self, path: &Path) -> LoadError {
        let path = path.to_path_buf();
        match self.clone() {
            MappedRefusal::SymbolMissing => LoadError::SymbolMissing { path },
            MappedRefusal::IncompatibleVersion(detail) => {
                LoadError::IncompatibleVersion { path, detail }
            }
            MappedRefusal::AbiMismatch(summary) => LoadError::AbiMismatch { path, summary },
            MappedRefusal::InitFailed(detail) => LoadError::InitFailed { path, detail },
            MappedRefusal::Other(detail) => LoadError::Open { path, detail },
        }
    }
}

/// One identity per (bytes, signed name, version, signer, expiry): the same bytes may be signed
/// again (a new version number, another key, another expiry) and provenance must say so.
/// Bounded by accepted loads.
fn identity_for(meta: &SignedMetadata, module: PluginModRef) -> &'static PluginIdentity {
    type Key = ([u8; 32], String, u64, String, Option<u64>);
    static IDS: OnceLock<Mutex<FxHashMap<Key, &'static PluginIdentity>>> = OnceLock::new();
    let key = (
        meta.sha256,
        meta.name.clone(),
        meta.version,
        meta.key_id.clone(),
        meta.expires,
    );
    let mut ids = IDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    ids.entry(key).or_insert_with(|| {
        Box::leak(Box::new(PluginIdentity {
            name: meta.name.clone(),
            version: meta.version,
            sha256: meta.sha256_hex(),
            key_id: meta.key_id.clone(),
            expires: meta.expires,
            build_version: crate::status::clip_plugin_text(module.version()().as_str()),
        }))
    })
}

/// How many distinct plugin libraries this process has mapped (they are never unloaded).
pub fn loaded_libraries() -> usize {
    libraries().lock().map_or(0, |m| {
        m.values()
            .filter(|v| matches!(v, Mapped::Module(_)))
            .count()
    })
}

/// Every library image mapped by this process, refused ones included (what the cap bounds).
fn mapped_images() -> usize {
    libraries().lock().map_or(0, |m| m.len())
}

/// Everything one load needs besides the plugin's own entry.
pub(crate) struct LoadContext<'a> {
    pub(crate) trust: &'a TrustStore,
    pub(crate) ledger: &'a VersionLedger,
    /// Sonames a plugin may name in `DT_NEEDED` (`[trust] allowed_libraries`).
    pub(crate) allowed_libraries: &'a [String],
    pub(crate) allow_unsigned: bool,
    pub(crate) now: SystemTime,
    pub(crate) max_libraries: usize,
}

/// Verified bytes of a plugin, not mapped yet: everything up to `dlopen` passed on them.
pub(crate) struct Verified {
    /// The exact bytes that were verified (and will be mapped).
    pub(crate) bytes: Vec<u8>,
    /// Their signed metadata.
    pub(crate) meta: SignedMetadata,
}

impl Verified {
    /// Whether these bytes already passed `dlopen` and every check in this process (a preflight
    /// then has nothing to add: they were accepted before).
    pub(crate) fn already_accepted(&self) -> bool {
        libraries()
            .lock()
            .ok()
            .is_some_and(|m| matches!(m.get(&self.meta.sha256), Some(Mapped::Module(_))))
    }
}

/// Every check before `dlopen`: path, capped read, signature and metadata, rollback, ELF
/// structure, dynamic section and dependency policy. Maps nothing, runs nothing.
pub(crate) fn verify(cfg: &PluginConfig, cx: &LoadContext<'_>) -> Result<Verified, LoadError> {
    paths::check(&cfg.path)?;
    let bytes = trust::read_capped(&cfg.path, trust::PLUGIN_MAX_BYTES, trust::FileKind::Plugin)?;
    let meta = if cx.allow_unsigned {
        tracing::warn!(plugin = %cfg.name, path = %cfg.path.display(), "DANGER: loading an UNSIGNED plugin (trust.danger_allow_unsigned = true)");
        SignedMetadata {
            name: cfg.name.clone(),
            version: 0,
            sha256: Sha256::digest(&bytes).into(),
            expires: None,
            key_id: "UNSIGNED".into(),
        }
    } else {
        paths::check(&cfg.signature).map_err(|e| match e {
            LoadError::Missing { path } => LoadError::Trust(TrustError::SignatureMissing { path }),
            other => other,
        })?;
        let sig = trust::read_capped(
            &cfg.signature,
            trust::SIGNATURE_MAX_BYTES,
            trust::FileKind::Signature,
        )?;
        let sig = String::from_utf8(sig).map_err(|_| TrustError::MalformedSignature {
            detail: format!("{} is not UTF-8 text", cfg.signature.display()),
        })?;
        let meta = cx.trust.verify(&cfg.name, &bytes, &sig, cx.now)?;
        cx.ledger.check(&meta)?;
        meta
    };

    // On every load, even of bytes already mapped: the policy (the allowlist) may have changed.
    check_library(&bytes, cx.allowed_libraries).map_err(|source| LoadError::Elf {
        path: cfg.path.clone(),
        source,
    })?;
    Ok(Verified { bytes, meta })
}

/// Maps verified bytes from a sealed memfd (or reuses the library mapped from the same bytes)
/// and checks the root module: the only step that runs plugin code.
pub(crate) fn map(
    cfg: &PluginConfig,
    cx: &LoadContext<'_>,
    verified: Verified,
) -> Result<(LoadedPlugin, SignedMetadata), LoadError> {
    let Verified { bytes, meta } = verified;
    let cached = libraries()
        .lock()
        .ok()
        .and_then(|m| m.get(&meta.sha256).cloned());
    let module = match cached {
        // Same bytes as a library already open in this process: reuse it (a free reload).
        Some(Mapped::Module(module)) => module,
        // Same bytes as a library mapped and refused before: the same refusal, no new mapping.
        Some(Mapped::Refused(refusal)) => return Err(refusal.error(&cfg.path)),
        None => {
            let mapped = mapped_images();
            if mapped >= cx.max_libraries {
                return Err(LoadError::LibraryCap {
                    path: cfg.path.clone(),
                    mapped,
                    cap: cx.max_libraries,
                });
            }
            let image = sealed::SealedImage::new(&meta.name, &bytes, &cfg.path)?;
            let (outcome, was_mapped) = open_root_module(&image.proc_path(), &cfg.path);
            if !was_mapped {
                // dlopen itself failed: nothing is mapped, the descriptor may close.
                return Err(outcome.err().unwrap_or_else(|| LoadError::Open {
                    path: cfg.path.clone(),
                    detail: "dlopen failed".into(),
                }));
            }
            // Mapped (accepted or not): the descriptor stays open as long as the library, so
            // its name `/proc/self/fd/N` is never reused for other bytes.
            image.keep_forever();
            let entry = match &outcome {
                Ok(module) => Mapped::Module(*module),
                Err(e) => Mapped::Refused(MappedRefusal::of(e)),
            };
            if let Ok(mut m) = libraries().lock() {
                m.insert(meta.sha256, entry);
            }
            let module = outcome?;
            tracing::info!(plugin = %meta.name, sha256 = %meta.sha256_hex(), "plugin library mapped from sealed memory");
            module
        }
    };
    let module_name = crate::status::clip_plugin_text(module.name()().as_str());
    if module_name != meta.name {
        return Err(LoadError::ModuleNameMismatch {
            path: cfg.path.clone(),
            module_name,
            signed: meta.name,
        });
    }
    let identity = identity_for(&meta, module);
    tracing::info!(plugin = %meta.name, version = meta.version, sha256 = %identity.sha256_prefix(), key_id = %meta.key_id, "plugin loaded");
    Ok((LoadedPlugin { identity, module }, meta))
}

/// Every check of the library's bytes that runs before `dlopen` (also run by `abkit verify`):
/// ELF structure and dynamic section ([`elf::validate`]), then the dependency policy
/// ([`elf::check_dependencies`]).
pub fn check_library<S: AsRef<str>>(
    bytes: &[u8],
    allowed_libraries: &[S],
) -> Result<elf::DynamicInfo, elf::ElfError> {
    let info = elf::validate(bytes)?;
    elf::check_dependencies(&info, allowed_libraries)?;
    Ok(info)
}

/// `dlopen`s the sealed image and checks the abi_stable header, version and layout.
/// Uses `lib_header_from_path` + `init_root_module` per file: `RootModule::load_from*` caches
/// one library per root-module type and would hand back the first plugin for every later one.
/// Returns the outcome and whether the library got mapped (false only when `dlopen` failed).
fn open_root_module(image: &Path, configured: &Path) -> (Result<PluginModRef, LoadError>, bool) {
    let header = match lib_header_from_path(image) {
        Ok(h) => h,
        Err(e) => {
            let mapped = !matches!(e, LibraryError::OpenError { .. });
            return (Err(map_library_error(e, configured)), mapped);
        }
    };
    (
        header
            .init_root_module::<PluginModRef>()
            .map_err(|e| map_library_error(e, configured)),
        true,
    )
}

fn map_library_error(e: LibraryError, path: &Path) -> LoadError {
    let path = path.to_path_buf();
    match e {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            path,
            detail: err.to_string(),
        },
        LibraryError::GetSymbolError { .. } => LoadError::SymbolMissing { path },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::IncompatibleVersion {
            path,
            detail: format!(
                "this SDK speaks {expected_version}, the plugin was built with {actual_version}"
            ),
        },
        LibraryError::ParseVersionError(v) => LoadError::IncompatibleVersion {
            path,
            detail: v.to_string(),
        },
        LibraryError::InvalidAbiHeader(h) => LoadError::IncompatibleVersion {
            path,
            detail: format!("abi_stable header {h:?}"),
        },
        LibraryError::AbiInstability(diff) => {
            let full = diff.to_string();
            tracing::error!(plugin = %path.display(), layout_diff = %full, "plugin ABI layout mismatch");
            let summary = full
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("layout differs")
                .trim();
            LoadError::AbiMismatch {
                path,
                summary: summary.chars().take(160).collect(),
            }
        }
        LibraryError::RootModule { err, .. } => LoadError::InitFailed {
            path,
            detail: crate::status::clip_plugin_text(&err.to_string()),
        },
        other => LoadError::Open {
            path,
            detail: other.to_string(),
        },
    }
}

/// The preflight child's side: maps bytes the parent verified (and sent over a pipe), after
/// the same library checks, and checks the root module's name. The child process exists only
/// to run this plugin's code away from the service.
#[cfg(feature = "cli")]
pub(crate) fn map_for_preflight(
    name: &str,
    bytes: Vec<u8>,
    allowed_libraries: &[String],
) -> Result<LoadedPlugin, LoadError> {
    let path = PathBuf::from(format!("<preflight:{name}>"));
    check_library(&bytes, allowed_libraries).map_err(|source| LoadError::Elf {
        path: path.clone(),
        source,
    })?;
    let cfg = PluginConfig {
        name: name.to_string(),
        path: path.clone(),
        signature: path,
    };
    let meta = SignedMetadata {
        name: name.to_string(),
        version: 0,
        sha256: Sha256::digest(&bytes).into(),
        expires: None,
        key_id: "PREFLIGHT".into(),
    };
    let trust = TrustStore::default();
    let ledger = VersionLedger::in_memory();
    let cx = LoadContext {
        trust: &trust,
        ledger: &ledger,
        allowed_libraries,
        allow_unsigned: false,
        now: SystemTime::now(),
        max_libraries: usize::MAX,
    };
    map(&cfg, &cx, Verified { bytes, meta }).map(|(loaded, _)| loaded)
}
