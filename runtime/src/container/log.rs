//! Container log files in the CRI format, the one the kubelet reads for
//! `kubectl logs`:
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F The content of the log entry 1
//! 2016-10-06T00:17:09.669794203Z stderr P First part of a long line
//! 2016-10-06T00:17:09.669794203Z stderr F , and its end
//! ```
//!
//! One supervisor process writes the logs of all containers: a [`LogWriter`]
//! per container turns raw chunks read from the stdout/stderr pipes into
//! records (lines longer than [`MAX_LINE`] are split into `P`artial records),
//! rotates the file by size, and keeps memory bounded. [`read_tail`] joins the
//! records back into whole lines.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest line content in one record; longer lines become `P` records of this
/// size (containerd's default `max_container_log_line_size`).
pub const MAX_LINE: usize = 16 * 1024;

/// Which output of the container a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The word used in log files: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Formats `t` the way Go's `time.RFC3339Nano` does in UTC
/// (`2006-01-02T15:04:05.999999999Z`: trailing zeros of the fraction trimmed,
/// no fraction at all on a whole second).
pub fn format_timestamp(t: jiff::Timestamp) -> String {
    // jiff's default precision prints the fewest digits that keep the value,
    // which is exactly Go's `.999999999`.
    t.to_string()
}

/// Writes one container's log file, rotating it by size.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    max_size: u64,
    max_files: u32,
    /// Per stream, the start of a line whose end has not arrived yet
    /// (never more than [`MAX_LINE`] bytes).
    pending: [Vec<u8>; 2],
    /// Records formatted but not yet written.
    out: Vec<u8>,
}

impl LogWriter {
    /// Opens (appending) or creates the log at `path`, creating its parent
    /// directories. The file is rotated before it would grow past `max_size`
    /// bytes (0: never), keeping `max_files` files in all, the live one
    /// included (at least 1).
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<LogWriter> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            pending: [Vec::new(), Vec::new()],
            out: Vec::new(),
        })
    }

    /// The path of the live log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs a chunk read from `stream`'s pipe: it may hold many lines or part
    /// of one. Complete lines become `F` records; the rest waits for more data,
    /// and is written as a `P` record once it is longer than [`MAX_LINE`].
    pub fn write(&mut self, stream: Stream, data: &[u8], now: jiff::Timestamp) -> io::Result<()> {
        let time = format_timestamp(now);
        let i = stream.index();
        let mut rest = data;
        while !rest.is_empty() {
            let pending = self.pending[i].len();
            // Look no further than one byte past what fits in a record: that
            // decides between a line end and a partial record.
            let window = &rest[..rest.len().min(MAX_LINE - pending + 1)];
            let (partial, content, skip) = match window.iter().position(|&b| b == b'\n') {
                Some(end) => (false, &rest[..end], end + 1),
                None if window.len() > MAX_LINE - pending => {
                    let fill = MAX_LINE - pending;
                    (true, &rest[..fill], fill)
                }
                None => {
                    self.pending[i].extend_from_slice(rest);
                    break;
                }
            };
            // Taken out and put back so its memory is reused.
            let mut head = std::mem::take(&mut self.pending[i]);
            let result = self.record(&time, stream, partial, &head, content);
            head.clear();
            self.pending[i] = head;
            result?;
            rest = &rest[skip..];
        }
        self.flush()
    }

    /// The stream ended: a line still waiting for its end is written as is (`F`).
    pub fn close_stream(&mut self, stream: Stream, now: jiff::Timestamp) -> io::Result<()> {
        if self.pending[stream.index()].is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.pending[stream.index()]);
        self.record(&format_timestamp(now), stream, false, &line, &[])?;
        self.flush()
    }

    /// Queues one record with content `head` + `tail`, rotating first if it
    /// would take the file past `max_size`.
    fn record(
        &mut self,
        time: &str,
        stream: Stream,
        partial: bool,
        head: &[u8],
        tail: &[u8],
    ) -> io::Result<()> {
        let len = time.len() + 1 + stream.as_str().len() + 3 + head.len() + tail.len() + 1;
        let used = self.size + self.out.len() as u64;
        if self.max_size > 0 && used > 0 && used + len as u64 > self.max_size {
            self.flush()?;
            self.rotate()?;
        }
        self.out.reserve(len);
        self.out.extend_from_slice(time.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(stream.as_str().as_bytes());
        self.out
            .extend_from_slice(if partial { b" P " } else { b" F " });
        self.out.extend_from_slice(head);
        self.out.extend_from_slice(tail);
        self.out.push(b'\n');
        Ok(())
    }

    /// Writes the queued records with one `write_all`, so a reader sees whole
    /// records (best effort: the file is not locked).
    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.out);
        // On error part may have been written; drop the batch rather than
        // repeat it, and resync the size from the file.
        self.size = match result {
            Ok(()) => self.size + self.out.len() as u64,
            Err(_) => self.file.metadata().map_or(self.size, |m| m.len()),
        };
        self.out.clear();
        // Give back the memory of an unusually large batch.
        self.out.shrink_to(4 * MAX_LINE);
        result
    }

    /// `log.N-1` → `log.N` … `log` → `log.1`, dropping what would go past
    /// `max_files - 1` rotated files, then a fresh `log`.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.max_files - 1;
        if keep == 0 {
            remove_if_exists(&self.path)?;
        } else {
            remove_if_exists(&rotated(&self.path, keep))?;
            for n in (1..keep).rev() {
                rename_if_exists(&rotated(&self.path, n), &rotated(&self.path, n + 1))?;
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The path of the `n`th rotated file: `<path>.<n>`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One record of a log file, or (from [`read_tail`]) one whole line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// RFC 3339 timestamp as written (of a line's first record).
    pub time: String,
    /// Where it came from.
    pub stream: Stream,
    /// A `P` record; from [`read_tail`], a line whose end has not been logged yet.
    pub partial: bool,
    /// The content, without the line end.
    pub content: Vec<u8>,
}

/// Parses one record (`<time> <stream> <tag> <content>`, with or without its
/// `\n`); `None` if it is not one.
pub fn parse_line(line: &[u8]) -> Option<LogRecord> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    time.parse::<jiff::Timestamp>().ok()?;
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    // Tags are `:`-separated; the first says partial or full.
    let tags = fields.next()?;
    let partial = match tags.split(|&b| b == b':').next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(LogRecord {
        time: time.to_owned(),
        stream,
        partial,
        content: fields.next().unwrap_or_default().to_vec(),
    })
}

/// The log's whole lines, oldest first: the last `tail` of them, or all for
/// `None`. `P` records are joined with what follows them on the same stream;
/// rotated files are read as far back as needed. A last line whose end is not
/// logged yet comes back with `partial` set.
pub fn read_tail(path: &Path, tail: Option<usize>) -> io::Result<Vec<LogRecord>> {
    if tail == Some(0) {
        return Ok(Vec::new());
    }
    // Newest first: the live file, then .1, .2, … while they exist.
    let mut files = vec![path.to_owned()];
    for n in 1.. {
        let older = rotated(path, n);
        if !older.exists() {
            break;
        }
        files.push(older);
    }
    // Records of the files read so far, oldest first.
    let mut records: Vec<LogRecord> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let mut older = match fs::read(file) {
            Ok(bytes) => parse_records(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        older.append(&mut records);
        records = older;
        let complete = i + 1 == files.len();
        if tail.is_none() && !complete {
            continue;
        }
        let lines = join_lines(&records, complete);
        let n = tail.unwrap_or(lines.len());
        let start = lines.len().saturating_sub(n);
        // Too few lines, or one that may start in an older file: read on.
        let enough = lines.len() >= n && lines[start..].iter().all(|l| l.whole);
        if complete || enough {
            return Ok(lines.into_iter().skip(start).map(|l| l.record).collect());
        }
    }
    Ok(Vec::new())
}

/// The records of one file; a last record without its `\n` is being written
/// (or was cut short) and is left out, as are unparsable lines.
fn parse_records(bytes: &[u8]) -> Vec<LogRecord> {
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..end + 1],
        None => return Vec::new(),
    };
    complete
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_line)
        .collect()
}

struct Line {
    record: LogRecord,
    /// Known to start where the line started: `false` for the first line of
    /// each stream when older records may exist.
    whole: bool,
}

/// Joins records into lines in the order they ended; lines whose end is not
/// logged yet come last.
fn join_lines(records: &[LogRecord], from_start: bool) -> Vec<Line> {
    let mut lines = Vec::new();
    // Per stream: the line being assembled, and whether a full line of this
    // stream has been seen (so the next one starts in the records we have).
    let mut open: [Option<LogRecord>; 2] = [None, None];
    let mut seen_end = [from_start; 2];
    for record in records {
        let i = record.stream.index();
        let line = match open[i].take() {
            Some(mut line) => {
                line.content.extend_from_slice(&record.content);
                line
            }
            None => record.clone(),
        };
        if record.partial {
            open[i] = Some(line);
        } else {
            lines.push(Line {
                record: LogRecord {
                    partial: false,
                    ..line
                },
                whole: seen_end[i],
            });
            seen_end[i] = true;
        }
    }
    for (i, line) in open.into_iter().enumerate() {
        if let Some(line) = line {
            lines.push(Line {
                record: LogRecord {
                    partial: true,
                    ..line
                },
                whole: seen_end[i],
            });
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: i128) -> jiff::Timestamp {
        jiff::Timestamp::from_nanosecond(nanos).expect("in range")
    }

    const T0: i128 = 1_475_713_029_669_794_202; // 2016-10-06T00:17:09.669794202Z

    #[test]
    fn timestamps_print_like_go_rfc3339nano() {
        fn check(nanos: i128, expect: &str) {
            assert_eq!(format_timestamp(at(nanos)), expect);
        }
        check(T0, "2016-10-06T00:17:09.669794202Z");
        check(1_475_713_029_000_000_000, "2016-10-06T00:17:09Z");
        check(1_475_713_029_500_000_000, "2016-10-06T00:17:09.5Z");
        check(1_475_713_029_000_000_100, "2016-10-06T00:17:09.0000001Z");
        check(1_475_713_029_120_000_000, "2016-10-06T00:17:09.12Z");
        check(0, "1970-01-01T00:00:00Z");
    }

    fn log_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    /// The file's records as `<stream> <tag> <content>`, with a `(N bytes)`
    /// stand-in for long content.
    fn records(path: &Path) -> Vec<String> {
        let text = fs::read(path).expect("read log");
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = parse_line(l).expect("every line is a record");
                let content = if r.content.len() > 40 {
                    format!("({} bytes)", r.content.len())
                } else {
                    String::from_utf8_lossy(&r.content).into_owned()
                };
                format!(
                    "{} {} {}",
                    r.stream.as_str(),
                    if r.partial { "P" } else { "F" },
                    content
                )
            })
            .collect()
    }

    #[test]
    fn chunks_become_line_records() {
        fn check(chunks: &[(Stream, &[u8])], close: &[Stream], expect: &[&str]) {
            let dir = log_dir();
            let path = dir.path().join("c/0.log");
            let mut w = LogWriter::open(&path, 0, 1).expect("open");
            for (stream, data) in chunks {
                w.write(*stream, data, at(T0)).expect("write");
            }
            for stream in close {
                w.close_stream(*stream, at(T0)).expect("close");
            }
            assert_eq!(records(&path), expect, "{chunks:?}");
        }
        use Stream::*;
        check(&[(Stdout, b"hello\n")], &[], &["stdout F hello"]);
        check(
            &[(Stdout, b"a\nb\n\nc\n")],
            &[],
            &["stdout F a", "stdout F b", "stdout F ", "stdout F c"],
        );
        // A line split across reads is one record, written when it ends.
        check(
            &[(Stdout, b"hel"), (Stdout, b"lo wor"), (Stdout, b"ld\nne")],
            &[],
            &["stdout F hello world"],
        );
        // Streams have their own pending parts.
        check(
            &[
                (Stdout, b"out-"),
                (Stderr, b"err-"),
                (Stderr, b"1\n"),
                (Stdout, b"1\n"),
            ],
            &[],
            &["stderr F err-1", "stdout F out-1"],
        );
        // The stream ends without a newline: the rest is a full record.
        check(
            &[(Stdout, b"a\nno newline")],
            &[Stdout],
            &["stdout F a", "stdout F no newline"],
        );
        check(&[(Stdout, b"a\n")], &[Stdout, Stderr], &["stdout F a"]);
        // Content is kept byte for byte, spaces, tabs and CR included.
        check(&[(Stderr, b" x \t y\r\n")], &[], &["stderr F  x \t y\r"]);
        check(&[(Stdout, b"")], &[], &[]);
    }

    #[test]
    fn long_lines_become_partial_records() {
        fn check(chunks: &[Vec<u8>], close: bool, expect: &[&str]) {
            let dir = log_dir();
            let path = dir.path().join("0.log");
            let mut w = LogWriter::open(&path, 0, 1).expect("open");
            for chunk in chunks {
                w.write(Stream::Stdout, chunk, at(T0)).expect("write");
                assert!(w.pending[0].len() <= MAX_LINE, "pending stays bounded");
            }
            if close {
                w.close_stream(Stream::Stdout, at(T0)).expect("close");
            }
            assert_eq!(records(&path), expect);
        }
        let line = |len: usize| {
            let mut v = vec![b'x'; len];
            v.push(b'\n');
            v
        };
        // Exactly the limit still fits one record.
        check(&[line(MAX_LINE)], false, &["stdout F (16384 bytes)"]);
        check(
            &[line(MAX_LINE + 1)],
            false,
            &["stdout P (16384 bytes)", "stdout F x"],
        );
        check(
            &[line(2 * MAX_LINE + 5)],
            false,
            &[
                "stdout P (16384 bytes)",
                "stdout P (16384 bytes)",
                "stdout F xxxxx",
            ],
        );
        // Written as it comes, in small reads.
        let big = line(40_000);
        let chunks: Vec<Vec<u8>> = big.chunks(1000).map(<[u8]>::to_vec).collect();
        check(
            &chunks,
            false,
            &[
                "stdout P (16384 bytes)",
                "stdout P (16384 bytes)",
                "stdout F (7232 bytes)",
            ],
        );
        // A full-size pending part waits: the next byte decides.
        let full = vec![b'y'; MAX_LINE];
        check(std::slice::from_ref(&full), false, &[]);
        check(
            &[full.clone(), b"\n".to_vec()],
            false,
            &["stdout F (16384 bytes)"],
        );
        check(
            &[full.clone(), b"z\n".to_vec()],
            false,
            &["stdout P (16384 bytes)", "stdout F z"],
        );
        check(
            &[full, b"zz".to_vec()],
            true,
            &["stdout P (16384 bytes)", "stdout F zz"],
        );
    }

    #[test]
    fn rotation_keeps_max_files() {
        let dir = log_dir();
        let path = dir.path().join("0.log");
        // Each record is `2016-10-06T00:17:09.669794202Z stdout F lineN\n`: 44 bytes.
        let record_len = format!("{} stdout F line0\n", format_timestamp(at(T0))).len() as u64;
        let mut w = LogWriter::open(&path, 2 * record_len, 3).expect("open");
        for i in 0..7 {
            w.write(Stream::Stdout, format!("line{i}\n").as_bytes(), at(T0))
                .expect("write");
        }
        // Two records per file, three files: line0 was dropped.
        assert_eq!(records(&path), ["stdout F line6"]);
        assert_eq!(
            records(&rotated(&path, 1)),
            ["stdout F line4", "stdout F line5"]
        );
        assert_eq!(
            records(&rotated(&path, 2)),
            ["stdout F line2", "stdout F line3"]
        );
        assert!(!rotated(&path, 3).exists());
        let all: Vec<String> = read_tail(&path, None)
            .expect("read")
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r.content).into_owned())
            .collect();
        assert_eq!(all, ["line2", "line3", "line4", "line5", "line6"]);

        // Reopening appends and counts what is there.
        drop(w);
        let mut w = LogWriter::open(&path, 2 * record_len, 3).expect("reopen");
        w.write(Stream::Stdout, b"line7\n", at(T0)).expect("write");
        assert_eq!(records(&path), ["stdout F line6", "stdout F line7"]);
        w.write(Stream::Stdout, b"line8\n", at(T0)).expect("write");
        assert_eq!(records(&path), ["stdout F line8"]);
        assert_eq!(
            records(&rotated(&path, 1)),
            ["stdout F line6", "stdout F line7"]
        );

        // One file in all: rotation starts over.
        let single = dir.path().join("1.log");
        let mut w = LogWriter::open(&single, record_len, 1).expect("open");
        w.write(Stream::Stdout, b"line0\nline1\n", at(T0))
            .expect("write");
        assert_eq!(records(&single), ["stdout F line1"]);
        assert!(!rotated(&single, 1).exists());

        // A record larger than max_size still goes into a fresh file whole.
        let small = dir.path().join("2.log");
        let mut w = LogWriter::open(&small, 10, 2).expect("open");
        w.write(Stream::Stderr, b"much longer than ten\n", at(T0))
            .expect("write");
        assert_eq!(records(&small), ["stderr F much longer than ten"]);
    }

    #[test]
    fn parse_line_reads_records() {
        fn check(line: &str, expect: Option<(&str, Stream, bool, &str)>) {
            let got = parse_line(line.as_bytes());
            let expect = expect.map(|(time, stream, partial, content)| LogRecord {
                time: time.into(),
                stream,
                partial,
                content: content.as_bytes().to_vec(),
            });
            assert_eq!(got, expect, "{line:?}");
        }
        let t = "2016-10-06T00:17:09.669794202Z";
        check(
            &format!("{t} stdout F hello world\n"),
            Some((t, Stream::Stdout, false, "hello world")),
        );
        check(
            &format!("{t} stderr P part"),
            Some((t, Stream::Stderr, true, "part")),
        );
        check(
            &format!("{t} stdout F "),
            Some((t, Stream::Stdout, false, "")),
        );
        check(
            &format!("{t} stdout F"),
            Some((t, Stream::Stdout, false, "")),
        );
        check(
            &format!("{t} stdout F  two  spaces "),
            Some((t, Stream::Stdout, false, " two  spaces ")),
        );
        check(
            &format!("{t} stdout F:x:y tagged"),
            Some((t, Stream::Stdout, false, "tagged")),
        );
        check(
            "2016-10-06T00:17:09Z stdout F a",
            Some(("2016-10-06T00:17:09Z", Stream::Stdout, false, "a")),
        );
        check("yesterday stdout F a", None);
        check(&format!("{t} stdin F a"), None);
        check(&format!("{t} stdout X a"), None);
        check(&format!("{t} stdout"), None);
        check("", None);
    }

    fn lines(records: &[LogRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                let content = if r.content.len() > 40 {
                    format!("({} bytes)", r.content.len())
                } else {
                    String::from_utf8_lossy(&r.content).into_owned()
                };
                format!(
                    "{} {}{}",
                    r.stream.as_str(),
                    content,
                    if r.partial { " …" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn read_tail_joins_partial_records_into_lines() {
        let dir = log_dir();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 0, 1).expect("open");
        let long = [vec![b'x'; MAX_LINE + 10], b"\n".to_vec()].concat();
        w.write(Stream::Stdout, b"first\n", at(T0)).expect("write");
        w.write(Stream::Stdout, &long[..MAX_LINE + 5], at(T0 + 1))
            .expect("write");
        w.write(Stream::Stderr, b"oops\n", at(T0 + 2))
            .expect("write");
        w.write(Stream::Stdout, &long[MAX_LINE + 5..], at(T0 + 3))
            .expect("write");
        w.write(Stream::Stdout, b"last\n", at(T0 + 4))
            .expect("write");
        let got = read_tail(&path, None).expect("read");
        assert_eq!(
            lines(&got),
            [
                "stdout first",
                "stderr oops",
                "stdout (16394 bytes)",
                "stdout last"
            ]
        );
        // A joined line keeps the time of its first record.
        assert_eq!(got[2].time, format_timestamp(at(T0 + 1)));
        fn check(path: &Path, tail: Option<usize>, expect: &[&str]) {
            assert_eq!(
                lines(&read_tail(path, tail).expect("read")),
                expect,
                "tail {tail:?}"
            );
        }
        check(&path, Some(0), &[]);
        check(&path, Some(1), &["stdout last"]);
        check(&path, Some(2), &["stdout (16394 bytes)", "stdout last"]);
        check(
            &path,
            Some(4),
            &[
                "stdout first",
                "stderr oops",
                "stdout (16394 bytes)",
                "stdout last",
            ],
        );
        check(
            &path,
            Some(99),
            &[
                "stdout first",
                "stderr oops",
                "stdout (16394 bytes)",
                "stdout last",
            ],
        );

        // A line still being written comes last, marked partial.
        w.write(Stream::Stderr, &long[..MAX_LINE + 1], at(T0 + 5))
            .expect("write");
        check(&path, Some(2), &["stdout last", "stderr (16384 bytes) …"]);
        // A record cut short (no newline yet) is not shown.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"2016-10-06T00:17:09Z stdout F half"))
            .expect("append");
        check(&path, Some(1), &["stderr (16384 bytes) …"]);
        check(&dir.path().join("missing.log"), None, &[]);
    }

    #[test]
    fn read_tail_reads_rotated_files_as_needed() {
        let dir = log_dir();
        let path = dir.path().join("0.log");
        let t = format_timestamp(at(T0));
        // Hand-written files: a stdout line that starts in .2 and ends in the
        // live file, while stderr lines pass in between.
        fs::write(
            rotated(&path, 2),
            format!("{t} stdout F old\n{t} stdout P big-\n"),
        )
        .expect("write");
        fs::write(
            rotated(&path, 1),
            format!("{t} stderr F e1\n{t} stdout P middle-\n"),
        )
        .expect("write");
        fs::write(
            &path,
            format!("{t} stderr F e2\n{t} stdout F end\n{t} stderr F e3\n"),
        )
        .expect("write");
        fn check(path: &Path, tail: Option<usize>, expect: &[&str]) {
            assert_eq!(
                lines(&read_tail(path, tail).expect("read")),
                expect,
                "tail {tail:?}"
            );
        }
        check(&path, Some(1), &["stderr e3"]);
        // "end" might continue a line from an older file: all files are read.
        check(&path, Some(2), &["stdout big-middle-end", "stderr e3"]);
        check(
            &path,
            Some(3),
            &["stderr e2", "stdout big-middle-end", "stderr e3"],
        );
        check(
            &path,
            None,
            &[
                "stdout old",
                "stderr e1",
                "stderr e2",
                "stdout big-middle-end",
                "stderr e3",
            ],
        );
        // A gap in the numbering ends the chain.
        fs::write(rotated(&path, 4), format!("{t} stdout F lost\n")).expect("write");
        check(
            &path,
            Some(10),
            &[
                "stdout old",
                "stderr e1",
                "stderr e2",
                "stdout big-middle-end",
                "stderr e3",
            ],
        );
    }

    #[test]
    fn written_logs_read_back() {
        let dir = log_dir();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 4096, 4).expect("open");
        let mut expect = Vec::new();
        for i in 0..300u32 {
            let stream = if i % 7 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let text = format!("message {i} {}", "-".repeat((i % 13) as usize));
            // Each message in two reads, to exercise the pending buffer.
            let (a, b) = text.split_at(text.len() / 2);
            w.write(stream, a.as_bytes(), at(T0 + i128::from(i)))
                .expect("write");
            w.write(stream, format!("{b}\n").as_bytes(), at(T0 + i128::from(i)))
                .expect("write");
            expect.push(format!("{} {text}", stream.as_str()));
        }
        let got = read_tail(&path, Some(20)).expect("read");
        assert_eq!(lines(&got), expect[expect.len() - 20..]);
        // Only what fits in 4 files of 4 KiB survives, oldest dropped.
        let all = lines(&read_tail(&path, None).expect("read"));
        assert!(all.len() < expect.len() && all.len() > 20);
        assert_eq!(all, expect[expect.len() - all.len()..]);
        assert!(rotated(&path, 3).exists() && !rotated(&path, 4).exists());
        for n in 1..=3 {
            assert!(fs::metadata(rotated(&path, n)).expect("stat").len() <= 4096);
        }
    }

    #[test]
    fn stream_serializes_as_its_word() {
        assert_eq!(
            serde_json::to_string(&Stream::Stderr).expect("serializes"),
            "\"stderr\""
        );
        assert_eq!(
            serde_json::from_str::<Stream>("\"stdout\"").expect("parses"),
            Stream::Stdout
        );
    }
}
