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
//! deployment by offset; live viewers follow it line by line ([`read_lines`]), each line named
//! by the byte offset just after it, which is where a reconnecting viewer resumes
//! ([`check_resume`]: only the end of a line, within the file).
//!
//! On a shared store (PostgreSQL, replicas) a deployment's writer also hands every byte it
//! appends to the store's copy of the log ([`crate::store::LogCopy`], in order, under the same
//! lock), so the other replicas can serve it; [`LogWriter::settle`] waits until the copy has
//! stored what was written, which the lanes do before recording the deployment's end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::store::{LogCopy, Store};

/// How long [`LogWriter::settle`] waits for the database's copy of the log: past that (the
/// database is unreachable) the deployment's end is recorded anyway, and the copy goes on
/// trying in the background.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

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
    /// The store's copy, on a shared store: what is appended to the file is pushed there too,
    /// under the file's lock, so both hold the same bytes in the same order.
    copy: Option<Arc<LogCopy>>,
}

/// Where a deployment's log is copied besides its file: the store (when shared) and what the
/// copy's notes name.
pub(crate) struct CopyTo<'a> {
    pub(crate) store: &'a Store,
    pub(crate) deployment: i64,
    /// This replica (`server.node`), whose file has what the copy had to leave out.
    pub(crate) node: &'a str,
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
            copy: None,
        })
    }

    /// [`LogWriter::create`], and on a shared store (replicas) the store's copy of the log too,
    /// starting at the file's length.
    pub(crate) async fn create_copied(path: &Path, to: CopyTo<'_>) -> std::io::Result<LogWriter> {
        let mut log = LogWriter::create(path).await?;
        if to.store.shared() {
            let start = log.file.lock().await.metadata().await?.len();
            let node = to.node.to_string();
            let note: crate::store::GapNote = Box::new(move |n| {
                let text = format!(
                    "{n} bytes of this log are missing here: the database did not take them in time; the log file on replica {node} has them"
                );
                format_lines(&timestamp(), Stream::Ferry, &text)
            });
            log.copy = Some(Arc::new(to.store.copy_log(to.deployment, start, note)));
        }
        Ok(log)
    }

    /// Waits until the store's copy holds everything written so far (at most
    /// [`SETTLE_WITHIN`]); nothing to wait for without a copy.
    pub(crate) async fn settle(&self) {
        if let Some(copy) = &self.copy
            && !copy.settle(SETTLE_WITHIN).await
        {
            tracing::warn!(
                "the end of a deployment's log is not in the database yet; recording the end anyway (the copy goes on trying)"
            );
        }
    }

    /// Writes `text` as a line: one trailing `\n` (or `\r\n`) is dropped, and any further
    /// newlines start further lines, each stamped with the same time and the stream.
    pub(crate) async fn line(&self, stream: Stream, text: &str) -> std::io::Result<()> {
        let out = format_lines(&timestamp(), stream, text);
        let mut file = self.file.lock().await;
        let Some(copy) = &self.copy else {
            file.write_all(out.as_bytes()).await?;
            // tokio's File finishes writes in the background; flushing makes the line visible
            // to readers (and reports write errors) before we return.
            return file.flush().await;
        };
        let written = match file.write_all(out.as_bytes()).await {
            Ok(()) => file.flush().await,
            Err(e) => Err(e),
        };
        match &written {
            Ok(()) => copy.push(out.as_bytes()),
            // Part of the line may be in the file: the copy lines up with its length again
            // (what it missed stands there as a gap).
            Err(_) => {
                if let Ok(meta) = file.metadata().await {
                    copy.resync(meta.len());
                }
            }
        }
        written
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

/// Complete lines read from a log from `offset` on (at most about `max` bytes): each line
/// without its newline (invalid UTF-8 replaced) and the offset just after it; and whether the
/// read reached the end of the file. A line still being written (no newline yet) is left for
/// the next read — unless it alone fills `max`, when it comes in `max`-byte pieces.
pub(crate) async fn read_lines(
    path: &Path,
    offset: u64,
    max: usize,
) -> std::io::Result<(Vec<(String, u64)>, bool)> {
    let (bytes, _) = read_from(path, offset, max).await?;
    Ok(split_lines(&bytes, offset, max))
}

/// The lines [`read_lines`] makes of `bytes`, read from `offset` in a read of at most `max`
/// bytes (fewer: the read reached the end of the log): for logs read from elsewhere than a
/// file (the store's copy), with the same rules.
pub(crate) fn split_lines(bytes: &[u8], offset: u64, max: usize) -> (Vec<(String, u64)>, bool) {
    let at_end = bytes.len() < max;
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(last) => &bytes[..=last],
        None if !at_end => bytes,
        None => &[][..],
    };
    let mut lines = Vec::new();
    let mut at = offset;
    for line in complete.split_inclusive(|b| *b == b'\n') {
        at += line.len() as u64;
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        lines.push((String::from_utf8_lossy(text).into_owned(), at));
    }
    let read_all = at_end && complete.len() == bytes.len();
    (lines, read_all)
}

/// Why a viewer cannot resume a log at an offset.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResumeError {
    #[error("offset {offset} is beyond the end of the log ({size} bytes)")]
    BeyondEnd { offset: u64, size: u64 },
    #[error("offset {offset} is not the end of a line of the log")]
    NotLineEnd { offset: u64 },
    #[error("cannot read the log: {0}")]
    Io(#[from] std::io::Error),
    /// The store's copy of the log (replicas) could not be read.
    #[error("cannot read the log: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Checks that a viewer may resume after byte `offset`: 0, or the end of a line within the
/// file (what [`read_lines`] named a line by). A log not written yet is empty.
pub(crate) async fn check_resume(path: &Path, offset: u64) -> Result<(), ResumeError> {
    if offset == 0 {
        return Ok(());
    }
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ResumeError::BeyondEnd { offset, size: 0 });
        }
        Err(e) => return Err(e.into()),
    };
    let size = file.metadata().await?.len();
    if offset > size {
        return Err(ResumeError::BeyondEnd { offset, size });
    }
    file.seek(std::io::SeekFrom::Start(offset - 1)).await?;
    if file.read_u8().await? != b'\n' {
        return Err(ResumeError::NotLineEnd { offset });
    }
    Ok(())
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
    async fn lines_are_read_whole_with_the_offset_after_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        let (lines, at_end) = read_lines(&path, 0, 1024).await.unwrap();
        assert_eq!(lines, vec![("one".into(), 4), ("two".into(), 8)]);
        assert!(!at_end, "a partial line is still to come");
        let (lines, _) = read_lines(&path, 4, 1024).await.unwrap();
        assert_eq!(lines, vec![("two".into(), 8)]);
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let (lines, at_end) = read_lines(&path, 8, 1024).await.unwrap();
        assert_eq!(lines, vec![("three".into(), 14)]);
        assert!(at_end);
        // A read that stops inside a line leaves it for the next read.
        let (lines, at_end) = read_lines(&path, 0, 6).await.unwrap();
        assert_eq!(lines, vec![("one".into(), 4)]);
        assert!(!at_end);
        // A line longer than a whole read comes in pieces.
        let (lines, _) = read_lines(&path, 8, 3).await.unwrap();
        assert_eq!(lines, vec![("thr".into(), 11)]);
        let (lines, at_end) = read_lines(&dir.path().join("none"), 0, 9).await.unwrap();
        assert!(lines.is_empty() && at_end);
    }

    #[tokio::test]
    async fn resuming_needs_the_end_of_a_line_within_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        assert!(check_resume(&path, 0).await.is_ok());
        assert!(matches!(
            check_resume(&path, 3).await,
            Err(ResumeError::BeyondEnd { offset: 3, size: 0 })
        ));
        std::fs::write(&path, "one\ntwo\n").unwrap();
        for ok in [0, 4, 8] {
            assert!(check_resume(&path, ok).await.is_ok(), "{ok}");
        }
        let e = check_resume(&path, 5).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "offset 5 is not the end of a line of the log"
        );
        let e = check_resume(&path, 9).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "offset 9 is beyond the end of the log (8 bytes)"
        );
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
