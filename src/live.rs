//! The live hub: every change users may watch — a delivery stored or settled, a deployment's
//! state, a deployment step — broadcast to whoever watches (`GET /api/v1/events`, the
//! dashboard).
//!
//! The store publishes each change once, after the transaction that made it committed and
//! while it still holds the write gate, so viewers see changes in commit order. Publishing is
//! free when nobody watches: [`Hub::publish`] takes a closure and calls it only when a viewer
//! is subscribed, so the intake writer builds nothing per delivery. A [`Change`] is shared by
//! every viewer (`Arc`) and rendered at most once — its JSON, and the whole SSE event around
//! it, as `Bytes` every viewer's connection sends as they are — by the first viewer that needs
//! it (`OnceLock`), however many watch. A viewer that falls more than [`CAPACITY`] changes
//! behind loses the oldest (`broadcast`'s lag) and is told how many it missed.
//!
//! The hub also bounds how many live streams may be open at once ([`Hub::admit`]) and ends
//! them at shutdown ([`Hub::close`]), so a viewer never holds the server's stop open.
//! Bottom layer: it imports nothing of ferry's.

use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

/// How many changes a viewer may fall behind before it loses some: enough for a viewer that
/// reads every 25 ms (`api::live`) at well beyond the intake's rate (about 4 changes per hook
/// delivery). Each waiting change is a few hundred bytes.
pub(crate) const CAPACITY: usize = 4096;

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
    frame: OnceLock<bytes::Bytes>,
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
    pub(crate) fn frame(&self) -> bytes::Bytes {
        self.frame
            .get_or_init(|| {
                let kind = self.kind.as_str();
                bytes::Bytes::from(format!("event: {kind}\ndata: {}\n\n", self.json()))
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

/// The broadcast of changes. Cheap to clone: clones share the channel, the viewer limit and
/// the shutdown token.
#[derive(Clone)]
pub(crate) struct Hub {
    tx: broadcast::Sender<Arc<Change>>,
    viewers: Arc<Semaphore>,
    closed: CancellationToken,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new(CAPACITY, MAX_VIEWERS)
    }
}

impl Hub {
    /// A hub whose viewers may lag `capacity` changes, with at most `max_viewers` streams.
    pub(crate) fn new(capacity: usize, max_viewers: usize) -> Hub {
        Hub {
            tx: broadcast::channel(capacity).0,
            viewers: Arc::new(Semaphore::new(max_viewers)),
            closed: CancellationToken::new(),
        }
    }

    /// Whether anybody watches: publishers skip even reading what changed when nobody does.
    pub(crate) fn listening(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes the change `make` builds — only if somebody watches.
    pub(crate) fn publish(&self, make: impl FnOnce() -> Change) {
        if self.listening() {
            // An error only means the last viewer left meanwhile.
            let _ = self.tx.send(Arc::new(make()));
        }
    }

    /// A new viewer's receiver: it gets every change published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
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

    #[tokio::test]
    async fn every_viewer_gets_each_change_rendered_once() {
        let hub = Hub::default();
        let (mut one, mut two) = (hub.subscribe(), hub.subscribe());
        let renders = Arc::new(AtomicUsize::new(0));
        hub.publish(|| change("shop", &renders));
        let (a, b) = (one.recv().await.unwrap(), two.recv().await.unwrap());
        assert_eq!(a.json(), "{\"id\":1}");
        assert_eq!(b.json(), "{\"id\":1}");
        assert_eq!(&a.frame()[..], b"event: deployment\ndata: {\"id\":1}\n\n");
        assert_eq!(a.frame().as_ptr(), b.frame().as_ptr(), "one frame for all");
        assert_eq!(a.app(), "shop");
        assert_eq!(renders.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_lagging_viewer_is_told_how_many_it_missed() {
        let hub = Hub::new(2, 10);
        let mut rx = hub.subscribe();
        let renders = Arc::new(AtomicUsize::new(0));
        for _ in 0..5 {
            hub.publish(|| change("a", &renders));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(3))
        ));
        assert!(rx.recv().await.is_ok());
        // Nobody rendered what nobody read.
        assert_eq!(renders.load(Ordering::SeqCst), 0);
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
