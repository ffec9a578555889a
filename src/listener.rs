//! The accept loop of every listener (the main one with or without TLS, the admin one, and
//! both while the store cannot open): TCP accept → TLS handshake (with `server.tls`) → one
//! hyper connection speaking HTTP/1.1 or HTTP/2 (by ALPN, or the HTTP/2 preface on plain
//! HTTP) → the axum router. It holds the limits a slow or hostile client meets before any
//! handler runs:
//!
//! - **Header timeout** (`server.header_timeout`): one budget, counted from accepting the
//!   connection (then from the end of each request), for finishing the TLS handshake and
//!   sending a complete request head. A connection with no request in progress for that long
//!   is asked to close (HTTP/2: GOAWAY) and dropped [`CLOSE_GRACE`] later if it has not: this
//!   closes idle keep-alive connections, connections that never send a byte, and HTTP/2
//!   connections, for which hyper has no header-read timeout. On HTTP/1.1 hyper's
//!   `header_read_timeout` also cuts off a head that is still arriving.
//! - **Body timeout** (`server.body_timeout`): every request body (HTTP/1.1 and HTTP/2) is
//!   wrapped in [`Deadline`], which fails with [`BodyTimeout`] once the body has taken longer
//!   than that since its head arrived; ingress answers that 408.
//! - **Connection cap** (`server.max_connections`, clamped to what `RLIMIT_NOFILE` leaves after
//!   [`RESERVED_FDS`]), shared by every listener served with the same [`ConnLimits`]: at the
//!   cap, a newly accepted connection pushes out the connection that has been idle longest (no
//!   request or response in progress), so idle and slowloris connections can never lock out
//!   `/healthz` or a sender. If every connection is busy, accepting pauses until one ends
//!   (new ones wait in the kernel's backlog). Running out of file descriptors (`EMFILE`)
//!   closes the longest-idle connection and retries after 50 ms; an accept error never ends
//!   the server. The cap counts connections, not HTTP/2 streams (hyper caps those per
//!   connection).
//! - Every request carries `ConnectInfo<SocketAddr>` (the TCP peer) and, when the TLS client
//!   presented a verified certificate, a `crate::tls::PeerCertificate`.
//! - **Shutdown**: when `shutdown` completes, accepting stops, handshakes in progress are
//!   dropped, open connections are asked to close after the requests they have (HTTP/2:
//!   GOAWAY), and [`serve`] returns once the last one has closed.
//!
//! [`serve`] is what the server runs; [`serve_with`] takes any `handshake` (the TLS one is
//! `crate::tls::handshake`) that runs in the connection's own task and may return request
//! extensions every request on the connection carries.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Server;
use crate::tls::Tls;

/// File descriptors kept free for everything but client connections: the store (database,
/// WAL and shared-memory files per pooled connection), deploy commands (pipes, log and payload
/// files), the Docker socket, outgoing HTTP, and the one extra accept that makes room.
pub(crate) const RESERVED_FDS: u64 = 32;

/// How long a connection asked to close (shutdown, or idle past the header timeout) may stay
/// open without a request in progress before it is dropped: an HTTP/2 client that ignores
/// GOAWAY, or an HTTP/1.1 one that keeps trickling a head, cannot hold it.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connection-level limits, from `[server]`. Clones share one connection cap, so the
/// main and admin listeners together stay within the open-file budget.
#[derive(Clone)]
pub(crate) struct ConnLimits {
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) max_connections: usize,
    /// The open connections of every listener using these limits.
    connections: Arc<Registry>,
}

impl ConnLimits {
    pub(crate) fn new(
        header_timeout: Duration,
        body_timeout: Duration,
        max_connections: usize,
    ) -> Self {
        ConnLimits {
            header_timeout,
            body_timeout,
            max_connections,
            connections: Arc::default(),
        }
    }

    /// The configured limits, with `max_connections` lowered (and a warning logged) when the
    /// process's file-descriptor limit cannot hold that many connections plus
    /// [`RESERVED_FDS`]. The soft limit is first raised as far as needed (never beyond the
    /// hard limit; deploy commands inherit it, so no further).
    pub(crate) fn for_server(server: &Server) -> ConnLimits {
        let mut limits = ConnLimits::new(
            server.header_timeout,
            server.body_timeout,
            server.max_connections,
        );
        if let Some(fit) = connections_that_fit(limits.max_connections as u64)
            && (limits.max_connections as u64) > fit
        {
            let fit = usize::try_from(fit).unwrap_or(usize::MAX).max(1);
            tracing::warn!(
                configured = limits.max_connections,
                used = fit,
                "server.max_connections does not fit the open-file limit (ulimit -n) with {RESERVED_FDS} descriptors reserved; lowering it (raise the limit, e.g. LimitNOFILE= in systemd)"
            );
            limits.max_connections = fit;
        }
        limits
    }

    /// hyper's connection builder: HTTP/1.1 and HTTP/2 on the same port. HTTP/2 pings the
    /// client every `header_timeout` and drops it if it does not answer within that (a dead
    /// peer with a request open; idle connections are closed by [`connection`] anyway).
    fn http(&self) -> auto::Builder<TokioExecutor> {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .keep_alive(true);
        http.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.header_timeout)
            .keep_alive_timeout(self.header_timeout);
        http
    }
}

/// How many connections the open-file limit leaves room for, after the descriptors already
/// open and [`RESERVED_FDS`], having raised the soft limit towards what `wanted` connections
/// need. `None` when the limit cannot be read.
fn connections_that_fit(wanted: u64) -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (mut soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(16);
    let needed = wanted.saturating_add(open + RESERVED_FDS).min(hard);
    if needed > soft && setrlimit(Resource::RLIMIT_NOFILE, needed, hard).is_ok() {
        soft = needed;
    }
    Some(soft.saturating_sub(open + RESERVED_FDS))
}

/// What a listener's requests are routed by: one router, or (while the store cannot be
/// opened) a stand-in until the real router is handed over. The choice is made per request,
/// so the handover closes no connection and drops no request: a keep-alive or HTTP/2
/// connection that got a 503 from the stand-in gets the real router on its next request.
#[derive(Clone)]
pub(crate) enum Routes {
    Router(Router),
    Handover {
        /// Set once, when the real router is ready.
        ready: Arc<std::sync::OnceLock<Router>>,
        meanwhile: Router,
    },
}

impl Routes {
    fn current(&self) -> Router {
        match self {
            Routes::Router(r) => r.clone(),
            Routes::Handover { ready, meanwhile } => ready.get().unwrap_or(meanwhile).clone(),
        }
    }
}

impl From<Router> for Routes {
    fn from(router: Router) -> Self {
        Routes::Router(router)
    }
}

/// Serves `routes` on `listener` (HTTPS when `tls` is set) until `shutdown` completes, then
/// stops accepting and waits for the requests in progress to be answered.
pub(crate) async fn serve(
    listener: TcpListener,
    routes: impl Into<Routes>,
    limits: ConnLimits,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let routes = routes.into();
    match tls {
        Some(tls) => {
            let handshake = move |tcp| crate::tls::handshake(tls.clone(), tcp);
            serve_with(listener, routes, limits, shutdown, handshake).await
        }
        None => {
            let plain = |tcp| async move { Ok((tcp, http::Extensions::new())) };
            serve_with(listener, routes, limits, shutdown, plain).await
        }
    }
}

/// What every connection of one listener shares.
struct Serving<H> {
    routes: Routes,
    limits: ConnLimits,
    http: auto::Builder<TokioExecutor>,
    handshake: H,
    stopping: CancellationToken,
}

/// [`serve`] with a `handshake` from the accepted TCP stream to the stream HTTP is spoken on,
/// plus extensions every request on that connection carries. It runs in the connection's own
/// task (a slow handshake never holds up accepting), within the header timeout.
pub(crate) async fn serve_with<H, F, I>(
    listener: TcpListener,
    routes: Routes,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handshake: H,
) -> io::Result<()>
where
    H: Fn(TcpStream) -> F + Send + Sync + 'static,
    F: Future<Output = io::Result<(I, http::Extensions)>> + Send + 'static,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stopping = CancellationToken::new();
    {
        let stopping = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopping.cancel();
        });
    }
    let serving = Arc::new(Serving {
        http: limits.http(),
        routes,
        limits,
        handshake,
        stopping,
    });
    let registry = &serving.limits.connections;
    let tasks = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&e, registry).await;
                    continue;
                }
            },
            _ = serving.stopping.cancelled() => break,
        };
        make_room(registry, serving.limits.max_connections, &serving.stopping).await;
        let _ = tcp.set_nodelay(true);
        let slot = registry.add();
        let serving = serving.clone();
        tasks.spawn(async move {
            connection(&serving, tcp, peer, &slot).await;
            serving.limits.connections.remove(slot.id);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// At the cap: pushes out the longest-idle connection, or waits until a request ends (or
/// shutdown begins).
async fn make_room(registry: &Registry, max: usize, stopping: &CancellationToken) {
    if registry.len() < max {
        return;
    }
    registry.warn_at_cap(max);
    while registry.len() >= max && !registry.evict_idle() {
        tokio::select! {
            _ = registry.wait_freed() => {}
            _ = stopping.cancelled() => return,
        }
    }
}

/// One connection, in its own task: the handshake, then HTTP until the client closes, the
/// connection is evicted, or it is asked to close (idle past the header timeout, shutdown).
async fn connection<H, F, I>(
    serving: &Serving<H>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: &Arc<Slot>,
) where
    H: Fn(TcpStream) -> F,
    F: Future<Output = io::Result<(I, http::Extensions)>>,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Some((io, extensions)) = handshake_in_time(serving, tcp, peer, slot).await {
        serve_http(serving, io, extensions, peer, slot).await;
    }
}

/// The handshake, within the header timeout counted from accept (the same budget the first
/// request head then has to arrive in); `None` if it failed, timed out, or the connection
/// was evicted or the server is stopping.
async fn handshake_in_time<H, F, I>(
    serving: &Serving<H>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: &Slot,
) -> Option<(I, http::Extensions)>
where
    H: Fn(TcpStream) -> F,
    F: Future<Output = io::Result<(I, http::Extensions)>>,
{
    let deadline = slot.epoch + serving.limits.header_timeout;
    let handshaken = tokio::select! {
        r = tokio::time::timeout_at(deadline, (serving.handshake)(tcp)) => r,
        _ = slot.evicted.cancelled() => return None,
        _ = serving.stopping.cancelled() => return None,
    };
    match handshaken {
        Ok(Ok(done)) => Some(done),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "handshake failed; connection closed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake not finished within server.header_timeout; connection closed");
            None
        }
    }
}

/// HTTP/1.1 or HTTP/2 on the handshaken stream, until it ends, is evicted, or has been
/// asked to close and then stayed idle for [`CLOSE_GRACE`].
async fn serve_http<H, I>(
    serving: &Serving<H>,
    io: I,
    extensions: http::Extensions,
    peer: SocketAddr,
    slot: &Arc<Slot>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &serving.limits;
    let service = hyper::service::service_fn({
        let (routes, slot, body_timeout) =
            (serving.routes.clone(), slot.clone(), limits.body_timeout);
        move |req| {
            request(
                req,
                routes.current(),
                peer,
                extensions.clone(),
                body_timeout,
                slot.clone(),
            )
        }
    });
    let conn = serving.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // When the connection was asked to close (idle too long, or shutdown).
    let mut closing: Option<Instant> = None;
    loop {
        let (limit, since) = match closing {
            Some(asked) => (CLOSE_GRACE, asked),
            None => (limits.header_timeout, slot.epoch),
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            // Dropping the connection closes it.
            _ = slot.evicted.cancelled() => {
                tracing::debug!(%peer, "closed an idle connection to make room");
                return;
            }
            _ = slot.idle_for(limit, since) => {
                if closing.is_some() {
                    tracing::debug!(%peer, "connection asked to close stayed open; dropped");
                    return;
                }
                tracing::debug!(%peer, "no request within server.header_timeout; closing");
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = serving.stopping.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
        }
    }
}

/// One request: the extensions handlers rely on, the body deadline, and the connection marked
/// busy (not idle, not evictable) until the response has been sent.
async fn request(
    mut req: http::Request<Incoming>,
    router: Router,
    peer: SocketAddr,
    extensions: http::Extensions,
    body_timeout: Duration,
    slot: Arc<Slot>,
) -> Result<axum::response::Response, std::convert::Infallible> {
    use tower::ServiceExt;
    let busy = slot.busy();
    req.extensions_mut().extend(extensions);
    req.extensions_mut().insert(ConnectInfo(peer));
    let req = req.map(|body| axum::body::Body::new(Deadline::new(body, body_timeout)));
    let response = router.oneshot(req).await?;
    Ok(response.map(|body| axum::body::Body::new(Sending { body, _busy: busy })))
}

/// A response body that keeps its connection marked busy until it is sent (or dropped).
struct Sending {
    body: axum::body::Body,
    _busy: Busy,
}

impl Body for Sending {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What to do when `accept` fails: connection-level errors (the client gave up) are ignored;
/// running out of descriptors closes the longest-idle connection; anything else waits a
/// moment so a persistent error cannot spin.
async fn accept_failed(e: &io::Error, registry: &Registry) {
    use nix::errno::Errno;
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    let out_of_fds = e
        .raw_os_error()
        .is_some_and(|n| n == Errno::EMFILE as i32 || n == Errno::ENFILE as i32);
    if out_of_fds {
        let evicted = registry.evict_idle();
        tracing::warn!(
            error = %e,
            evicted_idle = evicted,
            "out of file descriptors accepting a connection; raise the open-file limit or lower server.max_connections"
        );
    } else {
        tracing::error!(error = %e, "cannot accept a connection");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The open connections, for the cap and for choosing which idle one to close.
#[derive(Default)]
struct Registry {
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    /// Notified whenever a connection ends or a request finishes.
    freed: Arc<tokio::sync::Notify>,
    /// When the cap was last reported (seconds since the Unix epoch), to log it once a minute.
    cap_warned_at: AtomicU64,
}

struct Slot {
    id: u64,
    /// Requests in progress on this connection.
    busy: AtomicUsize,
    /// When the connection was opened or last finished a request, in ms since `epoch`.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    evicted: CancellationToken,
    /// The registry's `freed`.
    freed: Arc<tokio::sync::Notify>,
}

impl Registry {
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn warn_at_cap(&self, max: usize) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.cap_warned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60
            && self
                .cap_warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max_connections = max,
                "connection cap reached: each new connection closes the longest-idle one (or waits while all are busy); logged at most once a minute"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self) -> Arc<Slot> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id,
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            evicted: CancellationToken::new(),
            freed: self.freed.clone(),
        });
        self.lock().insert(id, slot.clone());
        slot
    }

    /// Until a connection ends or a request finishes (or a short while: a notification sent
    /// just before waiting would otherwise be missed).
    async fn wait_freed(&self) {
        let _ = tokio::time::timeout(Duration::from_millis(100), self.freed.notified()).await;
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.freed.notify_waiters();
    }

    /// Closes the connection idle the longest (no request in progress) and forgets it at once,
    /// so the new connection can take its place. False if every connection is busy.
    fn evict_idle(&self) -> bool {
        let mut slots = self.lock();
        let oldest = slots
            .values()
            .filter(|s| s.is_idle())
            .min_by_key(|s| s.idle_since())
            .map(|s| s.id);
        match oldest.and_then(|id| slots.remove(&id)) {
            Some(slot) => {
                slot.evicted.cancel();
                true
            }
            None => false,
        }
    }
}

impl Slot {
    fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed))
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// Completes once the connection has had no request in progress for `limit`, counting
    /// from `since` at the earliest.
    async fn idle_for(&self, limit: Duration, since: Instant) {
        loop {
            let check_at = if self.is_idle() {
                self.idle_since().max(since) + limit
            } else {
                Instant::now() + limit
            };
            tokio::time::sleep_until(check_at).await;
            if self.is_idle() && self.idle_since().max(since) + limit <= Instant::now() {
                return;
            }
        }
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }
}

/// Marks a connection busy while a request is in progress.
struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        let slot = &self.0;
        let ms = u64::try_from(slot.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        slot.idle_since_ms.store(ms, Ordering::Relaxed);
        slot.busy.fetch_sub(1, Ordering::AcqRel);
        slot.freed.notify_waiters();
    }
}

/// A request body that must arrive within a time limit counted from the request's head.
pub(crate) struct Deadline<B> {
    inner: B,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Deadline<B> {
    pub(crate) fn new(inner: B, limit: Duration) -> Deadline<B> {
        Deadline {
            inner,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

/// The body did not arrive within `server.body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the body was not received within {} (server.body_timeout)", humantime::format_duration(*.0))]
pub(crate) struct BodyTimeout(pub Duration);

impl BodyTimeout {
    /// Finds a body timeout in an error's source chain (as `to_bytes` wraps it).
    pub(crate) fn in_chain<'a>(
        e: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a BodyTimeout> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(t) = err.downcast_ref::<BodyTimeout>() {
                return Some(t);
            }
            cur = err.source();
        }
        None
    }
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_that_stalls_fails_with_body_timeout() {
        use futures_util::StreamExt;
        // One byte, then nothing, as a slow client sends it.
        let frames =
            futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"{")))])
                .chain(futures_util::stream::pending());
        let body = Deadline::new(
            http_body_util::StreamBody::new(frames),
            Duration::from_millis(200),
        );
        let started = Instant::now();
        let err = body.collect().await.map(|c| c.to_bytes()).unwrap_err();
        assert!(BodyTimeout::in_chain(&*err).is_some(), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_body_in_time_passes() {
        let body = Deadline::new(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            Duration::from_secs(30),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{}");
    }

    /// The interface other layers rely on: every request carries the client's address as
    /// `ConnectInfo<SocketAddr>`; without TLS there is no `PeerCertificate`.
    #[tokio::test]
    async fn requests_carry_the_client_address() {
        use crate::tls::PeerCertificate;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            axum::routing::get(
                |ConnectInfo(peer): ConnectInfo<SocketAddr>,
                 cert: Option<axum::Extension<PeerCertificate>>| async move {
                    format!("{peer} {}", cert.is_some())
                },
            ),
        );
        let stop = CancellationToken::new();
        let limits = ConnLimits::new(Duration::from_secs(10), Duration::from_secs(10), 8);
        let server = tokio::spawn(serve(
            listener,
            router,
            limits,
            None,
            stop.clone().cancelled_owned(),
        ));
        let socket = TcpStream::connect(addr).await.unwrap();
        let local = socket.local_addr().unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(socket))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .header("host", "x")
            .body(String::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&body), format!("{local} false"));
        drop(send);
        stop.cancel();
        server.await.unwrap().unwrap();
    }

    /// Idle time counts from the later of the last request's end and `since` (when a
    /// connection was asked to close), so the close grace is not used up in advance.
    #[tokio::test]
    async fn idle_time_counts_from_since_at_the_earliest() {
        let limit = Duration::from_millis(200);
        let registry = Registry::default();
        let slot = registry.add();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Idle longer than `limit` already, but asked to close only now.
        let asked = Instant::now();
        slot.idle_for(limit, asked).await;
        assert!(asked.elapsed() >= limit);
        // A request in progress holds it off; its end starts the count again.
        let busy = slot.busy();
        let waiting = slot.idle_for(limit, asked);
        tokio::pin!(waiting);
        tokio::select! {
            _ = &mut waiting => panic!("idle while a request is in progress"),
            _ = tokio::time::sleep(2 * limit) => {}
        }
        drop(busy);
        let ended = Instant::now();
        waiting.await;
        assert!(ended.elapsed() >= limit);
    }

    #[test]
    fn eviction_takes_the_longest_idle_and_never_a_busy_one() {
        let registry = Registry::default();
        let a = registry.add();
        let b = registry.add();
        let busy = b.busy();
        a.idle_since_ms.store(10, Ordering::Relaxed);
        let c = registry.add();
        c.idle_since_ms.store(5, Ordering::Relaxed);
        assert!(registry.evict_idle());
        assert!(c.evicted.is_cancelled() && !a.evicted.is_cancelled());
        assert!(registry.evict_idle());
        assert!(a.evicted.is_cancelled());
        // Only the busy one is left.
        assert!(!registry.evict_idle());
        assert!(!b.evicted.is_cancelled());
        drop(busy);
        assert!(registry.evict_idle());
        assert_eq!(registry.len(), 0);
    }
}
