//! abkit linked into an HTTP service, the way a business service uses it: every request
//! assigns on the hot path while ops hot-swap strategies through the watched configuration.
//!
//! ```text
//! cargo run --release -p abkit --features watch --example service -- --config abkit.toml
//! curl 'http://127.0.0.1:8080/v1/assign?experiment=checkout_button&unit=user-42&attr.country=US'
//! ```
//!
//! With the `etcd` feature it can read its configuration from an etcd key instead
//! (`--etcd-endpoints URLS --etcd-key KEY [--config-dir DIR] [--state-dir DIR]`); `/readyz` then
//! answers 503 while etcd has not confirmed the configuration current for `--max-staleness`
//! seconds (default 30).
//!
//! Routes:
//! - `GET /v1/assign?experiment=E&unit=U&attr.<k>=<v>...` → `{experiment, unit, variant, reason, provenance}`
//! - `POST /v1/assign` with a JSON batch: `{"unit": U, "attributes": {..}, "experiments": [E, ..]}`
//!   (many experiments for one unit) or `{"experiment": E, "units": [{"unit": U, "attributes": {..}}, ..]}`
//!   (one experiment for many units); at most [`MAX_BATCH`] assignments and [`MAX_BODY_BYTES`] bytes.
//! - `GET /healthz` (liveness), `GET /readyz` (ready once the first snapshot serves; says which
//!   experiments are on a fallback and when the last reload happened), `GET /v1/status` (the
//!   SDK status), `GET /metrics` (Prometheus text; request counts by route, never by raw path).
//!
//! Bad requests get a 4xx with `{"error": "..."}` saying what was wrong; the service never
//! panics on input. It binds to loopback unless told otherwise and shuts down gracefully on
//! SIGTERM or Ctrl-C.
#![allow(missing_docs)]

use abkit::WatchOptions;
use abkit::{Assignment, Attribute, Sdk, Unit};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Most assignments one `POST /v1/assign` may ask for.
pub const MAX_BATCH: usize = 1000;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Debug, Parser)]
#[command(about = "abkit example service: assignment over HTTP with live hot-swap")]
struct Args {
    /// The abkit configuration (TOML); watched for changes, as are the plugins it names.
    #[cfg_attr(feature = "etcd", arg(long, required_unless_present = "etcd_key"))]
    #[cfg_attr(not(feature = "etcd"), arg(long, required = true))]
    config: Option<PathBuf>,
    /// etcd endpoints, comma-separated: read the configuration from etcd (feature `etcd`).
    #[cfg(feature = "etcd")]
    #[arg(long, value_delimiter = ',', requires = "etcd_key")]
    etcd_endpoints: Vec<String>,
    /// The etcd key holding the configuration document.
    #[cfg(feature = "etcd")]
    #[arg(long, requires = "etcd_endpoints", conflicts_with = "config")]
    etcd_key: Option<String>,
    /// Relative paths in the etcd document resolve against this directory (default: the current one).
    #[cfg(feature = "etcd")]
    #[arg(long, requires = "etcd_key")]
    config_dir: Option<PathBuf>,
    /// Where the local copy of the last good etcd document is kept.
    #[cfg(feature = "etcd")]
    #[arg(long, requires = "etcd_key")]
    state_dir: Option<PathBuf>,
    /// /readyz answers 503 when etcd has not confirmed the configuration current for this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    max_staleness: u64,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

#[derive(Clone)]
struct App {
    sdk: Arc<Sdk>,
    metrics: PrometheusHandle,
    max_staleness: std::time::Duration,
}

#[derive(Serialize)]
struct AssignmentJson<'a> {
    experiment: &'a str,
    unit: &'a str,
    variant: Option<&'static str>,
    reason: String,
    provenance: String,
}

fn to_json<'a>(experiment: &'a str, unit: &'a str, a: &Assignment) -> AssignmentJson<'a> {
    AssignmentJson {
        experiment,
        unit,
        variant: a.variant_name(),
        reason: a.reason.to_string(),
        provenance: a.decided_by.to_string(),
    }
}

/// A 4xx answer with a JSON body that says what was wrong.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn check_experiment(sdk: &Sdk, experiment: &str) -> Result<(), ApiError> {
    if sdk.snapshot().experiment_id(experiment).is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown experiment {experiment:?}; GET /v1/status lists the configured ones"),
        ));
    }
    Ok(())
}

fn assign_one(
    sdk: &Sdk,
    experiment: &str,
    unit: &str,
    attrs: &BTreeMap<String, String>,
) -> Assignment {
    let attributes: Vec<Attribute<'_>> = attrs.iter().map(|(k, v)| Attribute::new(k, v)).collect();
    sdk.assign(experiment, &Unit::new(unit).with_attributes(&attributes))
}

/// `GET /v1/assign?experiment=E&unit=U&attr.k=v`.
async fn assign_get(
    State(app): State<App>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = parse_query(query.as_deref().unwrap_or("")).map_err(|e| {
        bad(format!(
            "bad query string: {e}; use ?experiment=E&unit=U&attr.K=V (UTF-8, percent-encoded)"
        ))
    })?;
    let (mut experiment, mut unit, mut attrs) = (None, None, BTreeMap::new());
    for (k, v) in pairs {
        match k.as_str() {
            "experiment" => experiment = Some(v),
            "unit" => unit = Some(v),
            _ => match k.strip_prefix("attr.") {
                Some(name) if !name.is_empty() => {
                    attrs.insert(name.to_string(), v);
                }
                _ => {
                    return Err(bad(format!(
                        "unknown query parameter {k:?}; use experiment, unit and attr.<name>"
                    )))
                }
            },
        }
    }
    let experiment = experiment.ok_or_else(|| bad("missing `experiment`"))?;
    let unit = unit
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("missing `unit` (the id to assign)"))?;
    check_experiment(&app.sdk, &experiment)?;
    let a = assign_one(&app.sdk, &experiment, &unit, &attrs);
    Ok(Json(to_json(&experiment, &unit, &a)).into_response())
}

/// Splits and percent-decodes a query string, strictly: a value that is not UTF-8 once decoded
/// is an error (a lossy decoder would assign a unit id nobody sent).
fn parse_query(q: &str) -> Result<Vec<(String, String)>, String> {
    fn decode(s: &str) -> Result<String, String> {
        let mut out = Vec::with_capacity(s.len());
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = s.get(i + 1..i + 3).ok_or("a `%` without two hex digits")?;
                    out.push(
                        u8::from_str_radix(hex, 16)
                            .map_err(|_| format!("`%{hex}` is not a hex escape"))?,
                    );
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
    }
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitJson {
    unit: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Batch {
    /// Many experiments for one unit.
    ForUnit {
        unit: String,
        #[serde(default)]
        attributes: BTreeMap<String, String>,
        experiments: Vec<String>,
    },
    /// One experiment for many units.
    ForExperiment {
        experiment: String,
        units: Vec<UnitJson>,
    },
}

/// `POST /v1/assign` with a JSON batch.
async fn assign_post(
    State(app): State<App>,
    body: Result<Json<Batch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(batch) = body.map_err(|e| {
        bad(format!(
            "{}; send {{\"unit\": U, \"experiments\": [..]}} or {{\"experiment\": E, \"units\": [{{\"unit\": U}}, ..]}}",
            e.body_text()
        ))
    })?;
    let out: Vec<serde_json::Value> = match batch {
        Batch::ForUnit {
            unit,
            attributes,
            experiments,
        } => {
            if experiments.len() > MAX_BATCH {
                return Err(too_many(experiments.len()));
            }
            if unit.is_empty() {
                return Err(bad("empty `unit`"));
            }
            for e in &experiments {
                check_experiment(&app.sdk, e)?;
            }
            experiments
                .iter()
                .map(|e| {
                    json(to_json(
                        e,
                        &unit,
                        &assign_one(&app.sdk, e, &unit, &attributes),
                    ))
                })
                .collect()
        }
        Batch::ForExperiment { experiment, units } => {
            if units.len() > MAX_BATCH {
                return Err(too_many(units.len()));
            }
            check_experiment(&app.sdk, &experiment)?;
            let mut out = Vec::with_capacity(units.len());
            for (i, u) in units.iter().enumerate() {
                if u.unit.is_empty() {
                    return Err(bad(format!("units[{i}]: empty `unit`")));
                }
                let a = assign_one(&app.sdk, &experiment, &u.unit, &u.attributes);
                out.push(json(to_json(&experiment, &u.unit, &a)));
            }
            out
        }
    };
    Ok(Json(serde_json::json!({ "assignments": out })).into_response())
}

fn json(v: impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn too_many(n: usize) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{n} assignments asked for; at most {MAX_BATCH} per request"),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the first snapshot serves (it is built before the listener opens); the body says
/// which experiments are on a fallback and when the last reload happened. Not ready (503) while
/// the configuration source is stale (an etcd watch broken or silent past `--max-staleness`).
async fn readyz(State(app): State<App>) -> Response {
    let status = app.sdk.status();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let stale = status
        .source
        .as_ref()
        .and_then(|s| s.stale_reason(now_ms, app.max_staleness));
    let fallbacks: Vec<serde_json::Value> = status
        .experiments
        .iter()
        .filter(|e| matches!(e.serving, abkit::Serving::Fallback(_)))
        .map(|e| serde_json::json!({ "experiment": e.key, "serving": e.serving }))
        .collect();
    let last = status.last_reload.as_ref().map(|r| {
        serde_json::json!({ "at_unix_ms": r.at_unix_ms, "accepted": r.accepted, "trigger": r.trigger })
    });
    let code = if stale.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Json(serde_json::json!({
        "ready": stale.is_none(),
        "generation": status.generation,
        "fallbacks": fallbacks,
        "last_reload": last,
        "source": status.source,
        "stale": stale,
    }));
    (code, body).into_response()
}

async fn status(State(app): State<App>) -> Response {
    Json(app.sdk.status()).into_response()
}

async fn metrics(State(app): State<App>) -> String {
    app.metrics.render()
}

/// Counts requests by matched route (never the raw path: no unbounded label values).
async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    metrics::counter!(
        "http_requests_total",
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

fn router(app: App) -> Router {
    Router::new()
        .route("/v1/assign", get(assign_get).post(assign_post))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn(count_requests))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        () = term => {}
    }
}

/// The client and what keeps it current: the file watcher, or (feature `etcd`) the etcd watch.
async fn start(
    args: &Args,
) -> Result<(Arc<Sdk>, Box<dyn std::any::Any>), Box<dyn std::error::Error>> {
    #[cfg(feature = "etcd")]
    if let Some(key) = &args.etcd_key {
        let mut options =
            abkit::source::etcd::EtcdOptions::new(args.etcd_endpoints.clone(), key.clone());
        if let Some(dir) = &args.config_dir {
            options.base_dir = dir.clone();
        }
        options.state_dir = args.state_dir.clone();
        let sdk = Arc::new(Sdk::builder().build_from_etcd(&options).await?);
        let watch = abkit::source::etcd::watch(Arc::clone(&sdk), options)?;
        return Ok((sdk, Box::new(watch)));
    }
    let config = args.config.as_ref().ok_or("--config is required")?;
    let sdk = Arc::new(Sdk::from_file(config)?);
    let watcher = abkit::watch(Arc::clone(&sdk), WatchOptions::default())?;
    Ok((sdk, Box::new(watcher)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let metrics = PrometheusBuilder::new().install_recorder()?;
    // Built before the listener opens: the service is ready as soon as it accepts connections.
    let (sdk, watcher) = start(&args).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "abkit service listening on http://{}",
        listener.local_addr()?
    );
    let max_staleness = std::time::Duration::from_secs(args.max_staleness);
    axum::serve(
        listener,
        router(App {
            sdk,
            metrics,
            max_staleness,
        }),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    drop(watcher);
    eprintln!("abkit service stopped");
    Ok(())
}
