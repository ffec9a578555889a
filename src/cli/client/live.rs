//! The client's live views: `ferry logs ID --follow` over Server-Sent Events (reconnecting
//! with `Last-Event-ID`, so no line is lost or printed twice), and the steps of
//! `ferry deploy --wait` / `ferry rollback --wait` as they end, with a spinner on the current
//! one when stdout and stderr are a terminal (plain lines otherwise: pipes, CI, tests).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{Client, s, state_of};

/// How long a stream may stay silent before it is taken as lost (ferry sends a keep-alive
/// every 15 s).
const STREAM_IDLE: Duration = Duration::from_secs(45);
/// How long to keep trying to reconnect a lost log stream.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct SseEvent {
    /// `event:`, empty for the default (`message`).
    pub(super) event: String,
    /// The `data:` lines joined with `\n`.
    pub(super) data: String,
    pub(super) id: Option<String>,
}

/// Reads Server-Sent Events from a byte stream, chunk by chunk (lines may be cut anywhere).
#[derive(Debug, Default)]
pub(super) struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Takes the next chunk; returns the events it completed.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(line) = self.next_line() {
            if line.is_empty() {
                if self.has_data {
                    events.push(std::mem::take(&mut self.current));
                }
                self.current = SseEvent::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue; // a comment (keep-alive)
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.current.event = value.to_string(),
                "id" => self.current.id = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        events
    }

    /// The next complete line (ended by `\n`, `\r\n` or `\r`), without its end.
    fn next_line(&mut self) -> Option<String> {
        let end = self.buf.iter().position(|b| *b == b'\n' || *b == b'\r')?;
        let skip = match (self.buf[end], self.buf.get(end + 1)) {
            (b'\r', Some(b'\n')) => 2,
            // A `\r` last in the buffer may be half of a `\r\n`: wait for more.
            (b'\r', None) => return None,
            _ => 1,
        };
        let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + skip);
        Some(line)
    }
}

/// `ferry logs ID --follow`: prints each line as ferry writes it, until the deployment ended
/// and its log was read to the end. A lost connection is resumed after the last line printed.
pub(super) async fn follow_log(c: &Client, id: i64) -> anyhow::Result<ExitCode> {
    let http = crate::outgoing::stream_builder(STREAM_IDLE).build()?;
    let url = format!("{}/api/v1/deployments/{id}/logs", c.base);
    let mut last_id: Option<String> = None;
    let mut lost_since: Option<tokio::time::Instant> = None;
    loop {
        let mut req = http
            .get(&url)
            .bearer_auth(&c.token)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(last) = &last_id {
            req = req.header("last-event-id", last.as_str());
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                lost_since = None;
                if let Some(state) = print_stream(resp, &mut last_id).await? {
                    tracing::debug!(deployment = id, %state, "log ended");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Ok(resp) => {
                let code = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(text);
                bail!("server answered {code}: {message}");
            }
            Err(e) => {
                let since = *lost_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > RECONNECT_FOR {
                    return Err(e).with_context(|| format!("cannot reach ferry at {}", c.base));
                }
            }
        }
        // The stream broke off (or could not be opened): resume after the last line printed.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints a log stream's lines; `Some(state)` when it ended with `event: end`, `None` when the
/// connection was lost first.
async fn print_stream(
    mut resp: reqwest::Response,
    last_id: &mut Option<String>,
) -> anyhow::Result<Option<String>> {
    let mut parser = SseParser::default();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let mut out = std::io::stdout().lock();
        for event in parser.push(&chunk) {
            match event.event.as_str() {
                "" | "message" => {
                    writeln!(out, "{}", event.data)?;
                    if event.id.is_some() {
                        *last_id = event.id;
                    }
                }
                "end" => {
                    out.flush()?;
                    let state = serde_json::from_str::<Value>(&event.data)
                        .map(|v| s(&v["state"]))
                        .unwrap_or_default();
                    return Ok(Some(state));
                }
                _ => {}
            }
        }
        out.flush()?;
    }
    Ok(None)
}

/// How `--wait` shows progress: a spinner naming the current step on a terminal, and a line
/// per step that ended (above the spinner); only the lines otherwise.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(super) fn new() -> Progress {
        let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress { bar }
    }

    /// A line that stays.
    pub(super) fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    /// What the spinner says is going on (nothing without a terminal).
    fn current(&self, text: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(text);
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Waits for deployment `id` to end, showing each step as it ends; returns its final JSON.
pub(super) async fn wait_deployment(
    c: &Client,
    id: i64,
    progress: &Progress,
) -> anyhow::Result<Value> {
    let mut shown = 0;
    loop {
        let d = c.get(&format!("/deployments/{id}")).await?;
        let steps = d["steps"].as_array().cloned().unwrap_or_default();
        let service = s(&d["service"]);
        while let Some(step) = steps.get(shown).filter(|s| !s["ended_at"].is_null()) {
            progress.line(&step_line(id, &service, step));
            shown += 1;
        }
        if state_of(&d).is_none_or(|s| s.is_final()) {
            return Ok(d);
        }
        progress.current(match steps.get(shown) {
            Some(step) => format!("deployment {id} {service}: {}", step_name(step)),
            None => format!("deployment {id} {service}: {}", s(&d["state"])),
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A step's name with what it acted on: `health (api)`.
fn step_name(step: &Value) -> String {
    match (&step["name"], &step["outcome"], step["detail"].as_str()) {
        // A failed step's detail says why, shown after it.
        (name, Value::String(o), _) if o == "failed" => s(name),
        (name, _, Some(detail)) => format!("{} ({detail})", s(name)),
        (name, _, None) => s(name),
    }
}

/// `deployment 12 web: pull ok 1.24s`, or `… health (api) failed after 30.00s: why`.
fn step_line(id: i64, service: &str, step: &Value) -> String {
    let secs = step["duration_ms"].as_i64().unwrap_or(0) as f64 / 1000.0;
    let name = step_name(step);
    if step["outcome"] == "ok" {
        format!("deployment {id} {service}: {name} ok {secs:.2}s")
    } else {
        let why = step["detail"]
            .as_str()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        format!("deployment {id} {service}: {name} failed after {secs:.2}s{why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(str::to_string),
        }
    }

    #[test]
    fn events_are_parsed_across_chunks_and_line_ends() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nid: 12\ndata: hel").is_empty());
        assert_eq!(p.push(b"lo\n\n"), [event("", "hello", Some("12"))]);
        // \r\n split between chunks, \r alone, two data lines, an event name, no space.
        assert!(p.push(b"event:end\r").is_empty());
        assert_eq!(
            p.push(b"\ndata: {\"state\":\rdata: \"ok\"}\r\n\r\n"),
            [event("end", "{\"state\":\n\"ok\"}", None)]
        );
        // An event without data is no event; unknown fields are ignored.
        assert!(p.push(b"event: lagged\nretry: 5\n\n").is_empty());
        assert_eq!(
            p.push(b"data:\n\ndata: a\n\n"),
            [event("", "", None), event("", "a", None)]
        );
    }

    #[test]
    fn steps_read_as_lines() {
        let ok = json!({"name": "pull", "outcome": "ok", "duration_ms": 1234, "detail": null});
        assert_eq!(step_line(7, "web", &ok), "deployment 7 web: pull ok 1.23s");
        let with = json!({"name": "health", "outcome": "ok", "duration_ms": 20, "detail": "api"});
        assert_eq!(
            step_line(7, "web", &with),
            "deployment 7 web: health (api) ok 0.02s"
        );
        let failed = json!({"name": "run", "outcome": "failed", "duration_ms": 5, "detail": "exited with status 7"});
        assert_eq!(
            step_line(7, "web", &failed),
            "deployment 7 web: run failed after 0.01s: exited with status 7"
        );
        assert_eq!(
            step_name(&json!({"name": "start", "detail": "api"})),
            "start (api)"
        );
    }
}
