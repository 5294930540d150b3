//! Bounded, never-blocking reads of the files abkit trusts: the configuration, public keys,
//! signatures, plugins and the version ledger.
//!
//! [`read_regular_capped`] (and [`open_regular`], when the caller wants the open file):
//!
//! - opens with `O_NONBLOCK | O_NOCTTY | O_CLOEXEC`, so opening a FIFO returns at once instead
//!   of waiting for a writer, and a terminal never becomes the controlling terminal;
//! - optionally with `O_NOFOLLOW` (plugins, signatures, the ledger): a symlink as the last
//!   path component is refused;
//! - checks the type with `fstat` on the opened descriptor, never with a second path lookup,
//!   so what is checked is what is read: FIFOs, devices (`/dev/zero`), sockets and
//!   directories are refused with an error naming the path and what it is;
//! - reads at most `cap + 1` bytes (`take`), so a file that is (or grows) over the cap is
//!   refused in bounded memory and time, even when its reported size is wrong (`/proc`).
//!
//! Streamed unit inputs (`abkit assign --units`, `simulate`, `diff`) may be pipes; for them
//! `LineCap` (feature `simulate`) bounds the length of a line instead.

use rustix::fs::{FileType, Mode, OFlags};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a bounded read of a regular file failed. Every message names the path, says what was
/// wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FileReadError {
    /// Nothing exists at the path.
    #[error("{path} does not exist; check the path", path = path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The path is a symbolic link and links are refused for this file.
    #[error(
        "{path} is a symbolic link, which is refused for this file; point at the file itself",
        path = path.display()
    )]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// The path is a FIFO, a device, a socket or a directory.
    #[error(
        "{path} is {what}, not a regular file, so it was not read; point at a regular file",
        path = path.display()
    )]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead, with its article: `a FIFO (named pipe)`, `a directory` ...
        what: &'static str,
    },
    /// The file is larger than the cap.
    #[error(
        "{path} is {size} bytes or more, over the limit of {limit} bytes, so it was refused; \
         check that the path names the right file",
        path = path.display()
    )]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size (or how much was read before stopping).
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// Opening, `fstat` or reading failed.
    #[error("cannot read {path}: {source}; check the path and its permissions", path = path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl FileReadError {
    /// The path the error is about.
    #[allow(dead_code)] // for callers that report the path apart from the message
    pub(crate) fn path(&self) -> &Path {
        match self {
            FileReadError::NotFound { path }
            | FileReadError::Symlink { path }
            | FileReadError::NotRegular { path, .. }
            | FileReadError::TooLarge { path, .. }
            | FileReadError::Io { path, .. } => path,
        }
    }

    /// What is wrong, without the path (for messages that name the path already).
    pub(crate) fn detail(&self) -> String {
        match self {
            FileReadError::NotFound { .. } => "it does not exist".to_string(),
            FileReadError::Symlink { .. } => {
                "it is a symbolic link, which is refused for this file; point at the file itself"
                    .to_string()
            }
            FileReadError::NotRegular { what, .. } => {
                format!("it is {what}, not a regular file, so it was not read")
            }
            FileReadError::TooLarge { size, limit, .. } => {
                format!("it is {size} bytes or more, over the limit of {limit} bytes")
            }
            FileReadError::Io { source, .. } => source.to_string(),
        }
    }

    /// The same error as a [`std::io::Error`] whose message is [`detail`](Self::detail) (the
    /// kind is `NotFound` for a missing file), for error types that wrap an `io::Error`.
    pub(crate) fn into_io_error(self) -> std::io::Error {
        let detail = self.detail();
        match self {
            FileReadError::Io { source, .. } => source,
            FileReadError::NotFound { .. } => {
                std::io::Error::new(std::io::ErrorKind::NotFound, detail)
            }
            FileReadError::TooLarge { .. } => {
                std::io::Error::new(std::io::ErrorKind::FileTooLarge, detail)
            }
            _ => std::io::Error::new(std::io::ErrorKind::InvalidInput, detail),
        }
    }
}

/// What a file type is, with its article, for messages.
fn describe(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "a special file",
    }
}

/// Opens `path` read-only, non-blocking, and returns the file only if `fstat` on the opened
/// descriptor says it is a regular file, with its size. With `follow_symlinks == false` a
/// symlink as the last path component is refused (`O_NOFOLLOW`). Never blocks on a FIFO.
///
/// The descriptor keeps `O_NONBLOCK`, which has no effect on a regular file.
pub(crate) fn open_regular(
    path: &Path,
    follow_symlinks: bool,
) -> Result<(File, u64), FileReadError> {
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    if !follow_symlinks {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(errno) => return Err(open_error(path, follow_symlinks, errno)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|errno| FileReadError::Io {
        path: path.to_path_buf(),
        source: errno.into(),
    })?;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    if file_type != FileType::RegularFile {
        return Err(FileReadError::NotRegular {
            path: path.to_path_buf(),
            what: describe(file_type),
        });
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    Ok((File::from(fd), size))
}

/// Turns a failed `open` into a [`FileReadError`].
fn open_error(path: &Path, follow_symlinks: bool, errno: rustix::io::Errno) -> FileReadError {
    let what = || {
        // Only to describe the failure; nothing is read through this lookup.
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| FileType::from_raw_mode(std::os::unix::fs::MetadataExt::mode(&m)))
    };
    match errno {
        rustix::io::Errno::NOENT => FileReadError::NotFound {
            path: path.to_path_buf(),
        },
        // O_NOFOLLOW on a symlink; ELOOP also means a loop of links further up the path.
        rustix::io::Errno::LOOP if !follow_symlinks && what() == Some(FileType::Symlink) => {
            FileReadError::Symlink {
                path: path.to_path_buf(),
            }
        }
        // open(2) on a socket, or a device without a driver.
        rustix::io::Errno::NXIO | rustix::io::Errno::NODEV => match what() {
            Some(t) if t != FileType::RegularFile => FileReadError::NotRegular {
                path: path.to_path_buf(),
                what: describe(t),
            },
            _ => FileReadError::Io {
                path: path.to_path_buf(),
                source: errno.into(),
            },
        },
        _ => FileReadError::Io {
            path: path.to_path_buf(),
            source: errno.into(),
        },
    }
}

/// Reads a regular file of at most `cap` bytes, as described in the module docs: opened
/// non-blocking (and `O_NOFOLLOW` unless `follow_symlinks`), type and size checked with
/// `fstat` on the opened descriptor, then at most `cap + 1` bytes read, so a file that grows
/// meanwhile is refused too. A FIFO, device or directory fails at once, naming the path.
pub(crate) fn read_regular_capped(
    path: &Path,
    cap: u64,
    follow_symlinks: bool,
) -> Result<Vec<u8>, FileReadError> {
    let (file, size) = open_regular(path, follow_symlinks)?;
    let too_large = |size| FileReadError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: cap,
    };
    if size > cap {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FileReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(feature = "simulate")]
pub(crate) use line_cap::{InputLimit, LineCap, DEFAULT_MAX_LINE_BYTES, OVERLONG_MARKER};

#[cfg(feature = "simulate")]
mod line_cap {
    use std::collections::VecDeque;
    use std::io::{BufRead, Read};

    /// Default longest line of a streamed units input: 64 KiB.
    pub(crate) const DEFAULT_MAX_LINE_BYTES: usize = 64 << 10;

    /// What stands in for an overlong line with `skip` (then `\n`). Not UTF-8, so no valid
    /// unit line can be mistaken for it, and without `,` or `"`, so a CSV parser reads it as
    /// a record of one field, or as part of a quoted field it is in.
    pub(crate) const OVERLONG_MARKER: &[u8] = b"\xff\xfe<line over --max-line-bytes>\xff";

    /// Lines are handed on in batches of about this many bytes.
    const BATCH_BYTES: usize = 64 << 10;

    /// A limit of a streamed input was exceeded; carried inside the [`std::io::Error`] that
    /// [`LineCap`] returns (get it back with [`InputLimit::of`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    pub(crate) enum InputLimit {
        /// A line is longer than the cap.
        #[error("line {line} is longer than {max} bytes")]
        Line {
            /// 1-based line number.
            line: u64,
            /// The cap, in bytes (not counting the line end).
            max: usize,
        },
        /// A record that spans lines (a quoted CSV field with line breaks) is longer than the cap.
        #[error("the record starting at line {line} runs on for more than {max} bytes")]
        Record {
            /// Line where the record starts (as told by [`LineCap::mark_record`]).
            line: u64,
            /// The cap, in bytes.
            max: u64,
        },
    }

    impl InputLimit {
        /// The limit carried by an error that [`LineCap`] returned, if it is one.
        pub(crate) fn of(e: &std::io::Error) -> Option<InputLimit> {
            e.get_ref()
                .and_then(|inner| inner.downcast_ref::<InputLimit>())
                .copied()
        }

        fn into_io(self) -> std::io::Error {
            std::io::Error::new(std::io::ErrorKind::InvalidData, self)
        }
    }

    /// Passes on the lines of `inner` whole and only when each is at most `max` bytes long
    /// (not counting `\n` or `\r\n`), in bounded memory whatever the input (a pipe,
    /// `/dev/zero`, a gzip bomb).
    ///
    /// A longer line is either an error (an [`std::io::Error`] carrying
    /// [`InputLimit::Line`], returned when the reader reaches that line; lines before it are
    /// passed on first), or, with `skip`, replaced by an [`OVERLONG_MARKER`] line and its
    /// number remembered, so the parser above counts it as bad
    /// ([`pop_overlong`](Self::pop_overlong)) and reads the next lines as usual. The rest of a
    /// long line is read and dropped, never stored.
    pub(crate) struct LineCap<R> {
        inner: R,
        state: LineState,
    }

    /// Everything of a [`LineCap`] but its input (borrowed apart from it).
    struct LineState {
        /// `[pos, complete)`: whole lines ready; `[complete, len)`: the current line so far.
        buf: Vec<u8>,
        pos: usize,
        complete: usize,
        max: usize,
        skip: bool,
        /// Dropping the rest of an overlong line.
        skipping: bool,
        /// Number of the line being read (1-based).
        line: u64,
        overlong: VecDeque<u64>,
        failed: Option<InputLimit>,
        /// Cap for the bytes passed on between two [`LineCap::mark_record`] calls.
        record_max: Option<u64>,
        record_line: u64,
        since_mark: u64,
    }

    impl<R: BufRead> LineCap<R> {
        /// Caps the lines of `inner` at `max` bytes; `skip` replaces long lines by empty ones
        /// instead of failing.
        pub(crate) fn new(inner: R, max: usize, skip: bool) -> Self {
            LineCap {
                inner,
                state: LineState {
                    buf: Vec::new(),
                    pos: 0,
                    complete: 0,
                    max,
                    skip,
                    skipping: false,
                    line: 1,
                    overlong: VecDeque::new(),
                    failed: None,
                    record_max: None,
                    record_line: 1,
                    since_mark: 0,
                },
            }
        }

        /// Also fails (always, even with `skip`) when more than `max` bytes are passed on
        /// between two [`mark_record`](Self::mark_record) calls: for a CSV parser, whose
        /// quoted fields may span lines, this bounds a record.
        pub(crate) fn with_record_cap(mut self, max: u64) -> Self {
            self.state.record_max = Some(max);
            self
        }

        /// The parser finished a record; the next one starts at `next_line`.
        pub(crate) fn mark_record(&mut self, next_line: u64) {
            self.state.since_mark = 0;
            self.state.record_line = next_line;
        }

        /// With `skip`: the number of the next overlong line passed on as [`OVERLONG_MARKER`]
        /// and not asked about yet. Call it once for each marker the parser meets.
        pub(crate) fn pop_overlong(&mut self) -> Option<u64> {
            self.state.overlong.pop_front()
        }

        /// Whether some overlong line was passed on as a marker and not asked about yet.
        pub(crate) fn has_overlong(&self) -> bool {
            !self.state.overlong.is_empty()
        }

        /// Refills the buffer with at least one whole line; leaves it empty at the end of input.
        fn refill(&mut self) -> std::io::Result<()> {
            let st = &mut self.state;
            st.buf.drain(..st.complete);
            st.pos = 0;
            st.complete = 0;
            while st.complete == 0 {
                if let Some(limit) = st.failed {
                    return Err(limit.into_io());
                }
                if let Some(max) = st.record_max {
                    if st.since_mark > max {
                        let limit = InputLimit::Record {
                            line: st.record_line,
                            max,
                        };
                        st.failed = Some(limit);
                        return Err(limit.into_io());
                    }
                }
                let avail = self.inner.fill_buf()?;
                if avail.is_empty() {
                    if !st.end_of_input() {
                        return Ok(()); // nothing more
                    }
                    continue;
                }
                let used = st.scan(avail);
                self.inner.consume(used);
            }
            Ok(())
        }
    }

    impl LineState {
        /// A line is too long: fail, or drop it (an empty line will stand in for it).
        fn overlong_line(&mut self) {
            let limit = InputLimit::Line {
                line: self.line,
                max: self.max,
            };
            self.buf.truncate(self.complete);
            if self.skip {
                self.overlong.push_back(self.line);
                self.skipping = true;
            } else {
                self.failed = Some(limit);
            }
        }

        /// Ends the current line (its bytes are in `buf[complete..]`).
        fn end_line(&mut self) {
            self.complete = self.buf.len();
            self.line += 1;
        }

        /// Ends a dropped line with the marker line that stands in for it.
        fn end_skipped_line(&mut self) {
            self.skipping = false;
            self.buf.extend_from_slice(OVERLONG_MARKER);
            self.buf.push(b'\n');
            self.end_line();
        }

        /// Length of the current line plus `more`, without a final `\r` (the `\n` is not
        /// stored yet).
        fn current_content(&self, more: &[u8]) -> usize {
            let cur = self.buf.len() - self.complete + more.len();
            let last = more.last().or_else(|| self.buf[self.complete..].last());
            cur - usize::from(last == Some(&b'\r'))
        }

        /// The input ended: the last line may lack its `\n`. Returns whether there is
        /// anything left to hand on (or a failure to report).
        fn end_of_input(&mut self) -> bool {
            if self.skipping {
                self.end_skipped_line();
            } else if self.buf.len() > self.complete {
                if self.current_content(&[]) > self.max {
                    self.overlong_line();
                    if self.skipping {
                        self.end_skipped_line();
                    }
                } else {
                    self.end_line();
                }
            }
            self.complete > 0 || self.failed.is_some()
        }

        /// Takes whole lines from `avail` (about a batch, or up to a failure); returns how
        /// many bytes of it were used.
        fn scan(&mut self, avail: &[u8]) -> usize {
            let mut used = 0;
            while used < avail.len() && self.failed.is_none() {
                let rest = &avail[used..];
                let newline = rest.iter().position(|&b| b == b'\n');
                if self.skipping {
                    match newline {
                        Some(i) => {
                            used += i + 1;
                            self.end_skipped_line();
                        }
                        None => used = avail.len(),
                    }
                    continue;
                }
                match newline {
                    Some(i) => {
                        if self.current_content(&rest[..i]) > self.max {
                            self.overlong_line();
                            if self.skipping {
                                self.end_skipped_line();
                            }
                        } else {
                            self.buf.extend_from_slice(&rest[..=i]);
                            self.end_line();
                        }
                        used += i + 1;
                        if self.buf.len() >= BATCH_BYTES {
                            break;
                        }
                    }
                    None => {
                        // Without its line end the line may still hold a final `\r`.
                        if self.buf.len() - self.complete + rest.len() > self.max + 1 {
                            self.overlong_line();
                        } else {
                            self.buf.extend_from_slice(rest);
                        }
                        used = avail.len();
                    }
                }
            }
            used
        }
    }

    impl<R: BufRead> BufRead for LineCap<R> {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            if self.state.pos == self.state.complete {
                self.refill()?;
            }
            Ok(&self.state.buf[self.state.pos..self.state.complete])
        }

        fn consume(&mut self, amt: usize) {
            let st = &mut self.state;
            let amt = amt.min(st.complete - st.pos);
            st.pos += amt;
            st.since_mark += amt as u64;
        }
    }

    impl<R: BufRead> Read for LineCap<R> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let avail = self.fill_buf()?;
            let n = avail.len().min(out.len());
            out[..n].copy_from_slice(&avail[..n]);
            self.consume(n);
            Ok(n)
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]
        use super::{InputLimit, LineCap, OVERLONG_MARKER};
        use std::io::{BufRead, BufReader, Read};

        /// The lines read, the reader (for its overlong list), and the error that ended it.
        type Lines<'a> = (
            Vec<String>,
            LineCap<BufReader<&'a [u8]>>,
            Option<std::io::Error>,
        );

        fn lines(input: &[u8], max: usize, skip: bool, chunk: usize) -> Lines<'_> {
            let mut r = LineCap::new(BufReader::with_capacity(chunk, input), max, skip);
            let mut out = Vec::new();
            let mut line = Vec::new();
            let err = loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) => break None,
                    Ok(_) => out.push(String::from_utf8_lossy(&line).into_owned()),
                    Err(e) => break Some(e),
                }
            };
            (out, r, err)
        }

        #[test]
        fn short_lines_pass_unchanged_whatever_the_chunking() {
            let input = b"a\r\nbb\n\nccc";
            for chunk in [1, 2, 3, 64] {
                let (out, _, err) = lines(input, 3, false, chunk);
                assert!(err.is_none());
                assert_eq!(out, ["a\r\n", "bb\n", "\n", "ccc"], "chunk {chunk}");
            }
            // Exactly at the cap, with or without \r\n, at the end without \n.
            let (out, _, err) = lines(b"abc\r\nabc\nabc", 3, false, 2);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(out, ["abc\r\n", "abc\n", "abc"]);
        }

        #[test]
        fn a_long_line_fails_naming_it_after_the_lines_before() {
            for chunk in [1, 4, 64] {
                let (out, _, err) = lines(b"ok\nabcd\nnext\n", 3, false, chunk);
                assert_eq!(out, ["ok\n"]);
                let limit = InputLimit::of(&err.unwrap()).unwrap();
                assert_eq!(limit, InputLimit::Line { line: 2, max: 3 });
            }
            let (out, _, err) = lines(b"ok\nabcd", 3, false, 2);
            assert_eq!(out, ["ok\n"]);
            assert!(InputLimit::of(&err.unwrap()).is_some());
        }

        #[test]
        fn with_skip_a_long_line_becomes_empty_and_the_next_lines_survive() {
            for chunk in [1, 3, 64] {
                let (out, mut r, err) = lines(b"ok\nabcdefgh\r\nnext\nlong-at-end", 4, true, chunk);
                assert!(err.is_none());
                let marker = String::from_utf8_lossy(OVERLONG_MARKER) + "\n";
                assert_eq!(out, ["ok\n", &marker, "next\n", &marker], "chunk {chunk}");
                assert_eq!(r.pop_overlong(), Some(2));
                assert_eq!(r.pop_overlong(), Some(4));
                assert_eq!(r.pop_overlong(), None);
            }
        }

        #[test]
        fn an_endless_line_fails_in_bounded_memory() {
            // /dev/zero: no line end, ever.
            let zero = std::io::repeat(0).take(u64::MAX);
            let mut r = LineCap::new(BufReader::new(zero), 1000, false);
            let e = r.fill_buf().unwrap_err();
            assert_eq!(
                InputLimit::of(&e),
                Some(InputLimit::Line { line: 1, max: 1000 })
            );
            assert!(r.state.buf.capacity() < 4 << 20);
        }

        #[test]
        fn a_record_cap_bounds_the_bytes_between_marks() {
            let input = b"\"a\nb\nc\nd\ne\nf\"\n";
            let mut r =
                LineCap::new(BufReader::with_capacity(2, &input[..]), 10, false).with_record_cap(6);
            r.mark_record(1);
            let mut out = Vec::new();
            let e = r.read_to_end(&mut out).unwrap_err();
            assert_eq!(
                InputLimit::of(&e),
                Some(InputLimit::Record { line: 1, max: 6 })
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::{Duration, Instant};

    /// Runs `f` on a thread and fails the test if it takes more than 5 s, so a blocking
    /// open fails instead of hanging the suite (the stuck thread ends with the process).
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("blocked: the read did not return within 5 s")
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mkfifo failed");
    }

    #[test]
    fn a_normal_file_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_regular_capped(&f, 5, true).unwrap(), b"hello");
        assert_eq!(read_regular_capped(&f, 5, false).unwrap(), b"hello");
        let (_file, size) = open_regular(&f, false).unwrap();
        assert_eq!(size, 5);
    }

    #[test]
    fn a_fifo_is_refused_at_once_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("key.pub");
        mkfifo(&fifo);
        // Before the fix, opening the FIFO blocked here forever (no writer).
        let path = fifo.clone();
        let e = within_5s(move || read_regular_capped(&path, 4096, true)).unwrap_err();
        assert!(
            matches!(e, FileReadError::NotRegular { what, .. } if what.contains("FIFO")),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains(&fifo.display().to_string()), "{msg}");
        assert!(msg.contains("not a regular file"), "{msg}");
        assert!(matches!(
            read_regular_capped(&fifo, 4096, false),
            Err(FileReadError::NotRegular { .. })
        ));
    }

    #[test]
    fn dev_zero_is_refused_as_a_device_without_reading_it() {
        let started = Instant::now();
        let e =
            within_5s(|| read_regular_capped(Path::new("/dev/zero"), 16 << 20, true)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            matches!(
                e,
                FileReadError::NotRegular {
                    what: "a character device",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("/dev/zero is a character device"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_regular_capped(dir.path(), 4096, true).unwrap_err();
        assert!(
            matches!(
                e,
                FileReadError::NotRegular {
                    what: "a directory",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn a_symlink_is_refused_with_nofollow_and_followed_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("lib.so");
        std::fs::write(&target, b"elf").unwrap();
        let link = dir.path().join("link.so");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = read_regular_capped(&link, 4096, false).unwrap_err();
        assert!(matches!(e, FileReadError::Symlink { .. }), "{e}");
        assert!(e.to_string().contains("link.so is a symbolic link"), "{e}");
        assert_eq!(read_regular_capped(&link, 4096, true).unwrap(), b"elf");
        // A link to a FIFO is still refused when followed: the type is checked on the fd.
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let to_fifo = dir.path().join("to-fifo");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        assert!(matches!(
            within_5s(move || read_regular_capped(&to_fifo, 4096, true)),
            Err(FileReadError::NotRegular { .. })
        ));
    }

    #[test]
    fn an_over_cap_file_is_refused_and_a_missing_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big");
        std::fs::write(&f, vec![b'x'; 100]).unwrap();
        let e = read_regular_capped(&f, 99, true).unwrap_err();
        assert!(
            matches!(
                e,
                FileReadError::TooLarge {
                    size: 100,
                    limit: 99,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("over the limit of 99 bytes"), "{e}");
        // /proc files report size 0: the read itself is capped.
        let e = read_regular_capped(Path::new("/proc/self/maps"), 8, true).unwrap_err();
        assert!(matches!(e, FileReadError::TooLarge { size: 9, .. }), "{e}");
        let missing = dir.path().join("missing");
        let e = read_regular_capped(&missing, 8, false).unwrap_err();
        assert!(matches!(e, FileReadError::NotFound { .. }), "{e}");
        assert_eq!(e.path(), missing);
        assert_eq!(e.into_io_error().kind(), std::io::ErrorKind::NotFound);
    }
}
