//! Deployment logs: one plain-text file per deployment, `DATA_DIR/logs/<id>.log`.
//!
//! Executors write every output line through a [`LogWriter`], stamped with the time and the
//! stream it came from (`stdout`, `stderr`, or `ferry` for ferry's own notes):
//!
//! ```text
//! 2026-11-23T01:02:03.123Z stdout | Compiling shop v1.2.0
//! 2026-11-23T01:02:03.456Z ferry  | exited with status 0 after 1.23s
//! ```
//!
//! The API serves the file as it grows ([`read_from`]), so a client can follow a running
//! deployment by offset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// Where a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
    /// ferry's own notes about the run (start, exit status, timeout, ...).
    Ferry,
}

impl Stream {
    /// The label, padded to one width so the text column lines up.
    fn label(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Ferry => "ferry ",
        }
    }
}

/// Appends timestamped lines to one deployment's log. Clones share the file, so the stdout and
/// stderr readers can write concurrently; every call is one write under a lock, so lines never
/// interleave.
#[derive(Clone, Debug)]
pub(crate) struct LogWriter {
    file: Arc<Mutex<tokio::fs::File>>,
}

impl LogWriter {
    /// Opens a log for appending, creating it and its directory if needed.
    pub(crate) async fn create(path: &Path) -> std::io::Result<LogWriter> {
        if let Some(dir) = path.parent() {
            crate::datadir::create_dir_async(dir).await?;
        }
        let file = crate::datadir::file_options_async()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(LogWriter {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Writes `text` as a line: one trailing `\n` (or `\r\n`) is dropped, and any further
    /// newlines start further lines, each stamped with the same time and the stream.
    pub(crate) async fn line(&self, stream: Stream, text: &str) -> std::io::Result<()> {
        let out = format_lines(&timestamp(), stream, text);
        let mut file = self.file.lock().await;
        file.write_all(out.as_bytes()).await?;
        // tokio's File finishes writes in the background; flushing makes the line visible to
        // readers (and reports write errors) before we return.
        file.flush().await
    }

    /// A note from ferry itself.
    pub(crate) async fn ferry(&self, text: &str) -> std::io::Result<()> {
        self.line(Stream::Ferry, text).await
    }
}

/// The bytes [`LogWriter::line`] appends.
fn format_lines(stamp: &str, stream: Stream, text: &str) -> String {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut out = String::with_capacity(text.len() + 40);
    for part in text.split('\n') {
        out.push_str(stamp);
        out.push(' ');
        out.push_str(stream.label());
        out.push_str(" | ");
        out.push_str(part.strip_suffix('\r').unwrap_or(part));
        out.push('\n');
    }
    out
}

/// Now in UTC, RFC 3339 with milliseconds: `2026-11-23T01:02:03.123Z`.
fn timestamp() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    // Formatting a complete UTC date-time into a String cannot fail.
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

/// The log file of a deployment: `DATA_DIR/logs/<id>.log`.
pub(crate) fn log_path(data_dir: &Path, deployment_id: i64) -> PathBuf {
    data_dir.join("logs").join(format!("{deployment_id}.log"))
}

/// Reads at most `max` bytes from `offset`; returns them and the offset after them. A log that
/// does not exist yet reads as empty, as does an offset at or past the end.
pub(crate) async fn read_from(
    path: &Path,
    offset: u64,
    max: usize,
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let limit = u64::try_from(max).unwrap_or(u64::MAX);
    let mut buf = Vec::new();
    file.take(limit).read_to_end(&mut buf).await?;
    let read = u64::try_from(buf.len()).unwrap_or(u64::MAX);
    Ok((buf, offset.saturating_add(read)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "2026-11-23T01:02:03.123Z stdout | hello";

    async fn read_all(path: &Path) -> String {
        let (bytes, _) = read_from(path, 0, usize::MAX).await.unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn lines_are_split_and_line_endings_dropped() {
        let s = "2026-11-23T01:02:03.123Z";
        assert_eq!(
            format_lines(s, Stream::Stdout, "hello\n"),
            format!("{s} stdout | hello\n")
        );
        assert_eq!(
            format_lines(s, Stream::Stderr, "a\r\nb\r\n"),
            format!("{s} stderr | a\n{s} stderr | b\n")
        );
        // Only one trailing newline is dropped: an empty line stays a line.
        assert_eq!(
            format_lines(s, Stream::Stdout, "a\n\n"),
            format!("{s} stdout | a\n{s} stdout | \n")
        );
        assert_eq!(
            format_lines(s, Stream::Ferry, ""),
            format!("{s} ferry  | \n")
        );
    }

    #[test]
    fn timestamp_is_utc_rfc3339_with_milliseconds() {
        let t = timestamp();
        assert_eq!(t.len(), "2026-11-23T01:02:03.123Z".len(), "{t}");
        assert!(t.ends_with('Z'), "{t}");
        time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
    }

    #[test]
    fn log_path_is_under_logs() {
        assert_eq!(
            log_path(Path::new("/var/lib/ferry"), 42),
            PathBuf::from("/var/lib/ferry/logs/42.log")
        );
    }

    #[tokio::test]
    async fn lines_are_stamped_split_and_readable_by_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), 7);
        let log = LogWriter::create(&path).await.unwrap();
        log.line(Stream::Stdout, "hello\n").await.unwrap();
        log.line(Stream::Stderr, "a\r\nb").await.unwrap();
        log.ferry("done").await.unwrap();
        let text = read_all(&path).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].ends_with("Z stdout | hello"), "{}", lines[0]);
        assert!(lines[1].ends_with("Z stderr | a"), "{}", lines[1]);
        assert!(lines[2].ends_with("Z stderr | b"), "{}", lines[2]);
        assert!(lines[3].ends_with("Z ferry  | done"), "{}", lines[3]);
        assert_eq!(lines[0].len(), SAMPLE.len());
        for line in &lines {
            let (stamp, _) = line.split_once(' ').unwrap();
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        }

        // Following by offset: in pieces, then nothing more.
        let (first, mid) = read_from(&path, 0, 10).await.unwrap();
        assert_eq!(first.len(), 10);
        assert_eq!(mid, 10);
        let (rest, end) = read_from(&path, mid, 1 << 20).await.unwrap();
        assert_eq!([first, rest].concat(), text.as_bytes());
        assert_eq!(end, text.len() as u64);
        let (more, end2) = read_from(&path, end, 100).await.unwrap();
        assert!(more.is_empty());
        assert_eq!(end, end2);
        let (past, off) = read_from(&path, end + 50, 100).await.unwrap();
        assert!(past.is_empty());
        assert_eq!(off, end + 50);
    }

    #[tokio::test]
    async fn missing_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, off) = read_from(&dir.path().join("nope.log"), 5, 10)
            .await
            .unwrap();
        assert!(bytes.is_empty());
        assert_eq!(off, 5);
    }

    #[tokio::test]
    async fn create_appends_to_an_existing_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), 1);
        LogWriter::create(&path)
            .await
            .unwrap()
            .ferry("first")
            .await
            .unwrap();
        LogWriter::create(&path)
            .await
            .unwrap()
            .ferry("second")
            .await
            .unwrap();
        let text = read_all(&path).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("| first"));
        assert!(lines[1].ends_with("| second"));
    }

    #[tokio::test]
    async fn concurrent_writers_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/x.log");
        let log = LogWriter::create(&path).await.unwrap();
        let long = "x".repeat(10_000);
        let mut tasks = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr, Stream::Ferry] {
            let (log, long) = (log.clone(), long.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    log.line(stream, &format!("{i} {long}\n{i} second"))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let text = read_all(&path).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 600);
        for pair in lines.chunks(2) {
            let (a, b) = (pair[0], pair[1]);
            let (head_a, text_a) = a.split_once(" | ").unwrap();
            let (head_b, text_b) = b.split_once(" | ").unwrap();
            // Both lines of one call are adjacent, with the same stamp and stream.
            assert_eq!(head_a, head_b);
            let (i, rest) = text_a.split_once(' ').unwrap();
            assert_eq!(rest, long, "{a:.80}");
            assert_eq!(text_b, format!("{i} second"));
        }
    }
}
