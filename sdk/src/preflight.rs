//! Child-process preflight (`[preflight]`, catalogue rows 23 and 34): a plugin artifact not yet
//! accepted in this process is first mapped and exercised by `abkit preflight` in a child
//! process, so a plugin that aborts, segfaults, calls `exit` or hangs during the reload's own
//! checks takes down the child, never the service.
//!
//! The parent sends the child, on its standard input, one JSON line ([`Request`]: the plugin's
//! name, the experiments it serves, the probe and guard settings, the library allowlist) and
//! then the exact bytes it verified. The child re-checks the library structure, maps those
//! bytes from a sealed memfd, builds one strategy per experiment, probes each, evaluates the
//! reload guards' populations, and writes one JSON [`Response`] to a descriptor that the
//! plugin cannot reach through `stdout` (the child points its own `stdout` at `stderr` before
//! mapping anything). The parent kills a child that outlives the timeout (`preflight_timeout`)
//! and refuses an artifact whose child died by a signal, exited without a response, or wrote
//! an unreadable one (`preflight_crashed`, with the signal or exit status). On success the
//! guard answers come from the child: the serving process never calls the new plugin 20,000
//! times itself. What stays out of reach: a plugin that crashes only later, under real traffic
//! or on inputs neither the probe nor the guards tried.

use crate::config::{Config, ExperimentConfig, PreflightConfig};
#[cfg(feature = "cli")]
use crate::config::{LayerConfig, LayerSlice, StrategyRef, VariantConfig};
use crate::guard::{GuardAnswers, GuardConfig};
use crate::probe::ProbeConfig;
use crate::status::{Refusal, RefusalReason, Step};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Largest request line the child reads (the experiments of one plugin).
#[cfg(feature = "cli")]
const REQUEST_MAX_BYTES: u64 = 16 << 20;
/// Largest response the parent reads (guard answers: a few bytes per unit and experiment).
const RESPONSE_MAX_BYTES: u64 = 256 << 20;
/// How much of the child's stderr is kept for the refusal message.
const STDERR_TAIL_BYTES: usize = 2048;

/// What the parent asks of the child (first line of its stdin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) plugin: String,
    pub(crate) allowed_libraries: Vec<String>,
    pub(crate) experiments: Vec<WireExperiment>,
    /// Layers: name, salt, bucket_by.
    pub(crate) layers: Vec<(String, String, Vec<String>)>,
    pub(crate) holdouts: Vec<WireHoldout>,
    pub(crate) probe_units: usize,
    pub(crate) probe_p99_budget_us: u64,
    pub(crate) probe_deadline_ms: u64,
    pub(crate) guard_population: usize,
    /// The seed of this reload's sample-ratio units: the child evaluates the very units the
    /// parent's guards would (`guard::sample_id`).
    pub(crate) guard_seed: u64,
    pub(crate) now_ms: u64,
    pub(crate) deadline_ms: u64,
    /// Length of the plugin bytes that follow the request line.
    pub(crate) bytes: u64,
}

/// An experiment as the child needs it (a validated config of the parent; not re-validated).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireExperiment {
    key: String,
    salt: String,
    enabled: bool,
    coverage: f64,
    coverage_bp: u32,
    strategy_config_json: String,
    variants: Vec<(String, u32)>,
    overrides: Vec<(String, u32)>,
    targeting: Vec<(String, Vec<String>)>,
    layer: Option<(String, u32, u32)>,
    max_reassignment: Option<f64>,
    intended_change: bool,
    bucket_by: Vec<String>,
    /// Prerequisite: experiment key and variant indices.
    requires: Option<(String, Vec<u32>)>,
    /// Served by the plugin under preflight; `false`: a prerequisite of one that is, which the
    /// child evaluates with the builtin (it cannot load other plugins).
    this_plugin: bool,
}

/// A holdout as it crosses the process boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireHoldout {
    name: String,
    salt: String,
    coverage: f64,
    coverage_bp: u32,
    experiments: Vec<String>,
    layers: Vec<String>,
    bucket_by: Vec<String>,
}

impl WireExperiment {
    fn of(e: &ExperimentConfig, this_plugin: bool) -> Self {
        WireExperiment {
            key: e.key.clone(),
            salt: e.salt.clone(),
            enabled: e.enabled,
            coverage: e.coverage,
            coverage_bp: e.coverage_bp,
            strategy_config_json: e.strategy_config_json.clone(),
            variants: e
                .variants
                .iter()
                .map(|v| (v.name.clone(), v.weight))
                .collect(),
            overrides: e.overrides.clone(),
            targeting: e.targeting.clone(),
            layer: e.layer.as_ref().map(|l| (l.layer.clone(), l.start, l.end)),
            max_reassignment: e.max_reassignment,
            intended_change: e.intended_change,
            bucket_by: e.bucket_by.clone(),
            requires: e
                .requires
                .as_ref()
                .map(|r| (r.experiment.clone(), r.variants.clone())),
            this_plugin,
        }
    }

    #[cfg(feature = "cli")]
    fn into_config(self, plugin: &str) -> ExperimentConfig {
        ExperimentConfig {
            key: self.key,
            salt: self.salt,
            enabled: self.enabled,
            coverage: self.coverage,
            coverage_bp: self.coverage_bp,
            strategy: if self.this_plugin {
                StrategyRef::Plugin(plugin.to_string())
            } else {
                StrategyRef::Builtin
            },
            strategy_config_json: self.strategy_config_json,
            variants: self
                .variants
                .into_iter()
                .map(|(name, weight)| VariantConfig { name, weight })
                .collect(),
            overrides: self.overrides,
            targeting: self.targeting,
            layer: self
                .layer
                .map(|(layer, start, end)| LayerSlice { layer, start, end }),
            max_reassignment: self.max_reassignment,
            intended_change: self.intended_change,
            bucket_by: self.bucket_by,
            requires: self
                .requires
                .map(|(experiment, variants)| crate::config::Requirement {
                    experiment,
                    variants,
                }),
        }
    }
}

/// A refusal as it crosses the process boundary. The child runs the untrusted plugin, so its
/// answer is judged: a step or reason it may not claim (a trust verdict, say) or cannot name
/// becomes `preflight` / `preflight_refused`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireRefusal {
    #[serde(deserialize_with = "lenient")]
    step: Option<Step>,
    #[serde(deserialize_with = "lenient")]
    reason: Option<RefusalReason>,
    message: String,
}

/// A code the child sent, or `None` for one this SDK does not know.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

impl WireRefusal {
    #[cfg(feature = "cli")]
    fn of(r: &Refusal) -> Self {
        WireRefusal {
            step: Some(r.step),
            reason: Some(r.reason),
            message: r.message.clone(),
        }
    }

    pub(crate) fn into_refusal(self) -> Refusal {
        use RefusalReason as R;
        let step = match self.step {
            Some(
                s @ (Step::Elf
                | Step::Map
                | Step::Open
                | Step::Abi
                | Step::Init
                | Step::Instantiate
                | Step::Probe
                | Step::Deadline
                | Step::Preflight),
            ) => s,
            _ => Step::Preflight,
        };
        let reason = match self.reason {
            Some(
                r @ (R::MalformedLibrary
                | R::DisallowedDependency
                | R::CannotOpen
                | R::MapFailed
                | R::SymbolMissing
                | R::AbiVersion
                | R::AbiLayoutMismatch
                | R::InitFailed
                | R::ModuleNameMismatch
                | R::LibraryCap
                | R::StrategyConfigRejected
                | R::InvalidDeclaration
                | R::ProbeInvalidAnswer
                | R::ProbeStrategyError
                | R::ProbeNondeterministic
                | R::ProbeTooSlow
                | R::DeadlineExceeded
                | R::PreflightRefused),
            ) => r,
            _ => R::PreflightRefused,
        };
        Refusal::new(
            step,
            reason,
            format!("preflight: {}", crate::status::ClippedText(&self.message)),
        )
    }
}

/// What the child answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Response {
    /// The plugin as a whole was refused in the child.
    pub(crate) refusal: Option<WireRefusal>,
    /// Per experiment: the guard answers (absent when its strategy_config was rejected).
    pub(crate) answers: Vec<(String, GuardAnswers)>,
}

/// The plugin's experiments, then (transitively) the experiments they require, which the
/// child evaluates with the builtin.
fn with_prerequisites(experiments: &[&ExperimentConfig], config: &Config) -> Vec<WireExperiment> {
    let mut out: Vec<WireExperiment> = experiments
        .iter()
        .map(|e| WireExperiment::of(e, true))
        .collect();
    let mut keys: Vec<String> = experiments.iter().map(|e| e.key.clone()).collect();
    let mut i = 0;
    while i < keys.len() {
        let next = config
            .experiment(&keys[i])
            .and_then(|e| e.requires.as_ref())
            .map(|r| r.experiment.clone());
        if let Some(k) = next.filter(|k| !keys.contains(k)) {
            if let Some(e) = config.experiment(&k) {
                out.push(WireExperiment::of(e, false));
                keys.push(k);
            }
        }
        i += 1;
    }
    out
}

impl Request {
    /// The request for plugin `plugin` serving `experiments` of `config` (its `bytes` length
    /// is set by [`run`], from the bytes it sends).
    pub(crate) fn new(
        plugin: &str,
        experiments: &[&ExperimentConfig],
        config: &Config,
        probe: &ProbeConfig,
        guards: &GuardConfig,
        now_ms: u64,
        deadline: Duration,
    ) -> Self {
        Request {
            plugin: plugin.to_string(),
            allowed_libraries: config.trust.allowed_libraries(),
            experiments: with_prerequisites(experiments, config),
            layers: config
                .layers
                .iter()
                .map(|l| (l.name.clone(), l.salt.clone(), l.bucket_by.clone()))
                .collect(),
            holdouts: config
                .holdouts
                .iter()
                .map(|h| WireHoldout {
                    name: h.name.clone(),
                    salt: h.salt.clone(),
                    coverage: h.coverage,
                    coverage_bp: h.coverage_bp,
                    experiments: h.experiments.clone(),
                    layers: h.layers.clone(),
                    bucket_by: h.bucket_by.clone(),
                })
                .collect(),
            probe_units: probe.units,
            probe_p99_budget_us: probe.p99_budget.as_micros() as u64,
            probe_deadline_ms: probe.deadline.as_millis() as u64,
            guard_population: guards.population,
            // Set by the caller: the seed of the reload this request belongs to.
            guard_seed: 0,
            now_ms,
            deadline_ms: deadline.as_millis() as u64,
            bytes: 0,
        }
    }
}

/// Parent side: runs `COMMAND preflight` on `bytes` and returns its response, or the refusal
/// of an artifact whose child crashed, exited without a response, or timed out.
pub(crate) fn run(
    pf: &PreflightConfig,
    request: &Request,
    bytes: &[u8],
) -> Result<Response, Refusal> {
    let crashed = |detail: String| {
        Refusal::new(
            Step::Preflight,
            RefusalReason::PreflightCrashed,
            format!(
                "plugin \"{}\": the preflight child {detail}; the artifact was never mapped in this process",
                request.plugin
            ),
        )
    };
    let started = Instant::now();
    let mut child = Command::new(&pf.command)
        .arg("preflight")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_BACKTRACE")
        .spawn()
        .map_err(|e| {
            Refusal::new(
                Step::Preflight,
                RefusalReason::PreflightUnavailable,
                format!(
                    "cannot start the preflight command {}: {e}; set [preflight] command to an abkit binary",
                    pf.command.display()
                ),
            )
        })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(crashed("had no pipes".into()));
    };
    let request = Request {
        bytes: bytes.len() as u64,
        ..request.clone()
    };
    let mut line = serde_json::to_vec(&request).unwrap_or_default();
    line.push(b'\n');
    let payload = bytes.to_vec();
    // Writing, reading stdout and reading stderr each on a thread: none may block the others.
    let writer = std::thread::spawn(move || {
        let _ = stdin
            .write_all(&line)
            .and_then(|()| stdin.write_all(&payload));
    });
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.take(RESPONSE_MAX_BYTES).read_to_end(&mut out);
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        let mut stderr = stderr;
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * STDERR_TAIL_BYTES {
                tail.drain(..tail.len() - STDERR_TAIL_BYTES);
            }
        }
        tail
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= pf.timeout => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let _ = writer.join();
        return Err(Refusal::new(
            Step::Preflight,
            RefusalReason::PreflightTimeout,
            format!(
                "plugin \"{}\": the preflight child did not finish within {} ms and was killed; \
                 the artifact was never mapped in this process (raise [preflight] timeout_ms if \
                 the plugin is just slow)",
                request.plugin,
                pf.timeout.as_millis()
            ),
        ));
    };
    let _ = writer.join();
    let out = reader.join().unwrap_or_default();
    let tail = err_reader.join().unwrap_or_default();
    let tail = String::from_utf8_lossy(&tail);
    let tail = tail.trim();
    let said = if tail.is_empty() {
        String::new()
    } else {
        format!(
            "; its last words: {}",
            crate::status::ClippedText(&tail[tail.len().saturating_sub(STDERR_TAIL_BYTES)..])
        )
    };
    if let Some(signal) = status.signal() {
        return Err(crashed(format!(
            "was killed by signal {signal}{}{said}",
            signal_name(signal)
        )));
    }
    let code = status.code().unwrap_or(-1);
    let response: Option<Response> = serde_json::from_slice(&out).ok();
    match (code, response) {
        (0, Some(response)) => {
            tracing::info!(plugin = %request.plugin, duration_ms = started.elapsed().as_millis() as u64, "preflight passed");
            Ok(response)
        }
        (code, _) => Err(crashed(format!(
            "exited with status {code} without a result{said}"
        ))),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        7 => " (SIGBUS)",
        4 => " (SIGILL)",
        8 => " (SIGFPE)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(feature = "cli")]
/// Child side (`abkit preflight`): reads the request and the bytes from stdin, runs the plugin,
/// and writes the response to `result` (not stdout: the plugin's own prints go to stderr).
pub(crate) fn child(mut input: impl Read, mut result: impl Write) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut head = (&mut input).take(REQUEST_MAX_BYTES);
    loop {
        let mut byte = [0u8; 1];
        if head.read(&mut byte)? == 0 {
            return Err(std::io::Error::other("no request line on stdin"));
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    let request: Request = serde_json::from_slice(&line)
        .map_err(|e| std::io::Error::other(format!("bad request: {e}")))?;
    if request.bytes > crate::trust::PLUGIN_MAX_BYTES {
        return Err(std::io::Error::other("plugin too large"));
    }
    let mut bytes = Vec::with_capacity(request.bytes as usize);
    (&mut input).take(request.bytes).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != request.bytes {
        return Err(std::io::Error::other("short plugin bytes on stdin"));
    }
    let response = exercise(&request, bytes);
    serde_json::to_writer(&mut result, &response).map_err(std::io::Error::other)?;
    result.flush()
}

#[cfg(feature = "cli")]
fn exercise(request: &Request, bytes: Vec<u8>) -> Response {
    let refuse = |r: Refusal| Response {
        refusal: Some(WireRefusal::of(&r)),
        answers: Vec::new(),
    };
    let loaded = match crate::loader::map_for_preflight(
        &request.plugin,
        bytes,
        &request.allowed_libraries,
    ) {
        Ok(l) => l,
        Err(e) => return refuse(Refusal::load(e)),
    };
    let experiments: Vec<ExperimentConfig> = request
        .experiments
        .iter()
        .cloned()
        .map(|w| w.into_config(&request.plugin))
        .collect();
    let config = Config {
        experiments,
        layers: request
            .layers
            .iter()
            .map(|(name, salt, bucket_by)| LayerConfig {
                name: name.clone(),
                salt: salt.clone(),
                bucket_by: bucket_by.clone(),
            })
            .collect(),
        holdouts: request
            .holdouts
            .iter()
            .map(|h| crate::config::HoldoutConfig {
                name: h.name.clone(),
                salt: h.salt.clone(),
                coverage: h.coverage,
                coverage_bp: h.coverage_bp,
                experiments: h.experiments.clone(),
                layers: h.layers.clone(),
                bucket_by: h.bucket_by.clone(),
            })
            .collect(),
        trust: Default::default(),
        plugins: Vec::new(),
        reload: Default::default(),
        preflight: None,
        base_dir: ".".into(),
    };
    let probe = ProbeConfig {
        units: request.probe_units,
        p99_budget: Duration::from_micros(request.probe_p99_budget_us),
        deadline: Duration::from_millis(request.probe_deadline_ms),
    };
    let deadline = Duration::from_millis(request.deadline_ms);
    // Only the plugin's own experiments get its strategy; their prerequisites use the builtin.
    let refs: Vec<&ExperimentConfig> = config
        .experiments
        .iter()
        .filter(|e| matches!(e.strategy, StrategyRef::Plugin(_)))
        .collect();
    let (strategies, _rejected) = match crate::plugins::instantiate(
        loaded,
        &refs,
        request.now_ms,
        &probe,
        Default::default(),
        deadline,
        None,
    ) {
        Ok(s) => s,
        Err(r) => return refuse(r),
    };
    let mut resolution = crate::plugins::Resolution::default();
    for (key, s) in strategies {
        resolution
            .deciders
            .insert(key, crate::evaluation::Decider::Plugin(s));
    }
    let built: Vec<String> = resolution.deciders.keys().cloned().collect();
    let snapshot = match crate::registry::Snapshot::build_resolved(config, 1, resolution) {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => {
            return refuse(Refusal::new(
                Step::Preflight,
                RefusalReason::PreflightRefused,
                format!("cannot build a snapshot: {e}"),
            ))
        }
    };
    let guards = GuardConfig {
        population: request.guard_population,
        ..GuardConfig::default()
    };
    let mut answers = Vec::new();
    for key in built {
        let (snap, now_ms, seed) = (
            std::sync::Arc::clone(&snapshot),
            request.now_ms,
            request.guard_seed,
        );
        let Some(e) = snap.config().experiment(&key).cloned() else {
            continue;
        };
        let got = crate::deadline::call(
            &format!("the guard populations of experiment \"{key}\""),
            deadline,
            move || crate::guard::candidate_answers(&snap, &e, &guards, seed, now_ms),
        );
        match got {
            Ok(a) => answers.push((key, a)),
            Err(err) => {
                return refuse(Refusal::new(
                    Step::Deadline,
                    RefusalReason::DeadlineExceeded,
                    format!("plugin \"{}\": {err}", request.plugin),
                ))
            }
        }
    }
    Response {
        refusal: None,
        answers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(json: &str) -> Refusal {
        serde_json::from_str::<WireRefusal>(json)
            .expect("a wire refusal")
            .into_refusal()
    }

    #[test]
    fn the_child_may_name_only_what_it_can_see() {
        let r = judged(r#"{"step":"probe","reason":"probe_too_slow","message":"slow"}"#);
        assert_eq!(
            (r.step, r.reason),
            (Step::Probe, RefusalReason::ProbeTooSlow)
        );
        assert_eq!(r.message, "preflight: slow");
        // A trust verdict is not the child's to give.
        let r = judged(r#"{"step":"signature","reason":"bad_signature","message":"x"}"#);
        assert_eq!(
            (r.step, r.reason),
            (Step::Preflight, RefusalReason::PreflightRefused)
        );
        // Codes this SDK does not know.
        let r = judged(r#"{"step":"warp","reason":"flux","message":"x"}"#);
        assert_eq!(
            (r.step, r.reason),
            (Step::Preflight, RefusalReason::PreflightRefused)
        );
    }
}
