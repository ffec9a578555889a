//! The live hub: every change users may watch — a delivery stored or settled, a deployment's
//! state, a deployment step — broadcast to whoever watches (`GET /api/v1/events`, the
//! dashboard).
//!
//! The store publishes each change once, after the transaction that made it committed and
//! while it still holds the write gate, so viewers see changes in commit order. Publishing is
//! free when nobody watches: [`Hub::publish`] takes a closure and calls it only when a viewer
//! is subscribed, so the intake writer builds nothing per delivery. When somebody watches, a
//! publish hands an `Arc<Change>` to one task, the batcher, and wakes nobody else: the batcher
//! gathers the changes of [`PACE`] (25 ms), renders each once (its JSON and the SSE frame
//! around it, cached in `OnceLock`s) and sends one [`Batch`] — the frames for viewers of every
//! app, and for each app's — that every viewer sends as it is (`Bytes`: a reference count, no
//! copy). So a viewer costs one wake-up per batch whatever the rate of changes, and the work
//! per change is done once however many watch. A viewer more than [`CAPACITY`] batches behind
//! loses the oldest and is told how many changes it missed (the batch's counts say).
//!
//! The hub also bounds how many live streams may be open at once ([`Hub::admit`]) and ends
//! them at shutdown ([`Hub::close`]), so a viewer never holds the server's stop open.
//! Bottom layer: it imports nothing of ferry's.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

/// How many changes may wait for the batcher, and how many batches a viewer may fall behind
/// before it loses some (4,096 batches: 100 s of a busy server).
pub(crate) const CAPACITY: usize = 4096;

/// How long the batcher gathers changes after the first of a batch: what a viewer sees is at
/// most this much later, and each viewer wakes at most once per pace.
pub(crate) const PACE: Duration = Duration::from_millis(25);

/// How many live streams (events and log follows together) may be open at once: each holds a
/// connection and a little memory, so viewers cannot exhaust the server.
pub(crate) const MAX_VIEWERS: usize = 1000;

/// What changed: the SSE event name of a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A delivery was stored (received or rejected) or settled by the planner.
    Delivery,
    /// A deployment's state changed.
    Deployment,
    /// A deployment step started or ended.
    Step,
}

impl Kind {
    /// The SSE event name.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Kind::Delivery => "delivery",
            Kind::Deployment => "deployment",
            Kind::Step => "step",
        }
    }
}

/// Renders a change's data as JSON (called once, when the first viewer needs it).
type Render = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

/// One change, shared by every viewer.
pub(crate) struct Change {
    kind: Kind,
    app: String,
    render: Render,
    json: OnceLock<String>,
    frame: OnceLock<Bytes>,
}

impl Change {
    /// A change of `app`, whose data `render` builds when first needed.
    pub(crate) fn new(
        kind: Kind,
        app: String,
        render: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Change {
        Change {
            kind,
            app,
            render: Box::new(render),
            json: OnceLock::new(),
            frame: OnceLock::new(),
        }
    }

    pub(crate) fn app(&self) -> &str {
        &self.app
    }

    /// The data as JSON text, rendered once for all viewers.
    pub(crate) fn json(&self) -> &str {
        self.json.get_or_init(|| (self.render)().to_string())
    }

    /// The whole Server-Sent Event (`event:` and one `data:` line: compact JSON has no
    /// newline), built once; each viewer sends a clone (a reference count, no copy).
    pub(crate) fn frame(&self) -> Bytes {
        self.frame
            .get_or_init(|| {
                let kind = self.kind.as_str();
                Bytes::from(format!("event: {kind}\ndata: {}\n\n", self.json()))
            })
            .clone()
    }
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Change")
            .field("kind", &self.kind)
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// One pace's worth of changes, as the SSE bytes each kind of viewer sends: every change
/// (`all`) and each app's. Built once by the batcher, shared by every viewer.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    all: Part,
    apps: HashMap<String, Part>,
}

/// The frames of one viewer's kind of a [`Batch`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Part {
    /// How many changes of this kind came before (since the hub started): a viewer that
    /// expected more has missed the difference.
    pub(crate) before: u64,
    pub(crate) count: u64,
    pub(crate) bytes: Bytes,
}

impl Batch {
    /// What a viewer of `app` (all apps: `None`) sends of it, if anything.
    pub(crate) fn part(&self, app: Option<&str>) -> Option<&Part> {
        match app {
            None => Some(&self.all),
            Some(app) => self.apps.get(app),
        }
    }
}

/// The hub. Cheap to clone: clones share the channels, the viewer limit and the shutdown
/// token.
#[derive(Clone)]
pub(crate) struct Hub {
    /// Publishers → the batcher (its only receiver).
    changes: broadcast::Sender<Arc<Change>>,
    /// The batcher → viewers.
    batches: broadcast::Sender<Arc<Batch>>,
    /// Whether the batcher runs (started by the first viewer).
    batcher: Arc<std::sync::Once>,
    viewers: Arc<Semaphore>,
    closed: CancellationToken,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new(CAPACITY, MAX_VIEWERS)
    }
}

impl Hub {
    /// A hub whose viewers may lag `capacity` batches, with at most `max_viewers` streams.
    pub(crate) fn new(capacity: usize, max_viewers: usize) -> Hub {
        Hub {
            changes: broadcast::channel(CAPACITY).0,
            batches: broadcast::channel(capacity).0,
            batcher: Arc::new(std::sync::Once::new()),
            viewers: Arc::new(Semaphore::new(max_viewers)),
            closed: CancellationToken::new(),
        }
    }

    /// Whether anybody watches: publishers skip even reading what changed when nobody does.
    pub(crate) fn listening(&self) -> bool {
        self.batches.receiver_count() > 0
    }

    /// Publishes the change `make` builds — only if somebody watches. Wakes at most the
    /// batcher, never a viewer.
    pub(crate) fn publish(&self, make: impl FnOnce() -> Change) {
        if self.listening() {
            // An error only means the batcher is gone (the runtime is stopping).
            let _ = self.changes.send(Arc::new(make()));
        }
    }

    /// A new viewer's receiver of batches: it gets every change published from now on. The
    /// first one starts the batcher (so a hub without viewers runs no task).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.batcher.call_once(|| {
            let rx = self.changes.subscribe();
            tokio::spawn(batch(rx, self.batches.clone(), self.closed.clone()));
        });
        self.batches.subscribe()
    }

    /// A place for one more live stream, held while it is open; `None` when
    /// [`MAX_VIEWERS`] are open already.
    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.viewers.clone().try_acquire_owned().ok()
    }

    /// Fires when the server stops: live streams end then.
    pub(crate) fn closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.closed.clone().cancelled_owned()
    }

    /// Whether the server is stopping.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Ends every live stream (shutdown), and refuses new ones.
    pub(crate) fn close(&self) {
        self.closed.cancel();
    }
}

/// The batcher: waits for a change, lets [`PACE`] pass, then turns every change that came
/// meanwhile into one [`Batch`] for all viewers. However many watch, each change is framed and
/// copied here once, and each viewer wakes once per batch.
async fn batch(
    mut rx: broadcast::Receiver<Arc<Change>>,
    out: broadcast::Sender<Arc<Batch>>,
    closed: CancellationToken,
) {
    let mut counts = Counts::default();
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            () = closed.cancelled() => return,
        };
        let mut changes = Vec::new();
        match first {
            Ok(change) => changes.push(change),
            Err(broadcast::error::RecvError::Lagged(n)) => counts.all += n,
            Err(broadcast::error::RecvError::Closed) => return,
        }
        tokio::time::sleep(PACE).await;
        loop {
            match rx.try_recv() {
                Ok(change) => changes.push(change),
                Err(broadcast::error::TryRecvError::Lagged(n)) => counts.all += n,
                Err(_) => break,
            }
        }
        // No viewer left: nothing to send (`send` would fail all the same).
        let _ = out.send(Arc::new(counts.batch(&changes)));
    }
}

/// How many changes the batcher has seen, in all and per app.
#[derive(Default)]
struct Counts {
    all: u64,
    apps: HashMap<String, u64>,
}

impl Counts {
    fn batch(&mut self, changes: &[Arc<Change>]) -> Batch {
        let mut all = BytesMut::new();
        let mut apps: HashMap<&str, BytesMut> = HashMap::new();
        let mut per_app: HashMap<&str, u64> = HashMap::new();
        for change in changes {
            let frame = change.frame();
            all.extend_from_slice(&frame);
            apps.entry(change.app())
                .or_default()
                .extend_from_slice(&frame);
            *per_app.entry(change.app()).or_default() += 1;
        }
        let count = changes.len() as u64;
        let batch = Batch {
            all: Part {
                before: self.all,
                count,
                bytes: all.freeze(),
            },
            apps: apps
                .into_iter()
                .map(|(app, bytes)| {
                    let count = per_app.get(app).copied().unwrap_or(0);
                    let before = self.apps.entry(app.to_string()).or_default();
                    let part = Part {
                        before: *before,
                        count,
                        bytes: bytes.freeze(),
                    };
                    *before += count;
                    (app.to_string(), part)
                })
                .collect(),
        };
        self.all += count;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn change(app: &str, renders: &Arc<AtomicUsize>) -> Change {
        let renders = renders.clone();
        Change::new(Kind::Deployment, app.into(), move || {
            renders.fetch_add(1, Ordering::SeqCst);
            serde_json::json!({"id": 1})
        })
    }

    #[test]
    fn nothing_is_built_while_nobody_watches() {
        let hub = Hub::default();
        let mut built = false;
        hub.publish(|| {
            built = true;
            Change::new(Kind::Delivery, "a".into(), || serde_json::Value::Null)
        });
        assert!(!built);
        assert!(!hub.listening());
    }

    fn text(part: Option<&Part>) -> String {
        part.map(|p| String::from_utf8_lossy(&p.bytes).into_owned())
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn viewers_get_one_batch_per_pace_each_change_rendered_once() {
        let hub = Hub::default();
        let (mut one, mut two) = (hub.subscribe(), hub.subscribe());
        assert!(hub.listening());
        let renders = Arc::new(AtomicUsize::new(0));
        let started = tokio::time::Instant::now();
        hub.publish(|| change("shop", &renders));
        hub.publish(|| change("blog", &renders));
        hub.publish(|| change("shop", &renders));
        let (a, b) = (one.recv().await.unwrap(), two.recv().await.unwrap());
        assert_eq!(started.elapsed(), PACE);
        assert!(Arc::ptr_eq(&a, &b), "one batch for all viewers");
        let frame = "event: deployment\ndata: {\"id\":1}\n\n";
        assert_eq!(text(a.part(None)), frame.repeat(3));
        assert_eq!(text(a.part(Some("shop"))), frame.repeat(2));
        assert_eq!(text(a.part(Some("blog"))), frame);
        assert!(a.part(Some("other")).is_none());
        assert_eq!(renders.load(Ordering::SeqCst), 3);

        // The next batch counts what came before, per viewer's kind.
        hub.publish(|| change("blog", &renders));
        let next = one.recv().await.unwrap();
        let all = next.part(None).unwrap();
        assert_eq!((all.before, all.count), (3, 1));
        let blog = next.part(Some("blog")).unwrap();
        assert_eq!((blog.before, blog.count), (1, 1));
        assert!(next.part(Some("shop")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_viewer_that_lags_loses_whole_batches() {
        let hub = Hub::new(2, 10);
        let mut rx = hub.subscribe();
        let renders = Arc::new(AtomicUsize::new(0));
        for _ in 0..5 {
            hub.publish(|| change("a", &renders));
            tokio::time::sleep(PACE * 2).await;
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(3))
        ));
        let batch = rx.recv().await.unwrap();
        // Three batches of one change each were lost: the next counts them (`before`).
        assert_eq!(batch.part(None).unwrap().before, 3);
    }

    #[test]
    fn viewers_are_limited_and_their_places_come_back() {
        let hub = Hub::new(4, 2);
        let a = hub.admit().unwrap();
        let _b = hub.admit().unwrap();
        assert!(hub.admit().is_none());
        drop(a);
        assert!(hub.admit().is_some());
    }

    #[tokio::test]
    async fn close_ends_waiting_streams() {
        let hub = Hub::default();
        let closed = hub.closed();
        assert!(!hub.is_closed());
        hub.close();
        closed.await;
        assert!(hub.is_closed());
    }
}
