//! The bulk assignment core of `assign_many`: every unit through
//! [`Snapshot::assign_id_at`] with one fixed clock (what `abkit simulate` does), in chunks over
//! a rayon pool, into flat code arrays. No Python object is touched here, so it runs with the
//! GIL released; the benchmark times this same function on the same ids for the Rust rate.

use crate::columns::{AttrColumn, Ids};
use abkit::ExperimentId;
use abkit::{Attribute, DecidedBy, Reason, Snapshot, Unit};
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Units per chunk: large enough to amortise the scheduling, small enough to balance cores.
const CHUNK: usize = 8192;

/// Variant code of a unit that is not enrolled.
pub(crate) const NOT_ENROLLED: i32 = -1;

/// What [`assign_all`] computed, one entry per unit.
pub(crate) struct Codes {
    /// Little-endian `i32` per unit: the variant index, or [`NOT_ENROLLED`].
    pub(crate) variant: Vec<u8>,
    /// Per unit: the index of its reason in [`Reason::ALL`].
    pub(crate) reason: Vec<u8>,
    /// Per unit: an index into `provenance_names`.
    pub(crate) provenance: Vec<u8>,
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
}

/// Assigns unit `i` (with the attributes of row `i`) in experiment `id` of `snapshot`, the
/// clock fixed at `now_ms`, on `pool` (or rayon's global pool: one thread per core). Ids are
/// read in place (UTF-32 decoded on the fly); one that is not valid text fails the call.
pub(crate) fn assign_all(
    snapshot: &Snapshot,
    id: ExperimentId,
    now_ms: u64,
    units: &Ids<'_>,
    attrs: &[AttrColumn<'_>],
    pool: Option<&rayon::ThreadPool>,
) -> Result<Codes, String> {
    let n = units.len();
    let mut variant = vec![0u8; n * 4];
    let mut reason = vec![0u8; n];
    let mut provenance = vec![0u8; n];
    let table = ProvenanceTable(Mutex::new(Vec::new()));
    let first_bad = AtomicUsize::new(usize::MAX);
    let mut work = || {
        variant
            .par_chunks_mut(CHUNK * 4)
            .zip(reason.par_chunks_mut(CHUNK))
            .zip(provenance.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, ((v, r), p))| {
                let first = c * CHUNK;
                let mut decoded = String::new();
                let mut seen: Vec<(DecidedBy, u8)> = Vec::new();
                let mut row: Vec<Attribute<'_>> = Vec::with_capacity(attrs.len());
                for (k, (v, (r, p))) in v
                    .chunks_exact_mut(4)
                    .zip(r.iter_mut().zip(p.iter_mut()))
                    .enumerate()
                {
                    let i = first + k;
                    let id_text = match units.get(i, &mut decoded) {
                        Some(text) => text,
                        None => {
                            first_bad.fetch_min(i, Ordering::Relaxed);
                            ""
                        }
                    };
                    row.clear();
                    for a in attrs {
                        if let Some(value) = a.get(i) {
                            row.push(Attribute::new(&a.name, value));
                        }
                    }
                    let unit = Unit::new(id_text).with_attributes(&row);
                    let a = snapshot.assign_id_at(id, &unit, now_ms);
                    let code = a
                        .variant
                        .and_then(|x| i32::try_from(x.index).ok())
                        .unwrap_or(NOT_ENROLLED);
                    v.copy_from_slice(&code.to_le_bytes());
                    *r = reason_code(a.reason);
                    *p = match seen.iter().find(|(d, _)| same(d, &a.decided_by)) {
                        Some(&(_, code)) => code,
                        None => {
                            let code = table.code(a.decided_by);
                            seen.push((a.decided_by, code));
                            code
                        }
                    };
                }
            });
    };
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
    let provenance_names = table
        .0
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(ToString::to_string)
        .collect();
    let bad = first_bad.into_inner();
    if bad != usize::MAX {
        return Err(units.problem(bad, "units"));
    }
    Ok(Codes {
        variant,
        reason,
        provenance,
        provenance_names,
    })
}
