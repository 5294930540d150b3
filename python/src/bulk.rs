//! The bulk assignment core of `assign_many`: every unit through
//! [`Snapshot::assign_id_at`] with one fixed clock (what `abkit simulate` does), in chunks over
//! a rayon pool, into flat code arrays.
//!
//! Two ways in:
//! - [`assign_all`]: ids already readable without Python (Arrow buffers, a NumPy `str`
//!   array's UTF-32, Rust strings). It runs with the GIL released; the benchmark times this
//!   same function on the same ids for the Rust rate.
//! - [`assign_with_gil_work`]: when the calling thread has work that needs the GIL: reading
//!   ids from a Python `list` (only the thread holding the GIL may), or making one Python
//!   object per unit (the NumPy output). That thread does it chunk by chunk while the pool
//!   assigns, so it overlaps the assignment instead of coming before or after it.

use crate::columns::{AttrColumn, ChunkText, Ids};
use abkit::ExperimentId;
use abkit::{Attribute, DecidedBy, Reason, Snapshot, Unit};
use pyo3::prelude::*;
use pyo3::types::PyList;
use rayon::prelude::*;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Units per chunk: large enough to amortise the scheduling, small enough to balance cores.
const CHUNK: usize = 8192;

/// Variant code of a unit that is not enrolled.
pub(crate) const NOT_ENROLLED: i32 = -1;

/// What to compute for every unit: one experiment of one snapshot at one fixed time.
pub(crate) struct Job<'a> {
    /// The configuration served.
    pub(crate) snapshot: &'a Snapshot,
    /// The experiment.
    pub(crate) id: ExperimentId,
    /// The fixed clock.
    pub(crate) now_ms: u64,
    /// Attribute columns, one row per unit.
    pub(crate) attrs: &'a [AttrColumn<'a>],
    /// Whether to record each unit's provenance (who decided): asked for, not by default.
    pub(crate) provenance: bool,
}

/// What a bulk assignment computed, one entry per unit.
pub(crate) struct Codes {
    /// The variant index, or [`NOT_ENROLLED`].
    pub(crate) variant: Vec<i32>,
    /// The index of the unit's reason in [`Reason::ALL`].
    pub(crate) reason: Vec<u8>,
    /// When asked for: an index into `provenance_names`.
    pub(crate) provenance: Option<Vec<u8>>,
    /// The distinct provenances met, as text (`DecidedBy`'s `Display`, as the service prints).
    pub(crate) provenance_names: Vec<String>,
}

/// The index of `reason` in [`Reason::ALL`] (the order `reason_names` lists them in).
#[inline]
fn reason_code(reason: Reason) -> u8 {
    Reason::ALL
        .iter()
        .position(|r| *r == reason)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(u8::MAX)
}

/// The names of the reason codes, in code order.
pub(crate) fn reason_names() -> Vec<&'static str> {
    Reason::ALL.iter().map(|r| r.as_str()).collect()
}

/// Whether two provenances are the same (plugins by identity first: one pointer compare).
#[inline]
fn same(a: &DecidedBy, b: &DecidedBy) -> bool {
    match (a, b) {
        (DecidedBy::Plugin(x), DecidedBy::Plugin(y)) => std::ptr::eq(*x, *y) || x == y,
        _ => a == b,
    }
}

/// The provenances met by all chunks. Each chunk caches the codes it has seen, so this lock
/// is taken once per distinct provenance per chunk (a handful of times per chunk at most).
struct ProvenanceTable(Mutex<Vec<DecidedBy>>);

impl ProvenanceTable {
    fn code(&self, d: DecidedBy) -> u8 {
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let i = match table.iter().position(|t| same(t, &d)) {
            Some(i) => i,
            None => {
                table.push(d);
                table.len() - 1
            }
        };
        // One experiment has at most a few provenances (nobody, builtin, its plugin, four
        // fallback reasons); 255 is "more than that", which cannot happen.
        u8::try_from(i).unwrap_or(u8::MAX)
    }

    fn names(self) -> Vec<String> {
        self.0
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

/// The output arrays of one chunk of units, starting at unit `first`.
struct ChunkOut<'o> {
    first: usize,
    variant: &'o mut [i32],
    reason: &'o mut [u8],
    provenance: Option<&'o mut [u8]>,
}

/// The output arrays, allocated once (each page is first written by the thread that fills it).
struct Outputs {
    variant: Vec<i32>,
    reason: Vec<u8>,
    provenance: Option<Vec<u8>>,
}

impl Outputs {
    fn new(n: usize, provenance: bool) -> Self {
        Outputs {
            variant: vec![0; n],
            reason: vec![0; n],
            provenance: provenance.then(|| vec![0; n]),
        }
    }

    /// The outputs split into chunks of [`CHUNK`] units.
    fn chunks(&mut self) -> Vec<ChunkOut<'_>> {
        let mut provenance = self.provenance.as_deref_mut().map(|p| p.chunks_mut(CHUNK));
        self.variant
            .chunks_mut(CHUNK)
            .zip(self.reason.chunks_mut(CHUNK))
            .enumerate()
            .map(|(k, (variant, reason))| ChunkOut {
                first: k * CHUNK,
                variant,
                reason,
                provenance: provenance.as_mut().and_then(Iterator::next),
            })
            .collect()
    }

    fn into_codes(self, table: ProvenanceTable) -> Codes {
        Codes {
            variant: self.variant,
            reason: self.reason,
            provenance: self.provenance,
            provenance_names: table.names(),
        }
    }
}

impl Job<'_> {
    /// Assigns the units of `out`: unit `out.first + k` has the id `ids[ids_start + k]` and
    /// the attributes of row `out.first + k`. Returns the first unit whose id is not valid
    /// text (inconsistent Arrow offsets, a UTF-32 code that is no character), if any.
    fn assign_chunk(
        &self,
        table: &ProvenanceTable,
        ids: &Ids<'_>,
        ids_start: usize,
        out: &mut ChunkOut<'_>,
    ) -> Option<usize> {
        let mut first_bad = None;
        let mut decoded = Vec::new();
        let mut seen: Vec<(DecidedBy, u8)> = Vec::new();
        let mut row: Vec<Attribute<'_>> = Vec::with_capacity(self.attrs.len());
        let mut provenance = out.provenance.as_deref_mut().map(|p| p.iter_mut());
        for (k, (v, r)) in out
            .variant
            .iter_mut()
            .zip(out.reason.iter_mut())
            .enumerate()
        {
            let i = out.first + k;
            let id_text = match ids.get(ids_start + k, &mut decoded) {
                Some(text) => text,
                None => {
                    first_bad.get_or_insert(i);
                    ""
                }
            };
            row.clear();
            for a in self.attrs {
                if let Some(value) = a.get(i) {
                    row.push(Attribute::new(&a.name, value));
                }
            }
            let unit = Unit::new(id_text).with_attributes(&row);
            let a = self.snapshot.assign_id_at(self.id, &unit, self.now_ms);
            *v = a
                .variant
                .and_then(|x| i32::try_from(x.index).ok())
                .unwrap_or(NOT_ENROLLED);
            *r = reason_code(a.reason);
            if let Some(p) = provenance.as_mut().and_then(Iterator::next) {
                *p = match seen.iter().find(|(d, _)| same(d, &a.decided_by)) {
                    Some(&(_, code)) => code,
                    None => {
                        let code = table.code(a.decided_by);
                        seen.push((a.decided_by, code));
                        code
                    }
                };
            }
        }
        first_bad
    }
}

/// Runs `work` on `pool`, or on rayon's global pool (one thread per core).
fn on_pool<R: Send>(pool: Option<&rayon::ThreadPool>, work: impl FnOnce() -> R + Send) -> R {
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// Assigns every unit of `ids` (row `i` of the attributes is unit `i`'s) on `pool` (or
/// rayon's global pool). Ids are read in place (UTF-32 decoded on the fly); one that is not
/// valid text fails the call, naming its position.
pub(crate) fn assign_all(
    job: &Job<'_>,
    ids: &Ids<'_>,
    pool: Option<&rayon::ThreadPool>,
) -> Result<Codes, String> {
    let mut outputs = Outputs::new(ids.len(), job.provenance);
    let table = ProvenanceTable(Mutex::new(Vec::new()));
    let chunks = outputs.chunks();
    let first_bad = on_pool(pool, || {
        chunks
            .into_par_iter()
            .filter_map(|mut out| {
                let start = out.first;
                job.assign_chunk(&table, ids, start, &mut out)
            })
            .min()
    });
    if let Some(bad) = first_bad {
        return Err(ids.problem(bad, "units"));
    }
    Ok(outputs.into_codes(table))
}

/// Where [`assign_with_gil_work`] takes the unit ids from.
pub(crate) enum Source<'a> {
    /// Ids readable without the GIL: every chunk is queued at once.
    Ids(&'a Ids<'a>),
    /// A Python list, read by the calling thread chunk by chunk with the GIL. Every item must
    /// be a `str`: `None` or another type fails the call, naming its position. If the list
    /// shrinks meanwhile (another Python thread), the call fails too; items changed meanwhile
    /// are read as they are when their chunk is read.
    List(Py<PyList>),
}

/// The answers as NumPy object arrays' items: one Python object per unit (the names, `None`
/// when not enrolled), built by the calling thread with the GIL as chunks complete.
pub(crate) struct Objects {
    /// Per unit, its variant's name (or `None`).
    pub(crate) variant: Vec<Py<PyAny>>,
    /// Per unit, its reason's name.
    pub(crate) reason: Vec<Py<PyAny>>,
    /// Per unit, its provenance, when asked for.
    pub(crate) provenance: Option<Vec<Py<PyAny>>>,
}

/// The names objects are made of, each one Python object shared by all the units it names.
struct ObjectBuilder {
    /// Variant names by index, then `None` (code [`NOT_ENROLLED`]).
    variants: Vec<Py<PyAny>>,
    /// Reason names by code.
    reasons: Vec<Py<PyAny>>,
    /// Provenance names by code, as far as met.
    provenances: Vec<Py<PyAny>>,
    out: Objects,
}

impl ObjectBuilder {
    fn new(py: Python<'_>, variant_names: &[String], n: usize, provenance: bool) -> Self {
        let text = |s: &str| pyo3::types::PyString::new(py, s).into_any().unbind();
        let mut variants: Vec<Py<PyAny>> = variant_names.iter().map(|s| text(s)).collect();
        variants.push(py.None());
        ObjectBuilder {
            variants,
            reasons: reason_names().into_iter().map(text).collect(),
            provenances: Vec::new(),
            out: Objects {
                variant: Vec::with_capacity(n),
                reason: Vec::with_capacity(n),
                provenance: provenance.then(|| Vec::with_capacity(n)),
            },
        }
    }

    /// Appends the objects of one assigned chunk (chunks are appended in order).
    fn push(&mut self, py: Python<'_>, out: &ChunkOut<'_>, table: &ProvenanceTable) {
        let none = self.variants.len() - 1;
        self.out.variant.extend(out.variant.iter().map(|&c| {
            let i = usize::try_from(c).map_or(none, |i| i.min(none));
            self.variants
                .get(i)
                .map_or_else(|| py.None(), |o| o.clone_ref(py))
        }));
        let unknown = py.None();
        self.out.reason.extend(out.reason.iter().map(|&c| {
            self.reasons
                .get(usize::from(c))
                .map_or_else(|| unknown.clone_ref(py), |o| o.clone_ref(py))
        }));
        if let (Some(codes), Some(objects)) = (&out.provenance, &mut self.out.provenance) {
            for &c in codes.iter() {
                let c = usize::from(c);
                if c >= self.provenances.len() {
                    let names = table.0.lock().unwrap_or_else(|p| p.into_inner());
                    for d in names.iter().skip(self.provenances.len()) {
                        let name = pyo3::types::PyString::new(py, &d.to_string());
                        self.provenances.push(name.into_any().unbind());
                    }
                }
                objects.push(
                    self.provenances
                        .get(c)
                        .map_or_else(|| unknown.clone_ref(py), |o| o.clone_ref(py)),
                );
            }
        }
    }
}

/// A chunk to assign: where its results go, and its ids when copied from a list.
struct Work<'o> {
    out: ChunkOut<'o>,
    text: Option<ChunkText>,
}

/// An assigned chunk, back to the calling thread.
struct Done<'o> {
    out: ChunkOut<'o>,
    text: Option<ChunkText>,
    first_bad: Option<usize>,
}

/// What the result of [`assign_with_gil_work`] holds.
pub(crate) enum Answers {
    /// Codes only (pandas and Arrow outputs are made of codes).
    Codes(Codes),
    /// One Python object per unit (NumPy object arrays).
    Objects(Objects),
}

/// Assigns every unit of `source` like [`assign_all`], for the two cases where the calling
/// thread has work that needs the GIL: reading a Python list, and making one Python object per
/// unit (the NumPy output: `objects` holds the variant names). The pool assigns
/// chunks while this thread reads the chunks to come and makes the objects of the chunks done,
/// so that work overlaps the assignment instead of coming before or after it; with nothing of
/// that to do, this thread assigns chunks too. The GIL is held only while reading or making
/// objects, a batch of chunks at a time.
pub(crate) fn assign_with_gil_work(
    py: Python<'_>,
    job: &Job<'_>,
    source: Source<'_>,
    objects: Option<&[String]>,
    what: &str,
    pool: Option<&rayon::ThreadPool>,
) -> PyResult<Answers> {
    let n = match &source {
        Source::Ids(ids) => ids.len(),
        Source::List(list) => list.bind(py).len(),
    };
    let mut outputs = Outputs::new(n, job.provenance);
    let table = ProvenanceTable(Mutex::new(Vec::new()));
    let mut builder = objects.map(|names| ObjectBuilder::new(py, names, n, job.provenance));
    let pipeline = Pipeline {
        job,
        table: &table,
        source: &source,
        what,
    };
    let chunks = outputs.chunks();
    let builder_ref = builder.as_mut();
    let first_bad = py.detach(|| match pool {
        Some(pool) => {
            let workers = pool.current_num_threads();
            pool.in_place_scope(|s| pipeline.run(s, workers, chunks, builder_ref))
        }
        None => rayon::in_place_scope(|s| {
            pipeline.run(s, rayon::current_num_threads(), chunks, builder_ref)
        }),
    })?;
    if let (Some(bad), Source::Ids(ids)) = (first_bad, &source) {
        return Err(pyo3::exceptions::PyValueError::new_err(
            ids.problem(bad, what),
        ));
    }
    Ok(match builder {
        Some(b) => Answers::Objects(b.out),
        None => Answers::Codes(outputs.into_codes(table)),
    })
}

/// What [`assign_with_gil_work`] shares between the calling thread and the pool.
struct Pipeline<'a> {
    job: &'a Job<'a>,
    table: &'a ProvenanceTable,
    source: &'a Source<'a>,
    what: &'a str,
}

/// A work queue the pool's tasks block on and the calling thread only peeks into.
type Queue<'o> = Arc<Mutex<mpsc::Receiver<Work<'o>>>>;

impl<'a> Pipeline<'a> {
    /// Assigns one chunk.
    fn assign<'o>(&self, mut w: Work<'o>) -> Done<'o> {
        let first_bad = match (&w.text, self.source) {
            (Some(text), _) => self
                .job
                .assign_chunk(self.table, &text.ids(), 0, &mut w.out),
            (None, Source::Ids(ids)) => {
                let first = w.out.first;
                self.job.assign_chunk(self.table, ids, first, &mut w.out)
            }
            // A list's chunks always carry their text.
            (None, Source::List(_)) => None,
        };
        Done {
            out: w.out,
            text: w.text,
            first_bad,
        }
    }

    /// Runs the pipeline in `scope` with `workers` tasks: the calling thread (without the GIL
    /// on entry) reads, makes objects and helps. Returns the first unit whose id was not valid
    /// text, if any.
    fn run<'o>(
        &'a self,
        scope: &rayon::Scope<'o>,
        workers: usize,
        chunks: Vec<ChunkOut<'o>>,
        mut builder: Option<&mut ObjectBuilder>,
    ) -> PyResult<Option<usize>>
    where
        'a: 'o,
    {
        let total = chunks.len();
        let (work_tx, work_rx) = mpsc::channel::<Work<'o>>();
        let work_rx: Queue<'o> = Arc::new(Mutex::new(work_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done<'o>>();
        for _ in 0..workers {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            scope.spawn(move |_| loop {
                // Blocks (holding the lock) until there is work or the queue is closed.
                let next = work_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok(w) = next else { break };
                // The calling thread may be gone (an error): then the result is dropped.
                let _ = done_tx.send(self.assign(w));
            });
        }
        drop(done_tx);
        let mut unread = chunks.into_iter();
        if let Source::Ids(_) = self.source {
            for out in unread.by_ref() {
                let _ = work_tx.send(Work { out, text: None });
            }
        }
        // Chunks queued or being assigned: at most `cap` of a list at once (the buffers of
        // assigned chunks are read into again, so a few are in use whatever its length).
        // 16 chunks are about 5 ms of work for two cores: enough to keep the pool busy
        // when the OS pauses this thread for a time slice (3 threads on 2 cores).
        let cap = (workers * 2 + 1).max(16);
        let mut st = PipelineState {
            in_flight: match self.source {
                Source::Ids(_) => total,
                Source::List(_) => 0,
            },
            done: 0,
            first_bad: None,
            spare: Vec::new(),
            ready: Vec::new(),
            keep_ready: builder.is_some(),
        };
        let mut next_object = 0usize;
        // Whether taking the GIL made this thread wait (another Python thread is running):
        // each later take could wait as long (up to `sys.getswitchinterval()`, 5 ms by
        // default), so from then on the GIL is taken as few times as possible.
        let mut contended = false;
        let result = loop {
            while let Ok(d) = done_rx.try_recv() {
                st.record(d);
            }
            // 1. Read the next chunks of a list, as far as the queue has room (a larger
            // queue once the GIL is contended).
            if let Source::List(list) = self.source {
                if st.in_flight < cap && unread.len() > 0 {
                    let read = attach(&mut contended, |py, contended| -> PyResult<()> {
                        let list = list.bind(py);
                        let room = if contended { cap.max(BATCH) } else { cap };
                        while st.in_flight < room {
                            let Some(out) = unread.next() else { break };
                            let mut text = st.spare.pop().unwrap_or_default();
                            text.read_list(list, out.first, out.variant.len(), self.what)?;
                            let _ = work_tx.send(Work {
                                out,
                                text: Some(text),
                            });
                            st.in_flight += 1;
                        }
                        Ok(())
                    });
                    if let Err(e) = read {
                        break Err(e);
                    }
                    continue;
                }
            }
            // 2. Make the objects of the chunks assigned, in order (once the GIL is
            // contended: in batches, or the rest at the end).
            if let Some(b) = builder.as_deref_mut() {
                let batch = if contended { BATCH } else { 1 };
                let ready = st.ready.iter().skip(next_object).take(batch);
                if ready.take_while(|r| r.is_some()).count() == batch
                    || (st.done == total && next_object < total)
                {
                    attach(&mut contended, |py, _| {
                        while let Some(out) = st.ready.get_mut(next_object).and_then(Option::take) {
                            b.push(py, &out, self.table);
                            next_object += 1;
                        }
                    });
                    continue;
                }
            }
            if st.done == total && (builder.is_none() || next_object == total) {
                break Ok(st.first_bad);
            }
            // 3. Help: assign a queued chunk (`try_lock`: a task holding the lock waits for
            // work, so there is none to take).
            let next = work_rx.try_lock().ok().and_then(|rx| rx.try_recv().ok());
            if let Some(w) = next {
                st.record(self.assign(w));
                continue;
            }
            // 4. Nothing to do here: wait for a chunk to be done.
            match done_rx.recv() {
                Ok(d) => st.record(d),
                Err(_) => break Ok(st.first_bad),
            }
        };
        // Closing the queue ends the tasks (after an error, once they finish what is queued).
        drop(work_tx);
        result
    }
}

/// The calling thread's bookkeeping in [`Pipeline::run`].
struct PipelineState<'o> {
    /// Chunks queued or being assigned.
    in_flight: usize,
    /// Chunks assigned.
    done: usize,
    /// The first unit whose id was not valid text.
    first_bad: Option<usize>,
    /// Buffers of a list's assigned chunks, to read the next chunks into.
    spare: Vec<ChunkText>,
    /// Assigned chunks waiting for their objects, by chunk index (objects go in order).
    ready: Vec<Option<ChunkOut<'o>>>,
    /// Whether objects are made (else assigned chunks are not kept).
    keep_ready: bool,
}

impl<'o> PipelineState<'o> {
    fn record(&mut self, d: Done<'o>) {
        self.in_flight -= 1;
        self.done += 1;
        if let Some(bad) = d.first_bad {
            self.first_bad = Some(self.first_bad.map_or(bad, |b| b.min(bad)));
        }
        self.spare.extend(d.text);
        if self.keep_ready {
            let k = d.out.first / CHUNK;
            if self.ready.len() <= k {
                self.ready.resize_with(k + 1, || None);
            }
            if let Some(slot) = self.ready.get_mut(k) {
                *slot = Some(d.out);
            }
        }
    }
}

/// Chunks read, or made into objects, per take of a contended GIL: enough work to keep the
/// pool busy (about 260,000 units) while this thread waits up to a switch interval to take it
/// again.
const BATCH: usize = 32;

/// How long taking the GIL may take before [`attach`] calls it contended: far above an
/// uncontended take (microseconds), far below the interpreter's switch interval (5 ms).
const CONTENDED: std::time::Duration = std::time::Duration::from_micros(500);

/// Runs `f` with the GIL, noting in `contended` whether taking it made this thread wait (`f`
/// is told whether the GIL is contended, this time or before).
fn attach<R>(contended: &mut bool, f: impl FnOnce(Python<'_>, bool) -> R) -> R {
    let start = std::time::Instant::now();
    Python::attach(|py| {
        if start.elapsed() > CONTENDED {
            *contended = true;
        }
        f(py, *contended)
    })
}
