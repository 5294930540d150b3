//! `abkit verify`: check a plugin's signature, signed metadata and library structure as the
//! loader does before mapping anything (except rollback, which needs the service's state).
//! Nothing of the plugin is mapped or run.

use super::CliError;
use crate::config::TrustConfig;
use crate::trust::{self, FileKind, TrustStore};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

/// Arguments of `abkit verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A trusted minisign public key file (`.pub`, or its base64 line alone); repeat for several.
    #[arg(long = "pubkey", value_name = "P", required = true)]
    pubkeys: Vec<PathBuf>,
    /// The name the configuration gives the plugin (default: the signed name, which then always matches).
    #[arg(long)]
    name: Option<String>,
    /// The plugin file.
    #[arg(value_name = "PLUGIN")]
    plugin: PathBuf,
    /// Its signature (default: PLUGIN.minisig).
    #[arg(long, value_name = "S")]
    signature: Option<PathBuf>,
    /// A library the plugin may need (`DT_NEEDED`), as `[trust] allowed_libraries`; repeat for
    /// several. Default: the SDK's default allowlist.
    #[arg(long = "allow-library", value_name = "SONAME")]
    allowed_libraries: Vec<String>,
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let shown = args.plugin.display().to_string();
    let refused =
        |e: trust::TrustError| CliError::Invalid(format!("{shown} refused ({}): {e}", e.reason()));

    let store = TrustStore::from_config(&TrustConfig {
        public_key_files: args.pubkeys,
        ..Default::default()
    })
    .map_err(&refused)?;
    let sig_path = args.signature.unwrap_or_else(|| {
        let mut p = args.plugin.as_os_str().to_owned();
        p.push(".minisig");
        PathBuf::from(p)
    });
    let bytes = trust::read_capped(&args.plugin, trust::PLUGIN_MAX_BYTES, FileKind::Plugin)
        .map_err(&refused)?;
    let sig = trust::read_capped(&sig_path, trust::SIGNATURE_MAX_BYTES, FileKind::Signature)
        .map_err(&refused)?;
    let text = trust::signature_text(&sig).map_err(&refused)?;

    let name = match args.name {
        Some(n) => n,
        None => {
            // Read (unverified) only to pick the name; verify() below checks everything.
            let signed = minisign_verify::Signature::decode(text)
                .ok()
                .and_then(|s| trust::parse_trusted_comment(s.trusted_comment()).ok())
                .map(|c| c.name)
                .unwrap_or_default();
            if !signed.is_empty() {
                eprintln!(
                    "note: no --name given, so the plugin is checked against its own signed name `{signed}`; \
                     pass --name to check the name your configuration uses"
                );
            }
            signed
        }
    };
    let meta = store
        .verify(&name, &bytes, text, SystemTime::now())
        .map_err(&refused)?;
    let allowed = if args.allowed_libraries.is_empty() {
        TrustConfig::default().allowed_libraries()
    } else {
        args.allowed_libraries
    };
    let library = crate::loader::check_library(&bytes, &allowed).map_err(|source| {
        let e = crate::loader::LoadError::Elf {
            path: args.plugin.clone(),
            source,
        };
        CliError::Invalid(format!("{shown} refused ({}): {e}", e.reason()))
    })?;
    println!("ok: {shown} is signed by trusted key {}", meta.key_id);
    println!("name:    {}", meta.name);
    println!("version: {}", meta.version);
    println!("sha256:  {}", meta.sha256_hex());
    println!(
        "expires: {}",
        meta.expires_utc().as_deref().unwrap_or("never")
    );
    println!("key id:  {}", meta.key_id);
    println!("needs:   {}", library.needed.join(", "));
    Ok(ExitCode::SUCCESS)
}
