//! Where a subcommand reads its configuration: `--config FILE`, or one etcd key
//! (`--etcd-endpoints E --etcd-key K`, with the TLS, auth, base-directory and state-directory
//! options). Shared by `assign`, `status`, `watch`, `simulate`, `diff` and `publish`.

//!
//! Without the `etcd` feature only `--config FILE` exists (the tool then builds without
//! `protoc`); [`EtcdArgs`] is an empty stand-in so the subcommands need no `cfg` of their own.

use super::CliError;
#[cfg(feature = "etcd")]
use crate::source::etcd::{EtcdAuth, EtcdOptions, EtcdTls};
use crate::{Sdk, SdkBuilder};
use std::path::{Path, PathBuf};
#[cfg(feature = "etcd")]
use std::time::Duration;

/// The environment variable the etcd password is read from (never a command-line argument,
/// which other users can see in the process list).
#[cfg(feature = "etcd")]
pub(super) const PASSWORD_ENV: &str = "ABKIT_ETCD_PASSWORD";

/// `--config FILE`, or the etcd options (flattened into `assign`, `status`, `watch` and
/// `simulate`).
#[derive(Debug, Clone, clap::Args)]
pub(super) struct SourceArgs {
    /// The configuration file (TOML); or read it from etcd (--etcd-endpoints, --etcd-key).
    #[cfg_attr(
        feature = "etcd",
        arg(
            long,
            required_unless_present = "etcd_key",
            conflicts_with = "etcd_key"
        )
    )]
    #[cfg_attr(not(feature = "etcd"), arg(long, required = true))]
    pub(super) config: Option<PathBuf>,
    #[command(flatten)]
    pub(super) etcd: EtcdArgs,
}

impl SourceArgs {
    /// Builds a client from the file or etcd.
    pub(super) fn load(&self) -> Result<Sdk, CliError> {
        self.etcd.load(self.config.as_deref())
    }

    /// What the configuration is called in messages: the file, or `etcd key K`.
    pub(super) fn name(&self) -> String {
        self.etcd.name(self.config.as_deref())
    }
}

/// etcd options of the command line.
#[cfg(feature = "etcd")]
#[derive(Debug, Clone, clap::Args)]
pub(super) struct EtcdArgs {
    /// etcd endpoints, comma-separated (e.g. `http://10.0.0.1:2379,http://10.0.0.2:2379`;
    /// `https://` with --etcd-ca). With --etcd-key, the configuration is read from etcd.
    #[arg(
        long,
        value_name = "URLS",
        value_delimiter = ',',
        requires = "etcd_key"
    )]
    pub(super) etcd_endpoints: Vec<String>,
    /// The etcd key holding the TOML document.
    #[arg(long, value_name = "KEY", requires = "etcd_endpoints")]
    pub(super) etcd_key: Option<String>,
    /// The CA certificate (PEM) that signed etcd's server certificate.
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    etcd_ca: Option<PathBuf>,
    /// A client certificate (PEM) for etcd; needs --etcd-cert-key.
    #[arg(long, value_name = "FILE", requires_all = ["etcd_key", "etcd_cert_key"])]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    etcd_cert_key: Option<PathBuf>,
    /// The server name to verify in etcd's certificate, when it differs from the endpoint host.
    #[arg(long, value_name = "NAME", requires = "etcd_key")]
    etcd_domain: Option<String>,
    /// The etcd user; the password is read from the environment variable ABKIT_ETCD_PASSWORD.
    #[arg(long, value_name = "USER", requires = "etcd_key")]
    etcd_user: Option<String>,
    /// How long connecting to etcd and each request may take, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    etcd_timeout_ms: u64,
    /// The directory relative paths in the etcd document (plugins, signatures, key files)
    /// resolve against on this host (default: the current directory).
    #[arg(long, value_name = "DIR", requires = "etcd_key")]
    config_dir: Option<PathBuf>,
    /// Where the local copy of the last good etcd document is kept (usually the [trust]
    /// state_dir); a start while etcd is unreachable uses it.
    #[arg(long, value_name = "DIR", requires = "etcd_key")]
    state_dir: Option<PathBuf>,
}

#[cfg(feature = "etcd")]
impl EtcdArgs {
    /// Whether the configuration comes from etcd.
    pub(super) fn active(&self) -> bool {
        self.etcd_key.is_some()
    }

    /// The etcd options these arguments ask for.
    pub(super) fn options(&self) -> Result<EtcdOptions, CliError> {
        let key = self.etcd_key.clone().unwrap_or_default();
        let mut options = EtcdOptions::new(self.etcd_endpoints.iter().cloned(), key);
        if let Some(dir) = &self.config_dir {
            options.base_dir = dir.clone();
        }
        options.state_dir = self.state_dir.clone();
        options.connect_timeout = Duration::from_millis(self.etcd_timeout_ms.max(1));
        options.request_timeout = options.connect_timeout;
        if self.etcd_ca.is_some() || self.etcd_cert.is_some() || self.etcd_domain.is_some() {
            options.tls = Some(EtcdTls {
                ca_file: self.etcd_ca.clone(),
                cert_file: self.etcd_cert.clone(),
                key_file: self.etcd_cert_key.clone(),
                domain: self.etcd_domain.clone(),
            });
        }
        if let Some(user) = &self.etcd_user {
            let password = std::env::var(PASSWORD_ENV).map_err(|_| {
                CliError::Invalid(format!(
                    "--etcd-user {user} needs the password in the environment variable {PASSWORD_ENV}"
                ))
            })?;
            options.auth = Some(EtcdAuth {
                user: user.clone(),
                password,
            });
        }
        Ok(options)
    }

    /// `--config-dir`, if given.
    pub(super) fn config_dir(&self) -> Option<&Path> {
        self.config_dir.as_deref()
    }

    /// What the configuration is called in messages: the file, or `etcd key K`.
    pub(super) fn name(&self, config: Option<&Path>) -> String {
        match (&self.etcd_key, config) {
            (Some(key), _) => format!("etcd key {key}"),
            (None, Some(path)) => path.display().to_string(),
            (None, None) => "(no configuration)".into(),
        }
    }

    /// Builds a client from `config` or etcd, with `builder`'s options.
    pub(super) fn load_with(
        &self,
        config: Option<&Path>,
        builder: SdkBuilder,
    ) -> Result<Sdk, CliError> {
        if self.active() {
            let options = self.options()?;
            return block_on(builder.build_from_etcd(&options)).and_then(|r| Ok(r?));
        }
        match config {
            Some(path) => Ok(builder.build_from_file(path)?),
            None => Err(CliError::Invalid(
                "give --config FILE, or --etcd-endpoints URLS --etcd-key KEY".into(),
            )),
        }
    }

    /// Builds a client from `config` or etcd.
    pub(super) fn load(&self, config: Option<&Path>) -> Result<Sdk, CliError> {
        self.load_with(config, Sdk::builder())
    }
}

/// Without the `etcd` feature: no options, the configuration is always the file.
#[cfg(not(feature = "etcd"))]
#[derive(Debug, Clone, Default, clap::Args)]
pub(super) struct EtcdArgs {}

#[cfg(not(feature = "etcd"))]
impl EtcdArgs {
    /// Never: this build has no etcd source.
    pub(super) fn active(&self) -> bool {
        false
    }

    /// What the configuration is called in messages: the file.
    pub(super) fn name(&self, config: Option<&Path>) -> String {
        config.map_or_else(|| "(no configuration)".into(), |p| p.display().to_string())
    }

    /// Builds a client from `config` with `builder`'s options.
    pub(super) fn load_with(
        &self,
        config: Option<&Path>,
        builder: SdkBuilder,
    ) -> Result<Sdk, CliError> {
        match config {
            Some(path) => Ok(builder.build_from_file(path)?),
            None => Err(CliError::Invalid("give --config FILE".into())),
        }
    }

    /// Builds a client from `config`.
    pub(super) fn load(&self, config: Option<&Path>) -> Result<Sdk, CliError> {
        self.load_with(config, Sdk::builder())
    }
}

/// Runs `fut` to completion on a runtime of its own (one-shot commands).
#[cfg(feature = "etcd")]
pub(super) fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(fut))
}
