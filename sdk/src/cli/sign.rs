//! `abkit sign`: sign a plugin, writing `PLUGIN.minisig` with the v1 signed metadata.

use super::keygen::{password_from_env, PASSWORD_ENV};
use super::CliError;
use abkit_signing::{SigningError, UtcTime};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `abkit sign`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The secret key (`NAME.key` from `abkit keygen` or `minisign -G`).
    #[arg(long, value_name = "K")]
    key: PathBuf,
    /// The plugin's name, as the configuration names it ([a-z0-9][a-z0-9_-]{0,63}).
    #[arg(long)]
    name: String,
    /// Release number of this plugin name; raise it with every release (loaders refuse lower ones).
    #[arg(long = "plugin-version", value_name = "V")]
    plugin_version: u64,
    /// Loaders refuse the plugin after this UTC time, written YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long, value_name = "T")]
    expires: Option<String>,
    /// The plugin file; the signature is written to PLUGIN.minisig.
    #[arg(value_name = "PLUGIN")]
    plugin: PathBuf,
}

impl From<SigningError> for CliError {
    fn from(e: SigningError) -> Self {
        CliError::Invalid(e.to_string())
    }
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let expires = args
        .expires
        .as_deref()
        .map(str::parse::<UtcTime>)
        .transpose()
        .map_err(SigningError::from)?;
    let password = if abkit_signing::key_is_encrypted(&args.key)? {
        match password_from_env()? {
            Some(p) => Some(p),
            None => Some(abkit_signing::prompt_password(&format!(
                "password for {} (or set {PASSWORD_ENV}): ",
                args.key.display()
            ))?),
        }
    } else {
        None
    };
    let signed = abkit_signing::sign_plugin(
        &args.key,
        password,
        &args.plugin,
        &args.name,
        args.plugin_version,
        expires,
    )?;
    println!(
        "signed {} -> {}",
        args.plugin.display(),
        signed.signature_path.display()
    );
    println!("trusted comment: {}", signed.trusted_comment);
    println!("key id: {}", signed.key_id);
    Ok(ExitCode::SUCCESS)
}
