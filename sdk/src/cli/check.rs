//! `abkit check`: validate a configuration and every file it names, short of loading code;
//! print every problem at once (exit 1 if any).

use super::CliError;
use crate::config::{ConfigError, ConfigIssue, TrustConfig};
use crate::loader::{self, LoadError};
use crate::trust::{self, FileKind, TrustError, TrustStore};
use crate::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

/// Arguments of `abkit check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let config = match Config::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    for w in config.warnings() {
        println!("warning: {}: {}", w.path, w.message);
    }
    let issues = file_issues(&config);
    if !issues.is_empty() {
        let error = ConfigError {
            source_name: args.config.display().to_string(),
            issues,
        };
        println!("{error}");
        return Ok(ExitCode::from(1));
    }
    println!(
        "ok: {} is valid ({}, {}, {}); {}",
        args.config.display(),
        plural(config.experiments.len(), "experiment"),
        plural(config.layers.len(), "layer"),
        plural(config.plugins.len(), "plugin"),
        if config.plugins.is_empty() {
            "no plugin files to check".to_string()
        } else if config.trust.danger_allow_unsigned {
            "every plugin file is safe to read and a loadable library (signatures NOT checked: \
             trust.danger_allow_unsigned is on)"
                .to_string()
        } else {
            "every plugin, signature and key file is readable, signed by a trusted key for its \
             configured name, and a loadable library (not loaded: `abkit status` runs the plugins)"
                .to_string()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `1 experiment`, `2 experiments`, `0 layers`.
pub(crate) fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Every check `status` would make of the files a valid config names, short of loading code:
/// the trusted keys parse; each plugin and signature path passes the loader's path rules (no
/// `..`, no symlink, nothing others can write) and is a readable regular file; each signature
/// parses, names the plugin's configured name, and verifies against the trusted keys (key,
/// signature, expiry, SHA-256; not rollback, which needs the running service's ledger); each
/// library passes the ELF and dependency checks. One issue per problem, all at once.
pub(super) fn file_issues(config: &Config) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut issue = |path: String, message: String| {
        // Some messages name their field already (`trust.public_keys[1]: ...`).
        let message = match message.strip_prefix(&format!("{path}: ")) {
            Some(rest) => rest.to_string(),
            None => message,
        };
        issues.push(ConfigIssue { path, message });
    };

    // Keys: one at a time, so that every bad one is listed, then all together (a key id
    // trusted twice with different keys).
    let mut keys_ok = true;
    for (index, line) in config.trust.public_keys.iter().enumerate() {
        let one = TrustConfig {
            public_keys: vec![line.clone()],
            ..TrustConfig::default()
        };
        if let Err(e) = TrustStore::from_config(&one) {
            keys_ok = false;
            let e = match e {
                TrustError::PublicKey { detail, .. } => TrustError::PublicKey { index, detail },
                other => other,
            };
            issue(format!("trust.public_keys[{index}]"), e.to_string());
        }
    }
    for (index, path) in config.trust.public_key_files.iter().enumerate() {
        let one = TrustConfig {
            public_key_files: vec![path.clone()],
            ..TrustConfig::default()
        };
        if let Err(e) = TrustStore::from_config(&one) {
            keys_ok = false;
            issue(format!("trust.public_key_files[{index}]"), e.to_string());
        }
    }
    let store = if keys_ok {
        match TrustStore::from_config(&config.trust) {
            Ok(store) => Some(store),
            Err(e) => {
                issue("trust".into(), e.to_string());
                None
            }
        }
    } else {
        None
    };
    let unsigned = config.trust.danger_allow_unsigned;
    if !unsigned && !config.plugins.is_empty() && store.as_ref().is_some_and(TrustStore::is_empty) {
        issue("trust".into(), TrustError::NoTrustedKeys.to_string());
    }

    let allowed = config.trust.allowed_libraries();
    let now = SystemTime::now();
    for (i, p) in config.plugins.iter().enumerate() {
        let at = |field: &str| format!("plugins[{i}].{field}");
        let bytes = match loader::paths::check(&p.path).and_then(|()| {
            trust::read_capped(&p.path, trust::PLUGIN_MAX_BYTES, FileKind::Plugin)
                .map_err(LoadError::from)
        }) {
            Ok(bytes) => {
                if let Err(source) = loader::check_library(&bytes, &allowed) {
                    let e = LoadError::Elf {
                        path: p.path.clone(),
                        source,
                    };
                    issue(at("path"), e.to_string());
                }
                Some(bytes)
            }
            Err(e) => {
                issue(at("path"), e.to_string());
                None
            }
        };
        if unsigned {
            continue;
        }
        let claimed = loader::paths::check(&p.signature)
            .map_err(|e| match e {
                LoadError::Missing { path } => TrustError::SignatureMissing { path }.to_string(),
                other => other.to_string(),
            })
            .and_then(|()| {
                trust::read_claimed_metadata(&p.signature).map_err(|e| with_path(&p.signature, &e))
            });
        let claimed = match claimed {
            Ok(c) => c,
            Err(message) => {
                issue(at("signature"), message);
                continue;
            }
        };
        if claimed.name != p.name {
            issue(
                at("signature"),
                with_path(
                    &p.signature,
                    &TrustError::NameMismatch {
                        signed: claimed.name,
                        configured: p.name.clone(),
                    },
                ),
            );
            continue;
        }
        let (Some(store), Some(bytes)) = (&store, &bytes) else {
            continue; // the key or plugin problem is listed already
        };
        if store.is_empty() {
            continue; // listed once under `trust`
        }
        let verified = trust::read_capped(
            &p.signature,
            trust::SIGNATURE_MAX_BYTES,
            FileKind::Signature,
        )
        .and_then(|sig| {
            let text = trust::signature_text(&sig)?;
            store.verify(&p.name, bytes, text, now)
        });
        if let Err(e) = verified {
            issue(at("signature"), with_path(&p.signature, &e));
        }
    }
    issues
}

/// A trust error prefixed with the file it is about, unless its message names it already.
fn with_path(path: &Path, e: &TrustError) -> String {
    let message = e.to_string();
    let shown = path.display().to_string();
    if message.contains(&shown) {
        message
    } else {
        format!("{shown}: {message}")
    }
}
