//! The server: wires store, planner, lanes and HTTP together, and shuts them down in order.
//!
//! [`serve`] takes an already-bound listener and a shutdown future (as mini-redis does), so tests
//! and `main` start it the same way. Start-up recovers from a crash before taking requests:
//! deployments left `running` become `interrupted` (and are queued again), and the planner's
//! first pass plans deliveries that were acknowledged but not yet planned.
//!
//! Listeners: the main one (HTTPS with `server.tls`) and, with `server.admin_listen`, the admin
//! one; both run `crate::listener::serve` and share one connection cap. A SIGHUP reloads the
//! TLS files (`crate::tls`).
//!
//! Shutdown: stop accepting and answer the requests already read; stop starting deployments;
//! give running ones `server.shutdown_grace` to finish; then cancel the rest (recorded
//! `interrupted`); stop the notify worker (what it has not sent stays in the outbox) and
//! return.
//!
//! Layout: this file holds [`serve`], the routes and the listeners; `server/degraded.rs` the
//! 503 mode while the store cannot be opened; `server/background.rs` crash recovery, the
//! background tasks and their ordered shutdown.

mod background;
mod degraded;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::listener::ConnLimits;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::tls::Tls;
use crate::{api, dashboard, ingress, listener};

use background::Background;
use degraded::{Listeners, ServerTask, open_store};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServerError {
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("server.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr} (server.admin_listen): {source}")]
    AdminBind {
        addr: String,
        source: std::io::Error,
    },
}

/// The hook route, behind the per-client limits of `crate::edges::guard`; the answer's
/// latency is timed from there.
fn hook_route(shared: &Arc<Shared>) -> axum::routing::MethodRouter<Arc<Shared>> {
    post(ingress::hook).route_layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        |State(shared): State<Arc<Shared>>, req: Request, next: Next| async move {
            let start = std::time::Instant::now();
            let answer = crate::edges::guard(&shared.edges, &shared.metrics, req, next).await;
            shared.metrics.hook_answered(start.elapsed());
            answer
        },
    ))
}

/// The HTTP routes, for a given shared state.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/hooks/{app}/{token}", hook_route(&shared))
        // Let `to_bytes` in the handler enforce `body_limit` (with a clear 413 message).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .merge(api::router(shared.clone()))
        .merge(dashboard::router())
        .with_state(shared)
}

/// The routers of the main listener and, with `server.admin_listen`, of the admin listener:
/// then the API, `/metrics` and the dashboard live only there, and the main listener keeps hooks and health
/// checks (anything else is a 404).
pub(crate) fn routers(shared: Arc<Shared>) -> (Router, Option<Router>) {
    if shared.config.server.admin_listen.is_none() {
        return (router(shared), None);
    }
    let public = Router::new()
        .route("/hooks/{app}/{token}", hook_route(&shared))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .merge(api::health_router())
        .with_state(shared.clone());
    let admin = api::admin_router(shared.clone())
        .merge(api::health_router())
        .merge(dashboard::router())
        .with_state(shared);
    (public, Some(admin))
}

/// A listener and how it serves: the main one (TLS when configured) and the admin one.
struct Endpoint {
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
}

/// Runs ferry on an already-bound listener until `shutdown` resolves: opens the store (in
/// degraded mode while it cannot), recovers from a crash, starts the background tasks, serves
/// HTTP, then stops everything in order.
pub(crate) async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let stopping = stop_token(shutdown);
    let endpoints = endpoints(listener, &config).await?;
    tokio::spawn(crate::tls::reload_on_sighup(
        endpoints[0].tls.clone(),
        stopping.clone(),
    ));
    let limits = ConnLimits::for_server(&config.server);
    let data_dir = &config.server.data_dir;
    let metrics = Arc::new(Metrics::new(config.apps.keys().map(String::as_str)));
    let main_addr = endpoints[0].listener.local_addr()?;
    let scheme = if endpoints[0].tls.is_some() {
        "https"
    } else {
        "http"
    };
    let database = config.server.database.as_ref().map(|url| url.expose());
    let opened = open_store(endpoints, &limits, data_dir, database, &metrics, &stopping).await?;
    let Some((store, intake, listeners)) = opened else {
        tracing::info!("stopped before the store could be opened");
        return Ok(());
    };
    tracing::info!(engine = store.engine(), node = %config.server.node, "store opened");
    if store.shared() {
        warn_unpinned_containers(&config);
    }
    background::recover(&config, &store).await;
    let tasks = Background::spawn(&config, &store, &intake, &metrics);
    let live = store.live().clone();
    let shared = Arc::new(Shared {
        config: config.clone(),
        store,
        intake,
        metrics,
        edges: crate::edges::Edges::new(&config),
        running: tasks.running.clone(),
        live,
        sessions: Default::default(),
    });
    // Live streams never end by themselves: end them when the server stops, or they would
    // hold the listeners' graceful shutdown open.
    let live = shared.live.clone();
    let stopped = stopping.clone();
    tokio::spawn(async move {
        stopped.cancelled().await;
        live.close();
    });
    tracing::info!(addr = %main_addr, %scheme, max_connections = limits.max_connections, "listening");
    serve_http(listeners, routers(shared), limits, &stopping).await?;
    tasks.stop(config.server.shutdown_grace).await;
    tracing::info!("stopped");
    Ok(())
}

/// A token cancelled when `shutdown` resolves. One token serves both phases (degraded mode,
/// then HTTP): the shutdown future can only be awaited once.
fn stop_token(shutdown: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let stopping = CancellationToken::new();
    let token = stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });
    stopping
}

/// The main listener (with TLS when `server.tls` is set) and, with `server.admin_listen`, the
/// admin listener (plain HTTP: it is meant for loopback or a private network).
async fn endpoints(listener: TcpListener, config: &Config) -> Result<Vec<Endpoint>, ServerError> {
    let tls = match &config.server.tls {
        Some(settings) => Some(Tls::load(settings)?),
        None => None,
    };
    let mut endpoints = vec![Endpoint { listener, tls }];
    if let Some(addr) = &config.server.admin_listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::AdminBind {
                addr: addr.clone(),
                source,
            })?;
        // Not "listening": the test harness takes the first such line as the main address.
        tracing::info!(admin = %listener.local_addr()?, "admin listener: API and /metrics (plain HTTP)");
        endpoints.push(Endpoint {
            listener,
            tls: None,
        });
    }
    Ok(endpoints)
}

/// Serves the main and admin routers until `stopping` (on listeners already serving 503s in
/// degraded mode, by handing the routers over), then waits for both to drain.
async fn serve_http(
    listeners: Listeners,
    (main, admin): (Router, Option<Router>),
    limits: ConnLimits,
    stopping: &CancellationToken,
) -> Result<(), ServerError> {
    let routers = std::iter::once(main).chain(admin);
    let servers: Vec<ServerTask> = match listeners {
        Listeners::Degraded(handover) => handover.complete(routers),
        Listeners::Idle(endpoints) => endpoints
            .into_iter()
            .zip(routers)
            .map(|(e, router)| {
                tokio::spawn(listener::serve(
                    e.listener,
                    router,
                    limits.clone(),
                    e.tls,
                    stopping.clone().cancelled_owned(),
                ))
            })
            .collect(),
    };
    for server in servers {
        match server.await {
            Ok(r) => r?,
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
    }
    Ok(())
}

/// With replicas, a `docker` or `compose` service runs on whichever replica claims it, against
/// that replica's Docker Engine: say so for each one that `runs_on` does not pin.
fn warn_unpinned_containers(config: &crate::config::Config) {
    for app in config.apps.values() {
        for service in app.services.values() {
            let kind = service.executor.kind();
            if matches!(kind, "docker" | "compose") && service.runs_on.is_empty() {
                tracing::warn!(
                    app = %app.name,
                    service = %service.name,
                    executor = kind,
                    "on a shared database any replica may run this service, against its own Docker Engine; pin it with runs_on = [\"NODE\"] if its containers live on one host"
                );
            }
        }
    }
}
