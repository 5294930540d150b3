//! `abkit preflight`: the child side of the child-process preflight (see `[preflight]`). Not for
//! people: a service (or `abkit` itself) starts it, writes a request line and the verified
//! plugin bytes to its stdin, and reads one JSON response from its stdout. Before any plugin
//! code runs, the response stream is moved to a private descriptor and stdout is pointed at
//! stderr, so whatever the plugin prints can never pass for a result.

use super::CliError;
use std::process::ExitCode;

/// Arguments of `abkit preflight` (none: everything comes on stdin).
#[derive(Debug, clap::Args)]
pub struct Args {}

pub(super) fn run(_args: Args) -> Result<ExitCode, CliError> {
    let stdout = std::io::stdout();
    let result = rustix::io::dup(&stdout)
        .map_err(|e| CliError::Invalid(format!("preflight: cannot keep the result stream: {e}")))?;
    rustix::stdio::dup2_stdout(std::io::stderr())
        .map_err(|e| CliError::Invalid(format!("preflight: cannot redirect stdout: {e}")))?;
    crate::preflight::child(std::io::stdin().lock(), std::fs::File::from(result))
        .map_err(|e| CliError::Invalid(format!("preflight: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
