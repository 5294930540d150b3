//! [`SimulateError`]: everything that can stop a simulation or a diff.

use std::fmt;
use std::path::PathBuf;

/// Why a simulation or a diff stopped. Messages name the file, line or field and say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulateError {
    /// The units file cannot be opened.
    #[error("cannot open units file {path}: {source}; check the path (use `-` to read stdin)")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Reading (or decompressing) the input failed.
    #[error("cannot read {input} after line {line}: {source}; a truncated or corrupt gzip file also ends this way")]
    Read {
        /// The input's name (path or `<stdin>`).
        input: String,
        /// The last line read completely.
        line: u64,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A malformed input line, and `skip_bad_lines` is off.
    #[error("{input} line {line}: {problem}; fix the line or pass --skip-bad-lines to skip malformed lines and count them")]
    BadLine {
        /// The input's name.
        input: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        problem: LineProblem,
    },
    /// A record runs on past the cap. Not produced since unit inputs are read as one record
    /// per line (a quote must close on its line, [`LineProblem::UnclosedQuote`]); kept so
    /// that code matching on it still compiles.
    #[error(
        "{input}: the CSV record starting at line {line} runs on for more than {max} bytes, \
         most likely an unclosed quote (\"); fix the quoting, or raise --max-line-bytes if \
         records really are that long"
    )]
    RecordTooLong {
        /// The input's name.
        input: String,
        /// Line where the record starts.
        line: u64,
        /// The cap for one record, in bytes.
        max: u64,
    },
    /// No unit was read (an empty input, a header alone, or every row malformed and skipped),
    /// and [`SimulateOptions::allow_empty`](super::SimulateOptions::allow_empty) is off: a
    /// report on no data would read as a healthy split.
    #[error(
        "no units read from {input} ({}); check that this is the right file (and --id-column), \
         or pass --allow-empty to accept an empty population",
        no_units_detail(*rows_read, *skipped)
    )]
    NoUnits {
        /// The input's name.
        input: String,
        /// Data rows read (lines after the CSV header).
        rows_read: u64,
        /// Of which malformed and skipped.
        skipped: u64,
    },
    /// The rows read do not add up to the units counted plus the lines skipped. A bug in
    /// abkit, never expected: the report is withheld rather than leave rows unaccounted for.
    #[error(
        "internal error: {input}: {rows_read} rows read but {units} units counted and {skipped} \
         skipped; no report was produced because it would not account for every row; please \
         report this bug"
    )]
    RowAccounting {
        /// The input's name.
        input: String,
        /// Data rows read.
        rows_read: u64,
        /// Units counted.
        units: u64,
        /// Malformed lines skipped.
        skipped: u64,
    },
    /// The CSV header lacks the id column.
    #[error("{input}: the header has no column \"{column}\" (columns: {columns}); pass --id-column with one of them")]
    MissingIdColumn {
        /// The input's name.
        input: String,
        /// The id column asked for.
        column: String,
        /// The header's columns, comma-separated.
        columns: String,
    },
    /// The CSV header itself is unusable.
    #[error("{input} line 1: {problem}; a CSV input needs a UTF-8 header line naming its columns")]
    BadHeader {
        /// The input's name.
        input: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An experiment asked for is not in the configuration(s).
    #[error("experiment \"{key}\" is not in the configuration; known experiments: {known}")]
    UnknownExperiment {
        /// The key asked for.
        key: String,
        /// The configured keys, comma-separated (or `(none)`).
        known: String,
    },
    /// A synthetic attribute distribution such as `country=US:60,CA:40` does not parse.
    #[error("attribute distribution \"{spec}\": {problem}; write NAME=VALUE:WEIGHT,VALUE:WEIGHT (weights are non-negative integers, default 1)")]
    BadAttributeDistribution {
        /// The text given.
        spec: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A `--time` value is neither RFC 3339 nor milliseconds since the epoch.
    #[error("time \"{value}\": {problem}; give RFC 3339 (2026-01-31T12:00:00Z) or milliseconds since 1970-01-01")]
    BadTime {
        /// The text given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An option is out of its range.
    #[error("invalid option {option}: {problem}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The worker thread pool cannot be started.
    #[error("cannot start {threads} worker threads: {message}; try a smaller --threads")]
    ThreadPool {
        /// Threads asked for (0 = one per core).
        threads: usize,
        /// The error from rayon.
        message: String,
    },
    /// The SVG chart cannot be written.
    #[error(
        "cannot write the chart {path}: {message}; check that the directory exists and is writable"
    )]
    Plot {
        /// The chart's path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The parenthesis of a [`SimulateError::NoUnits`] message.
fn no_units_detail(rows_read: u64, skipped: u64) -> String {
    if rows_read == 0 {
        "it has no data rows".to_string()
    } else if skipped == rows_read {
        format!("all {rows_read} rows were malformed and skipped")
    } else {
        format!("{rows_read} rows read, {skipped} skipped")
    }
}

/// What is wrong with one input line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineProblem {
    /// The line (or one CSV field) is not valid UTF-8.
    NotUtf8 {
        /// The CSV column, when the input is CSV.
        column: Option<String>,
    },
    /// A CSV record has a different number of fields than the header.
    FieldCount {
        /// Fields in this record.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// The unit id is empty.
    EmptyId,
    /// The line is longer than the cap (`--max-line-bytes`); nothing of it was kept.
    TooLong {
        /// The cap, in bytes, not counting the line end.
        max: usize,
    },
    /// A CSV field opens a quote that does not close on the same line. Unit inputs are one
    /// record per line, so this is a stray quote; it spoils this line only.
    UnclosedQuote {
        /// 1-based field number.
        field: usize,
        /// Its column name, when the header has one there.
        column: Option<String>,
    },
    /// A quoted CSV field has text after its closing quote (`"a"b`).
    TextAfterQuote {
        /// 1-based field number.
        field: usize,
        /// Its column name, when the header has one there.
        column: Option<String>,
    },
    /// A CSV data line is empty.
    EmptyLine,
}

/// `field 3 ("os")`, or `field 3` without a column name.
fn field_name(field: usize, column: &Option<String>) -> String {
    match column {
        Some(c) => format!("field {field} (\"{c}\")"),
        None => format!("field {field}"),
    }
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::NotUtf8 { column: None } => {
                f.write_str("not valid UTF-8; unit ids must be UTF-8 text")
            }
            LineProblem::NotUtf8 { column: Some(c) } => {
                write!(f, "field \"{c}\" is not valid UTF-8")
            }
            LineProblem::FieldCount { found, expected } => {
                write!(f, "has {found} fields but the header has {expected}")
            }
            LineProblem::EmptyId => f.write_str("the unit id is empty"),
            LineProblem::TooLong { max } => write!(
                f,
                "the line is longer than {max} bytes, the limit for one line (unit ids are \
                 short: check that this is a units file, or raise the limit with --max-line-bytes)"
            ),
            LineProblem::UnclosedQuote { field, column } => write!(
                f,
                "{} opens a quote (\") that is not closed on this line; each record of a units \
                 file is one line, so a quoted field may hold commas and doubled quotes (\"\") \
                 but not line breaks: close the quote, or double it if it is part of the value",
                field_name(*field, column)
            ),
            LineProblem::TextAfterQuote { field, column } => write!(
                f,
                "{} has text after its closing quote; quote the whole value and double any quote \
                 inside it (\"\")",
                field_name(*field, column)
            ),
            LineProblem::EmptyLine => {
                f.write_str("the line is empty; a CSV data line is one record")
            }
        }
    }
}
