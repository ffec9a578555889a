//! Following Docker's event stream without losing what happens while it is down.
//!
//! [`Follow::next`] hands out container events one by one. When the stream ends (the engine
//! restarted, the socket closed) or fails (the engine is not up yet), it subscribes again
//! after a backoff (1 s, doubling to 30 s; back to 1 s once events flow, or after a stream
//! that lasted a minute), asking with `since=` for everything after the last event it handed
//! out, so events in between are replayed rather than lost — as far as the engine still holds
//! them: Docker keeps its last 256 events in memory, and none across its own restart. Before
//! the first event, `since` is when following began. Replayed events it already handed out
//! (Docker's `since` is inclusive) are dropped by their time.
//!
//! The engine is behind [`Source`], so the reconnecting is tested with a scripted stream.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio::time::Instant;

/// The actions watched: `die` (exits, kills), `oom` (noted for the `die` that follows) and
/// `health_status` (Docker matches `health_status: …` by prefix for this one name).
const ACTIONS: [&str; 3] = ["die", "oom", "health_status"];

/// First wait before subscribing again, doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A stream that lasted this long was healthy: the next failure starts the backoff afresh.
const HEALTHY: Duration = Duration::from_secs(60);

/// Where events come from: the Docker Engine, or a script in tests.
pub(super) trait Source {
    /// Container events from `since` (Docker's `SECONDS.NANOSECONDS`) on, then live ones.
    /// The stream ends or fails when the connection does.
    fn subscribe(&mut self, since: &str) -> BoxStream<'static, Result<EventMessage, String>>;
}

/// The Docker Engine (`DOCKER_HOST`, else the local socket), connected afresh each time.
pub(super) struct Engine;

impl Source for Engine {
    fn subscribe(&mut self, since: &str) -> BoxStream<'static, Result<EventMessage, String>> {
        let filters = HashMap::from([("type", vec!["container"]), ("event", ACTIONS.to_vec())]);
        let options = EventsOptionsBuilder::new()
            .since(since)
            .filters(&filters)
            .build();
        stream::once(crate::executors::docker::connect())
            .flat_map(move |docker| match docker {
                Ok(d) => d
                    .events(Some(options.clone()))
                    .map_err(|e| format!("docker events: {e}"))
                    .boxed(),
                Err(e) => stream::iter([Err(e.to_string())]).boxed(),
            })
            .boxed()
    }
}

/// A reconnecting follower of one [`Source`].
pub(super) struct Follow<S> {
    source: S,
    stream: Option<BoxStream<'static, Result<EventMessage, String>>>,
    /// Docker's time (ns) of the newest event handed out.
    last: Option<i64>,
    /// When following began (ns, ferry's clock): `since` until an event was handed out.
    began: i64,
    /// Failures in a row: the backoff's exponent.
    failures: u32,
    /// Not before then (after a failure).
    retry_at: Option<Instant>,
    subscribed_at: Instant,
}

impl<S: Source> Follow<S> {
    pub(super) fn new(source: S) -> Follow<S> {
        Follow {
            source,
            stream: None,
            last: None,
            began: now_ns(),
            failures: 0,
            retry_at: None,
            subscribed_at: Instant::now(),
        }
    }

    /// The next event, reconnecting as often as it takes. Cancel-safe: dropped while it
    /// waits, the next call goes on where it left off (the same stream, the same backoff).
    pub(super) async fn next(&mut self) -> EventMessage {
        loop {
            let since = since_param(self.last.map_or(self.began, |t| t + 1));
            let stream = match &mut self.stream {
                Some(s) => s,
                None => {
                    if let Some(at) = self.retry_at {
                        tokio::time::sleep_until(at).await;
                    }
                    self.subscribed_at = Instant::now();
                    self.stream.insert(self.source.subscribe(&since))
                }
            };
            match stream.next().await {
                Some(Ok(event)) => {
                    if let Some(event) = self.handed_out(event) {
                        return event;
                    }
                }
                Some(Err(e)) => self.lost(Some(e)),
                None => self.lost(None),
            }
        }
    }

    /// Notes an event's time; `None` if it was handed out already (replayed by `since`).
    fn handed_out(&mut self, event: EventMessage) -> Option<EventMessage> {
        let at = event_ns(&event);
        if let (Some(at), Some(last)) = (at, self.last)
            && at <= last
        {
            return None;
        }
        if self.failures > 0 {
            tracing::info!("following Docker's events again");
        }
        self.failures = 0;
        self.retry_at = None;
        if at.is_some() {
            self.last = at;
        }
        Some(event)
    }

    /// The stream ended (`None`) or failed: subscribe again after the backoff.
    fn lost(&mut self, error: Option<String>) {
        self.stream = None;
        if self.subscribed_at.elapsed() >= HEALTHY {
            self.failures = 0;
        }
        let delay = backoff(self.failures);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(Instant::now() + delay);
        let error = error.unwrap_or_else(|| "the stream ended".into());
        let delay = humantime::format_duration(delay);
        if self.failures == 1 {
            tracing::warn!(%error, retry_in = %delay, "lost Docker's event stream; container events are replayed once it is back");
        } else {
            tracing::debug!(%error, retry_in = %delay, "Docker's event stream is still down");
        }
    }
}

/// The wait after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// An event's time in ns (`timeNano`, else `time`).
pub(super) fn event_ns(event: &EventMessage) -> Option<i64> {
    event
        .time_nano
        .or_else(|| event.time.map(|s| s.saturating_mul(1_000_000_000)))
}

/// Docker's `since`/`until` format: `SECONDS.NANOSECONDS`.
fn since_param(ns: i64) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

fn now_ns() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// One scripted connection: its events (or errors), then the end — or it stays open.
    struct Script {
        items: Vec<Result<EventMessage, String>>,
        stays_open: bool,
    }

    /// A source that plays one [`Script`] per subscription and records each `since` and when
    /// it was asked.
    #[derive(Clone, Default)]
    struct Scripted {
        scripts: Arc<Mutex<VecDeque<Script>>>,
        asked: Arc<Mutex<Vec<(String, Instant)>>>,
    }

    impl Source for Scripted {
        fn subscribe(&mut self, since: &str) -> BoxStream<'static, Result<EventMessage, String>> {
            self.asked
                .lock()
                .unwrap()
                .push((since.to_string(), Instant::now()));
            let script = self.scripts.lock().unwrap().pop_front().unwrap_or(Script {
                items: Vec::new(),
                stays_open: true,
            });
            let items = stream::iter(script.items);
            if script.stays_open {
                items.chain(stream::pending()).boxed()
            } else {
                items.boxed()
            }
        }
    }

    fn event(id: &str, ns: i64) -> Result<EventMessage, String> {
        Ok(EventMessage {
            action: Some("die".into()),
            actor: Some(bollard::models::EventActor {
                id: Some(id.into()),
                attributes: None,
            }),
            time_nano: Some(ns),
            ..Default::default()
        })
    }

    fn id(e: &EventMessage) -> String {
        e.actor
            .as_ref()
            .and_then(|a| a.id.clone())
            .unwrap_or_default()
    }

    /// The stream ends (the engine restarted), then the engine refuses twice, then it replays
    /// from `since` (inclusive: the last event comes again) and goes on: every event is handed
    /// out once, in order; each subscription asks for what came after the last one; the waits
    /// double and start afresh once events flow.
    #[tokio::test(start_paused = true)]
    async fn reconnects_with_backoff_and_since_and_loses_nothing() {
        let source = Scripted::default();
        let second = 2_000_000_000_i64;
        source.scripts.lock().unwrap().extend([
            Script {
                items: vec![event("a", 10 * second), event("b", 11 * second + 5)],
                stays_open: false,
            },
            Script {
                items: vec![Err("connection refused".into())],
                stays_open: false,
            },
            Script {
                items: vec![Err("connection refused".into())],
                stays_open: false,
            },
            Script {
                items: vec![event("b", 11 * second + 5), event("c", 12 * second)],
                stays_open: false,
            },
            Script {
                items: vec![event("d", 13 * second)],
                stays_open: true,
            },
        ]);
        let mut follow = Follow::new(source.clone());
        let began = since_param(follow.began);
        let t0 = Instant::now();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(id(&follow.next().await));
        }
        assert_eq!(got, ["a", "b", "c", "d"], "each once, in order");
        let asked = source.asked.lock().unwrap().clone();
        let since: Vec<&str> = asked.iter().map(|(s, _)| s.as_str()).collect();
        let after_b = since_param(11 * second + 6);
        let after_c = since_param(12 * second + 1);
        assert_eq!(since, [&began, &after_b, &after_b, &after_b, &after_c]);
        let waits: Vec<u64> = asked.iter().map(|(_, at)| (*at - t0).as_secs()).collect();
        // Ended at 0 → 1 s; refused → 2 s more; refused → 4 s more; events flowed, so the
        // next end waits 1 s again.
        assert_eq!(waits, [0, 1, 3, 7, 8]);
        assert_eq!(after_b, "22.000000006");

        // Nothing more: it waits (on the open stream) rather than spinning.
        let more = tokio::time::timeout(Duration::from_secs(3600), follow.next()).await;
        assert!(more.is_err());
        assert_eq!(source.asked.lock().unwrap().len(), 5);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let waits: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(200), MAX_BACKOFF);
        assert_eq!(
            since_param(1_796_238_976_986_950_557),
            "1796238976.986950557"
        );
    }
}
