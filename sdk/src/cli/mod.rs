//! The subcommands of the `abkit` command-line tool (feature `cli`). Each lives in its own
//! module. The binary (`sdk/src/bin/abkit/`) parses the command line: it flattens [`Command`]
//! and [`LogArgs`] into its own parser and adds `abkit demo`, which lives in the binary, not here.
//!
//! Exit codes: 0 ok, 1 invalid input or configuration (or a refused check), 2 usage.
//!
//! Logs (the SDK's `tracing` events: refused plugins, DANGER unsigned mode, ABI differences,
//! persist failures) go to stderr only, so stdout stays machine-readable. Level: warnings by
//! default, `-v` info, `-vv` debug, `-vvv` trace, `-q` errors only; without `-v`/`-q`,
//! `RUST_LOG` (e.g. `RUST_LOG=abkit=debug`) chooses instead.

mod assign;
mod check;
mod diff;
mod keygen;
mod preflight;
#[cfg(feature = "etcd")]
mod publish;
mod sign;
mod simulate;
mod source;
mod status;
mod verify;
mod watch;

use clap::Subcommand;
use std::process::ExitCode;

/// The global log flags of `abkit` (`-v`, `-q`), flattened into the tool's parser.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (default: warnings and
    /// errors). Overrides RUST_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors in the log output on stderr (no warnings). Overrides RUST_LOG.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

/// The log level when neither `-v`/`-q` nor `RUST_LOG` chooses one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultLogLevel {
    /// Warnings and errors (every subcommand but the demo).
    Warn,
    /// Errors only (the demo, which prints every reload report itself and would otherwise
    /// show each refusal twice).
    Error,
}

impl LogArgs {
    /// Installs the log output: `tracing` events to stderr, at the level `-v`/`-q` ask for, or
    /// else as `RUST_LOG` says, or else `default`. Call once, before running a subcommand.
    pub fn init(&self, default: DefaultLogLevel) {
        use tracing_subscriber::filter::{EnvFilter, LevelFilter};
        let default = match default {
            DefaultLogLevel::Warn => LevelFilter::WARN,
            DefaultLogLevel::Error => LevelFilter::ERROR,
        };
        let flag_level = match (self.quiet, self.verbose) {
            (true, _) => Some(LevelFilter::ERROR),
            (false, 0) => None,
            (false, 1) => Some(LevelFilter::INFO),
            (false, 2) => Some(LevelFilter::DEBUG),
            (false, _) => Some(LevelFilter::TRACE),
        };
        let filter = match flag_level {
            Some(level) => EnvFilter::default().add_directive(level.into()),
            None => match std::env::var("RUST_LOG") {
                Ok(spec) if !spec.trim().is_empty() => {
                    EnvFilter::try_new(&spec).unwrap_or_else(|e| {
                        eprintln!(
                            "abkit: warning: RUST_LOG={spec:?} is not a valid filter ({e}); \
                                 logging warnings and errors (e.g. RUST_LOG=info or RUST_LOG=abkit=debug)"
                        );
                        EnvFilter::default().add_directive(default.into())
                    })
                }
                _ => EnvFilter::default().add_directive(default.into()),
            },
        };
        // Fails only if a subscriber is already installed (the tool calls this once).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .without_time()
            .try_init();
    }
}

/// The library-side subcommands of `abkit` (all but `demo`, which the binary adds).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Assign one unit (prints the variant, or `-`), or a file of unit ids (CSV to stdout).
    Assign(assign::Args),
    /// Validate a configuration and every file it names (keys, plugins, signatures), short of
    /// loading code; print every problem (exit 1 if any).
    Check(check::Args),
    /// Simulate a population: split per variant, SRM, layer and independence checks.
    Simulate(simulate::Args),
    /// Compare two configurations on a population: units moved, entered, left.
    Diff(diff::Args),
    /// Load a configuration as a service would and show what serves (plugins, refusals, strategies).
    Status(status::Args),
    /// Generate a minisign key pair for signing plugins (`NAME.pub`, `NAME.key`).
    Keygen(keygen::Args),
    /// Sign a plugin: writes `PLUGIN.minisig` with the signed metadata (name, version, sha256, expiry).
    Sign(sign::Args),
    /// Verify a plugin's signature and signed metadata against trusted public keys.
    Verify(verify::Args),
    /// The child side of `[preflight]`: exercises one plugin read from stdin (started by the SDK).
    #[command(hide = true)]
    Preflight(preflight::Args),
    /// Serve a configuration and print every reload as it happens (file edits, SIGHUP, or
    /// changes of an etcd key).
    Watch(watch::Args),
    /// Validate a configuration, verify every plugin it names, then write it to an etcd key
    /// with a compare-and-swap (--if-revision; --dry-run shows what would change).
    #[cfg(feature = "etcd")]
    Publish(publish::Args),
}

/// What a subcommand reports when it fails: the message goes to stderr, the code is the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Invalid input or configuration (exit 1).
    #[error("{0}")]
    Invalid(String),
}

impl From<crate::Error> for CliError {
    fn from(e: crate::Error) -> Self {
        CliError::Invalid(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Invalid(format!("i/o error: {e}"))
    }
}

impl Command {
    /// Runs the subcommand; returns the exit code, or the error to print (exit 1).
    pub fn run(self) -> Result<ExitCode, CliError> {
        match self {
            Command::Assign(a) => assign::run(a),
            Command::Check(a) => check::run(a),
            Command::Status(a) => status::run(a),
            Command::Simulate(a) => simulate::run(a),
            Command::Diff(a) => diff::run(a),
            Command::Keygen(a) => keygen::run(a),
            Command::Sign(a) => sign::run(a),
            Command::Verify(a) => verify::run(a),
            Command::Watch(a) => watch::run(a),
            Command::Preflight(a) => preflight::run(a),
            #[cfg(feature = "etcd")]
            Command::Publish(a) => publish::run(a),
        }
    }
}
