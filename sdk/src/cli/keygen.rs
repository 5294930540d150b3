//! `abkit keygen`: generate a minisign key pair for signing plugins.

use super::CliError;
use crate::config::TrustConfig;
use crate::trust::TrustStore;
use std::path::PathBuf;
use std::process::ExitCode;

/// Environment variable holding the secret key's password (else it is asked on the terminal).
pub(super) const PASSWORD_ENV: &str = "ABKIT_KEY_PASSWORD";

/// Arguments of `abkit keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write NAME.pub and NAME.key into (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Base name of the two key files.
    #[arg(long, value_name = "N", default_value = "abkit")]
    name: String,
    /// Write the secret key without a password (throwaway and test keys only).
    #[arg(long)]
    unencrypted: bool,
}

/// The password from `ABKIT_KEY_PASSWORD`, if set.
pub(super) fn password_from_env() -> Result<Option<String>, CliError> {
    match std::env::var(PASSWORD_ENV) {
        Ok(p) => Ok(Some(p)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(CliError::Invalid(format!(
            "{PASSWORD_ENV} is not valid UTF-8; set it to the key's password"
        ))),
    }
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let password = if args.unencrypted {
        eprintln!(
            "WARNING: --unencrypted: the secret key is written WITHOUT a password. Anyone who can read it can \
             sign plugins that every service trusting its public key will load and run. Use it only for \
             throwaway or test keys; keep the file private (mode 0600)."
        );
        None
    } else {
        match password_from_env()? {
            Some(p) => Some(p),
            None => Some(abkit_signing::prompt_new_password()?),
        }
    };
    let encrypted = password.is_some();
    let (pub_path, key_path) = abkit_signing::keygen(&args.out, &args.name, password)?;

    let trust = TrustConfig {
        public_key_files: vec![pub_path.clone()],
        ..Default::default()
    };
    let key_id = TrustStore::from_config(&trust)
        .map_err(|e| CliError::Invalid(format!("the new public key does not read back: {e}")))?
        .key_ids()
        .join(", ");
    let pub_line = std::fs::read_to_string(&pub_path)?
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    println!("key id:      {key_id}");
    println!(
        "public key:  {} (give it to the services: [trust])",
        pub_path.display()
    );
    println!(
        "secret key:  {} ({}; keep it secret)",
        key_path.display(),
        if encrypted {
            "encrypted"
        } else {
            "NOT encrypted"
        }
    );
    println!();
    println!("[trust]");
    println!(
        "public_keys = [\"{pub_line}\"]   # or public_key_files = [\"{}\"]",
        pub_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
