//! etcd as the configuration source (feature `etcd`): one key holds the same TOML document as
//! the file, and every change of it runs the same reload pipeline, guards and reports.
//!
//! ```no_run
//! use abkit::source::etcd::{self, EtcdOptions};
//! use abkit::Sdk;
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut options = EtcdOptions::new(["http://10.0.0.1:2379", "http://10.0.0.2:2379"], "/abkit/config");
//! options.base_dir = "/srv/app".into();             // relative plugin and key paths resolve here
//! options.state_dir = Some("/var/lib/abkit".into()); // the local copy of the last good document
//! let sdk = Arc::new(Sdk::builder().build_from_etcd(&options).await?);
//! let watcher = etcd::watch(Arc::clone(&sdk), options)?; // inside the tokio runtime
//! # let _ = watcher; Ok(()) }
//! ```
//!
//! **Start.** [`crate::SdkBuilder::build_from_etcd`] reads the key. A valid document serves;
//! it is also saved as the local copy of the last good document in
//! [`EtcdOptions::state_dir`] (the ledger's rules: a private directory, atomic writes). When
//! etcd is unreachable, the key does not exist, or its document is refused, the client starts
//! from that local copy if there is one (the refusal is reported), else the build fails with
//! an error that says why.
//!
//! **Watch.** [`watch`] follows the key from the revision the start read (+1) on a tokio task.
//! Every change is parsed against [`EtcdOptions::base_dir`], checked for plugin, signature and
//! key files missing on this host, and reloaded through [`crate::Sdk::reload_with`] (plugins,
//! probe, guards) on the blocking pool; a refused document leaves what serves untouched and
//! shows in the status (`refused_revision`, the last reload). A lost connection keeps serving
//! and reconnects with exponential backoff and jitter ([`crate::source::Backoff`]), then
//! re-reads the key (resync) and watches from the revision of that read + 1. A watch cancelled
//! by compaction re-reads the key and watches from the new read's revision + 1, never from
//! the compacted one. Every [`EtcdOptions::confirm_interval`] the task asks etcd for a progress
//! notification: the answer confirms the client is current; no answer within
//! [`EtcdOptions::request_timeout`] counts as a broken watch (reconnect), so a silently stuck
//! stream does not pass for healthy. [`crate::source::SourceStatus::stale_reason`] turns that
//! into readiness.
//!
//! [`crate::Sdk::reload`] re-reads files only: a client built from etcd changes through this
//! watch; [`EtcdWatchHandle::reload`] re-reads the key and reloads on demand (`abkit watch`
//! does it on SIGHUP), e.g. after deploying the plugin files a refused document names.
//!
//! **Publish.** [`publish`] writes a document with a compare-and-swap on the key's
//! `mod_revision` (a txn), so two operators never overwrite each other silently;
//! `abkit publish` validates the document and verifies every plugin it names first.

use super::{Backoff, SourceKind, SourceStatus, WatchHealth, WatchState};
use crate::config::Config;
use crate::reload::{now_ms, ReloadReport};
use crate::status::Refusal;
use crate::trust::StateDir;
use crate::{Error, Sdk, SdkBuilder};
use crate::{RefusalReason, Step};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, EventType, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

/// etcd's default request size limit (`--max-request-bytes`): 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// Room left in a request for the key and the transaction's framing.
const REQUEST_OVERHEAD_BYTES: usize = 512;

/// Largest local copy read back (the document limit of a configuration file).
const LOCAL_COPY_MAX_BYTES: u64 = 16 << 20;

/// How to reach etcd, which key to read, and how to follow it.
#[derive(Clone)]
#[non_exhaustive]
pub struct EtcdOptions {
    /// Endpoints, e.g. `http://10.0.0.1:2379` (`https://` with [`EtcdOptions::tls`]).
    pub endpoints: Vec<String>,
    /// The key holding the TOML document.
    pub key: String,
    /// The directory relative paths inside the document (plugins, signatures, key files, the
    /// state directory) resolve against on this host (default: the current directory, made
    /// absolute when the client starts).
    pub base_dir: PathBuf,
    /// Where the local copy of the last good document is kept (usually the `[trust]
    /// state_dir`); `None`: no copy, so a start while etcd is unreachable fails.
    pub state_dir: Option<PathBuf>,
    /// TLS (feature `etcd-tls`).
    pub tls: Option<EtcdTls>,
    /// User and password (etcd's auth).
    pub auth: Option<EtcdAuth>,
    /// How long connecting may take (default 5 s).
    pub connect_timeout: Duration,
    /// How long one request (a read, a write, a progress answer) may take (default 5 s).
    pub request_timeout: Duration,
    /// Waits between reconnection attempts (default 250 ms doubling to 30 s, with jitter).
    pub backoff: Backoff,
    /// How often a healthy watch asks etcd to confirm it is current (default 5 s).
    pub confirm_interval: Duration,
    /// The largest request etcd accepts (its `--max-request-bytes`, default 1.5 MiB):
    /// [`publish`] refuses a document that would not fit.
    pub max_request_bytes: usize,
}

impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("key", &self.key)
            .field("base_dir", &self.base_dir)
            .field("state_dir", &self.state_dir)
            .field("tls", &self.tls)
            .field("auth", &self.auth)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("backoff", &self.backoff)
            .field("confirm_interval", &self.confirm_interval)
            .finish_non_exhaustive()
    }
}

impl EtcdOptions {
    /// Options for `key` at `endpoints`, everything else at its default.
    pub fn new<S: Into<String>>(
        endpoints: impl IntoIterator<Item = S>,
        key: impl Into<String>,
    ) -> EtcdOptions {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            key: key.into(),
            base_dir: PathBuf::from("."),
            state_dir: None,
            tls: None,
            auth: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            confirm_interval: Duration::from_secs(5),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }

    fn endpoint_list(&self) -> String {
        self.endpoints.join(",")
    }

    fn check(&self) -> Result<(), EtcdError> {
        if self.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err(EtcdError::Options(
                "no etcd endpoint given; pass --etcd-endpoints http://HOST:2379 (comma-separated)"
                    .into(),
            ));
        }
        if self.key.is_empty() {
            return Err(EtcdError::Options(
                "the etcd key is empty; pass --etcd-key, e.g. /abkit/config".into(),
            ));
        }
        Ok(())
    }

    /// The base directory made absolute (a later change of the working directory changes
    /// nothing).
    fn absolute_base(&self) -> PathBuf {
        std::path::absolute(&self.base_dir).unwrap_or_else(|_| self.base_dir.clone())
    }
}

/// TLS to etcd (feature `etcd-tls`): PEM files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA certificate that signed etcd's server certificate.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (with [`EtcdTls::key_file`]) for client-certificate auth.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// The server name to verify, when it differs from the endpoint's host.
    pub domain: Option<String>,
}

/// etcd user and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What went wrong with etcd. Messages say what, where, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The options are unusable.
    #[error("etcd options: {0}")]
    Options(String),
    /// TLS options could not be used.
    #[error("etcd TLS: {0}")]
    Tls(String),
    /// etcd could not be reached or did not answer.
    #[error("cannot reach etcd at {endpoints}: {detail}; check that etcd runs there, the endpoints (--etcd-endpoints) and, for https:// endpoints, the TLS files (--etcd-ca, --etcd-cert, --etcd-cert-key)")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// What failed.
        detail: String,
    },
    /// etcd refused the credentials or the access to the key.
    #[error("etcd at {endpoints} refused access ({what}) to key {key}: {detail}; check the user and password (--etcd-user, ABKIT_ETCD_PASSWORD) and that the user's role may read the key (and, to publish, write it)")]
    Denied {
        /// The endpoints.
        endpoints: String,
        /// The key.
        key: String,
        /// What was asked (`connect`, `read`, `write`, `watch`).
        what: String,
        /// etcd's answer.
        detail: String,
    },
    /// Starting failed and there is no local copy to start from.
    #[error("cannot start from etcd key {key}: {why}; and there is no local copy of the last good document to start from ({copy})")]
    NoStart {
        /// The key.
        key: String,
        /// Why etcd gave no document to serve.
        why: String,
        /// Where the local copy was looked for, or that no state directory is configured.
        copy: String,
    },
    /// The local copy of the last good document could not be read or written.
    #[error("the local copy of the last good etcd document: {0}")]
    LocalCopy(String),
    /// [`publish`]: the key was not at the expected revision.
    #[error("conflict: etcd key {key} is at revision {actual}{}, not {expected} as required{}; nothing was written: review the current document (abkit diff) and publish again with --if-revision {actual}", if *.actual == 0 { " (it does not exist)" } else { "" }, if *.expected == 0 { " (0: the key must not exist yet)" } else { "" })]
    Conflict {
        /// The key.
        key: String,
        /// The revision the publish required (0: the key must not exist).
        expected: i64,
        /// The key's revision now (0: it does not exist).
        actual: i64,
    },
    /// [`publish`]: the document does not fit in one etcd request.
    #[error("the document is {bytes} bytes; etcd refuses requests over {limit} bytes (its --max-request-bytes, default 1.5 MiB) and needs {REQUEST_OVERHEAD_BYTES} bytes for the key and the transaction: shorten the document (fewer overrides, shorter targeting lists), or raise the limit on every etcd member and pass the same --max-request-bytes to publish")]
    TooLarge {
        /// The document's size.
        bytes: usize,
        /// The request limit.
        limit: usize,
    },
    /// [`watch`] was called outside a tokio runtime.
    #[error("the etcd watch needs a tokio runtime: call abkit::source::etcd::watch from async code or inside Runtime::enter")]
    NoRuntime,
    /// [`watch`] was given a client not built from etcd.
    #[error("this client was not built from etcd; build it with Sdk::builder().build_from_etcd(&options)")]
    NotEtcd,
}

/// A document read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The TOML text (`None` if the value is not UTF-8: refused like an invalid document).
    pub text: Option<String>,
    /// The key's `mod_revision`.
    pub revision: i64,
}

/// One read of the key: the document (if the key exists) and the store revision it is as of.
struct Read {
    document: Option<Document>,
    header_revision: i64,
}

/// Runs `fut` with `limit`, turning a timeout into [`EtcdError::Unreachable`].
async fn bounded<T>(
    options: &EtcdOptions,
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if denied(&e) => Err(EtcdError::Denied {
            endpoints: options.endpoint_list(),
            key: options.key.clone(),
            what: what.to_string(),
            detail: describe(&e),
        }),
        Ok(Err(e)) => Err(EtcdError::Unreachable {
            endpoints: options.endpoint_list(),
            detail: format!("{what}: {}", describe(&e)),
        }),
        Err(_) => Err(EtcdError::Unreachable {
            endpoints: options.endpoint_list(),
            detail: format!("{what}: no answer within {} ms", limit.as_millis()),
        }),
    }
}

/// Whether etcd refused the credentials or the permission (not a connection problem).
fn denied(e: &etcd_client::Error) -> bool {
    /// gRPC status codes PERMISSION_DENIED and UNAUTHENTICATED.
    const PERMISSION_DENIED: i32 = 7;
    const UNAUTHENTICATED: i32 = 16;
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if matches!(i32::from(s.code()), PERMISSION_DENIED | UNAUTHENTICATED)
            || s.message().contains("authentication failed")
            || s.message().contains("permission denied"))
}

/// An etcd client error in one line: gRPC's message and its innermost cause (`tcp connect
/// error: Connection refused (os error 111)`), not the nested debug output of the transport.
fn describe(e: &etcd_client::Error) -> String {
    fn innermost(mut e: &(dyn std::error::Error + 'static)) -> String {
        while let Some(inner) = e.source() {
            e = inner;
        }
        e.to_string()
    }
    let (top, cause) = match e {
        etcd_client::Error::GRpcStatus(status) => {
            let top = if status.message().is_empty() {
                format!("{:?}", status.code())
            } else {
                status.message().to_string()
            };
            (top, std::error::Error::source(status).map(innermost))
        }
        etcd_client::Error::TransportError(t) => {
            ("transport error".to_string(), Some(innermost(t)))
        }
        other => (other.to_string(), None),
    };
    match cause {
        Some(cause) if !top.contains(&cause) => format!("{top}: {cause}"),
        _ => top,
    }
}

/// A connected client.
async fn connect(options: &EtcdOptions) -> Result<Client, EtcdError> {
    options.check()?;
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        // HTTP/2 pings find a dead connection that TCP would not report for minutes. etcd
        // refuses pings more often than every 5 s (--grpc-keepalive-min-time).
        .with_keep_alive(Duration::from_secs(10), options.request_timeout)
        .with_keep_alive_while_idle(true);
    if let Some(auth) = &options.auth {
        // An expired auth token is renewed instead of failing every request until reconnecting.
        connect = connect
            .with_user(auth.user.clone(), auth.password.clone())
            .with_auto_token_refresh(true);
    }
    if let Some(tls) = &options.tls {
        connect = with_tls(connect, tls)?;
    }
    bounded(
        options,
        options.connect_timeout,
        "connect",
        Client::connect(&options.endpoints, Some(connect)),
    )
    .await
}

#[cfg(feature = "etcd-tls")]
fn with_tls(connect: ConnectOptions, tls: &EtcdTls) -> Result<ConnectOptions, EtcdError> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| {
            EtcdError::Tls(format!(
                "cannot read the {what} {}: {e}; check --etcd-ca / --etcd-cert / --etcd-cert-key",
                p.display()
            ))
        })
    };
    let mut options = TlsOptions::new();
    if let Some(ca) = &tls.ca_file {
        options = options.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            options = options.identity(Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(EtcdError::Tls(
                "a client certificate needs both the certificate and its key (--etcd-cert and --etcd-cert-key)".into(),
            ))
        }
    }
    if let Some(domain) = &tls.domain {
        options = options.domain_name(domain.clone());
    }
    Ok(connect.with_tls(options))
}

#[cfg(not(feature = "etcd-tls"))]
fn with_tls(_: ConnectOptions, _: &EtcdTls) -> Result<ConnectOptions, EtcdError> {
    Err(EtcdError::Tls(
        "this build of abkit has no TLS for etcd: enable the `etcd-tls` feature".into(),
    ))
}

/// Reads the key.
async fn read(client: &mut Client, options: &EtcdOptions) -> Result<Read, EtcdError> {
    let mut resp = bounded(
        options,
        options.request_timeout,
        "read",
        client.get(options.key.as_str(), None),
    )
    .await?;
    let header_revision = resp.header().map_or(0, |h| h.revision());
    let document = resp.take_kvs().into_iter().next().map(|kv| Document {
        revision: kv.mod_revision(),
        text: String::from_utf8(kv.into_key_value().1).ok(),
    });
    Ok(Read {
        document,
        header_revision,
    })
}

/// Connects and reads the key.
async fn fetch(options: &EtcdOptions) -> Result<Read, EtcdError> {
    let mut client = connect(options).await?;
    read(&mut client, options).await
}

/// The document at `key` now, `None` if the key does not exist.
pub async fn current(options: &EtcdOptions) -> Result<Option<Document>, EtcdError> {
    Ok(fetch(options).await?.document)
}

/// Writes `document` to the key if its `mod_revision` is still `expected_revision` (`0`: the
/// key must not exist), in one txn; returns the new revision. Refuses a document that does
/// not fit in an etcd request ([`EtcdError::TooLarge`]) before connecting. A key at another
/// revision is [`EtcdError::Conflict`], naming both, and nothing is written. This is the
/// write only: `abkit publish` validates the document and verifies its plugins first.
pub async fn publish(
    options: &EtcdOptions,
    document: &str,
    expected_revision: i64,
) -> Result<i64, EtcdError> {
    check_size(
        document.len() + options.key.len(),
        options.max_request_bytes,
    )?;
    let mut client = connect(options).await?;
    let key = options.key.as_str();
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key,
            CompareOp::Equal,
            expected_revision,
        )])
        .and_then([TxnOp::put(key, document, None)])
        .or_else([TxnOp::get(key, None)]);
    let resp = bounded(options, options.request_timeout, "write", client.txn(txn)).await?;
    if resp.succeeded() {
        return Ok(resp.header().map_or(0, |h| h.revision()));
    }
    let actual = resp
        .op_responses()
        .into_iter()
        .find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(get) => {
                Some(get.kvs().first().map_or(0, |kv| kv.mod_revision()))
            }
            _ => None,
        })
        .unwrap_or(0);
    Err(EtcdError::Conflict {
        key: key.to_string(),
        expected: expected_revision,
        actual,
    })
}

/// Refuses a request of `bytes` (document and key) that would not fit under `limit`.
pub fn check_size(bytes: usize, limit: usize) -> Result<(), EtcdError> {
    if bytes.saturating_add(REQUEST_OVERHEAD_BYTES) > limit {
        return Err(EtcdError::TooLarge { bytes, limit });
    }
    Ok(())
}

/// Parses and validates a document of `key` at `revision` on this host: relative paths
/// against the base directory, and every plugin, signature and key file it names must exist
/// here (plugin files are deployed to each host by the operator's tooling, not through etcd).
pub fn document_config(
    text: &str,
    revision: i64,
    options: &EtcdOptions,
) -> Result<Config, Refusal> {
    let name = format!("etcd key {} (revision {revision})", options.key);
    let config = Config::from_toml_str(text, &name, &options.absolute_base())
        .map_err(|e| Refusal::new(Step::Config, RefusalReason::InvalidConfig, e.to_string()))?;
    let mut missing = Vec::new();
    let mut need = |what: String, path: &Path| {
        if !path.exists() {
            missing.push(format!("{what}: {} does not exist", path.display()));
        }
    };
    for (i, p) in config.plugins.iter().enumerate() {
        need(format!("plugins[{i}] \"{}\" path", p.name), &p.path);
        if !config.trust.danger_allow_unsigned {
            need(
                format!("plugins[{i}] \"{}\" signature", p.name),
                &p.signature,
            );
        }
    }
    for (i, k) in config.trust.public_key_files.iter().enumerate() {
        need(format!("trust.public_key_files[{i}]"), k);
    }
    if missing.is_empty() {
        Ok(config)
    } else {
        Err(Refusal::new(
            Step::Config,
            RefusalReason::MissingFile,
            format!(
                "{name} names files missing on this host: {}; plugin, signature and key files \
                 are deployed to every host by your deploy tooling before the document naming \
                 them is published (relative paths resolve against {})",
                missing.join("; "),
                options.absolute_base().display()
            ),
        ))
    }
}

/// The local copy of the last good document, in the state directory.
#[derive(Debug, Clone)]
struct LocalCopy {
    dir: StateDir,
    name: String,
    key: String,
}

#[derive(Serialize, Deserialize)]
struct CopyFile {
    format: String,
    key: String,
    revision: i64,
    saved_at_unix_ms: u64,
    document: String,
}

const COPY_FORMAT: &str = "abkit-etcd-last-good v1";

impl LocalCopy {
    fn open(options: &EtcdOptions) -> Result<Option<LocalCopy>, EtcdError> {
        let Some(dir) = &options.state_dir else {
            return Ok(None);
        };
        let dir = StateDir::open(dir).map_err(|e| EtcdError::LocalCopy(e.to_string()))?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(options.key.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Some(LocalCopy {
            dir,
            name: format!("etcd-last-good-{hex}.json"),
            key: options.key.clone(),
        }))
    }

    fn describe(copy: Option<&LocalCopy>) -> String {
        match copy {
            Some(c) => format!("none in {}", c.dir.path().join(&c.name).display()),
            None => "no state directory is configured: set EtcdOptions::state_dir (--state-dir) so that a start while etcd is unreachable can use the last good document".into(),
        }
    }

    fn load(&self) -> Result<Option<(String, i64)>, EtcdError> {
        let path = self.dir.path().join(&self.name);
        let bad = |detail: String| {
            EtcdError::LocalCopy(format!(
                "{}: {detail}; delete it, it is rewritten at the next good document",
                path.display()
            ))
        };
        let Some(bytes) = self
            .dir
            .read(&self.name, LOCAL_COPY_MAX_BYTES)
            .map_err(|e| EtcdError::LocalCopy(e.to_string()))?
        else {
            return Ok(None);
        };
        let file: CopyFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if file.format != COPY_FORMAT {
            return Err(bad(format!("unknown format {:?}", file.format)));
        }
        if file.key != self.key {
            return Err(bad(format!("it holds key {}, not {}", file.key, self.key)));
        }
        Ok(Some((file.document, file.revision)))
    }

    fn save(&self, document: &str, revision: i64) {
        let file = CopyFile {
            format: COPY_FORMAT.into(),
            key: self.key.clone(),
            revision,
            saved_at_unix_ms: now_ms(),
            document: document.to_string(),
        };
        let written = serde_json::to_vec(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.dir
                    .write(&self.name, &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::warn!(
                key = %self.key,
                revision,
                "cannot save the local copy of the last good etcd document: {e}; a restart while etcd is unreachable would start from an older copy or fail"
            );
        }
    }
}

fn etcd_status(options: &EtcdOptions) -> SourceStatus {
    SourceStatus {
        kind: SourceKind::Etcd,
        path: None,
        endpoints: options.endpoints.clone(),
        key: Some(options.key.clone()),
        revision: None,
        refused_revision: None,
        last_confirmed_unix_ms: None,
        from_local_copy: false,
        watch: WatchState {
            state: WatchHealth::NotWatching,
            since_unix_ms: now_ms(),
            why: None,
        },
        reconnects: 0,
        compactions: 0,
    }
}

/// [`SdkBuilder::build_from_etcd`].
pub(crate) async fn build(builder: SdkBuilder, options: &EtcdOptions) -> Result<Sdk, Error> {
    options.check()?;
    let copy = LocalCopy::open(options)?;
    let mut status = etcd_status(options);
    let (why, refusal, resume) = match fetch(options).await {
        Ok(read) => match read.document {
            Some(doc) => {
                let parsed = match &doc.text {
                    Some(text) => document_config(text, doc.revision, options),
                    None => Err(not_utf8(options, doc.revision)),
                };
                match parsed {
                    Ok(config) => {
                        let sdk = build_blocking(builder, config).await?;
                        if let (Some(copy), Some(text)) = (&copy, &doc.text) {
                            copy.save(text, doc.revision);
                        }
                        status.revision = Some(doc.revision);
                        status.last_confirmed_unix_ms = Some(now_ms());
                        metrics::gauge!("abkit_etcd_revision").set(doc.revision as f64);
                        sdk.source_cell()
                            .set(status, Some(read.header_revision + 1));
                        tracing::info!(key = %options.key, revision = doc.revision, "serving the etcd document");
                        return Ok(sdk);
                    }
                    Err(refusal) => {
                        status.refused_revision = Some(doc.revision);
                        status.last_confirmed_unix_ms = Some(now_ms());
                        (
                            format!(
                                "its document at revision {} is refused: {}",
                                doc.revision, refusal.message
                            ),
                            Some(refusal),
                            Some(read.header_revision + 1),
                        )
                    }
                }
            }
            None => {
                let why = format!(
                    "the key does not exist in etcd at {}; publish a document first (abkit publish --config C --etcd-endpoints ... --etcd-key {})",
                    options.endpoint_list(),
                    options.key
                );
                status.last_confirmed_unix_ms = Some(now_ms());
                let refusal = Refusal::new(Step::Source, RefusalReason::KeyMissing, why.clone());
                (why, Some(refusal), Some(read.header_revision + 1))
            }
        },
        Err(e) => {
            status.watch = WatchState {
                state: WatchHealth::Broken,
                since_unix_ms: now_ms(),
                why: Some(e.to_string()),
            };
            (e.to_string(), None, None)
        }
    };
    let stored = match &copy {
        Some(c) => c.load()?,
        None => None,
    };
    let Some((text, revision)) = stored else {
        return Err(EtcdError::NoStart {
            key: options.key.clone(),
            why,
            copy: LocalCopy::describe(copy.as_ref()),
        }
        .into());
    };
    let config = document_config(&text, revision, options).map_err(|r| EtcdError::NoStart {
        key: options.key.clone(),
        why: why.clone(),
        copy: format!(
            "the local copy of revision {revision} is refused too: {}",
            r.message
        ),
    })?;
    tracing::warn!(key = %options.key, revision, "starting from the local copy of the last good etcd document: {why}");
    let sdk = build_blocking(builder, config).await?;
    status.revision = Some(revision);
    status.from_local_copy = true;
    metrics::gauge!("abkit_etcd_revision").set(revision as f64);
    if let Some(refusal) = refusal {
        sdk.refuse("etcd", refusal);
    }
    sdk.source_cell().set(status, resume);
    Ok(sdk)
}

/// Builds the client on the blocking pool: loading, verifying and probing plugins is blocking
/// work that must not hold up the runtime's other tasks.
async fn build_blocking(builder: SdkBuilder, config: Config) -> Result<Sdk, Error> {
    tokio::task::spawn_blocking(move || builder.build(config))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn not_utf8(options: &EtcdOptions, revision: i64) -> Refusal {
    Refusal::new(
        Step::Config,
        RefusalReason::InvalidConfig,
        format!(
            "etcd key {} (revision {revision}) is not UTF-8 text; a configuration is TOML text: publish it with abkit publish",
            options.key
        ),
    )
}

/// A running etcd watch. Stops on [`EtcdWatchHandle::stop`] or when dropped; a reload in
/// progress still finishes.
#[derive(Debug)]
pub struct EtcdWatchHandle {
    reports: broadcast::Sender<ReloadReport>,
    resync: Arc<tokio::sync::Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EtcdWatchHandle {
    /// A receiver of every reload report from now on (see
    /// [`crate::reload::WatchHandle::subscribe`]).
    pub fn subscribe(&self) -> crate::ReloadReports {
        crate::ReloadReports::new(self.reports.subscribe())
    }

    /// Re-reads the key now and reloads its document even when that revision serves already
    /// or was refused: after deploying plugin files a refused document names, or replacing a
    /// plugin file at the same path (`abkit watch` does this on SIGHUP). The report's trigger
    /// is `resync`. While etcd is unreachable it happens at the reconnection.
    pub fn reload(&self) {
        self.resync.notify_one();
    }

    /// Stops the watch without waiting for it.
    pub fn stop(mut self) {
        self.stop.take();
    }

    /// Stops the watch and waits until its task has ended (after a reload in progress).
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!("the etcd watch task failed: {e}");
            }
        }
    }
}

/// Follows the key `sdk` was built from ([`crate::SdkBuilder::build_from_etcd`]) on a task of
/// the current tokio runtime (timers needed: `enable_all`). See the module documentation for
/// what happens on a change, a lost connection and a compaction.
///
/// # Errors
/// No runtime, or a client not built from etcd.
pub fn watch(sdk: Arc<Sdk>, options: EtcdOptions) -> Result<EtcdWatchHandle, EtcdError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| EtcdError::NoRuntime)?;
    if sdk.source_status().map(|s| s.kind) != Some(SourceKind::Etcd) {
        return Err(EtcdError::NotEtcd);
    }
    options.check()?;
    let copy = LocalCopy::open(&options)?;
    let (reports, _) = broadcast::channel(16);
    let (stop, stopped) = oneshot::channel();
    let resync = Arc::new(tokio::sync::Notify::new());
    let task = Task {
        sdk,
        options,
        copy,
        reports: reports.clone(),
        missing_reported: false,
        resync: Arc::clone(&resync),
    };
    let task = runtime.spawn(task.run(stopped));
    Ok(EtcdWatchHandle {
        reports,
        resync,
        stop: Some(stop),
        task: Some(task),
    })
}

/// A change of the key.
enum Change {
    /// A new value: the text, `None` if it is not UTF-8.
    Put(Option<String>),
    /// The key was deleted.
    Deleted,
}

/// How a watch session ended.
enum End {
    /// The connection or the stream was lost; `healthy`: the watch had been established.
    Lost { healthy: bool, why: String },
    /// etcd cancelled the watch: its start revision was compacted (`healthy`: the watch had
    /// been established before).
    Compacted {
        start: i64,
        compact_revision: i64,
        healthy: bool,
    },
}

struct Task {
    sdk: Arc<Sdk>,
    options: EtcdOptions,
    copy: Option<LocalCopy>,
    reports: broadcast::Sender<ReloadReport>,
    /// A deleted key was reported (once per deletion, not at every resync).
    missing_reported: bool,
    /// [`EtcdWatchHandle::reload`]: re-read and reload now.
    resync: Arc<tokio::sync::Notify>,
}

impl Task {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let mut resume = self.sdk.source_cell().take_resume_from();
        let mut failures: u32 = if resume.is_some() { 0 } else { 1 };
        let mut compactions_in_a_row: u32 = 0;
        loop {
            if failures > 0 {
                let wait = self.options.backoff.delay_random(failures - 1);
                tracing::debug!(key = %self.options.key, wait_ms = wait.as_millis() as u64, "reconnecting to etcd after a wait");
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            let end = tokio::select! {
                biased;
                _ = &mut stopped => break,
                end = self.session(resume.take()) => end,
            };
            match end {
                End::Lost { healthy, why } => {
                    let was_broken = self
                        .sdk
                        .source_status()
                        .is_some_and(|s| s.watch.state == WatchHealth::Broken);
                    // Once per outage at warn; every failed attempt after it at debug.
                    if was_broken {
                        tracing::debug!(key = %self.options.key, "etcd still unreachable: {why}");
                    } else {
                        tracing::warn!(key = %self.options.key, "the etcd watch is broken: {why}; serving what this client has and reconnecting");
                        metrics::counter!("abkit_etcd_watch_lost_total").increment(1);
                    }
                    let now = now_ms();
                    self.sdk.source_cell().update(|s| {
                        if s.watch.state != WatchHealth::Broken {
                            s.watch.since_unix_ms = now;
                        }
                        s.watch.state = WatchHealth::Broken;
                        s.watch.why = Some(why);
                    });
                    failures = if healthy {
                        1
                    } else {
                        failures.saturating_add(1)
                    };
                    compactions_in_a_row = 0;
                }
                End::Compacted {
                    start,
                    compact_revision,
                    healthy,
                } => {
                    tracing::info!(key = %self.options.key, start, compact_revision, "the etcd watch was cancelled by a compaction; re-reading the key and watching from that read");
                    metrics::counter!("abkit_etcd_watch_compacted_total").increment(1);
                    self.sdk.source_cell().update(|s| s.compactions += 1);
                    // A watch that had been established starts a new count.
                    compactions_in_a_row = if healthy { 1 } else { compactions_in_a_row + 1 };
                    // Re-read at once; only a compaction racing every re-read waits.
                    failures = compactions_in_a_row.saturating_sub(2);
                }
            }
        }
        tracing::debug!(key = %self.options.key, "etcd watch stopped");
    }

    /// One connection: connect, re-read the key unless resuming from `resume`, watch until
    /// the stream is lost or cancelled.
    async fn session(&mut self, resume: Option<i64>) -> End {
        let lost = |why: String| End::Lost {
            healthy: false,
            why,
        };
        let mut client = match connect(&self.options).await {
            Ok(c) => c,
            Err(e) => return lost(e.to_string()),
        };
        let start = match resume {
            Some(r) => r,
            None => match read(&mut client, &self.options).await {
                Ok(read) => {
                    self.resync(read.document, read.header_revision).await;
                    read.header_revision + 1
                }
                Err(e) => return lost(e.to_string()),
            },
        };
        let watch_options = etcd_client::WatchOptions::new().with_start_revision(start);
        let mut stream = match bounded(
            &self.options,
            self.options.request_timeout,
            "watch",
            client.watch(self.options.key.as_str(), Some(watch_options)),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => return lost(e.to_string()),
        };
        let mut healthy = false;
        let mut progress_asked: Option<Instant> = None;
        let confirm_timeout = self
            .options
            .request_timeout
            .max(self.options.confirm_interval);
        let mut tick = tokio::time::interval(self.options.confirm_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let resync = Arc::clone(&self.resync);
        loop {
            tokio::select! {
                () = resync.notified() => match read(&mut client, &self.options).await {
                    Ok(read) => {
                        let (change, revision) = match read.document {
                            Some(doc) => (Change::Put(doc.text), doc.revision),
                            None => (Change::Deleted, read.header_revision),
                        };
                        self.apply(change, revision, "resync").await;
                    }
                    Err(e) => return End::Lost { healthy, why: e.to_string() },
                },
                message = stream.message() => {
                    let resp = match message {
                        Ok(Some(resp)) => resp,
                        Ok(None) => return End::Lost { healthy, why: "etcd closed the watch stream".into() },
                        Err(e) => return End::Lost { healthy, why: format!("the watch stream failed: {e}") },
                    };
                    if resp.canceled() {
                        if resp.compact_revision() > 0 {
                            return End::Compacted { start, compact_revision: resp.compact_revision(), healthy };
                        }
                        return End::Lost { healthy, why: format!("etcd cancelled the watch: {}", resp.cancel_reason()) };
                    }
                    progress_asked = None;
                    if !healthy {
                        healthy = true;
                        let now = now_ms();
                        self.sdk.source_cell().update(|s| {
                            if s.watch.state == WatchHealth::Broken {
                                s.reconnects += 1;
                            }
                            s.watch = WatchState { state: WatchHealth::Healthy, since_unix_ms: now, why: None };
                        });
                        tracing::info!(key = %self.options.key, start, "watching the etcd key");
                    }
                    if let Some(event) = resp.events().last() {
                        let revision = event.kv().map_or(0, |kv| kv.mod_revision());
                        let change = match event.event_type() {
                            EventType::Put => Change::Put(event.kv().and_then(|kv| String::from_utf8(kv.value().to_vec()).ok())),
                            EventType::Delete => Change::Deleted,
                        };
                        self.apply(change, revision, "etcd").await;
                    }
                    // Events and progress answers confirm the client is current; the creation
                    // of the watch alone does not (it may still have history to deliver).
                    if !resp.created() {
                        let now = now_ms();
                        self.sdk.source_cell().update(|s| s.last_confirmed_unix_ms = Some(now));
                    }
                }
                _ = tick.tick() => match progress_asked {
                    Some(at) if at.elapsed() >= confirm_timeout => {
                        return End::Lost { healthy, why: format!("etcd did not answer a progress request within {} ms: the watch may be stuck", confirm_timeout.as_millis()) };
                    }
                    Some(_) => {}
                    None => {
                        if let Err(e) = stream.request_progress().await {
                            return End::Lost { healthy, why: format!("cannot ask etcd for progress: {e}") };
                        }
                        progress_asked = Some(Instant::now());
                    }
                },
            }
        }
    }

    /// After a (re)connection: applies the document read if it is not what serves or was
    /// refused already; a key found missing is reported once (as of `header_revision`).
    async fn resync(&mut self, document: Option<Document>, header_revision: i64) {
        let status = self.sdk.source_status();
        let (serving, refused) = status
            .as_ref()
            .map_or((None, None), |s| (s.revision, s.refused_revision));
        match document {
            Some(doc) => {
                self.missing_reported = false;
                if Some(doc.revision) == serving {
                    // What serves is current: a copy it started from is confirmed.
                    self.sdk.source_cell().update(|s| s.from_local_copy = false);
                } else if Some(doc.revision) != refused {
                    self.apply(Change::Put(doc.text), doc.revision, "etcd")
                        .await;
                }
            }
            None => {
                if !self.missing_reported {
                    self.apply(Change::Deleted, header_revision, "etcd").await;
                }
            }
        }
        let now = now_ms();
        self.sdk
            .source_cell()
            .update(|s| s.last_confirmed_unix_ms = Some(now));
    }

    /// Reloads with the document of `revision` on the blocking pool, updates the source status
    /// and the local copy, and sends the report.
    async fn apply(&mut self, change: Change, revision: i64, trigger: &'static str) {
        self.missing_reported = matches!(change, Change::Deleted);
        let (sdk, options, copy) = (
            Arc::clone(&self.sdk),
            self.options.clone(),
            self.copy.clone(),
        );
        let done = tokio::task::spawn_blocking(move || {
            apply_document(&sdk, &options, copy.as_ref(), change, revision, trigger)
        })
        .await;
        match done {
            Ok(report) => {
                // An error only means nobody subscribes now.
                let _ = self.reports.send(report);
            }
            Err(e) => {
                tracing::error!(key = %self.options.key, revision, "the reload of an etcd document failed: {e}")
            }
        }
    }
}

/// Parses, checks and reloads one document (blocking work).
fn apply_document(
    sdk: &Sdk,
    options: &EtcdOptions,
    copy: Option<&LocalCopy>,
    change: Change,
    revision: i64,
    trigger: &str,
) -> ReloadReport {
    let serving = sdk
        .source_status()
        .and_then(|s| s.revision)
        .map_or_else(|| "none".to_string(), |r| r.to_string());
    let parsed = match &change {
        Change::Put(Some(text)) => document_config(text, revision, options),
        Change::Put(None) => Err(not_utf8(options, revision)),
        Change::Deleted => Err(Refusal::new(
            Step::Source,
            RefusalReason::KeyDeleted,
            format!(
                "etcd key {} was deleted; revision {serving} keeps serving: publish a document again (abkit publish)",
                options.key
            ),
        )),
    };
    let report = match parsed {
        Ok(config) => sdk.reload_with(config, trigger),
        Err(refusal) => sdk.refuse(trigger, refusal),
    };
    let now = now_ms();
    if report.accepted {
        if let (Some(copy), Change::Put(Some(text))) = (copy, &change) {
            copy.save(text, revision);
        }
        metrics::gauge!("abkit_etcd_revision").set(revision as f64);
        sdk.source_cell().update(|s| {
            s.revision = Some(revision);
            s.refused_revision = None;
            s.from_local_copy = false;
            s.last_confirmed_unix_ms = Some(now);
        });
    } else {
        sdk.source_cell().update(|s| {
            s.refused_revision = Some(revision);
            s.last_confirmed_unix_ms = Some(now);
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_over_the_request_limit_is_refused_with_the_numbers() {
        assert!(check_size(1000, DEFAULT_MAX_REQUEST_BYTES).is_ok());
        let e = check_size(DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_BYTES)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("1572864 bytes") && e.contains("max-request-bytes"),
            "{e}"
        );
    }

    #[test]
    fn a_document_naming_a_missing_plugin_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut options = EtcdOptions::new(["http://127.0.0.1:1"], "/abkit/config");
        options.base_dir = dir.path().to_path_buf();
        let doc = "[[plugins]]\nname = \"x\"\npath = \"plugins/libx.so\"\n\n[[experiments]]\nkey = \"e\"\nstrategy = \"plugin:x\"\nvariants = [{ name = \"a\", weight = 1 }]\n";
        let refusal = document_config(doc, 7, &options).err();
        let message = refusal.as_ref().map_or("", |r| r.message.as_str());
        assert_eq!(
            refusal.as_ref().map(|r| r.reason),
            Some(RefusalReason::MissingFile)
        );
        assert!(
            message.contains("revision 7")
                && message.contains("plugins/libx.so does not exist")
                && message.contains("deploy tooling"),
            "{message}"
        );
        assert!(document_config(
            "[[experiments]]\nkey = \"e\"\nvariants = [{ name = \"a\", weight = 1 }]\n",
            8,
            &options
        )
        .is_ok());
    }

    #[test]
    fn the_conflict_message_names_both_revisions() {
        let e = EtcdError::Conflict {
            key: "/k".into(),
            expected: 4,
            actual: 9,
        }
        .to_string();
        assert!(
            e.contains("revision 9, not 4") && e.contains("--if-revision 9"),
            "{e}"
        );
        let e = EtcdError::Conflict {
            key: "/k".into(),
            expected: 0,
            actual: 9,
        }
        .to_string();
        assert!(e.contains("must not exist"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut o = EtcdOptions::new(["http://127.0.0.1:2379"], "/k");
        o.auth = Some(EtcdAuth {
            user: "abkit".into(),
            password: "hunter2".into(),
        });
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
