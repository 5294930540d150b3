//! Where units come from: a file (plain ids or CSV, optionally gzip), stdin, or a synthetic
//! population; read in bounded chunks so memory stays flat however large the input.

use super::error::{LineProblem, SimulateError};
use super::synthetic::SyntheticSpec;
use crate::files::{InputLimit, LineCap, DEFAULT_MAX_LINE_BYTES, OVERLONG_MARKER};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How many malformed lines are kept as examples in the report (all are counted).
pub const BAD_LINE_EXAMPLES: usize = 10;

/// Flush a chunk early when its text grows past this many bytes (very long lines).
const CHUNK_TEXT_LIMIT: usize = 32 << 20;

/// Bytes the CSV parser may read ahead of the record it is on (its buffer).
const CSV_BUFFER_BYTES: usize = 1 << 16;

/// The layout of a units file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFormat {
    /// One unit id per line (LF or CRLF); no attributes.
    Plain,
    /// CSV with a header line; `id_column` holds the unit id, every other column becomes an
    /// attribute of the same name.
    Csv {
        /// The header name of the id column.
        id_column: String,
    },
}

/// What a progress report can be measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressTotal {
    /// A known number of units (synthetic input).
    Units(u64),
    /// A known number of input bytes (a regular file; compressed bytes for gzip).
    Bytes(u64),
    /// Unknown (stdin, pipes).
    Unknown,
}

/// A population of units to simulate.
pub struct UnitSource {
    pub(crate) kind: SourceKind,
}

pub(crate) enum SourceKind {
    Synthetic(SyntheticSpec),
    Reader(ReaderSource),
}

pub(crate) struct ReaderSource {
    pub(crate) name: String,
    pub(crate) reader: Box<dyn Read + Send>,
    pub(crate) format: InputFormat,
    pub(crate) total_bytes: Option<u64>,
    pub(crate) bytes_read: Arc<AtomicU64>,
    pub(crate) gz_name: bool,
    /// Longest line accepted, in bytes (not counting the line end).
    pub(crate) max_line_bytes: usize,
}

impl std::fmt::Debug for UnitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            SourceKind::Synthetic(s) => f.debug_tuple("UnitSource::Synthetic").field(s).finish(),
            SourceKind::Reader(r) => f
                .debug_struct("UnitSource::Reader")
                .field("name", &r.name)
                .field("format", &r.format)
                .finish(),
        }
    }
}

impl UnitSource {
    /// A synthetic population.
    pub fn synthetic(spec: SyntheticSpec) -> Self {
        UnitSource {
            kind: SourceKind::Synthetic(spec),
        }
    }

    /// A units file, or stdin when `path` is `-`. Gzip is recognised by its magic bytes.
    pub fn open(path: &Path, format: InputFormat) -> Result<Self, SimulateError> {
        if path.as_os_str() == "-" {
            return Ok(UnitSource::stdin(format));
        }
        let file = std::fs::File::open(path).map_err(|source| SimulateError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let total_bytes = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let mut source = UnitSource::from_reader(path.display().to_string(), file, format);
        if let SourceKind::Reader(r) = &mut source.kind {
            r.total_bytes = total_bytes;
            r.gz_name = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        }
        Ok(source)
    }

    /// Standard input.
    pub fn stdin(format: InputFormat) -> Self {
        UnitSource::from_reader("<stdin>", std::io::stdin(), format)
    }

    /// Any reader (plain or gzip bytes); `name` is used in messages.
    pub fn from_reader(
        name: impl Into<String>,
        reader: impl Read + Send + 'static,
        format: InputFormat,
    ) -> Self {
        UnitSource {
            kind: SourceKind::Reader(ReaderSource {
                name: name.into(),
                reader: Box::new(reader),
                format,
                total_bytes: None,
                bytes_read: Arc::new(AtomicU64::new(0)),
                gz_name: false,
                max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            }),
        }
    }

    /// Sets the longest line accepted, in bytes, not counting the line end (default 64 KiB;
    /// at least 1). A longer line is a malformed line
    /// ([`LineProblem::TooLong`]): it fails the run, or with `skip_bad_lines` it is counted and
    /// skipped, and the lines after it are read as usual. Nothing of it is kept in memory,
    /// so an input without line ends (`/dev/zero`) fails in bounded memory. For CSV input,
    /// a record whose quoted fields span lines is capped at this many bytes plus 128 KiB.
    /// No effect on a synthetic population.
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        if let SourceKind::Reader(r) = &mut self.kind {
            r.max_line_bytes = max.max(1);
        }
        self
    }

    /// The input's name: a path, `<stdin>`, or `synthetic(N)`.
    pub fn name(&self) -> String {
        match &self.kind {
            SourceKind::Synthetic(s) => format!("synthetic({})", s.count),
            SourceKind::Reader(r) => r.name.clone(),
        }
    }

    /// What progress can be measured against.
    pub fn progress_total(&self) -> ProgressTotal {
        match &self.kind {
            SourceKind::Synthetic(s) => ProgressTotal::Units(s.count),
            SourceKind::Reader(r) => r
                .total_bytes
                .map_or(ProgressTotal::Unknown, ProgressTotal::Bytes),
        }
    }
}

/// A malformed line that was skipped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub problem: String,
}

/// Malformed lines skipped (`skip_bad_lines`): all counted, the first few kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SkippedLines {
    /// How many lines were skipped.
    pub count: u64,
    /// The first [`BAD_LINE_EXAMPLES`] of them.
    pub examples: Vec<BadLine>,
}

/// Units parsed from text: all strings of the chunk in one buffer, spans into it.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) text: String,
    /// Per unit: the id's span, then the span of its entries in `attrs`.
    pub(crate) units: Vec<UnitSpan>,
    /// `(column key index, value start, value end)`.
    pub(crate) attrs: Vec<(usize, usize, usize)>,
    /// Attribute names by key index.
    pub(crate) keys: Arc<Vec<String>>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct UnitSpan {
    pub(crate) id: (usize, usize),
    pub(crate) attrs: (usize, usize),
}

impl Chunk {
    fn clear(&mut self) {
        self.text.clear();
        self.units.clear();
        self.attrs.clear();
    }

    fn full(&self, chunk_units: usize) -> bool {
        self.units.len() >= chunk_units || self.text.len() >= CHUNK_TEXT_LIMIT
    }
}

/// Counts bytes read from the raw (possibly compressed) input, for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads a text source chunk by chunk: each call fills `chunk` with up to `chunk_units` units.
pub(crate) struct ChunkReader {
    name: String,
    parser: Parser,
    skip_bad_lines: bool,
    chunk_units: usize,
    max_line_bytes: usize,
    /// Malformed lines skipped so far.
    pub(crate) skipped: SkippedLines,
    keys: Arc<Vec<String>>,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("name", &self.name)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// The decoded input, its lines capped at `max_line_bytes`.
type Capped = LineCap<BufReader<Box<dyn Read + Send>>>;

enum Parser {
    Plain {
        reader: Capped,
        line: Vec<u8>,
        line_no: u64,
    },
    Csv {
        reader: csv::Reader<Capped>,
        record: csv::ByteRecord,
        id_col: usize,
        columns: usize,
        header: Vec<String>,
    },
}

impl ChunkReader {
    /// Opens the source: detects gzip, reads the CSV header.
    pub(crate) fn new(
        src: ReaderSource,
        skip_bad_lines: bool,
        chunk_units: usize,
    ) -> Result<Self, SimulateError> {
        let ReaderSource {
            name,
            reader,
            format,
            bytes_read,
            gz_name,
            max_line_bytes,
            ..
        } = src;
        let mut buffered = BufReader::with_capacity(
            1 << 16,
            Counting {
                inner: reader,
                count: bytes_read,
            },
        );
        let read_err = |source| SimulateError::Read {
            input: name.clone(),
            line: 0,
            source,
        };
        let head = buffered.fill_buf().map_err(read_err)?;
        let is_gzip = head.starts_with(&[0x1f, 0x8b]);
        if gz_name && !is_gzip && !head.is_empty() {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the name ends in .gz but the data is not gzip (no 1f 8b magic bytes)",
            )));
        }
        let decoded: Box<dyn Read + Send> = if is_gzip {
            Box::new(flate2::read::MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        // Lines are capped after decompression: a gzip bomb of one endless line fails too.
        let capped = LineCap::new(
            BufReader::with_capacity(1 << 16, decoded),
            max_line_bytes,
            skip_bad_lines,
        );
        let (parser, keys) = match format {
            InputFormat::Plain => (
                Parser::Plain {
                    reader: capped,
                    line: Vec::with_capacity(256),
                    line_no: 0,
                },
                Vec::new(),
            ),
            InputFormat::Csv { id_column } => {
                // Quoted fields may span lines: bound a whole record too (its bytes read
                // between two records, plus what the parser may have read ahead).
                let record_max =
                    (max_line_bytes as u64).saturating_add(2 * CSV_BUFFER_BYTES as u64);
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .buffer_capacity(CSV_BUFFER_BYTES)
                    .from_reader(capped.with_record_cap(record_max));
                let header = match reader.byte_headers() {
                    Ok(h) => h.clone(),
                    Err(e) => return Err(csv_error(&name, 1, e)),
                };
                if reader.get_ref().has_overlong() && overlong_lines(&header) > 0 {
                    let line = reader.get_mut().pop_overlong().unwrap_or(1);
                    return Err(SimulateError::BadHeader {
                        input: name.clone(),
                        problem: format!(
                            "line {line} is longer than {max_line_bytes} bytes \
                             (raise the limit with --max-line-bytes)"
                        ),
                    });
                }
                reader
                    .get_mut()
                    .mark_record(record_end_line(&header, 1) + 1);
                let mut names = Vec::with_capacity(header.len());
                for field in header.iter() {
                    let s = std::str::from_utf8(field).map_err(|_| SimulateError::BadHeader {
                        input: name.clone(),
                        problem: "the header is not valid UTF-8".to_string(),
                    })?;
                    names.push(s.to_string());
                }
                if names.is_empty() || (names.len() == 1 && names[0].is_empty()) {
                    return Err(SimulateError::BadHeader {
                        input: name.clone(),
                        problem: "the input is empty (no header line)".to_string(),
                    });
                }
                let id_col = names.iter().position(|c| *c == id_column).ok_or_else(|| {
                    SimulateError::MissingIdColumn {
                        input: name.clone(),
                        column: id_column.clone(),
                        columns: names.join(", "),
                    }
                })?;
                let keys: Vec<String> = names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != id_col)
                    .map(|(_, n)| n.clone())
                    .collect();
                let columns = names.len();
                (
                    Parser::Csv {
                        reader,
                        record: csv::ByteRecord::new(),
                        id_col,
                        columns,
                        header: names,
                    },
                    keys,
                )
            }
        };
        Ok(ChunkReader {
            name,
            parser,
            skip_bad_lines,
            chunk_units: chunk_units.max(1),
            max_line_bytes,
            skipped: SkippedLines::default(),
            keys: Arc::new(keys),
        })
    }

    /// Handles a malformed line: counts it, or fails.
    fn bad(&mut self, line: u64, problem: LineProblem) -> Result<(), SimulateError> {
        if !self.skip_bad_lines {
            return Err(SimulateError::BadLine {
                input: self.name.clone(),
                line,
                problem,
            });
        }
        self.skipped.count += 1;
        if self.skipped.examples.len() < BAD_LINE_EXAMPLES {
            self.skipped.examples.push(BadLine {
                line,
                problem: problem.to_string(),
            });
        }
        Ok(())
    }

    /// Refills `chunk`; returns `false` at the end of the input (the chunk is then empty).
    pub(crate) fn fill(&mut self, chunk: &mut Chunk) -> Result<bool, SimulateError> {
        chunk.clear();
        chunk.keys = Arc::clone(&self.keys);
        while !chunk.full(self.chunk_units) {
            match self.next_into(chunk)? {
                Next::Unit | Next::Skipped => {}
                Next::End => break,
            }
        }
        Ok(!chunk.units.is_empty())
    }

    fn next_into(&mut self, chunk: &mut Chunk) -> Result<Next, SimulateError> {
        match &mut self.parser {
            Parser::Plain {
                reader,
                line,
                line_no,
            } => {
                line.clear();
                let n = reader
                    .read_until(b'\n', line)
                    .map_err(|source| read_error(&self.name, *line_no, source))?;
                if n == 0 {
                    return Ok(Next::End);
                }
                *line_no += 1;
                let no = *line_no;
                if reader.has_overlong() && line.strip_suffix(b"\n") == Some(OVERLONG_MARKER) {
                    let no = reader.pop_overlong().unwrap_or(no);
                    let max = self.max_line_bytes;
                    self.bad(no, LineProblem::TooLong { max })?;
                    return Ok(Next::Skipped);
                }
                let mut end = line.len();
                if end > 0 && line[end - 1] == b'\n' {
                    end -= 1;
                }
                if end > 0 && line[end - 1] == b'\r' {
                    end -= 1;
                }
                let problem = match std::str::from_utf8(&line[..end]) {
                    Ok("") => LineProblem::EmptyId,
                    Ok(id) => {
                        let start = chunk.text.len();
                        chunk.text.push_str(id);
                        let a = chunk.attrs.len();
                        chunk.units.push(UnitSpan {
                            id: (start, chunk.text.len()),
                            attrs: (a, a),
                        });
                        return Ok(Next::Unit);
                    }
                    Err(_) => LineProblem::NotUtf8 { column: None },
                };
                self.bad(no, problem)?;
                Ok(Next::Skipped)
            }
            Parser::Csv {
                reader,
                record,
                id_col,
                columns,
                header,
            } => {
                let more = reader
                    .read_byte_record(record)
                    .map_err(|e| csv_error(&self.name, 0, e))?;
                if !more {
                    return Ok(Next::End);
                }
                let no = record.position().map_or(0, |p| p.line());
                reader
                    .get_mut()
                    .mark_record(record_end_line(record, no) + 1);
                // A long line stands as a marker: a record of its own, or inside a quoted
                // field that spans lines (that record is spoiled too).
                let markers = if reader.get_ref().has_overlong() {
                    overlong_lines(record)
                } else {
                    0
                };
                if markers > 0 {
                    let mut first = None;
                    for _ in 0..markers {
                        first = first.or(reader.get_mut().pop_overlong());
                    }
                    let line = first.unwrap_or(no);
                    let max = self.max_line_bytes;
                    self.bad(line, LineProblem::TooLong { max })?;
                    return Ok(Next::Skipped);
                }
                if record.len() != *columns {
                    let problem = LineProblem::FieldCount {
                        found: record.len(),
                        expected: *columns,
                    };
                    self.bad(no, problem)?;
                    return Ok(Next::Skipped);
                }
                let mut problem = None;
                for (i, field) in record.iter().enumerate() {
                    if std::str::from_utf8(field).is_err() {
                        problem = Some(LineProblem::NotUtf8 {
                            column: Some(header[i].clone()),
                        });
                        break;
                    }
                    if i == *id_col && field.is_empty() {
                        problem = Some(LineProblem::EmptyId);
                        break;
                    }
                }
                if let Some(problem) = problem {
                    self.bad(no, problem)?;
                    return Ok(Next::Skipped);
                }
                let a0 = chunk.attrs.len();
                let mut id = (0, 0);
                let mut key = 0;
                for (i, field) in record.iter().enumerate() {
                    let start = chunk.text.len();
                    // checked just above
                    chunk
                        .text
                        .push_str(std::str::from_utf8(field).unwrap_or_default());
                    let span = (start, chunk.text.len());
                    if i == *id_col {
                        id = span;
                    } else {
                        chunk.attrs.push((key, span.0, span.1));
                        key += 1;
                    }
                }
                chunk.units.push(UnitSpan {
                    id,
                    attrs: (a0, chunk.attrs.len()),
                });
                Ok(Next::Unit)
            }
        }
    }
}

enum Next {
    Unit,
    Skipped,
    End,
}

/// How many overlong lines (markers) a CSV record holds.
fn overlong_lines(record: &csv::ByteRecord) -> usize {
    record
        .iter()
        .map(|f| {
            f.windows(OVERLONG_MARKER.len())
                .filter(|w| *w == OVERLONG_MARKER)
                .count()
        })
        .sum()
}

/// The last line of a CSV record starting at `start`: its fields' line breaks counted.
fn record_end_line(record: &csv::ByteRecord, start: u64) -> u64 {
    let breaks = record
        .iter()
        .map(|f| f.iter().filter(|&&b| b == b'\n').count() as u64)
        .sum::<u64>();
    start + breaks
}

/// A read error; a line or record over its cap becomes its own error naming the line.
fn read_error(name: &str, line: u64, source: std::io::Error) -> SimulateError {
    match InputLimit::of(&source) {
        Some(InputLimit::Line { line, max }) => SimulateError::BadLine {
            input: name.to_string(),
            line,
            problem: LineProblem::TooLong { max },
        },
        Some(InputLimit::Record { line, max }) => SimulateError::RecordTooLong {
            input: name.to_string(),
            line,
            max,
        },
        None => SimulateError::Read {
            input: name.to_string(),
            line,
            source,
        },
    }
}

fn csv_error(name: &str, line: u64, e: csv::Error) -> SimulateError {
    let line = e.position().map_or(line, |p| p.line());
    let source = match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other:?}")),
    };
    read_error(name, line, source)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reader(
        bytes: &'static [u8],
        format: InputFormat,
        skip: bool,
    ) -> Result<ChunkReader, SimulateError> {
        let UnitSource {
            kind: SourceKind::Reader(r),
        } = UnitSource::from_reader("mem", bytes, format)
        else {
            unreachable!()
        };
        ChunkReader::new(r, skip, 2)
    }

    fn ids(r: &mut ChunkReader) -> Result<Vec<String>, SimulateError> {
        let mut out = Vec::new();
        let mut chunk = Chunk::default();
        while r.fill(&mut chunk)? {
            assert!(chunk.units.len() <= 2);
            for u in &chunk.units {
                let mut s = chunk.text[u.id.0..u.id.1].to_string();
                for &(k, a, b) in &chunk.attrs[u.attrs.0..u.attrs.1] {
                    s += &format!(" {}={}", chunk.keys[k], &chunk.text[a..b]);
                }
                out.push(s);
            }
        }
        Ok(out)
    }

    #[test]
    fn plain_lines_strip_only_the_line_end() {
        let mut r = reader(b"a\r\n b \nc", InputFormat::Plain, false).unwrap();
        assert_eq!(ids(&mut r).unwrap(), ["a", " b ", "c"]);
    }

    #[test]
    fn bad_plain_lines_fail_with_their_number_or_are_counted() {
        let mut r = reader(b"a\n\xff\n\nb\n", InputFormat::Plain, false).unwrap();
        let e = ids(&mut r).unwrap_err();
        assert!(matches!(e, SimulateError::BadLine { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("mem line 2: not valid UTF-8"), "{e}");
        let mut r = reader(b"a\n\xff\n\nb\n", InputFormat::Plain, true).unwrap();
        assert_eq!(ids(&mut r).unwrap(), ["a", "b"]);
        assert_eq!(r.skipped.count, 2);
        assert_eq!(
            r.skipped.examples[1],
            BadLine {
                line: 3,
                problem: "the unit id is empty".into()
            }
        );
    }

    #[test]
    fn csv_columns_become_attributes_and_bad_records_are_numbered() {
        let csv = InputFormat::Csv {
            id_column: "user".into(),
        };
        let mut r = reader(
            b"country,user,plan\nUS,u1,pro\n\"C,A\",u2,\"\"\n",
            csv.clone(),
            false,
        )
        .unwrap();
        assert_eq!(
            ids(&mut r).unwrap(),
            ["u1 country=US plan=pro", "u2 country=C,A plan="]
        );

        let mut r = reader(
            b"country,user\nUS,u1\nCA\nMX,\xff\nFR,u4\n",
            csv.clone(),
            true,
        )
        .unwrap();
        assert_eq!(ids(&mut r).unwrap(), ["u1 country=US", "u4 country=FR"]);
        assert_eq!(
            r.skipped
                .examples
                .iter()
                .map(|b| b.line)
                .collect::<Vec<_>>(),
            [3, 4]
        );
        assert!(r.skipped.examples[0]
            .problem
            .contains("has 1 fields but the header has 2"));
        assert!(r.skipped.examples[1]
            .problem
            .contains("\"user\" is not valid UTF-8"));

        let mut r = reader(b"country,user\nUS,u1\nCA\n", csv.clone(), false).unwrap();
        assert!(matches!(
            ids(&mut r).unwrap_err(),
            SimulateError::BadLine { line: 3, .. }
        ));

        let e = reader(b"country,id\nUS,u1\n", csv.clone(), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no column \"user\" (columns: country, id)"),
            "{e}"
        );
        assert!(matches!(
            reader(b"", csv, false).unwrap_err(),
            SimulateError::BadHeader { .. }
        ));
    }

    fn capped(
        bytes: &'static [u8],
        format: InputFormat,
        skip: bool,
        max: usize,
    ) -> Result<ChunkReader, SimulateError> {
        let UnitSource {
            kind: SourceKind::Reader(r),
        } = UnitSource::from_reader("mem", bytes, format).with_max_line_bytes(max)
        else {
            unreachable!()
        };
        ChunkReader::new(r, skip, 2)
    }

    #[test]
    fn a_line_over_the_cap_fails_naming_it_or_is_skipped_alone() {
        // Before: the line was read whole, whatever its length.
        let input = b"a\nabcdefghij\nb\nc\n";
        let e = ids(&mut capped(input, InputFormat::Plain, false, 5).unwrap()).unwrap_err();
        assert!(
            matches!(
                e,
                SimulateError::BadLine {
                    line: 2,
                    problem: LineProblem::TooLong { max: 5 },
                    ..
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("mem line 2: the line is longer than 5 bytes"),
            "{msg}"
        );
        assert!(msg.contains("--max-line-bytes"), "{msg}");

        let mut r = capped(input, InputFormat::Plain, true, 5).unwrap();
        assert_eq!(ids(&mut r).unwrap(), ["a", "b", "c"]);
        assert_eq!(r.skipped.count, 1);
        assert_eq!(r.skipped.examples[0].line, 2);

        let mut r = capped(input, InputFormat::Plain, false, 10).unwrap();
        assert_eq!(ids(&mut r).unwrap(), ["a", "abcdefghij", "b", "c"]);
    }

    #[test]
    fn csv_lines_over_the_cap_are_numbered_and_do_not_swallow_the_next_rows() {
        let csv = InputFormat::Csv {
            id_column: "user".into(),
        };
        let input = b"country,user\nUS,u1\nUS,\"u-very-long-id\"\nMX,\"x,y\"\nFR,\"multi\nthis-line-is-too-long\nend\"\nCA,u5";
        let mut r = capped(input, csv.clone(), true, 12).unwrap();
        assert_eq!(
            ids(&mut r).unwrap(),
            ["u1 country=US", "x,y country=MX", "u5 country=CA"]
        );
        // Line 3 alone; the record of lines 5 to 7 holds the long line 6 and goes with it.
        let lines: Vec<u64> = r.skipped.examples.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 6], "{:?}", r.skipped.examples);

        let e = ids(&mut capped(input, csv.clone(), false, 12).unwrap()).unwrap_err();
        assert!(matches!(e, SimulateError::BadLine { line: 3, .. }), "{e}");
        let e = capped(input, csv.clone(), true, 5).err().unwrap();
        assert!(matches!(e, SimulateError::BadHeader { .. }), "{e}");

        // An unclosed quote: the record is bounded too.
        let unclosed: &'static [u8] = Box::leak(
            [
                &b"country,user\nUS,\"u1\n"[..],
                &b"short line\n".repeat(40_000),
            ]
            .concat()
            .into_boxed_slice(),
        );
        let e = ids(&mut capped(unclosed, csv, true, 100).unwrap()).unwrap_err();
        assert!(
            matches!(e, SimulateError::RecordTooLong { line: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("unclosed quote"), "{e}");
    }

    #[test]
    fn gzip_is_detected_by_its_magic_bytes() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"x\ny\n").unwrap();
        let bytes: &'static [u8] = Box::leak(gz.finish().unwrap().into_boxed_slice());
        let mut r = reader(bytes, InputFormat::Plain, false).unwrap();
        assert_eq!(ids(&mut r).unwrap(), ["x", "y"]);
    }
}
