//! Streaming bulk assignment: one unit id per input line -> CSV `unit_id,variant`.
//!
//! Constant memory: one reused line buffer and a buffered writer, whatever the input size.

use crate::registry::Snapshot;
use crate::unit::Unit;
use std::io::{BufRead, Write};

/// Why a bulk run stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BulkError {
    /// The experiment is not in the configuration.
    #[error("experiment \"{0}\" is not in the configuration; run `abkit check` to list what is")]
    UnknownExperiment(String),
    /// An input line is not valid UTF-8.
    #[error("input line {line}: not valid UTF-8; unit ids must be UTF-8 text")]
    NotUtf8 {
        /// 1-based line number.
        line: u64,
    },
    /// Reading or writing failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Totals of a bulk run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkStats {
    /// Rows written (one per input line).
    pub units: u64,
    /// Of which enrolled in a variant.
    pub enrolled: u64,
}

/// Assigns every line of `input` in `experiment` and writes `unit_id,variant` CSV rows
/// (header first; variant empty when not enrolled), in input order.
pub fn assign_csv(
    snapshot: &Snapshot,
    experiment: &str,
    mut input: impl BufRead,
    output: impl Write,
) -> Result<BulkStats, BulkError> {
    if snapshot.experiment(experiment).is_none() {
        return Err(BulkError::UnknownExperiment(experiment.to_string()));
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, output);
    out.write_all(b"unit_id,variant\n")?;
    let mut line = Vec::with_capacity(256);
    let mut stats = BulkStats::default();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let mut end = line.len();
        if end > 0 && line[end - 1] == b'\n' {
            end -= 1;
        }
        if end > 0 && line[end - 1] == b'\r' {
            end -= 1;
        }
        let id = std::str::from_utf8(&line[..end]).map_err(|_| BulkError::NotUtf8 {
            line: stats.units + 1,
        })?;
        let a = snapshot.assign(experiment, &Unit::new(id));
        write_csv_field(&mut out, id)?;
        out.write_all(b",")?;
        if let Some(v) = a.variant {
            write_csv_field(&mut out, v.name)?;
            stats.enrolled += 1;
        }
        out.write_all(b"\n")?;
        stats.units += 1;
    }
    out.flush()?;
    Ok(stats)
}

/// Writes one CSV field, quoted (RFC 4180) only when it holds `,`, `"`, CR or LF.
pub fn write_csv_field(out: &mut impl Write, field: &str) -> std::io::Result<()> {
    if field
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.write_all(b"\"")?;
        out.write_all(field.replace('"', "\"\"").as_bytes())?;
        out.write_all(b"\"")
    } else {
        out.write_all(field.as_bytes())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Sdk;

    #[test]
    fn writes_one_row_per_line_in_order_and_quotes_when_needed() {
        let sdk = Sdk::from_toml_str(
            "[[experiments]]\nkey=\"e\"\ncoverage=0.0\nvariants=[{name=\"a\",weight=1}]\n",
        )
        .unwrap();
        let mut out = Vec::new();
        let stats = assign_csv(&sdk.snapshot(), "e", &b"u1\r\nu,2\nlast"[..], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "unit_id,variant\nu1,\n\"u,2\",\nlast,\n"
        );
        assert_eq!(
            stats,
            BulkStats {
                units: 3,
                enrolled: 0
            }
        );
    }

    #[test]
    fn non_utf8_line_is_reported_with_its_number() {
        let sdk =
            Sdk::from_toml_str("[[experiments]]\nkey=\"e\"\nvariants=[{name=\"a\",weight=1}]\n")
                .unwrap();
        let err = assign_csv(&sdk.snapshot(), "e", &b"ok\n\xff\xfe\n"[..], Vec::new()).unwrap_err();
        assert!(matches!(err, BulkError::NotUtf8 { line: 2 }));
    }
}
