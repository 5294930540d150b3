//! `abkit._abkit`: the abkit SDK as a Python extension module.
//!
//! The Python package `abkit` (python/abkit) is the public API: it documents everything and
//! turns lists, NumPy arrays, pandas Series and pyarrow arrays into the three column forms this
//! module reads (see [`columns`]). Everything here calls the SDK's public Rust API, so Python
//! answers are the service's answers: [`Sdk::assign`](abkit::Sdk::assign) for one unit,
//! [`Snapshot::assign_id_at`](abkit::Snapshot::assign_id_at) in bulk (with one fixed clock, as
//! `abkit simulate` does), and [`abkit::simulate::run`] / [`abkit::simulate::diff`] for the
//! reports, which are handed over as the CLI's JSON text.

mod bulk;
mod columns;
mod reports;

use abkit::simulate::{self, SimulateOptions};
use abkit::{Attribute, Snapshot, Unit};
use bulk::{Answers, Source};
use columns::{AttrHolders, Holder, Ids};
use numpy::IntoPyArray;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

create_exception!(
    _abkit,
    AbkitError,
    PyException,
    "Base class of every error abkit raises (with the Rust SDK's message)."
);
create_exception!(
    _abkit,
    ConfigError,
    AbkitError,
    "The configuration could not be read or is invalid; the message lists every problem."
);
create_exception!(
    _abkit,
    UnknownExperimentError,
    AbkitError,
    "The experiment is not in the configuration (bulk calls; `assign` answers a reason instead)."
);
create_exception!(
    _abkit,
    SimulateError,
    AbkitError,
    "A simulation or diff could not run (bad options, unknown experiment, no units)."
);

/// The id of experiment `key` in `snapshot` (what bulk calls assign by), or the error naming
/// the known ones.
fn experiment_id(snapshot: &Snapshot, key: &str) -> PyResult<abkit::ExperimentId> {
    snapshot
        .experiment_id(key)
        .ok_or_else(|| unknown_experiment(snapshot, key))
}

/// The error for an experiment key that is not in `snapshot`, listing the known ones.
fn unknown_experiment(snapshot: &Snapshot, key: &str) -> PyErr {
    let known: Vec<&str> = snapshot
        .config()
        .experiments()
        .iter()
        .map(|e| e.key())
        .collect();
    UnknownExperimentError::new_err(format!(
        "experiment \"{key}\" is not in the configuration; known experiments: {}",
        if known.is_empty() {
            "(none)".to_string()
        } else {
            known.join(", ")
        }
    ))
}

/// The process that first used rayon's global pool. Threads do not survive `fork`, so in a
/// forked child (multiprocessing's default start method on Linux) that pool would never run
/// anything: there, calls get a pool of their own.
static GLOBAL_POOL_PID: OnceLock<u32> = OnceLock::new();

/// A rayon pool of `threads` threads, or `None` for the global one (one thread per core).
fn pool(threads: Option<usize>) -> PyResult<Option<rayon::ThreadPool>> {
    let n = match threads {
        None | Some(0) => {
            let pid = std::process::id();
            if *GLOBAL_POOL_PID.get_or_init(|| pid) == pid {
                return Ok(None);
            }
            0 // a forked child: a new pool, one thread per core
        }
        Some(n) => n,
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map(Some)
        .map_err(|e| PyValueError::new_err(format!("cannot start {n} threads: {e}")))
}

/// A loaded configuration serving assignments: `abkit::Sdk`.
#[pyclass(module = "abkit._abkit", name = "_Sdk", frozen)]
struct PySdk {
    sdk: Arc<abkit::Sdk>,
}

/// One assignment's answer, as text: `(variant or None, reason, provenance)`.
type AssignmentText = (Option<&'static str>, &'static str, String);

/// The answers of a bulk assignment (see `abkit/__init__.py`), NumPy arrays handed over
/// without a copy: variant, variant names, reason, reason names, and when asked for
/// provenance and provenance names. The arrays hold codes (variant `int32`, -1 not enrolled;
/// reason and provenance `uint8`) or, when objects were asked for, the names themselves
/// (object arrays, `None` when not enrolled).
type BulkAnswers = (
    Py<PyAny>,
    Vec<String>,
    Py<PyAny>,
    Vec<&'static str>,
    Option<Py<PyAny>>,
    Vec<String>,
);

#[pymethods]
impl PySdk {
    /// Reads, verifies (signed plugins) and serves a TOML configuration file.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let sdk = py
            .detach(|| abkit::Sdk::from_file(&path))
            .map_err(|e| ConfigError::new_err(e.to_string()))?;
        Ok(PySdk { sdk: Arc::new(sdk) })
    }

    /// Validates and serves TOML text (relative paths resolve against the current directory).
    #[staticmethod]
    fn from_toml(py: Python<'_>, text: String) -> PyResult<Self> {
        let sdk = py
            .detach(|| abkit::Sdk::from_toml_str(&text))
            .map_err(|e| ConfigError::new_err(e.to_string()))?;
        Ok(PySdk { sdk: Arc::new(sdk) })
    }

    /// The experiment keys, in configuration order.
    fn experiments(&self) -> Vec<String> {
        self.sdk
            .snapshot()
            .config()
            .experiments()
            .iter()
            .map(|e| e.key().to_string())
            .collect()
    }

    /// The variant names of `experiment`, in configuration order.
    fn variants(&self, experiment: &str) -> PyResult<Vec<String>> {
        let snapshot = self.sdk.snapshot();
        let e = snapshot
            .experiment(experiment)
            .ok_or_else(|| unknown_experiment(&snapshot, experiment))?;
        Ok(e.variants().iter().map(|v| v.name.clone()).collect())
    }

    /// The SDK status as JSON text (what `abkit status --json` prints).
    fn status_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.sdk.status())
            .map_err(|e| AbkitError::new_err(format!("cannot serialise the status: {e}")))
    }

    /// Assigns one unit: `Sdk::assign` (system clock), or `Snapshot::assign_at` when `now_ms`
    /// is given.
    #[pyo3(signature = (experiment, unit, attributes, now_ms=None))]
    fn assign(
        &self,
        experiment: &str,
        unit: &str,
        attributes: Vec<(String, String)>,
        now_ms: Option<u64>,
    ) -> AssignmentText {
        let attrs: Vec<Attribute<'_>> = attributes
            .iter()
            .map(|(k, v)| Attribute::new(k, v))
            .collect();
        let u = Unit::new(unit).with_attributes(&attrs);
        let a = match now_ms {
            None => self.sdk.assign(experiment, &u),
            Some(t) => self.sdk.snapshot().assign_at(experiment, &u, t),
        };
        (
            a.variant_name(),
            a.reason.as_str(),
            a.decided_by.to_string(),
        )
    }

    /// Assigns every unit of a column in `experiment` (clock fixed at `now_ms`), in parallel
    /// with the GIL released (a list is read with it, chunk by chunk, while the chunks already
    /// read are assigned). Returns codes, or with `objects` one Python object per unit (made
    /// while the assignment runs); provenance only when asked (see [`BulkAnswers`]).
    #[pyo3(signature = (experiment, units, attributes, now_ms, threads=None, provenance=false, objects=false))]
    #[allow(clippy::too_many_arguments)]
    fn assign_many(
        &self,
        py: Python<'_>,
        experiment: &str,
        units: &Bound<'_, PyAny>,
        attributes: Option<&Bound<'_, PyAny>>,
        now_ms: u64,
        threads: Option<usize>,
        provenance: bool,
        objects: bool,
    ) -> PyResult<BulkAnswers> {
        let snapshot = self.sdk.snapshot();
        let id = experiment_id(&snapshot, experiment)?;
        let variant_names = self.variants(experiment)?;
        let holder = Holder::extract(units, "units")?;
        let attr_holders = AttrHolders::extract(py, attributes, holder.len())?;
        let attrs = attr_holders.columns()?;
        let pool = pool(threads)?;
        let job = bulk::Job {
            snapshot: &snapshot,
            id,
            now_ms,
            attrs: &attrs,
            provenance,
        };
        let ids;
        let source = match &holder {
            Holder::List(list) => Source::List(list.clone().unbind()),
            other => {
                ids = other.ids("units")?;
                if !objects {
                    // Nothing for this thread to do meanwhile: all of it without the GIL.
                    let codes = py
                        .detach(|| bulk::assign_all(&job, &ids, pool.as_ref()))
                        .map_err(PyValueError::new_err)?;
                    return Ok(codes_answers(py, codes, variant_names));
                }
                Source::Ids(&ids)
            }
        };
        let names = objects.then_some(variant_names.as_slice());
        let answers = bulk::assign_with_gil_work(py, &job, source, names, "units", pool.as_ref())?;
        Ok(match answers {
            Answers::Codes(codes) => codes_answers(py, codes, variant_names),
            Answers::Objects(o) => (
                o.variant.into_pyarray(py).into_any().unbind(),
                variant_names,
                o.reason.into_pyarray(py).into_any().unbind(),
                bulk::reason_names(),
                o.provenance.map(|p| p.into_pyarray(py).into_any().unbind()),
                Vec::new(),
            ),
        })
    }

    fn __repr__(&self) -> String {
        let snapshot = self.sdk.snapshot();
        format!(
            "Sdk(generation={}, experiments={})",
            snapshot.generation(),
            snapshot.config().experiments().len()
        )
    }
}

/// Codes as [`BulkAnswers`]: the arrays handed to NumPy without a copy.
fn codes_answers(py: Python<'_>, codes: bulk::Codes, variant_names: Vec<String>) -> BulkAnswers {
    (
        codes.variant.into_pyarray(py).into_any().unbind(),
        variant_names,
        codes.reason.into_pyarray(py).into_any().unbind(),
        bulk::reason_names(),
        codes
            .provenance
            .map(|p| p.into_pyarray(py).into_any().unbind()),
        codes.provenance_names,
    )
}

/// Options shared by `simulate` and `diff`.
fn options(
    experiments: Vec<String>,
    now_ms: Option<u64>,
    threads: Option<usize>,
    allow_empty: bool,
) -> SimulateOptions {
    SimulateOptions::default()
        .with_experiments(experiments)
        .with_now_ms(now_ms)
        .with_threads(threads)
        .with_allow_empty(allow_empty)
}

/// The units (and attribute columns) of a `simulate` or `diff` call, as the CLI's input.
fn report_units(
    py: Python<'_>,
    units: &Bound<'_, PyAny>,
    attributes: Option<&Bound<'_, PyAny>>,
) -> PyResult<abkit::simulate::UnitSource> {
    let holder = Holder::extract(units, "units")?.into_decoded(py, "units")?;
    let attr_holders = AttrHolders::extract(py, attributes, holder.len())?;
    let ids = holder.required("units")?;
    let attrs = attr_holders.columns()?;
    reports::units_source(&ids, &attrs)
}

/// `abkit simulate --format json` on these units: the report as JSON text.
#[pyfunction]
#[pyo3(signature = (sdk, units, attributes, experiments, now_ms=None, threads=None, allow_empty=false))]
#[allow(clippy::too_many_arguments)]
fn simulate_json(
    py: Python<'_>,
    sdk: &PySdk,
    units: &Bound<'_, PyAny>,
    attributes: Option<&Bound<'_, PyAny>>,
    experiments: Vec<String>,
    now_ms: Option<u64>,
    threads: Option<usize>,
    allow_empty: bool,
) -> PyResult<String> {
    let source = report_units(py, units, attributes)?;
    let snapshot = sdk.sdk.snapshot();
    let opts = options(experiments, now_ms, threads, allow_empty);
    py.detach(|| simulate::run(&snapshot, source, &opts))
        .map(|r| r.to_json())
        .map_err(|e| SimulateError::new_err(e.to_string()))
}

/// `abkit diff --format json` on these units: the report as JSON text.
#[pyfunction]
#[pyo3(signature = (from_sdk, to_sdk, units, attributes, experiments, now_ms=None, threads=None, allow_empty=false))]
#[allow(clippy::too_many_arguments)]
fn diff_json(
    py: Python<'_>,
    from_sdk: &PySdk,
    to_sdk: &PySdk,
    units: &Bound<'_, PyAny>,
    attributes: Option<&Bound<'_, PyAny>>,
    experiments: Vec<String>,
    now_ms: Option<u64>,
    threads: Option<usize>,
    allow_empty: bool,
) -> PyResult<String> {
    let source = report_units(py, units, attributes)?;
    let (from, to) = (from_sdk.sdk.snapshot(), to_sdk.sdk.snapshot());
    let opts = options(experiments, now_ms, threads, allow_empty);
    py.detach(|| simulate::diff(&from, &to, source, &opts))
        .map(|r| r.to_json())
        .map_err(|e| SimulateError::new_err(e.to_string()))
}

/// The benchmark's Rust side: copies the units into Rust-owned strings (not timed), then times
/// `repeat` runs of the same bulk core `assign_many` uses (same experiment, clock, attributes,
/// thread pool, provenance or not), with no Python object in sight. Returns the seconds of
/// each run.
#[pyfunction]
#[pyo3(signature = (sdk, experiment, units, attributes, now_ms, threads=None, repeat=1, provenance=false))]
#[allow(clippy::too_many_arguments)]
fn _rust_bulk_seconds(
    py: Python<'_>,
    sdk: &PySdk,
    experiment: &str,
    units: &Bound<'_, PyAny>,
    attributes: Option<&Bound<'_, PyAny>>,
    now_ms: u64,
    threads: Option<usize>,
    repeat: usize,
    provenance: bool,
) -> PyResult<Vec<f64>> {
    let snapshot = sdk.sdk.snapshot();
    let id = experiment_id(&snapshot, experiment)?;
    let holder = Holder::extract(units, "units")?.into_decoded(py, "units")?;
    let owned: Vec<String> = holder
        .required("units")?
        .iter()
        .map(|s| s.to_string())
        .collect();
    let attr_holders = AttrHolders::extract(py, attributes, holder.len())?;
    let attrs = attr_holders.columns()?;
    let pool = pool(threads)?;
    let job = bulk::Job {
        snapshot: &snapshot,
        id,
        now_ms,
        attrs: &attrs,
        provenance,
    };
    py.detach(|| {
        let ids = Ids::Text(owned.iter().map(String::as_str).collect());
        (0..repeat.max(1))
            .map(|_| {
                let start = Instant::now();
                let codes = bulk::assign_all(&job, &ids, pool.as_ref());
                let seconds = start.elapsed().as_secs_f64();
                std::hint::black_box(codes).map(|_| seconds)
            })
            .collect::<Result<Vec<f64>, String>>()
            .map_err(PyValueError::new_err)
    })
}

/// The milliseconds since the Unix epoch now (the default clock of bulk calls).
#[pyfunction]
fn now_ms() -> u64 {
    simulate::now_ms()
}

/// The extension module.
#[pymodule]
fn _abkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PySdk>()?;
    m.add_function(wrap_pyfunction!(simulate_json, m)?)?;
    m.add_function(wrap_pyfunction!(diff_json, m)?)?;
    m.add_function(wrap_pyfunction!(_rust_bulk_seconds, m)?)?;
    m.add_function(wrap_pyfunction!(now_ms, m)?)?;
    m.add("AbkitError", py.get_type::<AbkitError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add(
        "UnknownExperimentError",
        py.get_type::<UnknownExperimentError>(),
    )?;
    m.add("SimulateError", py.get_type::<SimulateError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
