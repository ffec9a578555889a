//! The live API, as Server-Sent Events: `GET /api/v1/events[?app=]` (every delivery stored or
//! settled, every deployment state change and step, from [`crate::live::Hub`]) and a
//! deployment's log line by line (`GET /api/v1/deployments/ID/logs` with
//! `Accept: text/event-stream`).
//!
//! Both count against the hub's limit of open streams (503 beyond it) and end when the server
//! stops. Events cost nothing per viewer and change: the hub's batcher frames every 25 ms of
//! changes once, and each viewer sends its part of the batch (all apps, or its app's) as it
//! is; a viewer that falls behind gets `event: lagged` and goes on.
//! A log stream polls the file (every [`POLL`]) for complete lines — the writer may be another
//! task or, after a restart, nobody — and ends with `event: end` once the deployment has ended
//! and its log has been sent to the end. On a shared store (PostgreSQL, replicas) a replica
//! without the log's file (another replica runs or ran the deployment) follows the store's
//! copy instead ([`TableLog`]): the chunks after the last one it read, every [`TABLE_POLL`],
//! cut into lines by the same rules; the lanes store a log's last chunk before they record the
//! deployment's end, so the same end check holds.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, ApiResult, not_found};
use crate::deploylog;
use crate::live::Hub;
use crate::shared::Shared;
use crate::store::{DeploymentState, Store};

/// How often a log stream looks for new lines.
const POLL: Duration = Duration::from_millis(150);
/// How often a log stream that follows the store's copy asks for new chunks.
const TABLE_POLL: Duration = Duration::from_millis(250);
/// The most chunks a log stream reads from the store's copy at once (at most 64 KiB each).
const TABLE_CHUNKS: i64 = 16;
/// How often, at most, a log stream asks the store whether its deployment has ended.
const STATE_EVERY: Duration = Duration::from_millis(500);
/// The most a log stream reads at once.
const READ_MAX: usize = 256 * 1024;
/// A comment sent while nothing happens, so proxies and clients keep the stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Whether a request asks for Server-Sent Events (as browsers' `EventSource` does).
pub(super) fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// A place for one more stream, or 503.
fn admit(hub: &Hub) -> Result<OwnedSemaphorePermit, ApiError> {
    if hub.is_closed() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "ferry is shutting down".into(),
        ));
    }
    hub.admit().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many live streams are open (at most {}); try again later",
                crate::live::MAX_VIEWERS
            ),
        )
    })
}

/// An SSE response of `stream` (a log's events), ended when the server stops.
fn sse(hub: &Hub, stream: impl Stream<Item = Event> + Send + 'static) -> Response {
    let stream = stream.map(Ok::<_, Infallible>).take_until(hub.closed());
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text(" keep-alive"))
        .into_response();
    // Reverse proxies (nginx) would otherwise hold events back in their buffers.
    response.headers_mut().insert(
        header::HeaderName::from_static("x-accel-buffering"),
        header::HeaderValue::from_static("no"),
    );
    response
}

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    app: Option<String>,
}

/// `GET /api/v1/events[?app=APP]`: `event: delivery`, `event: deployment`, `event: step`, and
/// `event: lagged` (`{"missed": N}`) when this viewer fell behind and lost changes.
pub(super) async fn events(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<EventsQuery>,
) -> ApiResult {
    if let Some(app) = &q.app
        && !shared.config.apps.contains_key(app)
    {
        return Err(not_found("app"));
    }
    let viewer = Viewer {
        _permit: admit(&shared.live)?,
        // Subscribed before the answer's head is sent: a client that has it misses nothing.
        rx: shared.live.subscribe(),
        app: q.app,
        expected: None,
        quiet_since: tokio::time::Instant::now(),
    };
    // The bytes are the hub's, framed once for every viewer: this stream only clones them
    // (axum's `Sse` would format each event again for each viewer).
    let stream = futures_util::stream::unfold(viewer, |mut v| async move {
        let chunk = v.next().await?;
        Some((Ok::<_, Infallible>(chunk), v))
    })
    .take_until(shared.live.closed());
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        // Reverse proxies (nginx) would otherwise hold events back in their buffers.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    Ok((headers, axum::body::Body::from_stream(stream)).into_response())
}

/// One viewer of `GET /api/v1/events`.
struct Viewer {
    _permit: OwnedSemaphorePermit,
    rx: tokio::sync::broadcast::Receiver<Arc<crate::live::Batch>>,
    app: Option<String>,
    /// How many changes of its kind (all, or its app's) came before the next it expects.
    expected: Option<u64>,
    /// When the last chunk went out: a keep-alive follows [`KEEP_ALIVE`] after it.
    quiet_since: tokio::time::Instant,
}

impl Viewer {
    /// The next chunk for this viewer (a batch's frames of its app, a lag notice first if it
    /// missed changes, or a keep-alive); `None` once the hub is gone.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let chunk = tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(batch) => {
                        let Some(part) = batch.part(self.app.as_deref()) else {
                            continue;
                        };
                        let missed = self.expected.map_or(0, |e| part.before.saturating_sub(e));
                        self.expected = Some(part.before + part.count);
                        if missed > 0 {
                            let mut chunk = BytesMut::from(&lagged(missed)[..]);
                            chunk.extend_from_slice(&part.bytes);
                            chunk.freeze()
                        } else {
                            part.bytes.clone()
                        }
                    }
                    // The next batch's counts say how many changes this viewer missed.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
                () = tokio::time::sleep_until(self.quiet_since + KEEP_ALIVE) => {
                    Bytes::from_static(b": keep-alive\n\n")
                }
            };
            self.quiet_since = tokio::time::Instant::now();
            return Some(chunk);
        }
    }
}

/// `event: lagged`: this viewer lost `missed` changes.
fn lagged(missed: u64) -> Bytes {
    let data = json!({ "missed": missed });
    Bytes::from(format!("event: lagged\ndata: {data}\n\n"))
}

/// Where a log stream resumes: `Last-Event-ID`, else `?offset=`, else the start. A value that
/// is no number is a 400.
fn resume_offset(headers: &HeaderMap, query: Option<u64>) -> Result<u64, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Last-Event-ID must be a byte offset of the log (a number), not {:?}",
                        String::from_utf8_lossy(v.as_bytes())
                    ),
                )
            }),
        None => Ok(query.unwrap_or(0)),
    }
}

/// `GET /api/v1/deployments/ID/logs` as SSE: one event per line (`id:` the offset after it),
/// then `event: end` with the deployment's final state.
pub(super) async fn log_events(
    shared: &Shared,
    id: i64,
    headers: &HeaderMap,
    offset: Option<u64>,
) -> ApiResult {
    let offset = resume_offset(headers, offset)?;
    shared
        .store
        .deployment(id)
        .await?
        .ok_or_else(|| not_found("deployment"))?;
    let source = match log_file(shared, id).await {
        Some(path) => deploylog::check_resume(&path, offset)
            .await
            .map(|()| LogSource::File(path)),
        None => check_table_resume(&shared.store, id, offset)
            .await
            .map(|()| LogSource::Table(TableLog::default())),
    };
    let source = source.map_err(|e| match e {
        deploylog::ResumeError::Io(e) => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read log: {e}"),
        ),
        deploylog::ResumeError::Store(e) => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read log: {e}"),
        ),
        e => ApiError(
            StatusCode::BAD_REQUEST,
            format!("cannot resume deployment {id}'s log: {e}"),
        ),
    })?;
    let follow = Follow {
        store: shared.store.clone(),
        id,
        source,
        offset,
        lines: VecDeque::new(),
        ended: None,
        checked: None,
        done: false,
        _permit: admit(&shared.live)?,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((event, f))
    });
    Ok(sse(&shared.live, stream))
}

/// Where this replica reads deployment `id`'s log: its own file — always on SQLite, and on a
/// shared store when the file exists (this replica runs or ran the deployment) — else `None`:
/// the store's copy.
pub(super) async fn log_file(shared: &Shared, id: i64) -> Option<PathBuf> {
    let path = deploylog::log_path(&shared.config.server.data_dir, id);
    // A file that cannot be checked is read as before, and its error reported from there.
    let local = !shared.store.shared() || tokio::fs::try_exists(&path).await.unwrap_or(true);
    local.then_some(path)
}

/// [`deploylog::check_resume`] on the store's copy of the log.
async fn check_table_resume(
    store: &Store,
    id: i64,
    offset: u64,
) -> Result<(), deploylog::ResumeError> {
    if offset == 0 {
        return Ok(());
    }
    let (before, _) = store.read_log(id, offset - 1, 1).await?;
    match before.first() {
        Some(b'\n') => Ok(()),
        Some(_) => Err(deploylog::ResumeError::NotLineEnd { offset }),
        None => {
            let (size, _) = store.log_extent(id).await?;
            Err(deploylog::ResumeError::BeyondEnd { offset, size })
        }
    }
}

/// Where a log stream reads the log.
enum LogSource {
    /// This replica's file (see [`log_file`]).
    File(PathBuf),
    /// The store's copy (another replica runs or ran the deployment).
    Table(TableLog),
}

/// A log stream's place in the store's copy of a log.
#[derive(Default)]
struct TableLog {
    /// The `seq` of the last chunk read; `None` until the first read, which finds the chunk
    /// that holds the stream's offset.
    last_seq: Option<i64>,
    /// Bytes read from the stream's offset on and not yet made into lines.
    bytes: Vec<u8>,
}

impl TableLog {
    /// Complete lines from `offset` (where `bytes` starts), as [`deploylog::read_lines`]
    /// reads a file: the new chunks are added to what was read before.
    async fn read_lines(
        &mut self,
        store: &Store,
        id: i64,
        offset: u64,
    ) -> Result<(Vec<(String, u64)>, bool), crate::store::StoreError> {
        // Whether chunks were left for the next read (then this is not the end of the log).
        let more = if self.bytes.len() >= READ_MAX {
            true
        } else if let Some(last) = self.last_seq {
            let chunks = store.log_chunks_after(id, last, TABLE_CHUNKS).await?;
            let more = chunks.len() as i64 >= TABLE_CHUNKS;
            for (seq, chunk) in chunks {
                self.bytes.extend_from_slice(&chunk);
                self.last_seq = Some(seq);
            }
            more
        } else {
            let from = store.log_from(id, offset, READ_MAX).await?;
            // Whole chunks are kept: the next read starts after the last one.
            self.bytes = from.bytes_from(offset, usize::MAX);
            self.last_seq = Some(from.last_seq());
            self.bytes.len() >= READ_MAX
        };
        let n = self.bytes.len().min(READ_MAX);
        let (lines, read_all) = deploylog::split_lines(&self.bytes[..n], offset, READ_MAX);
        let used = lines.last().map_or(0, |(_, end)| end - offset);
        self.bytes
            .drain(..usize::try_from(used).unwrap_or(usize::MAX).min(n));
        Ok((lines, read_all && !more && self.bytes.is_empty()))
    }
}

/// One viewer's place in a deployment's log.
struct Follow {
    store: Store,
    id: i64,
    source: LogSource,
    /// Where the next read starts: the end of the last line read.
    offset: u64,
    /// Lines read and not yet sent.
    lines: VecDeque<(String, u64)>,
    /// The final state, once the store said the deployment ended *before* a read that then
    /// reached the end of the file: `event: end` follows the lines read.
    ended: Option<DeploymentState>,
    /// When the store was last asked.
    checked: Option<tokio::time::Instant>,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl Follow {
    /// The next event, or `None` once `event: end` has been sent (or the log is unreadable).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some((line, offset)) = self.lines.pop_front() {
                return Some(Event::default().id(offset.to_string()).data(line));
            }
            if self.done {
                return None;
            }
            if let Some(state) = self.ended {
                self.done = true;
                return Some(
                    Event::default()
                        .event("end")
                        .data(json!({"state": state}).to_string()),
                );
            }
            // Asked before reading: every line written before the deployment ended is read.
            let ended = match self.final_state().await {
                Seen::Going => None,
                Seen::Ended(state) => Some(state),
                // Deleted meanwhile (retention): nothing more to follow.
                Seen::Gone => return None,
            };
            let (read, poll) = match &mut self.source {
                LogSource::File(path) => (
                    deploylog::read_lines(path, self.offset, READ_MAX)
                        .await
                        .map_err(|e| e.to_string()),
                    POLL,
                ),
                LogSource::Table(table) => (
                    table
                        .read_lines(&self.store, self.id, self.offset)
                        .await
                        .map_err(|e| e.to_string()),
                    TABLE_POLL,
                ),
            };
            let (lines, read_all) = match read {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(deployment = self.id, error = %e, "cannot read log for a live viewer");
                    return None;
                }
            };
            if let Some((_, last)) = lines.last() {
                self.offset = *last;
            }
            let idle = lines.is_empty();
            self.lines.extend(lines);
            if read_all {
                self.ended = ended;
            }
            if idle && self.ended.is_none() {
                tokio::time::sleep(poll).await;
            }
        }
    }

    /// Whether the deployment has ended (the store is asked at most every [`STATE_EVERY`]).
    async fn final_state(&mut self) -> Seen {
        let now = tokio::time::Instant::now();
        if self.checked.is_some_and(|at| now - at < STATE_EVERY) {
            return Seen::Going;
        }
        self.checked = Some(now);
        match self.store.deployment(self.id).await {
            Ok(Some(d)) if d.state.is_final() => Seen::Ended(d.state),
            Ok(Some(_)) => Seen::Going,
            Ok(None) => Seen::Gone,
            Err(e) => {
                tracing::warn!(deployment = self.id, error = %e, "cannot read deployment for a live viewer");
                Seen::Going
            }
        }
    }
}

/// What a log stream learnt of its deployment.
enum Seen {
    /// Still queued or running (or not asked this time).
    Going,
    Ended(DeploymentState),
    /// No longer stored.
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{Change, Kind};

    fn viewer(hub: &Hub, app: Option<&str>) -> Viewer {
        Viewer {
            _permit: hub.admit().unwrap(),
            rx: hub.subscribe(),
            app: app.map(str::to_string),
            expected: None,
            quiet_since: tokio::time::Instant::now(),
        }
    }

    fn publish(hub: &Hub, app: &str, id: i64) {
        hub.publish(|| Change::new(Kind::Delivery, app.into(), move || json!({ "id": id })));
    }

    fn frames(ids: &[i64]) -> String {
        ids.iter()
            .map(|id| format!("event: delivery\ndata: {{\"id\":{id}}}\n\n"))
            .collect()
    }

    async fn next(v: &mut Viewer) -> String {
        String::from_utf8(v.next().await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_viewer_gets_its_apps_frames_and_is_told_when_it_lagged() {
        let hub = Hub::new(2, 10);
        let mut shop = viewer(&hub, Some("shop"));
        publish(&hub, "blog", 1);
        publish(&hub, "shop", 2);
        publish(&hub, "shop", 3);
        assert_eq!(next(&mut shop).await, frames(&[2, 3]));
        // A batch with nothing of shop is not sent to it.
        publish(&hub, "blog", 4);
        tokio::time::sleep(crate::live::PACE * 2).await;
        // Five batches while it does not read: the two newest are kept.
        for id in 5..10 {
            publish(&hub, "shop", id);
            tokio::time::sleep(crate::live::PACE * 2).await;
        }
        assert_eq!(
            next(&mut shop).await,
            format!("event: lagged\ndata: {{\"missed\":3}}\n\n{}", frames(&[8]))
        );
        assert_eq!(next(&mut shop).await, frames(&[9]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_gets_a_keep_alive() {
        let hub = Hub::default();
        let mut v = viewer(&hub, None);
        let started = tokio::time::Instant::now();
        assert_eq!(&v.next().await.unwrap()[..], b": keep-alive\n\n");
        assert_eq!(started.elapsed(), KEEP_ALIVE);
    }

    #[test]
    fn only_event_stream_requests_get_events() {
        let mut headers = HeaderMap::new();
        assert!(!wants_events(&headers));
        headers.insert(
            header::ACCEPT,
            "text/html, text/event-stream".parse().unwrap(),
        );
        assert!(wants_events(&headers));
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", "12".parse().unwrap());
        assert_eq!(resume_offset(&headers, Some(3)).ok(), Some(12));
        assert_eq!(resume_offset(&HeaderMap::new(), Some(3)).ok(), Some(3));
        headers.insert("last-event-id", "x".parse().unwrap());
        assert!(resume_offset(&headers, None).is_err());
    }
}
