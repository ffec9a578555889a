//! ferry's own logs: one structured line per delivery and per deployment state change, on
//! stderr (written by a thread of its own, see [`init`]), human-readable by default or JSON (`--log-format json`). `RUST_LOG` filters them.
//! Secrets never reach a log line: config secrets are [`crate::secret::Secret`]s whose `Debug`
//! is redacted, and no handler logs tokens, signatures or payloads.
//!
//! Values that came from a request (a reason quoting a query value or a payload field, a stored
//! app or event name) are logged through [`Escaped`], so a newline in them cannot forge a log
//! line. tracing-subscriber's text format quotes and escapes `&str` and `?`-Debug fields but
//! writes `%`-Display fields as they are; JSON output is escaped by serde.

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

/// The format of ferry's own log lines (`--log-format`).
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Keeps the log writer's thread: dropping it (when `serve` returns) writes what is still
/// queued.
pub(crate) struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// Logs to stderr through a thread of its own: a worker formats a line and queues it, and
/// never waits for the terminal or pipe (one `write` per line, under stderr's lock, was a
/// syscall on every delivery's path). The queue writes through a buffer flushed whenever it
/// runs empty, so a burst costs a few writes and a quiet line appears at once. Not lossy: if
/// 16,384 lines wait (stderr stuck), workers wait too rather than drop a line.
pub(crate) fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // The queue is allocated whole at start: 128,000 lines (the default) cost 4 MiB of
        // resident memory idle; 16,384 are a burst's worth, and then workers wait.
        .buffered_lines_limit(16_384)
        .thread_name("ferry-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // A second init (tests calling into the library) is harmless; ignore its error.
    let _ = match format {
        LogFormat::Json => {
            // serde escapes every string: escaping here too would double the backslashes.
            JSON.store(true, Ordering::Relaxed);
            builder.json().flatten_event(true).try_init()
        }
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    LogGuard(guard)
}

/// Set when logs are JSON: serde escapes values there.
static JSON: AtomicBool = AtomicBool::new(false);

/// A value that came from a request, for a `%` log field: control characters (and Unicode line
/// and paragraph separators) are written as escapes (`\n`, `\u{85}`), so the value stays on
/// its own log line. In JSON logs it is written as it is (serde escapes it).
pub(crate) struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if JSON.load(Ordering::Relaxed) {
            return self.0.fmt(f);
        }
        fmt::write(&mut EscapingWriter(f), format_args!("{}", self.0))
    }
}

/// Writes through to a formatter, escaping what could break a line.
struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(pos) = rest.find(needs_escape) {
            self.0.write_str(&rest[..pos])?;
            let c = rest[pos..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[pos + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let s = Escaped("a\nb\r\tc\u{1b}[31m\u{85}d\u{2028}é").to_string();
        assert_eq!(s, "a\\nb\\r\\tc\\u{1b}[31m\\u{85}d\\u{2028}é");
        assert!(!s.chars().any(needs_escape));
        assert_eq!(Escaped("plain text").to_string(), "plain text");
    }

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the text format does with each kind of field: the reason `Escaped` exists.
    #[test]
    fn text_format_escapes_str_and_debug_fields_but_not_display_fields() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let evil = "a\nFORGED";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(s = evil, d = ?evil, e = %Escaped(evil), "safe");
            tracing::info!(raw = %evil, "unsafe");
        });
        let out = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[0].contains(r#"s="a\nFORGED" d="a\nFORGED" e=a\nFORGED"#),
            "{out}"
        );
        assert_eq!(
            lines[2], "FORGED",
            "a raw Display field breaks the line: {out}"
        );
    }
}
