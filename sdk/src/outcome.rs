//! The typed outcomes of loads, reloads and guards: where a refusal happened ([`Step`]), its
//! stable code ([`RefusalReason`]), the typed error behind it ([`RefusalCause`]), what a reload
//! did to a plugin or experiment ([`Change`]), which guard judged ([`GuardKind`]) and what
//! decides an experiment ([`Serving`]).
//!
//! Every code serialises as the snake_case string the JSON has always carried, and displays as
//! the same string, so status text, reports and `abkit` output are unchanged.

use crate::assignment::FallbackReason;
use crate::config::ConfigError;
use crate::loader::{LoadError, PluginIdentity};
use crate::probe::ProbeError;
use crate::trust::TrustError;
use std::fmt;
use std::sync::Arc;

/// Defines a fieldless code enum: serde snake_case, `as_str`, `Display` as that code, `ALL`.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[doc = $doc:literal])* $variant:ident => $code:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable snake_case code (also its JSON string and its `Display` text).
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $code, )*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

code_enum! {
    /// The pipeline step that refused a plugin, an experiment or a reload.
    pub enum Step {
        /// The plugin or signature path checks (`..`, symlinks, permissions, missing file).
        Path => "path",
        /// The signature and the signed metadata.
        Signature => "signature",
        /// Rollback protection: the version is older than one already accepted.
        Rollback => "rollback",
        /// The ELF structure and the dependency allowlist.
        Elf => "elf",
        /// Putting the verified bytes into a sealed memory file.
        Map => "map",
        /// Opening the library and finding its root module.
        Open => "open",
        /// The abi_stable version and layout checks.
        Abi => "abi",
        /// The plugin's root-module initialiser.
        Init => "init",
        /// Building a strategy for an experiment.
        Instantiate => "instantiate",
        /// The probe of a built strategy.
        Probe => "probe",
        /// The `[trust]` table, the trust store or the state directory.
        Trust => "trust",
        /// A plugin call past its deadline.
        Deadline => "deadline",
        /// The child-process preflight.
        Preflight => "preflight",
        /// The configuration itself.
        Config => "config",
        /// A reload guard.
        Guard => "guard",
        /// The configuration source (the etcd key).
        Source => "source",
    }
}

code_enum! {
    /// The stable code of a refusal (status, reports, metrics labels, JSON).
    pub enum RefusalReason {
        /// The `.minisig` file does not exist.
        SignatureMissing => "signature_missing",
        /// A file is over its size limit.
        TooLarge => "too_large",
        /// A file could not be read (or the ledger written).
        Io => "io",
        /// The signature is not a well-formed minisign signature.
        MalformedSignature => "malformed_signature",
        /// A legacy, non-prehashed signature.
        LegacyAlgorithm => "legacy_algorithm",
        /// Signed by a key that is not trusted.
        UnknownKeyId => "unknown_key_id",
        /// The signature does not match the bytes or the signed metadata.
        BadSignature => "bad_signature",
        /// The trusted comment is not valid signed metadata.
        BadMetadata => "bad_metadata",
        /// The signed name is not the configured one.
        NameMismatch => "name_mismatch",
        /// The signature has expired.
        Expired => "expired",
        /// The file's SHA-256 is not the signed one.
        DigestMismatch => "digest_mismatch",
        /// The version is older than one already accepted.
        Rollback => "rollback",
        /// No trusted public key is configured.
        NoTrustedKeys => "no_trusted_keys",
        /// A public key file is unreadable or malformed.
        BadKeyFile => "bad_key_file",
        /// An inline public key is malformed.
        BadPublicKey => "bad_public_key",
        /// The version ledger cannot be used.
        BadLedger => "bad_ledger",
        /// The state directory cannot be trusted.
        InsecureStateDir => "insecure_state_dir",
        /// The signer's key was trusted before and is no longer (or unsigned mode was turned off).
        Revoked => "revoked",
        /// The plugin or signature path is unsafe.
        UnsafePath => "unsafe_path",
        /// The plugin file does not exist.
        PluginMissing => "plugin_missing",
        /// The verified bytes could not be mapped from a sealed memory file.
        MapFailed => "map_failed",
        /// The library could not be opened (or is not an ELF file).
        CannotOpen => "cannot_open",
        /// The library needs a library outside the allowlist.
        DisallowedDependency => "disallowed_dependency",
        /// The ELF file is malformed.
        MalformedLibrary => "malformed_library",
        /// No abkit root-module symbol.
        SymbolMissing => "symbol_missing",
        /// Built against an incompatible abkit-strategy-api.
        AbiVersion => "abi_version",
        /// The root module's layout differs from this SDK's.
        AbiLayoutMismatch => "abi_layout_mismatch",
        /// The root module's initialiser failed.
        InitFailed => "init_failed",
        /// The library calls itself by another name than the signed one.
        ModuleNameMismatch => "module_name_mismatch",
        /// The process maps as many plugin libraries as it may.
        LibraryCap => "library_cap",
        /// The plugin rejected an experiment's `strategy_config`.
        StrategyConfigRejected => "strategy_config_rejected",
        /// The plugin built a strategy whose declaration the SDK cannot use.
        InvalidDeclaration => "invalid_declaration",
        /// A probe answer indexed a variant that does not exist.
        ProbeInvalidAnswer => "probe_invalid_answer",
        /// The strategy failed on a probe unit.
        ProbeStrategyError => "probe_strategy_error",
        /// The strategy answered the same input differently.
        ProbeNondeterministic => "probe_nondeterministic",
        /// The strategy is too slow.
        ProbeTooSlow => "probe_too_slow",
        /// A plugin call did not return within its deadline.
        DeadlineExceeded => "deadline_exceeded",
        /// The preflight child refused the plugin for a reason it could not name.
        PreflightRefused => "preflight_refused",
        /// The preflight child crashed or exited without a result.
        PreflightCrashed => "preflight_crashed",
        /// The preflight command could not be started.
        PreflightUnavailable => "preflight_unavailable",
        /// The preflight child did not finish in time.
        PreflightTimeout => "preflight_timeout",
        /// The configuration is invalid.
        InvalidConfig => "invalid_config",
        /// The client was not built from a file, so there is nothing to re-read.
        NoConfigFile => "no_config_file",
        /// A file the configuration names (plugin, signature, key) is missing on this host.
        MissingFile => "missing_file",
        /// The etcd key holding the configuration does not exist.
        KeyMissing => "key_missing",
        /// The etcd key holding the configuration was deleted.
        KeyDeleted => "key_deleted",
        /// The sample-ratio guard failed.
        GuardSampleRatio => "guard_sample_ratio",
        /// The reassignment guard failed.
        GuardReassignment => "guard_reassignment",
    }
}

code_enum! {
    /// What a reload did to a plugin ([`PluginChange`](crate::PluginChange)) or an experiment
    /// ([`ExperimentChange`](crate::ExperimentChange)).
    pub enum Change {
        /// New in the candidate.
        Added => "added",
        /// Gone from the candidate.
        Removed => "removed",
        /// A plugin: another version or build serves.
        Updated => "updated",
        /// An experiment: its configuration or what decides it changed.
        Changed => "changed",
        /// Nothing changed.
        Unchanged => "unchanged",
        /// A plugin: the candidate artifact was refused.
        Refused => "refused",
        /// A plugin: its signer's key left `[trust]`; the version stops serving.
        Revoked => "revoked",
        /// A plugin: its signature expired; the version stops serving.
        Expired => "expired",
    }
}

code_enum! {
    /// Which reload guard produced a [`GuardResult`](crate::GuardResult).
    pub enum GuardKind {
        /// The candidate's variant shares match the configured weights.
        SampleRatio => "sample_ratio",
        /// Few enough units change variant.
        Reassignment => "reassignment",
    }
}

impl GuardKind {
    /// The refusal code of a failed guard of this kind.
    pub fn refusal_reason(self) -> RefusalReason {
        match self {
            GuardKind::SampleRatio => RefusalReason::GuardSampleRatio,
            GuardKind::Reassignment => RefusalReason::GuardReassignment,
        }
    }
}

/// What decides an experiment now (status and reload reports). Serialises and displays as
/// the text it always had, e.g. `plugin:switchback v3 (1a2b3c4d5e6f, key 8F1E...)` or
/// `builtin:hash-v1 (fallback: demoted)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Serving {
    /// `builtin:hash-v1`, configured as the experiment's strategy.
    Builtin,
    /// A loaded plugin version.
    Plugin(&'static PluginIdentity),
    /// The builtin stands in for the configured plugin, for this reason.
    Fallback(FallbackReason),
}

impl fmt::Display for Serving {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decided_by = match *self {
            Serving::Builtin => crate::DecidedBy::Builtin,
            Serving::Plugin(p) => crate::DecidedBy::Plugin(p),
            Serving::Fallback(r) => crate::DecidedBy::Fallback(r),
        };
        decided_by.fmt(f)
    }
}

impl serde::Serialize for Serving {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The typed error behind a [`Refusal`](crate::Refusal), when one exists (refusals the SDK
/// decides itself — a guard, a deadline, the preflight child — have none: their step, reason
/// and message say everything).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RefusalCause {
    /// The `[trust]` table, the trust store or the version ledger refused.
    Trust(Arc<TrustError>),
    /// The loader refused the plugin.
    Load(Arc<LoadError>),
    /// The probe refused a strategy.
    Probe(ProbeError),
    /// The configuration is invalid.
    Config(Arc<ConfigError>),
}

impl fmt::Display for RefusalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalCause::Trust(e) => e.fmt(f),
            RefusalCause::Load(e) => e.fmt(f),
            RefusalCause::Probe(e) => e.fmt(f),
            RefusalCause::Config(e) => e.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_matches_code<T: serde::Serialize + fmt::Display + Copy>(all: &[T]) {
        for v in all {
            assert_eq!(
                serde_json::to_value(v).expect("serialises"),
                serde_json::Value::String(v.to_string())
            );
        }
    }

    #[test]
    fn json_strings_are_the_display_codes() {
        json_matches_code(Step::ALL);
        json_matches_code(RefusalReason::ALL);
        json_matches_code(Change::ALL);
        json_matches_code(GuardKind::ALL);
    }

    #[test]
    fn a_refusal_serialises_as_step_reason_message_and_keeps_its_cause() {
        let r = crate::status::Refusal::trust(TrustError::BadSignature);
        assert_eq!(
            serde_json::to_value(&r).expect("serialises"),
            serde_json::json!({
                "step": "trust",
                "reason": "bad_signature",
                "message": TrustError::BadSignature.to_string(),
            })
        );
        assert!(matches!(
            r.cause(),
            Some(RefusalCause::Trust(e)) if matches!(**e, TrustError::BadSignature)
        ));
        let demoted = Serving::Fallback(FallbackReason::Demoted);
        assert_eq!(demoted.to_string(), "builtin:hash-v1 (fallback: demoted)");
        assert_eq!(
            serde_json::to_value(demoted).expect("serialises"),
            serde_json::json!("builtin:hash-v1 (fallback: demoted)")
        );
        assert_eq!(format!("{:<9}|", Change::Added), "added    |");
        let configured = crate::config::StrategyRef::Plugin("wh".into());
        assert_eq!(format!("{configured:<12}|"), "plugin:wh   |");
        assert_eq!(
            serde_json::to_value(&configured).expect("serialises"),
            serde_json::json!("plugin:wh")
        );
    }

    #[test]
    fn codes_round_trip_through_json() {
        for r in RefusalReason::ALL {
            let back: RefusalReason =
                serde_json::from_str(&format!("\"{r}\"")).expect("deserialises");
            assert_eq!(back, *r);
        }
        assert!(serde_json::from_str::<Step>("\"nowhere\"").is_err());
    }
}
