//! The output side of a command run: stdout and stderr copied into the deployment log, line
//! by line, without letting a long line or a background process hold the run.
//!
//! A line longer than [`MAX_LINE`] is logged in pieces (never split inside a UTF-8
//! character). Once the command has ended, its output is read for at most
//! [`DRAIN_AFTER_EXIT`]: processes it left running in the background may hold the pipes open,
//! and the deployment must not wait for them; their output is then emptied unlogged.

use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{ChildStderr, ChildStdout};
use tokio_util::sync::CancellationToken;

use super::note;
use crate::deploylog::{LogWriter, Stream};

/// How long to keep reading output after the command ended.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// A line longer than this (give or take one read) is logged in pieces rather than buffered
/// without limit.
pub(super) const MAX_LINE: usize = 64 * 1024;
/// How much output is read at once.
const READ_CHUNK: usize = 8 * 1024;

/// The child's stdout and stderr; after reading stopped, `Some` for a pipe still open.
pub(super) type Pipes = (Option<ChildStdout>, Option<ChildStderr>);

/// Copies both streams into the log until they end or `stop` is cancelled. Returns the pipes
/// still open then.
pub(super) async fn copy(pipes: Pipes, log: &LogWriter, stop: &CancellationToken) -> Pipes {
    let (stdout, stderr) = pipes;
    tokio::join!(
        pump(stdout, Stream::Stdout, log, stop),
        pump(stderr, Stream::Stderr, log, stop),
    )
}

/// Once the command has ended: reads the rest of its output (`output`, the [`copy`] still in
/// progress, unless it ended before the command did with `left_open`) for at most
/// [`DRAIN_AFTER_EXIT`]. Pipes still open then belong to processes the command left running:
/// noted in the log and emptied in the background.
pub(super) async fn after_exit<O: Future<Output = Pipes>>(
    left_open: Option<Pipes>,
    mut output: Pin<&mut O>,
    stop_reading: &CancellationToken,
    log: &LogWriter,
) {
    let (stdout, stderr) = match left_open {
        Some(pipes) => pipes,
        None => {
            tokio::select! {
                pipes = &mut output => pipes,
                () = tokio::time::sleep(DRAIN_AFTER_EXIT) => {
                    stop_reading.cancel();
                    output.await
                }
            }
        }
    };
    if stdout.is_none() && stderr.is_none() {
        return;
    }
    note(
        log,
        &format!(
            "output still open {} after the command ended: processes it started keep it \
             open and are left running; their output is not logged",
            humantime::format_duration(DRAIN_AFTER_EXIT)
        ),
    )
    .await;
    // Keep emptying the pipes until those processes close them: closing our end would kill
    // them with SIGPIPE on their next write, and not reading would block them.
    if let Some(pipe) = stdout {
        tokio::spawn(discard(pipe));
    }
    if let Some(pipe) = stderr {
        tokio::spawn(discard(pipe));
    }
}

/// Copies one output stream into the log, line by line, until it ends or `stop` is cancelled.
/// Returns the pipe if it was still open then.
async fn pump<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    stream: Stream,
    log: &LogWriter,
    stop: &CancellationToken,
) -> Option<R> {
    let mut pipe = pipe?;
    let mut writer = LineWriter {
        stream,
        log,
        failed: false,
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let still_open = loop {
        let n = tokio::select! {
            biased;
            () = stop.cancelled() => break true,
            read = pipe.read(&mut chunk) => match read {
                Ok(0) => break false,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, ?stream, "cannot read command output");
                    break false;
                }
            },
        };
        pending.extend_from_slice(&chunk[..n]);
        // A line longer than MAX_LINE goes out in pieces. Cutting only once a byte past the
        // limit is known not to be the newline avoids an empty piece after a line of exactly
        // MAX_LINE.
        while pending.len() > MAX_LINE && !pending[..=MAX_LINE].contains(&b'\n') {
            let rest = pending.split_off(char_boundary(&pending[..MAX_LINE]));
            writer.write(&pending).await;
            pending = rest;
        }
        // All complete lines of this read in one write: fewer writes, same timestamp.
        if let Some(last) = pending.iter().rposition(|&b| b == b'\n') {
            let rest = pending.split_off(last + 1);
            writer.write(&pending).await;
            pending = rest;
        }
    };
    if !pending.is_empty() {
        writer.write(&pending).await;
    }
    still_open.then_some(pipe)
}

/// Writes output to the log; a failing log is reported once and otherwise ignored, so the
/// pipe keeps being emptied and the command is not blocked.
struct LineWriter<'a> {
    stream: Stream,
    log: &'a LogWriter,
    failed: bool,
}

impl LineWriter<'_> {
    async fn write(&mut self, bytes: &[u8]) {
        let result = self
            .log
            .line(self.stream, &String::from_utf8_lossy(bytes))
            .await;
        if let Err(e) = result {
            if !self.failed {
                tracing::warn!(error = %e, stream = ?self.stream, "cannot write the deployment log");
            }
            self.failed = true;
        }
    }
}

/// Where to cut `bytes` without splitting a UTF-8 character: before an incomplete multi-byte
/// sequence at the end, otherwise at the end.
fn char_boundary(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let byte = bytes[len - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let width = match byte {
            0xF0..=0xFF => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        return if width > back { len - back } else { len };
    }
    len
}

/// Reads a pipe to its end without logging it.
async fn discard(mut pipe: impl AsyncRead + Unpin) {
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_do_not_split_characters() {
        assert_eq!(char_boundary(b"abc"), 3);
        assert_eq!(char_boundary("aé".as_bytes()), 3);
        assert_eq!(char_boundary(&"aé".as_bytes()[..2]), 1);
        assert_eq!(char_boundary(&"a€".as_bytes()[..3]), 1);
        assert_eq!(char_boundary("a€".as_bytes()), 4);
        assert_eq!(char_boundary(&"a😀".as_bytes()[..4]), 1);
        assert_eq!(char_boundary("a😀".as_bytes()), 5);
        // Invalid bytes are not our business: cut anywhere.
        assert_eq!(char_boundary(&[b'a', 0x80, 0x80, 0x80]), 4);
    }
}
