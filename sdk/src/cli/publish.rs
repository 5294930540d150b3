//! `abkit publish`: put a configuration document into etcd for a fleet.
//!
//! In order, and nothing is written unless every step passes: the document fits in one etcd
//! request; it is a valid configuration; every file it names passes the checks of `abkit
//! check` on this host (keys, signatures, ELF; relative paths against `--config-dir`, by
//! default the document's directory); the key is at `--if-revision` when given. Then one txn
//! writes it if the key's `mod_revision` is still the one read (or `--if-revision`), so two
//! operators never overwrite each other silently. `--dry-run` prints what would change (the
//! `diff` report over a synthetic population) and writes nothing.
//!
//! Exit codes: 0 published (or a dry run), 1 refused (invalid document, a plugin that fails its
//! checks, too large, etcd unreachable), 2 usage, 3 conflict (the key is at another revision;
//! both are named).

use super::source::{block_on, EtcdArgs};
use super::CliError;
use crate::config::{Config, ConfigError};
use crate::simulate::{self, SimulateOptions, SyntheticSpec, UnitSource};
use crate::source::etcd::{self, EtcdError, DEFAULT_MAX_REQUEST_BYTES};
use crate::Sdk;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `abkit publish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The document to publish (a TOML configuration file).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    etcd: Box<EtcdArgs>,
    /// Publish only if the key is still at this revision (its mod_revision, as `abkit status`
    /// shows it); 0: only if the key does not exist yet. A conflict exits 3 and names both.
    #[arg(long, value_name = "R")]
    if_revision: Option<i64>,
    /// Print what would change (the diff report over a synthetic population) and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Units of the dry run's synthetic population.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100_000,
        requires = "dry_run"
    )]
    synthetic: u64,
    /// The largest request etcd accepts (its --max-request-bytes; default 1.5 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
}

/// Exit code of a compare-and-swap conflict.
const EXIT_CONFLICT: u8 = 3;

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    if !args.etcd.active() {
        return Err(CliError::Invalid(
            "publish needs --etcd-endpoints URLS and --etcd-key KEY".into(),
        ));
    }
    let mut options = args.etcd.options()?;
    options.max_request_bytes = args.max_request_bytes;
    let name = args.config.display().to_string();
    let bytes = crate::files::read_regular_capped(&args.config, 16 << 20, true)
        .map_err(|e| CliError::Invalid(format!("cannot read {name}: {}", e.detail())))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CliError::Invalid(format!(
            "{name} is not UTF-8 text; a configuration is TOML text"
        ))
    })?;
    etcd::check_size(text.len() + options.key.len(), options.max_request_bytes)
        .map_err(|e| CliError::Invalid(format!("{name} is not published: {e}")))?;
    // Relative paths: --config-dir, else the document's directory (as `abkit check` does).
    let base = match args.etcd.config_dir() {
        Some(dir) => dir.to_path_buf(),
        None => args
            .config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let config = match Config::from_toml_str(&text, &name, &base) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            eprintln!("abkit: publish: {name} is invalid; nothing was written");
            return Ok(ExitCode::from(1));
        }
    };
    let issues = super::check::file_issues(&config);
    if !issues.is_empty() {
        println!(
            "{}",
            ConfigError {
                source_name: name.clone(),
                issues
            }
        );
        eprintln!(
            "abkit: publish: files named by {name} fail their checks on this host (relative paths resolve against {}); nothing was written",
            base.display()
        );
        return Ok(ExitCode::from(1));
    }
    block_on(publish(args, options, name, text, config, base))?
}

async fn publish(
    args: Args,
    options: etcd::EtcdOptions,
    name: String,
    text: String,
    config: Config,
    base: PathBuf,
) -> Result<ExitCode, CliError> {
    let key = options.key.clone();
    let current = etcd::current(&options)
        .await
        .map_err(|e| CliError::Invalid(format!("{e}; nothing was written")))?;
    let current_revision = current.as_ref().map_or(0, |d| d.revision);
    let describe = |r: i64| {
        if r == 0 {
            "absent".to_string()
        } else {
            format!("revision {r}")
        }
    };
    if let Some(expected) = args.if_revision {
        if expected != current_revision {
            return Ok(conflict(&EtcdError::Conflict {
                key,
                expected,
                actual: current_revision,
            }));
        }
    }
    if args.dry_run {
        println!(
            "dry run: would publish {name} ({} bytes) to etcd key {key} ({} now); nothing written",
            text.len(),
            describe(current_revision)
        );
        let from_config = match &current {
            Some(doc) if doc.text.as_deref() == Some(text.as_str()) => {
                println!(
                    "the document is the same as the one in etcd: publishing changes no assignment"
                );
                None
            }
            Some(doc) => {
                match doc.text.as_deref().map(|t| {
                    Config::from_toml_str(
                        t,
                        &format!("etcd key {key} (revision {})", doc.revision),
                        &base,
                    )
                }) {
                    Some(Ok(c)) => Some(c),
                    _ => {
                        println!("the document in etcd is invalid; comparing with an empty configuration");
                        Some(empty_config(&base)?)
                    }
                }
            }
            None => Some(empty_config(&base)?),
        };
        if let Some(from_config) = from_config {
            let from = Sdk::from_config(from_config)?;
            let to = Sdk::from_config(config)?;
            let source = UnitSource::synthetic(SyntheticSpec::new(args.synthetic));
            let report = simulate::diff(
                &from.snapshot(),
                &to.snapshot(),
                source,
                &SimulateOptions::default(),
            )
            .map_err(|e| CliError::Invalid(e.to_string()))?;
            print!("{}", report.to_table());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let expected = args.if_revision.unwrap_or(current_revision);
    match etcd::publish(&options, &text, expected).await {
        Ok(revision) => {
            println!(
                "published {name} to etcd key {key}: revision {revision} (was {})",
                describe(current_revision)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ EtcdError::Conflict { .. }) => Ok(conflict(&e)),
        Err(e) => Err(CliError::Invalid(format!("{e}; nothing was written"))),
    }
}

fn conflict(e: &EtcdError) -> ExitCode {
    eprintln!("abkit: publish: {e}");
    ExitCode::from(EXIT_CONFLICT)
}

fn empty_config(base: &Path) -> Result<Config, CliError> {
    Config::from_toml_str("", "(nothing published yet)", base)
        .map_err(|e| CliError::Invalid(e.to_string()))
}
