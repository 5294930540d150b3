//! [`assign_units`]: bulk assignment of a units input (the reader `simulate` uses: plain ids
//! or CSV with attributes, gzip, stdin, the line cap, skipping) to `unit_id,variant` CSV.
//!
//! Streaming, in bounded memory: rows are written as they are read. On a malformed line
//! without `skip_bad_lines` the rows before it are written and flushed, and the error says
//! how many ([`AssignUnitsError::Stopped`]): the output is then incomplete, never silently.

use super::error::SimulateError;
use super::input::{Chunk, ChunkReader, SkippedLines, SourceKind, UnitSource};
use super::synthetic::Generator;
use crate::bulk::write_csv_field;
use crate::registry::Snapshot;
use crate::unit::{Attribute, Unit};
use std::io::Write;

/// Units parsed per chunk: small, since the rows are written one by one anyway.
const CHUNK_UNITS: usize = 4096;

/// Options of [`assign_units`].
#[derive(Debug, Clone, Default)]
pub struct AssignUnitsOptions {
    /// Skip malformed input lines and count them, instead of stopping at the first.
    pub skip_bad_lines: bool,
    /// Attributes given to every unit (`--attr`); a CSV column of the same name wins.
    pub attributes: Vec<(String, String)>,
}

/// What [`assign_units`] did. Every data row is accounted for:
/// `rows_read = written + skipped.count`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitsAssigned {
    /// Data rows read (lines after a CSV header).
    pub rows_read: u64,
    /// CSV rows written (one per unit, header not counted).
    pub written: u64,
    /// Of which enrolled in a variant.
    pub enrolled: u64,
    /// Malformed lines skipped (with `skip_bad_lines`).
    pub skipped: SkippedLines,
}

/// Why [`assign_units`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssignUnitsError {
    /// The input could not be opened or its header is unusable, or the experiment is unknown:
    /// no row was written.
    #[error("{0}")]
    Input(SimulateError),
    /// A malformed line (or a read error) after `written` rows had been written and flushed.
    #[error(
        "{source}. The {written} row(s) before it were written to the output, which is \
         therefore incomplete"
    )]
    Stopped {
        /// What stopped it (names the input and the line).
        source: SimulateError,
        /// Rows written (and flushed) before it.
        written: u64,
    },
    /// Writing the output failed.
    #[error("cannot write the output after {written} row(s): {source}")]
    Write {
        /// The error.
        source: std::io::Error,
        /// Rows written before it.
        written: u64,
    },
}

/// Assigns every unit of `source` in `experiment` and writes `unit_id,variant` CSV (header
/// first; variant empty when not enrolled), in input order. Units get the CSV attributes of
/// their row, then `opts.attributes`.
///
/// ```
/// use abkit::simulate::{assign_units, AssignUnitsOptions, InputFormat, UnitSource};
/// let sdk = abkit::Sdk::from_toml_str(
///     "[[experiments]]\nkey = \"e\"\nvariants = [ { name = \"a\", weight = 1 } ]\ntargeting = { country = [\"US\"] }\n",
/// ).unwrap();
/// let csv = "id,country\nu1,US\nu2,FR\n";
/// let units = UnitSource::from_reader("units.csv", csv.as_bytes(), InputFormat::Csv { id_column: "id".into() });
/// let mut out = Vec::new();
/// let done = assign_units(&sdk.snapshot(), "e", units, &AssignUnitsOptions::default(), &mut out).unwrap();
/// assert_eq!(String::from_utf8(out).unwrap(), "unit_id,variant\nu1,a\nu2,\n");
/// assert_eq!((done.rows_read, done.written, done.enrolled), (2, 2, 1));
/// ```
pub fn assign_units(
    snapshot: &Snapshot,
    experiment: &str,
    source: UnitSource,
    opts: &AssignUnitsOptions,
    output: impl Write,
) -> Result<UnitsAssigned, AssignUnitsError> {
    if snapshot.experiment(experiment).is_none() {
        return Err(AssignUnitsError::Input(SimulateError::UnknownExperiment {
            key: experiment.to_string(),
            known: super::run::known(&snapshot.config().experiments),
        }));
    }
    let mut w = Writer {
        out: std::io::BufWriter::with_capacity(1 << 16, output),
        snapshot,
        experiment,
        done: UnitsAssigned::default(),
    };
    match source.kind {
        SourceKind::Synthetic(spec) => {
            w.header()?;
            let attrs = defaults(&opts.attributes, &[]);
            let mut gen = Generator::new(&spec);
            for i in 0..spec.count {
                let unit = gen.unit(i);
                let mut all: Vec<Attribute<'_>> = unit.attributes().to_vec();
                all.extend(attrs.iter().copied());
                w.unit(&Unit::new(unit.id()).with_attributes(&all))?;
            }
            w.done.rows_read = spec.count;
        }
        SourceKind::Reader(src) => {
            let mut reader = ChunkReader::new(src, opts.skip_bad_lines, CHUNK_UNITS)
                .map_err(AssignUnitsError::Input)?;
            w.header()?;
            let keys = std::sync::Arc::clone(reader.keys());
            let extra = defaults(&opts.attributes, &keys);
            let mut chunk = Chunk::default();
            loop {
                match reader.fill(&mut chunk) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(source) => {
                        w.flush()?;
                        return Err(AssignUnitsError::Stopped {
                            source,
                            written: w.done.written,
                        });
                    }
                }
                let text = |(a, b): (usize, usize)| chunk.text.get(a..b).unwrap_or("");
                let mut attrs: Vec<Attribute<'_>> = Vec::with_capacity(keys.len() + extra.len());
                for u in &chunk.units {
                    attrs.clear();
                    for &(k, a, b) in chunk.attrs.get(u.attrs.0..u.attrs.1).unwrap_or(&[]) {
                        attrs.push(Attribute::new(
                            keys.get(k).map_or("", String::as_str),
                            text((a, b)),
                        ));
                    }
                    attrs.extend(extra.iter().copied());
                    w.unit(&Unit::new(text(u.id)).with_attributes(&attrs))?;
                }
            }
            w.done.rows_read = reader.rows_read;
            w.done.skipped = std::mem::take(&mut reader.skipped);
        }
    }
    w.flush()?;
    let d = w.done;
    if d.written.checked_add(d.skipped.count) != Some(d.rows_read) {
        return Err(AssignUnitsError::Input(SimulateError::RowAccounting {
            input: String::from("the units input"),
            rows_read: d.rows_read,
            units: d.written,
            skipped: d.skipped.count,
        }));
    }
    Ok(d)
}

/// The `--attr` attributes whose names are not CSV columns (the columns win).
fn defaults<'a>(given: &'a [(String, String)], columns: &[String]) -> Vec<Attribute<'a>> {
    given
        .iter()
        .filter(|(k, _)| !columns.contains(k))
        .map(|(k, v)| Attribute::new(k, v))
        .collect()
}

/// The output side of [`assign_units`].
struct Writer<'s, W: Write> {
    out: std::io::BufWriter<W>,
    snapshot: &'s Snapshot,
    experiment: &'s str,
    done: UnitsAssigned,
}

impl<W: Write> Writer<'_, W> {
    fn fail(&self, source: std::io::Error) -> AssignUnitsError {
        AssignUnitsError::Write {
            source,
            written: self.done.written,
        }
    }

    fn header(&mut self) -> Result<(), AssignUnitsError> {
        self.out
            .write_all(b"unit_id,variant\n")
            .map_err(|e| self.fail(e))
    }

    fn unit(&mut self, unit: &Unit<'_>) -> Result<(), AssignUnitsError> {
        let a = self.snapshot.assign(self.experiment, unit);
        let row = (|| {
            write_csv_field(&mut self.out, unit.id())?;
            self.out.write_all(b",")?;
            if let Some(v) = a.variant {
                write_csv_field(&mut self.out, v.name)?;
            }
            self.out.write_all(b"\n")
        })();
        row.map_err(|e| self.fail(e))?;
        self.done.written += 1;
        if a.variant.is_some() {
            self.done.enrolled += 1;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AssignUnitsError> {
        self.out.flush().map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::simulate::{InputFormat, LineProblem};
    use crate::Sdk;

    const CONFIG: &str = "[[experiments]]\nkey = \"e\"\nvariants = [ { name = \"a\", weight = 1 } ]\ntargeting = { country = [\"US\"] }\n";

    fn csv(bytes: &'static [u8]) -> UnitSource {
        UnitSource::from_reader(
            "units.csv",
            bytes,
            InputFormat::Csv {
                id_column: "id".into(),
            },
        )
    }

    #[test]
    fn csv_columns_are_attributes_and_attr_defaults_fill_the_rest() {
        let snap = Sdk::from_toml_str(CONFIG).unwrap().snapshot();
        let mut out = Vec::new();
        let opts = AssignUnitsOptions {
            attributes: vec![("country".into(), "US".into())],
            ..AssignUnitsOptions::default()
        };
        let d = assign_units(&snap, "e", csv(b"id,country\nu1,FR\n"), &opts, &mut out).unwrap();
        // The column wins over --attr.
        assert_eq!(String::from_utf8(out).unwrap(), "unit_id,variant\nu1,\n");
        assert_eq!(d.enrolled, 0);
        let mut out = Vec::new();
        let plain = UnitSource::from_reader("ids", &b"u1\n\"q\"\n"[..], InputFormat::Plain);
        assign_units(&snap, "e", plain, &opts, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "unit_id,variant\nu1,a\n\"\"\"q\"\"\",a\n"
        );
    }

    #[test]
    fn a_bad_line_stops_after_the_rows_before_it_and_says_how_many() {
        let snap = Sdk::from_toml_str(CONFIG).unwrap().snapshot();
        let input = b"id,country\nu1,US\nu2,\"US\nu3,US\n";
        let mut out = Vec::new();
        let e = assign_units(
            &snap,
            "e",
            csv(input),
            &AssignUnitsOptions::default(),
            &mut out,
        )
        .unwrap_err();
        assert_eq!(String::from_utf8(out).unwrap(), "unit_id,variant\nu1,a\n");
        assert!(
            matches!(
                &e,
                AssignUnitsError::Stopped {
                    source: SimulateError::BadLine {
                        line: 3,
                        problem: LineProblem::UnclosedQuote { field: 2, .. },
                        ..
                    },
                    written: 1,
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains("units.csv line 3"), "{msg}");
        assert!(msg.contains("The 1 row(s) before it were written"), "{msg}");

        let mut out = Vec::new();
        let opts = AssignUnitsOptions {
            skip_bad_lines: true,
            ..AssignUnitsOptions::default()
        };
        let d = assign_units(&snap, "e", csv(input), &opts, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "unit_id,variant\nu1,a\nu3,a\n"
        );
        assert_eq!((d.rows_read, d.written, d.skipped.count), (3, 2, 1));
    }
}
