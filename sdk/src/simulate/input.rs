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

/// The layout of a units file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFormat {
    /// One unit id per line (LF or CRLF); no attributes.
    Plain,
    /// CSV with a header line; `id_column` holds the unit id, every other column becomes an
    /// attribute of the same name.
    ///
    /// One record per line: a quoted field (`"..."`) may hold commas and doubled quotes
    /// (`""`), but must close on its line. A quote that does not is a malformed line
    /// ([`LineProblem::UnclosedQuote`](super::LineProblem::UnclosedQuote)), which spoils that
    /// line only: the next line is the next record. A `"` inside an unquoted field is kept as
    /// it is; a UTF-8 byte order mark before the header is dropped; an empty data line is
    /// malformed.
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
    /// so an input without line ends (`/dev/zero`) fails in bounded memory. A CSV record is
    /// one line, so it is capped the same way. No effect on a synthetic population.
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
///
/// Both formats are read one record per line: a line is a unit or a malformed line, never
/// part of another record, so a stray quote spoils its own line only and every data line is
/// accounted for (`rows_read = units + skipped`).
pub(crate) struct ChunkReader {
    name: String,
    reader: Capped,
    format: LineFormat,
    /// The current line's bytes.
    line: Vec<u8>,
    /// Number of the last line read completely (1-based; the CSV header is line 1).
    line_no: u64,
    skip_bad_lines: bool,
    chunk_units: usize,
    max_line_bytes: usize,
    /// Unquoted CSV fields of the current line, and their spans in it.
    fields: Vec<u8>,
    spans: Vec<(usize, usize)>,
    /// An error met after some units of the chunk being filled: those are handed on first.
    pending: Option<SimulateError>,
    /// Malformed lines skipped so far.
    pub(crate) skipped: SkippedLines,
    /// Data rows read so far: lines after the CSV header, each a unit or skipped.
    pub(crate) rows_read: u64,
    keys: Arc<Vec<String>>,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("name", &self.name)
            .field("line_no", &self.line_no)
            .field("rows_read", &self.rows_read)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// The decoded input, its lines capped at `max_line_bytes`.
type Capped = LineCap<BufReader<Box<dyn Read + Send>>>;

/// How a data line becomes a unit.
enum LineFormat {
    /// The line is the id.
    Plain,
    /// A CSV record on one line.
    Csv {
        id_col: usize,
        /// The header's column names.
        header: Vec<String>,
    },
    /// A CSV input without even a header line: no rows.
    EmptyCsv,
}

/// The UTF-8 byte order mark some tools (spreadsheets) write at the start of a CSV file.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

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
        // One record is one line, so a record is capped like a line; the record cap is a
        // second guard that no record ever takes more than its line (the marker standing in
        // for an overlong line may be longer than a tiny cap).
        let record_max = max_line_bytes.max(OVERLONG_MARKER.len()) as u64 + 2;
        let reader = LineCap::new(
            BufReader::with_capacity(1 << 16, decoded),
            max_line_bytes,
            skip_bad_lines,
        )
        .with_record_cap(record_max);
        let mut this = ChunkReader {
            name,
            reader,
            format: LineFormat::Plain,
            line: Vec::with_capacity(256),
            line_no: 0,
            skip_bad_lines,
            chunk_units: chunk_units.max(1),
            max_line_bytes,
            fields: Vec::with_capacity(256),
            spans: Vec::new(),
            pending: None,
            skipped: SkippedLines::default(),
            rows_read: 0,
            keys: Arc::new(Vec::new()),
        };
        if let InputFormat::Csv { id_column } = format {
            this.read_header(&id_column)?;
        }
        Ok(this)
    }

    /// Reads and checks the CSV header (line 1): the id column and the attribute names.
    fn read_header(&mut self, id_column: &str) -> Result<(), SimulateError> {
        let bad_header = |name: &str, problem: String| SimulateError::BadHeader {
            input: name.to_string(),
            problem,
        };
        let too_long = |max: usize| {
            format!("line 1 is longer than {max} bytes (raise the limit with --max-line-bytes)")
        };
        let got = match self.read_line() {
            Ok(got) => got,
            Err(SimulateError::BadLine {
                problem: LineProblem::TooLong { max },
                ..
            }) => return Err(bad_header(&self.name, too_long(max))),
            Err(e) => return Err(e),
        };
        if !got {
            self.format = LineFormat::EmptyCsv;
            return Ok(());
        }
        if self.is_overlong_marker() {
            self.reader.pop_overlong();
            return Err(bad_header(&self.name, too_long(self.max_line_bytes)));
        }
        let line = std::mem::take(&mut self.line);
        let mut text = strip_line_end(&line);
        if let Some(rest) = text.strip_prefix(UTF8_BOM) {
            text = rest;
        }
        let split = split_csv_line(text, &mut self.fields, &mut self.spans);
        self.line = line;
        if let Err(problem) = split {
            let problem = problem.with_columns(&[]);
            return Err(bad_header(&self.name, problem.to_string()));
        }
        let mut names = Vec::with_capacity(self.spans.len());
        for &(a, b) in &self.spans {
            let s = std::str::from_utf8(&self.fields[a..b])
                .map_err(|_| bad_header(&self.name, "the header is not valid UTF-8".into()))?;
            names.push(s.to_string());
        }
        if names.len() == 1 && names[0].is_empty() {
            return Err(bad_header(
                &self.name,
                "the header line is empty; the first line must name the columns".into(),
            ));
        }
        let id_col = names.iter().position(|c| c == id_column).ok_or_else(|| {
            SimulateError::MissingIdColumn {
                input: self.name.clone(),
                column: id_column.to_string(),
                columns: names.join(", "),
            }
        })?;
        self.keys = Arc::new(
            names
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != id_col)
                .map(|(_, n)| n.clone())
                .collect(),
        );
        self.format = LineFormat::Csv {
            id_col,
            header: names,
        };
        Ok(())
    }

    /// The attribute names (CSV columns other than the id), by key index.
    pub(crate) fn keys(&self) -> &Arc<Vec<String>> {
        &self.keys
    }

    /// Reads the next line into `self.line`; `false` at the end of the input.
    fn read_line(&mut self) -> Result<bool, SimulateError> {
        self.line.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|source| read_error(&self.name, self.line_no, source))?;
        if n == 0 {
            return Ok(false);
        }
        self.line_no += 1;
        self.reader.mark_record(self.line_no + 1);
        Ok(true)
    }

    /// Whether the current line is the marker standing in for an overlong line.
    fn is_overlong_marker(&self) -> bool {
        self.reader.has_overlong() && self.line.strip_suffix(b"\n") == Some(OVERLONG_MARKER)
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
    /// An error after some units of the chunk is returned by the next call, so the units
    /// before a bad line are handed on first.
    pub(crate) fn fill(&mut self, chunk: &mut Chunk) -> Result<bool, SimulateError> {
        chunk.clear();
        chunk.keys = Arc::clone(&self.keys);
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        while !chunk.full(self.chunk_units) {
            match self.next_into(chunk) {
                Ok(Next::Unit | Next::Skipped) => {}
                Ok(Next::End) => break,
                Err(e) if chunk.units.is_empty() => return Err(e),
                Err(e) => {
                    self.pending = Some(e);
                    break;
                }
            }
        }
        Ok(!chunk.units.is_empty())
    }

    fn next_into(&mut self, chunk: &mut Chunk) -> Result<Next, SimulateError> {
        if matches!(self.format, LineFormat::EmptyCsv) || !self.read_line()? {
            return Ok(Next::End);
        }
        self.rows_read += 1;
        let no = self.line_no;
        if self.is_overlong_marker() {
            let no = self.reader.pop_overlong().unwrap_or(no);
            let max = self.max_line_bytes;
            self.bad(no, LineProblem::TooLong { max })?;
            return Ok(Next::Skipped);
        }
        let result = match &self.format {
            LineFormat::Csv { id_col, header } => parse_csv_line(
                strip_line_end(&self.line),
                *id_col,
                header,
                &mut self.fields,
                &mut self.spans,
                chunk,
            ),
            _ => parse_plain_line(strip_line_end(&self.line), chunk),
        };
        match result {
            Ok(()) => Ok(Next::Unit),
            Err(problem) => {
                self.bad(no, problem)?;
                Ok(Next::Skipped)
            }
        }
    }
}

enum Next {
    Unit,
    Skipped,
    End,
}

/// The line without its `\n` or `\r\n`.
fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A plain line: the whole line is the unit id.
fn parse_plain_line(text: &[u8], chunk: &mut Chunk) -> Result<(), LineProblem> {
    match std::str::from_utf8(text) {
        Ok("") => Err(LineProblem::EmptyId),
        Ok(id) => {
            let start = chunk.text.len();
            chunk.text.push_str(id);
            let a = chunk.attrs.len();
            chunk.units.push(UnitSpan {
                id: (start, chunk.text.len()),
                attrs: (a, a),
            });
            Ok(())
        }
        Err(_) => Err(LineProblem::NotUtf8 { column: None }),
    }
}

/// A CSV data line: checked whole (field count, UTF-8, id), then added to `chunk`.
fn parse_csv_line(
    text: &[u8],
    id_col: usize,
    header: &[String],
    fields: &mut Vec<u8>,
    spans: &mut Vec<(usize, usize)>,
    chunk: &mut Chunk,
) -> Result<(), LineProblem> {
    if text.is_empty() {
        return Err(LineProblem::EmptyLine);
    }
    split_csv_line(text, fields, spans).map_err(|p| p.with_columns(header))?;
    if spans.len() != header.len() {
        return Err(LineProblem::FieldCount {
            found: spans.len(),
            expected: header.len(),
        });
    }
    for (i, &(a, b)) in spans.iter().enumerate() {
        if std::str::from_utf8(&fields[a..b]).is_err() {
            return Err(LineProblem::NotUtf8 {
                column: Some(header[i].clone()),
            });
        }
        if i == id_col && a == b {
            return Err(LineProblem::EmptyId);
        }
    }
    let a0 = chunk.attrs.len();
    let mut id = (0, 0);
    let mut key = 0;
    for (i, &(a, b)) in spans.iter().enumerate() {
        let start = chunk.text.len();
        // checked just above
        chunk
            .text
            .push_str(std::str::from_utf8(&fields[a..b]).unwrap_or_default());
        let span = (start, chunk.text.len());
        if i == id_col {
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
    Ok(())
}

/// A quoting problem on one CSV line, before the header's column names are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteProblem {
    /// Field `n` (0-based) opens a quote that does not close on the line.
    Unclosed(usize),
    /// Field `n` (0-based) has text after its closing quote.
    TextAfter(usize),
}

impl QuoteProblem {
    /// The line problem, naming the column when `header` has one at that field.
    fn with_columns(self, header: &[String]) -> LineProblem {
        let (QuoteProblem::Unclosed(i) | QuoteProblem::TextAfter(i)) = self;
        let column = header.get(i).cloned();
        match self {
            QuoteProblem::Unclosed(_) => LineProblem::UnclosedQuote {
                field: i + 1,
                column,
            },
            QuoteProblem::TextAfter(_) => LineProblem::TextAfterQuote {
                field: i + 1,
                column,
            },
        }
    }
}

/// Splits one CSV line (without its line end) into fields (RFC 4180 quoting, confined to the
/// line): `out` receives the field values one after the other, `spans` their ranges in it.
///
/// A field that starts with `"` is quoted: it may hold `,` and doubled quotes `""` (one `"`),
/// and must close on this line, followed by `,` or the end of the line. A `"` inside an
/// unquoted field is kept as it is (as spreadsheets and most CSV readers do).
fn split_csv_line(
    line: &[u8],
    out: &mut Vec<u8>,
    spans: &mut Vec<(usize, usize)>,
) -> Result<(), QuoteProblem> {
    out.clear();
    spans.clear();
    let mut i = 0;
    loop {
        let field = spans.len();
        let start = out.len();
        if line.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match line[i..].iter().position(|&b| b == b'"') {
                    None => return Err(QuoteProblem::Unclosed(field)),
                    Some(q) => {
                        out.extend_from_slice(&line[i..i + q]);
                        i += q + 1;
                        if line.get(i) == Some(&b'"') {
                            out.push(b'"');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            spans.push((start, out.len()));
            match line.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                Some(_) => return Err(QuoteProblem::TextAfter(field)),
            }
        } else {
            let end = line[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(line.len(), |p| i + p);
            out.extend_from_slice(&line[i..end]);
            spans.push((start, out.len()));
            if end == line.len() {
                return Ok(());
            }
            i = end + 1;
        }
    }
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
        // An empty input is no rows (the caller reports "no units"), not a header error.
        let mut r = reader(b"", csv, false).unwrap();
        assert!(ids(&mut r).unwrap().is_empty());
        assert_eq!(r.rows_read, 0);
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
        let input = b"country,user\nUS,u1\nUS,\"u-very-long-id\"\nMX,\"x,y\"\nCA,u5";
        let mut r = capped(input, csv.clone(), true, 12).unwrap();
        assert_eq!(
            ids(&mut r).unwrap(),
            ["u1 country=US", "x,y country=MX", "u5 country=CA"]
        );
        let lines: Vec<u64> = r.skipped.examples.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3], "{:?}", r.skipped.examples);
        assert_eq!((r.rows_read, r.skipped.count), (4, 1));

        let e = ids(&mut capped(input, csv.clone(), false, 12).unwrap()).unwrap_err();
        assert!(matches!(e, SimulateError::BadLine { line: 3, .. }), "{e}");
        let e = capped(input, csv.clone(), true, 5).err().unwrap();
        assert!(matches!(e, SimulateError::BadHeader { .. }), "{e}");
        let e = capped(input, csv, false, 5).err().unwrap();
        assert!(
            e.to_string().contains("line 1 is longer than 5 bytes"),
            "{e}"
        );
    }

    #[test]
    fn a_stray_quote_spoils_its_own_line_only() {
        // Before: the quote on line 3 opened a field that ran on over the next lines (up to
        // the next quote, or to the end of a small file), and the rows in it were lost.
        let csv = InputFormat::Csv {
            id_column: "user".into(),
        };
        let input = b"user,country,os\nu1,US,ios 16\nu2,US,\"ios 17\nu3,US,android\nu4,\"U,S\",\"a \"\"b\"\"\"\nu5,US,\"x\"\n";
        let e = ids(&mut reader(input, csv.clone(), false).unwrap()).unwrap_err();
        assert!(
            matches!(
                &e,
                SimulateError::BadLine {
                    line: 3,
                    problem: LineProblem::UnclosedQuote { field: 3, column: Some(c) },
                    ..
                } if c == "os"
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("mem line 3: field 3 (\"os\") opens a quote"),
            "{msg}"
        );
        assert!(msg.contains("--skip-bad-lines"), "{msg}");

        let mut r = reader(input, csv, true).unwrap();
        assert_eq!(
            ids(&mut r).unwrap(),
            [
                "u1 country=US os=ios 16",
                "u3 country=US os=android",
                "u4 country=U,S os=a \"b\"",
                "u5 country=US os=x"
            ]
        );
        assert_eq!((r.rows_read, r.skipped.count), (5, 1));
        assert_eq!(r.skipped.examples[0].line, 3);
    }

    #[test]
    fn csv_quoting_rules_on_one_line() {
        let split = |line: &[u8]| {
            let (mut out, mut spans) = (Vec::new(), Vec::new());
            split_csv_line(line, &mut out, &mut spans).map(|()| {
                spans
                    .iter()
                    .map(|&(a, b)| String::from_utf8(out[a..b].to_vec()).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(split(b"a,,\"\"").unwrap(), ["a", "", ""]);
        assert_eq!(split(b"\"a,b\",\"c\"\"d\"").unwrap(), ["a,b", "c\"d"]);
        assert_eq!(split(b"ab\"c,d").unwrap(), ["ab\"c", "d"]);
        assert_eq!(split(b"a,\"b"), Err(QuoteProblem::Unclosed(1)));
        assert_eq!(split(b"\"a\"\""), Err(QuoteProblem::Unclosed(0)));
        assert_eq!(split(b"\"a\"b,c"), Err(QuoteProblem::TextAfter(0)));

        let csv = InputFormat::Csv {
            id_column: "id".into(),
        };
        // A byte order mark and CRLF line ends; an empty line and text after a quote are bad.
        let mut r = reader(
            b"\xef\xbb\xbfid,plan\r\nu1,pro\r\n\r\nu2,\"a\"b\r\nu3,free\r\n",
            csv,
            true,
        )
        .unwrap();
        assert_eq!(ids(&mut r).unwrap(), ["u1 plan=pro", "u3 plan=free"]);
        let problems: Vec<String> = r
            .skipped
            .examples
            .iter()
            .map(|b| format!("{} {}", b.line, b.problem))
            .collect();
        assert!(
            problems[0].starts_with("3 the line is empty"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("4 field 2 (\"plan\") has text after its closing quote"),
            "{problems:?}"
        );
        assert_eq!(r.rows_read, 4);
    }

    #[test]
    fn a_truncated_gzip_csv_names_the_last_line_read() {
        use std::io::Write;
        // Before: CSV mode said "after line 0" whatever had been read.
        let mut text = String::from("id,country\n");
        for i in 0..200_000 {
            text += &format!("u{i},US\n");
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let cut: &'static [u8] = Box::leak(bytes[..bytes.len() / 2].to_vec().into_boxed_slice());
        for format in [
            InputFormat::Csv {
                id_column: "id".into(),
            },
            InputFormat::Plain,
        ] {
            let mut r = reader(cut, format.clone(), false).unwrap();
            let mut n = 0u64;
            let mut chunk = Chunk::default();
            let e = loop {
                match r.fill(&mut chunk) {
                    Ok(true) => n += chunk.units.len() as u64,
                    Ok(false) => panic!("the truncation went unnoticed"),
                    Err(e) => break e,
                }
            };
            let header = u64::from(format != InputFormat::Plain);
            match &e {
                SimulateError::Read { line, .. } => {
                    assert!(*line > 1000, "{e}");
                    assert_eq!(*line, n + header, "{e}");
                }
                other => panic!("{other}"),
            }
            assert!(
                e.to_string()
                    .contains(&format!("after line {}", n + header)),
                "{e}"
            );
        }
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
