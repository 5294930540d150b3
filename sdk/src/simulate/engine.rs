//! The parallel driver shared by `run` and `diff`: feeds every unit of a source to a
//! [`Tally`], chunk by chunk, on a rayon pool, and sums the per-task integer counters.
//!
//! Determinism: each task counts into its own `Vec<u64>`; merging is integer addition, which
//! gives the same totals in any order, so results are identical for any thread count.

use super::error::SimulateError;
use super::input::{Chunk, ChunkReader, SkippedLines, SourceKind, UnitSource};
use super::synthetic::{Generator, SyntheticSpec};
use super::{Progress, SimulateOptions};
use crate::unit::{Attribute, Unit};
use rayon::prelude::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Units per parallel task: large enough to amortise a task, small enough to balance cores.
const TASK_UNITS: usize = 4096;

/// What is counted per unit. Counters live in one flat `u64` vector of `width()` entries.
pub(crate) trait Tally: Sync {
    /// Number of counters.
    fn width(&self) -> usize;
    /// Counts one unit; `scratch` is a per-task buffer for the tally's own use.
    fn add(&self, counts: &mut [u64], scratch: &mut Vec<u32>, unit: &Unit<'_>);
}

/// The merged counters of a whole run and what the input reported.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) counts: Vec<u64>,
    pub(crate) skipped: SkippedLines,
    /// Data rows read: `units + skipped.count` (checked); the units for synthetic input.
    pub(crate) rows_read: u64,
    pub(crate) threads: usize,
    pub(crate) elapsed: Duration,
}

/// Runs `tally` over every unit of `source`. Fails when no unit was read (unless
/// `opts.allow_empty`), and when the rows read do not add up to units plus skipped lines.
pub(crate) fn drive<T: Tally>(
    tally: &T,
    source: UnitSource,
    opts: &SimulateOptions,
) -> Result<Outcome, SimulateError> {
    if opts.chunk_units == 0 {
        return Err(SimulateError::InvalidOption {
            option: "chunk_units",
            problem: "must be at least 1".into(),
        });
    }
    let threads = opts.threads.unwrap_or(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("abkit-simulate-{i}"))
        .build()
        .map_err(|e| SimulateError::ThreadPool {
            threads,
            message: e.to_string(),
        })?;
    let started = Instant::now();
    let width = tally.width();
    let mut total = vec![0u64; width];
    let mut units = 0u64;
    let input = source.name();
    let report = |units: u64, bytes: u64| {
        if let Some(p) = &opts.progress {
            p(Progress { units, bytes });
        }
    };
    let (skipped, rows_read) = match source.kind {
        SourceKind::Synthetic(spec) => {
            let mut lo = 0u64;
            while lo < spec.count {
                let hi = spec.count.min(lo.saturating_add(opts.chunk_units as u64));
                let counts = pool.install(|| count_synthetic(tally, &spec, lo, hi));
                add_into(&mut total, &counts);
                units += hi - lo;
                lo = hi;
                report(units, 0);
            }
            (SkippedLines::default(), units)
        }
        SourceKind::Reader(src) => {
            let bytes = std::sync::Arc::clone(&src.bytes_read);
            let mut reader = ChunkReader::new(src, opts.skip_bad_lines, opts.chunk_units)?;
            std::thread::scope(|s| -> Result<(SkippedLines, u64), SimulateError> {
                // Parsing runs one chunk ahead of counting; at most three chunks exist at once.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(1);
                let (back_tx, back_rx) = std::sync::mpsc::channel::<Chunk>();
                let producer = s.spawn(move || -> Result<(SkippedLines, u64), SimulateError> {
                    loop {
                        let mut chunk = back_rx.try_recv().unwrap_or_default();
                        if !reader.fill(&mut chunk)? || tx.send(chunk).is_err() {
                            return Ok((reader.skipped, reader.rows_read));
                        }
                    }
                });
                for chunk in rx {
                    let counts = pool.install(|| count_chunk(tally, &chunk));
                    add_into(&mut total, &counts);
                    units += chunk.units.len() as u64;
                    report(units, bytes.load(Ordering::Relaxed));
                    let _ = back_tx.send(chunk); // the producer may be done; then the chunk is dropped
                }
                match producer.join() {
                    Ok(result) => result,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            })?
        }
    };
    // Every row is a unit or a skipped line: a report that loses rows is never produced.
    if units != total[0] || units.checked_add(skipped.count) != Some(rows_read) {
        return Err(SimulateError::RowAccounting {
            input,
            rows_read,
            units: total[0],
            skipped: skipped.count,
        });
    }
    if units == 0 && !opts.allow_empty {
        return Err(SimulateError::NoUnits {
            input,
            rows_read,
            skipped: skipped.count,
        });
    }
    Ok(Outcome {
        counts: total,
        skipped,
        rows_read,
        threads: pool.current_num_threads(),
        elapsed: started.elapsed(),
    })
}

fn add_into(total: &mut [u64], part: &[u64]) {
    for (t, p) in total.iter_mut().zip(part) {
        *t += p;
    }
}

fn merge(mut a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    add_into(&mut a, &b);
    a
}

/// Units `lo..hi` of a synthetic population, in parallel tasks.
fn count_synthetic<T: Tally>(tally: &T, spec: &SyntheticSpec, lo: u64, hi: u64) -> Vec<u64> {
    let width = tally.width();
    let n = (hi - lo) as usize;
    (0..n.div_ceil(TASK_UNITS))
        .into_par_iter()
        .map(|task| {
            let mut counts = vec![0u64; width];
            let mut scratch = Vec::new();
            let mut gen = Generator::new(spec);
            let start = lo + (task * TASK_UNITS) as u64;
            let end = hi.min(start + TASK_UNITS as u64);
            for i in start..end {
                let unit = gen.unit(i);
                tally.add(&mut counts, &mut scratch, &unit);
            }
            counts
        })
        .reduce(|| vec![0u64; width], merge)
}

/// The units of one parsed chunk, in parallel tasks.
fn count_chunk<T: Tally>(tally: &T, chunk: &Chunk) -> Vec<u64> {
    let width = tally.width();
    let n = chunk.units.len();
    (0..n.div_ceil(TASK_UNITS))
        .into_par_iter()
        .map(|task| {
            let mut counts = vec![0u64; width];
            let mut scratch = Vec::new();
            let mut attrs: Vec<Attribute<'_>> = Vec::with_capacity(chunk.keys.len());
            let text = |(a, b): (usize, usize)| chunk.text.get(a..b).unwrap_or("");
            for u in &chunk.units[task * TASK_UNITS..n.min((task + 1) * TASK_UNITS)] {
                attrs.clear();
                for &(k, a, b) in chunk.attrs.get(u.attrs.0..u.attrs.1).unwrap_or(&[]) {
                    attrs.push(Attribute::new(
                        chunk.keys.get(k).map_or("", String::as_str),
                        text((a, b)),
                    ));
                }
                let unit = Unit::new(text(u.id)).with_attributes(&attrs);
                tally.add(&mut counts, &mut scratch, &unit);
            }
            counts
        })
        .reduce(|| vec![0u64; width], merge)
}
