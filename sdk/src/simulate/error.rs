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
    /// A CSV record whose quoted fields span lines runs on past the cap (an unclosed quote,
    /// most likely); it cannot be skipped, since where it ends is unknown.
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
        }
    }
}
